"""Class composition of an image per frame (time-lapse) or per z slice."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Column name for cells without a (confirmed or shown) class.
UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class Composition:
    """Counts of each class in each frame.

    Attributes
    ----------
    frames : tuple of int
        Frame (t or z) indices, sorted.
    classes : tuple of str
        Class names (``"unlabelled"`` last when present).
    counts : ndarray
        ``(n_frames, n_classes)`` int counts.
    """

    frames: tuple[int, ...]
    classes: tuple[str, ...]
    counts: np.ndarray

    @property
    def fractions(self) -> np.ndarray:
        """Counts divided by the number of cells of each frame (0 for empty frames)."""
        totals = self.counts.sum(axis=1, keepdims=True)
        return np.divide(
            self.counts, totals, out=np.zeros(self.counts.shape, float), where=totals > 0
        )


def composition(
    cells: Iterable[Mapping],
    *,
    axis: str = "t",
    suggestions: bool = True,
    threshold: float | None = None,
    classes: Sequence[str] | None = None,
    unlabelled: bool = True,
) -> Composition:
    """Count cells per class and frame.

    Parameters
    ----------
    cells : iterable of mapping
        Store cell dicts with ``t``, ``z``, ``label``, ``suggestion`` and ``confidence``.
    axis : {"t", "z"}
        Which plane index is the frame.
    suggestions : bool
        Count unconfirmed cells under their suggestion.
    threshold : float, optional
        Only count suggestions with at least this confidence.
    classes : sequence of str, optional
        Class order (default: sorted classes found).
    unlabelled : bool
        Add an ``"unlabelled"`` column for cells without a class.

    Returns
    -------
    Composition
    """
    if axis not in ("t", "z"):
        raise ValueError(f"axis must be 't' or 'z', got {axis!r}")
    rows = []
    for cell in cells:
        name = cell.get("label")
        if name is None and suggestions:
            conf = cell.get("confidence")
            if threshold is None or (conf is not None and conf >= threshold):
                name = cell.get("suggestion")
        rows.append((int(cell[axis]), name))
    found = sorted({n for _, n in rows if n is not None})
    order = list(classes) if classes is not None else found
    order += [n for n in found if n not in order]
    has_none = unlabelled and any(n is None for _, n in rows)
    names = tuple(order) + ((UNLABELLED,) if has_none else ())
    frames = tuple(sorted({f for f, _ in rows}))
    counts = np.zeros((len(frames), len(names)), np.int64)
    f_index = {f: i for i, f in enumerate(frames)}
    c_index = {c: i for i, c in enumerate(names)}
    for frame, name in rows:
        key = UNLABELLED if name is None else name
        if key in c_index:
            counts[f_index[frame], c_index[key]] += 1
    return Composition(frames, names, counts)
