"""Class composition of an image per frame (time-lapse) or per z slice."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Column names for cells without a class shown: suggested below the threshold, and not
#: suggested at all (the glossary's states, :data:`cellseek.types.CELL_STATES`).
UNCERTAIN = "uncertain"
UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class Composition:
    """Counts of each class in each frame.

    Attributes
    ----------
    frames : tuple of int
        Frame (t or z) indices, sorted.
    classes : tuple of str
        Class names (``"uncertain"``, then ``"unlabelled"``, last when present).
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
        Add ``"uncertain"`` (a suggestion below ``threshold``) and ``"unlabelled"`` (no
        suggestion) columns for the cells without a class.

    Returns
    -------
    Composition
    """
    if axis not in ("t", "z"):
        raise ValueError(f"axis must be 't' or 'z', got {axis!r}")
    rows = []
    for cell in cells:
        name = cell.get("label")
        conf = cell.get("confidence")
        if name is None and suggestions and cell.get("suggestion"):
            if threshold is None or (conf is not None and conf >= threshold):
                name = cell.get("suggestion")
        if name is None:
            name = UNCERTAIN if suggestions and conf is not None else UNLABELLED
            rows.append((int(cell[axis]), name, True))
        else:
            rows.append((int(cell[axis]), name, False))
    found = sorted({n for _, n, none in rows if not none})
    order = list(classes) if classes is not None else found
    order += [n for n in found if n not in order]
    present = {n for _, n, none in rows if none} if unlabelled else set()
    names = tuple(order) + tuple(n for n in (UNCERTAIN, UNLABELLED) if n in present)
    frames = tuple(sorted({f for f, _, _ in rows}))
    counts = np.zeros((len(frames), len(names)), np.int64)
    f_index = {f: i for i, f in enumerate(frames)}
    c_index = {c: i for i, c in enumerate(names)}
    for frame, name, _ in rows:
        if name in c_index:
            counts[f_index[frame], c_index[name]] += 1
    return Composition(frames, names, counts)
