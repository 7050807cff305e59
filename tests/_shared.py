"""Test helpers: the ../shared/data location and small synthetic images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is missing (it sits beside the repo "
                    "as ../shared/data in CI)")
    return path


def synthetic_field(seed: int = 0, n_per_class: int = 4, size: int = 256):
    """An RGB field with red round cells and blue elongated cells, and its label image.

    Returns
    -------
    image : ndarray
        uint8 ``(size, size, 3)``.
    labels : ndarray
        int32 instance labels.
    classes : dict
        Label value -> "red" or "blue".
    """
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 235, np.uint8)
    labels = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    classes = {}
    grid = [(r, c) for r in range(32, size - 16, 56) for c in range(32, size - 16, 56)]
    rng.shuffle(grid)
    for value, (r, c) in enumerate(grid[: 2 * n_per_class], start=1):
        red = value % 2 == 1
        if red:
            inside = (yy - r) ** 2 + (xx - c) ** 2 < rng.uniform(14, 18) ** 2
            colour = (190 + rng.integers(-20, 20), 60, 70)
        else:
            inside = ((yy - r) / 9.0) ** 2 + ((xx - c) / rng.uniform(19, 23)) ** 2 < 1
            colour = (60, 80, 180 + rng.integers(-20, 20))
        image[inside] = colour
        labels[inside] = value
        classes[value] = "red" if red else "blue"
    noise = rng.normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), labels, classes
