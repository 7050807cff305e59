"""Box prompts for box-trained SAM models (LiteMedSAM): where boxes come from, at what scale.

LiteMedSAM was trained with one box per object; a point or a fixed square means little to it
(issue 20: a 100 px square around a BCCD white cell gave median IoU 0.19, the true box 0.85). So
the boxes come from the classical detector (:func:`cellseek.segment.classical.segment`), which
finds 98.4 % of the BCCD white cells: :func:`find_objects` runs it once per plane and keeps each
object's box; a click takes the box of the object under it (:func:`click_box`), automatic
segmentation takes them all; where the detector finds nothing, a grid of boxes of the expected
cell size stands in (:func:`grid_boxes`).

The scale matters as much as the box. LiteMedSAM sees a 256 px image; measured on 32 BCCD white
cells (about 200 px across in the field) with the true box plus 10 %, the median IoU was 0.80 with
the cell 200 px wide in the model's frame, 0.87 at 160 px, 0.91 at 120 px, 0.92 at 80 px, 0.89 at
50 px and 0.74 at 30 px. So every box is segmented at the scale that makes it about
:data:`TARGET_DIAMETER` px wide (:func:`scale_for`, in half-octave steps so that nearby cells share
one encoded tile).

Pure NumPy and SciPy; nothing heavy is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "BOX_MARGIN",
    "TARGET_DIAMETER",
    "PlaneObjects",
    "click_box",
    "find_objects",
    "grid_boxes",
    "grow_box",
    "scale_for",
]

#: Size (px, in the model's 256 px frame) a cell is scaled to: BCCD white cells clicked at their
#: centroid, classical box plus 5 %, 32 cells: median IoU 0.907 at 72 px (97 % >= 0.7), 0.873 at
#: 96 px, 0.843 at 128 px.
TARGET_DIAMETER = 72.0
#: Margin added to a detected object's box on each side, as a fraction of its size (same cells:
#: 0.0 -> median IoU 0.874, 0.05 -> 0.907, 0.10 -> 0.884, 0.15 -> 0.809).
BOX_MARGIN = 0.05
#: Scales a plane is ever encoded at (1/16 .. 2): tiny cells are enlarged at most twofold.
SCALE_RANGE = (1 / 16, 2.0)
#: Expected cell diameter in plane pixels when nothing on the plane says otherwise.
DEFAULT_DIAMETER = 40.0


@dataclass(frozen=True)
class PlaneObjects:
    """What the classical detector found on a plane: labels, boxes, typical size.

    Parameters
    ----------
    labels : ndarray
        int32 ``(Y, X)`` labels 1..n.
    boxes : ndarray
        float ``(n, 4)`` boxes ``(row0, col0, row1, col1)`` (half-open) of objects 1..n.
    diameter : float
        Typical object size in pixels (median of ``sqrt(height * width)`` of the boxes), or
        :data:`DEFAULT_DIAMETER` when there are none.
    """

    labels: np.ndarray
    boxes: np.ndarray
    diameter: float

    def __len__(self) -> int:
        return len(self.boxes)


def find_objects(plane: np.ndarray, *, stain: str = "auto", target: str = "cells",
                 min_area: int = 30) -> PlaneObjects:
    """Run the classical detector once and keep each object's box.

    Parameters
    ----------
    plane : ndarray
        ``(Y, X)`` or ``(Y, X, 3)``, any dtype (not modified).
    stain, target, min_area
        As in :func:`cellseek.segment.classical.segment` (``target="cells"``: every cell can be
        clicked, not only white cells).

    Returns
    -------
    PlaneObjects
    """
    from cellseek.segment.classical import segment

    labels = np.asarray(segment(plane, stain=stain, target=target, min_area=int(min_area)),
                        np.int32)
    boxes = [(sl[0].start, sl[1].start, sl[0].stop, sl[1].stop) if sl is not None
             else (0, 0, 0, 0) for sl in ndi.find_objects(labels)]
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    sizes = np.sqrt(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)) if len(boxes) else []
    sizes = np.asarray(sizes, float)
    sizes = sizes[sizes > 0]
    diameter = float(np.median(sizes)) if sizes.size else DEFAULT_DIAMETER
    return PlaneObjects(labels, boxes, diameter)


def click_box(objects: PlaneObjects, point_rc, *, reach: float = 0.5):
    """The box of the object under a click, or of the nearest one.

    Parameters
    ----------
    objects : PlaneObjects
    point_rc : (float, float)
        The click, ``(row, col)`` in plane pixels.
    reach : float
        An object counts as "under" a click that misses it by at most ``reach`` times the
        typical diameter.

    Returns
    -------
    box : ndarray
        ``(row0, col0, row1, col1)``; a square of the typical diameter centred on the click when
        no object is within reach.
    label : int
        The object's label, 0 for the square.
    """
    labels = objects.labels
    r = min(max(int(point_rc[0]), 0), labels.shape[0] - 1)
    c = min(max(int(point_rc[1]), 0), labels.shape[1] - 1)
    value = int(labels[r, c])
    if value == 0 and len(objects):
        radius = max(int(math.ceil(reach * objects.diameter)), 1)
        r0, r1 = max(r - radius, 0), min(r + radius + 1, labels.shape[0])
        c0, c1 = max(c - radius, 0), min(c + radius + 1, labels.shape[1])
        window = labels[r0:r1, c0:c1]
        if window.any():
            rr, cc = np.nonzero(window)
            d2 = (rr + r0 - r) ** 2 + (cc + c0 - c) ** 2
            best = int(np.argmin(d2))
            if d2[best] <= radius**2:
                value = int(window[rr[best], cc[best]])
    if value:
        return objects.boxes[value - 1].copy(), value
    half = objects.diameter / 2
    return np.array([r - half, c - half, r + half + 1, c + half + 1], float), 0


def grow_box(box, margin: float, shape) -> np.ndarray:
    """``box`` grown by ``margin`` times its height / width on each side, clipped to ``shape``."""
    r0, c0, r1, c1 = (float(v) for v in box)
    dr, dc = margin * (r1 - r0), margin * (c1 - c0)
    return np.array([max(r0 - dr, 0.0), max(c0 - dc, 0.0),
                     min(r1 + dr, float(shape[0])), min(c1 + dc, float(shape[1]))])


def scale_for(diameter: float, target: float = TARGET_DIAMETER) -> float:
    """The scale that makes an object of ``diameter`` px about ``target`` px wide.

    Rounded to a half-octave step (``2 ** (k / 2)``) so that objects of similar size share one
    scale (and one encoded tile), and kept within :data:`SCALE_RANGE`.
    """
    d = max(float(diameter), 1.0)
    k = round(2 * math.log2(target / d))
    lo, hi = SCALE_RANGE
    return float(min(max(2 ** (k / 2), lo), hi))


def grid_boxes(shape, diameter: float) -> np.ndarray:
    """Square boxes of side ``diameter`` every ``diameter / 2`` px over a plane (the prompts
    where the detector finds nothing); ``(n, 4)`` ``(row0, col0, row1, col1)``."""
    rows, cols = int(shape[0]), int(shape[1])
    side = max(float(diameter), 4.0)
    step = side / 2

    def starts(length):
        if length <= side:
            return [0.0]
        n = int(math.ceil((length - side) / step))
        return list(np.linspace(0.0, length - side, n + 1))

    return np.array([[r, c, min(r + side, rows), min(c + side, cols)]
                     for r in starts(rows) for c in starts(cols)], float).reshape(-1, 4)
