"""Cut a large plane into overlapping tiles and stitch per-tile instance labels back together.

Pure NumPy (no torch); used by :mod:`cellseek.segment.sam` for fields larger than SAM's input.

Layout
    Along each axis, tiles of ``tile_size`` pixels start every ``tile_size - overlap`` pixels; the
    last tile is aligned with the far edge, so every tile is full size when the plane is larger
    than a tile (neighbours then overlap by *at least* ``overlap``). Each tile owns a *core*: the
    pixels for which it is the most central tile (the seams run through the middle of each
    overlap).

Stitching (:func:`stitch_tiles`)
    1. Every object of every tile becomes a candidate; it is *truncated* when it touches a tile
       edge that is not the plane's edge.
    2. Candidates from different tiles that cover the same pixels in the window their tiles share
       (IoU >= ``iou_threshold`` inside that window) are the same object: they are grouped
       (union-find, so chains over several tiles work).
    3. A group with a complete member (untruncated, and at least 90 % of the group's largest
       member) keeps that member from the tile where it is most central; any other group (an
       object wider than the overlap, so truncated in every tile) becomes the union of its
       members, i.e. it is merged across the seams.
    4. Groups are painted largest first, so where two different objects claim a pixel the smaller
       one stays on top. The result is numbered 1..n.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

logger = logging.getLogger(__name__)

__all__ = ["Tile", "masks_to_labels", "stitch_tiles", "tile_for_point", "tile_layout"]


@dataclass(frozen=True)
class Tile:
    """One tile of a plane: a half-open window and the core it owns.

    Parameters
    ----------
    row0, col0, row1, col1 : int
        The window ``plane[row0:row1, col0:col1]``.
    core : tuple of int
        ``(row0, col0, row1, col1)`` of the pixels for which this tile is the most central one;
        the cores of all tiles partition the plane.
    """

    row0: int
    col0: int
    row1: int
    col1: int
    core: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the window."""
        return slice(self.row0, self.row1), slice(self.col0, self.col1)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the window."""
        return self.row1 - self.row0, self.col1 - self.col0

    def contains(self, rc) -> bool:
        """Whether the point ``(row, col)`` lies inside the window."""
        r, c = rc
        return self.row0 <= r < self.row1 and self.col0 <= c < self.col1

    def in_core(self, rc) -> bool:
        """Whether the point ``(row, col)`` lies in the tile's core."""
        r0, c0, r1, c1 = self.core
        r, c = rc
        return r0 <= r < r1 and c0 <= c < c1


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return sorted(set(starts))


