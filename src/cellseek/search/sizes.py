"""Objects far from the size of a cell: fragments and merged blobs never join the set in bulk.

A segmenter can cut one spread cell into pieces (issue 20: a montage of 16 brightfield cells
became 56 objects, some of 203 px) or join several cells into one. Their embeddings describe a
piece or a clump, and a bulk accept would put them into the reference set. So every suggested
object's area is compared with a reference area:

* the median area of the confirmed cells of its best class, when that class has at least
  :data:`MIN_CLASS_CELLS` of them;
* else its image's typical cell: the area-weighted median of the image's objects (the size at
  which half of the segmented area lies in larger objects; a plain median would be a fragment's
  size when most objects are fragments).

An object smaller than the reference divided by :data:`SIZE_FACTOR` is a ``"fragment"``, one
larger than the reference times :data:`SIZE_FACTOR` is ``"oversized"``. Pure NumPy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["MIN_CLASS_CELLS", "SIZE_FACTOR", "class_areas", "size_flag", "typical_area"]

#: How many times smaller / larger than the reference area an object may be.
SIZE_FACTOR = 3.0
#: Confirmed cells a class needs before its own sizes are the reference.
MIN_CLASS_CELLS = 3


def typical_area(areas: Iterable[float]) -> float | None:
    """Area-weighted median of object areas (None without objects)."""
    a = np.sort(np.asarray([float(v) for v in areas if v and v > 0], float))
    if a.size == 0:
        return None
    cum = np.cumsum(a)
    return float(a[np.searchsorted(cum, cum[-1] / 2)])


def class_areas(labels: Iterable[str], areas: Iterable[float]) -> dict[str, float]:
    """Class -> median area of its confirmed cells, for classes with enough of them."""
    by: dict[str, list[float]] = {}
    for label, area in zip(labels, areas):
        if label and area and area > 0:
            by.setdefault(str(label), []).append(float(area))
    return {k: float(np.median(v)) for k, v in by.items() if len(v) >= MIN_CLASS_CELLS}


def size_flag(area: float, label: str | None, per_class: Mapping[str, float],
              image_typical: float | None, factor: float = SIZE_FACTOR) -> str | None:
    """``"fragment"``, ``"oversized"`` or None for one object (see the module docstring)."""
    reference = per_class.get(label) if label else None
    if reference is None:
        reference = image_typical
    if not reference or not area:
        return None
    if area * factor < reference:
        return "fragment"
    if area > reference * factor:
        return "oversized"
    return None