def _cores(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    """Per tile, the ``[lo, hi)`` range it owns: seams in the middle of each overlap."""
    stops = [min(s + tile, length) for s in starts]
    cuts = [0] + [(starts[i] + stops[i - 1]) // 2 for i in range(1, len(starts))] + [length]
    return [(cuts[i], cuts[i + 1]) for i in range(len(starts))]


def tile_layout(shape, tile_size: int = 1024, overlap: int = 128) -> list[Tile]:
    """Overlapping tiles covering a plane, row-major.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols, ...)`` of the plane; extra dimensions are ignored.
    tile_size : int
        Side of a tile in pixels. A plane no larger than this along an axis gets one tile along
        that axis (no padding).
    overlap : int
        Minimum overlap of neighbouring tiles, ``0 <= overlap < tile_size``.

    Returns
    -------
    list of Tile
    """
    rows, cols = int(shape[0]), int(shape[1])
    tile_size, overlap = int(tile_size), int(overlap)
    if tile_size < 1:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must be in [0, tile_size), got {overlap} for {tile_size}")
    if rows < 1 or cols < 1:
        raise ValueError(f"cannot tile an empty plane of shape {tuple(shape)}")
    rs, cs = _starts(rows, tile_size, overlap), _starts(cols, tile_size, overlap)
    rcore, ccore = _cores(rs, tile_size, rows), _cores(cs, tile_size, cols)
    return [
        Tile(r, c, min(r + tile_size, rows), min(c + tile_size, cols), (rc[0], cc[0], rc[1], cc[1]))
        for r, rc in zip(rs, rcore)
        for c, cc in zip(cs, ccore)
    ]


def tile_for_point(tiles: list[Tile], rc) -> int:
    """Index of the tile whose core holds the point ``(row, col)`` (the most central tile)."""
    for i, tile in enumerate(tiles):
        if tile.in_core(rc):
            return i
    raise ValueError(f"point {tuple(rc)} lies outside the tiled plane")


@dataclass
class _Candidate:
    tile: int
    bbox: tuple[int, int, int, int]  # global, half-open
    mask: np.ndarray  # bool, bbox-sized
    truncated: bool
    centrality: float  # 0 at the tile centre, 1 at its edge
    area: int


def _candidates(tile_index: int, tile: Tile, labels: np.ndarray, plane_shape) -> list[_Candidate]:
    labels = np.asarray(labels)
    if labels.shape[:2] != tile.shape:
        raise ValueError(f"tile {tile_index}: labels {labels.shape} do not match tile {tile.shape}")
    rows, cols = plane_shape[:2]
    interior = (tile.row0 > 0, tile.col0 > 0, tile.row1 < rows, tile.col1 < cols)
    th, tw = tile.shape
    cy, cx = (tile.row0 + tile.row1) / 2, (tile.col0 + tile.col1) / 2
    out = []
    for value, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        mask = labels[sl] == value
        r0, r1, c0, c1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        truncated = (
            (interior[0] and r0 == 0)
            or (interior[1] and c0 == 0)
            or (interior[2] and r1 == th)
            or (interior[3] and c1 == tw)
        )
        rr, cc = np.nonzero(mask)
        my = tile.row0 + r0 + rr.mean()
        mx = tile.col0 + c0 + cc.mean()
        centrality = max(abs(my - cy) / max(th / 2, 1), abs(mx - cx) / max(tw / 2, 1))
        bbox = (tile.row0 + r0, tile.col0 + c0, tile.row0 + r1, tile.col0 + c1)
        out.append(_Candidate(tile_index, bbox, mask, bool(truncated), float(centrality),
                              int(rr.size)))
    return out


def _window_iou(a: _Candidate, b: _Candidate, window) -> float:
    """IoU of two candidates restricted to ``window`` (global half-open box)."""
    r0 = max(window[0], a.bbox[0], b.bbox[0])
    c0 = max(window[1], a.bbox[1], b.bbox[1])
    r1 = min(window[2], a.bbox[2], b.bbox[2])
    c1 = min(window[3], a.bbox[3], b.bbox[3])
    if r0 >= r1 or c0 >= c1:
        return 0.0

    def part(cand):
        sub = cand.mask[
            max(window[0] - cand.bbox[0], 0) : max(window[2] - cand.bbox[0], 0),
            max(window[1] - cand.bbox[1], 0) : max(window[3] - cand.bbox[1], 0),
        ]
        return sub, (max(window[0], cand.bbox[0]), max(window[1], cand.bbox[1]))

    (ma, oa), (mb, ob) = part(a), part(b)
    # both masks on the common window canvas
    h, w = window[2] - window[0], window[3] - window[1]
    ca = np.zeros((h, w), bool)
    cb = np.zeros((h, w), bool)
    ca[oa[0] - window[0] : oa[0] - window[0] + ma.shape[0],
       oa[1] - window[1] : oa[1] - window[1] + ma.shape[1]] = ma
    cb[ob[0] - window[0] : ob[0] - window[0] + mb.shape[0],
       ob[1] - window[1] : ob[1] - window[1] + mb.shape[1]] = mb
    inter = np.count_nonzero(ca & cb)
    if inter == 0:
        return 0.0
    return inter / np.count_nonzero(ca | cb)


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def stitch_tiles(
    shape, tiles: list[Tile], tile_labels, *, iou_threshold: float = 0.5
) -> np.ndarray:
    """Stitch per-tile instance labels into one label image of the plane.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols, ...)`` of the plane.
    tiles : list of Tile
        From :func:`tile_layout`.
    tile_labels : sequence of ndarray
        One integer label image per tile, shaped like the tile (0 = background; values need not
        be consecutive or agree between tiles).
    iou_threshold : float
        Candidates of two tiles are the same object when their IoU inside the window both tiles
        cover reaches this.

    Returns
    -------
    ndarray
        int32 ``(rows, cols)`` labels numbered 1..n (see the module docstring for the rules).
    """
    rows, cols = int(shape[0]), int(shape[1])
    if len(tiles) != len(tile_labels):
        raise ValueError(f"{len(tiles)} tiles but {len(tile_labels)} label images")
    cands: list[_Candidate] = []
    for i, (tile, lab) in enumerate(zip(tiles, tile_labels)):
        cands.extend(_candidates(i, tile, lab, (rows, cols)))
    parent = list(range(len(cands)))
    if len(tiles) > 1 and cands:
        boxes = np.array([c.bbox for c in cands], dtype=np.int64)
        tile_of = np.array([c.tile for c in cands])
        for ti, ta in enumerate(tiles):
            for tj in range(ti + 1, len(tiles)):
                tb = tiles[tj]
                window = (max(ta.row0, tb.row0), max(ta.col0, tb.col0),
                          min(ta.row1, tb.row1), min(ta.col1, tb.col1))
                if window[0] >= window[2] or window[1] >= window[3]:
                    continue
                in_win = (
                    (boxes[:, 0] < window[2]) & (boxes[:, 2] > window[0])
                    & (boxes[:, 1] < window[3]) & (boxes[:, 3] > window[1])
                )
                ia = np.flatnonzero(in_win & (tile_of == ti))
                ib = np.flatnonzero(in_win & (tile_of == tj))
                for a in ia:
                    for b in ib:
                        ba, bb = boxes[a], boxes[b]
                        if ba[0] >= bb[2] or bb[0] >= ba[2] or ba[1] >= bb[3] or bb[1] >= ba[3]:
                            continue
                        if _window_iou(cands[a], cands[b], window) >= iou_threshold:
                            pa, pb = _find(parent, int(a)), _find(parent, int(b))
                            if pa != pb:
                                parent[pb] = pa
    groups: dict[int, list[int]] = {}
    for i in range(len(cands)):
        groups.setdefault(_find(parent, i), []).append(i)

    objects = []  # (area, bbox, mask)
    for members in groups.values():
        # an untruncated member no smaller than the others is the whole object (a smaller one
        # is a disconnected piece of an object that other tiles see more of)
        largest = max(cands[i].area for i in members)
        whole = [
            cands[i] for i in members if not cands[i].truncated and cands[i].area >= 0.9 * largest
        ]
        if whole:
            best = min(whole, key=lambda c: (c.centrality, c.tile))
            objects.append((best.area, best.bbox, best.mask))
            continue
        parts = [cands[i] for i in members]
        r0 = min(p.bbox[0] for p in parts)
        c0 = min(p.bbox[1] for p in parts)
        r1 = max(p.bbox[2] for p in parts)
        c1 = max(p.bbox[3] for p in parts)
        mask = np.zeros((r1 - r0, c1 - c0), bool)
        for p in parts:
            mask[p.bbox[0] - r0 : p.bbox[2] - r0, p.bbox[1] - c0 : p.bbox[3] - c0] |= p.mask
        objects.append((int(mask.sum()), (r0, c0, r1, c1), mask))

    out = np.zeros((rows, cols), np.int32)
    objects.sort(key=lambda o: (-o[0], o[1]))
    for value, (_, (r0, c0, r1, c1), mask) in enumerate(objects, start=1):
        out[r0:r1, c0:c1][mask] = value
    return _sequential(out)


def _sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber a label image 1..n in order of first appearance of the values kept."""
    values = np.unique(labels)
    values = values[values > 0]
    if values.size == 0:
        return labels.astype(np.int32, copy=False)
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[values] = np.arange(1, values.size + 1, dtype=np.int32)
    return lut[labels]


def masks_to_labels(masks, shape, scores=None, *, max_fraction: float = 1.0) -> np.ndarray:
    """Paint overlapping bool masks into one instance label image.

    Parameters
    ----------
    masks : sequence of ndarray
        Bool masks shaped ``shape``.
    shape : tuple of int
        ``(rows, cols)`` of the label image.
    scores : sequence of float, optional
        Quality per mask; breaks ties between masks of equal area (higher wins).
    max_fraction : float
        Masks covering more than this fraction of the image are dropped (SAM's automatic mode
        often returns the background as one mask).

    Returns
    -------
    ndarray
        int32 labels 1..n. Masks are painted largest first, so where masks overlap the smaller
        one stays on top; a mask completely hidden by smaller ones disappears.
    """
    shape = (int(shape[0]), int(shape[1]))
    masks = [np.asarray(m, bool) for m in masks]
    for m in masks:
        if m.shape != shape:
            raise ValueError(f"mask of shape {m.shape} does not match {shape}")
    scores = np.zeros(len(masks)) if scores is None else np.asarray(scores, float)
    areas = np.array([m.sum() for m in masks])
    order = sorted(range(len(masks)), key=lambda i: (-areas[i], scores[i]))
    out = np.zeros(shape, np.int32)
    limit = max_fraction * shape[0] * shape[1]
    value = 0
    for i in order:
        if areas[i] == 0 or areas[i] > limit:
            continue
        value += 1
        out[masks[i]] = value
    return _sequential(out)
