"""Click and automatic segmentation with a box-trained SAM model (LiteMedSAM).

:class:`BoxPrompter` is what :class:`cellseek.segment.sam.SamSegmenter` delegates to when its
model understands boxes rather than points (:data:`cellseek.zoo.sam_loader.BOX_PROMPT_MODELS`).
It holds the segmenter (its model, embedding cache and prompt decoder) and adds:

* the classical detector's objects per plane (:func:`cellseek.segment.sam_prompts.find_objects`,
  computed once per plane and kept for the last few planes), which give the boxes;
* a tile pyramid: a box is segmented at the scale that makes it about
  :data:`~cellseek.segment.sam_prompts.TARGET_DIAMETER` px wide in the model's 256 px frame
  (:func:`~cellseek.segment.sam_prompts.scale_for`), in the tile of that scale's layout where it
  is most central. Tiles are ``input_size / scale`` plane pixels with 3/8 overlap, so every box
  of that scale fits whole in its tile; each tile is encoded once and cached like any SAM
  embedding (the scale is part of its signature).

A click (:meth:`BoxPrompter.click`) becomes the box of the object under it (or the nearest within
half a cell), grown by :data:`~cellseek.segment.sam_prompts.BOX_MARGIN`; without an object, a
square of the plane's typical cell size. Automatic segmentation (:meth:`BoxPrompter.segment_auto`)
decodes every detected object's box in batches (:data:`BATCH`), each mask computed only in a
window around its box; a mask the model itself rates below :data:`MIN_PREDICTED_IOU` (or an empty
one) gives way to the detector's own object. Where the detector finds nothing, a grid of boxes of
the default cell size is decoded and only confident masks are kept. Overlaps are resolved by
painting larger masks first, so smaller ones stay on top.

torch is imported inside functions only.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict

import numpy as np
from scipy import ndimage as ndi

from cellseek.segment.sam_prompts import (
    BOX_MARGIN,
    DEFAULT_DIAMETER,
    PlaneObjects,
    click_box,
    find_objects,
    grid_boxes,
    grow_box,
    scale_for,
)
from cellseek.segment.tiling import Tile, tile_for_point, tile_layout
from cellseek.types import Progress, Work

logger = logging.getLogger(__name__)

__all__ = ["BATCH", "MIN_PREDICTED_IOU", "BoxPrompter", "largest_component", "tiles_at_scale"]

#: Box prompts decoded together.
BATCH = 16
#: Automatic mode: a mask whose predicted IoU is lower gives way to the detector's object.
MIN_PREDICTED_IOU = 0.5
#: Grid prompts (no detected objects): masks kept only above this predicted IoU.
GRID_MIN_IOU = 0.8
#: A box is decoded in a window of the token grid grown by this fraction of the box (at least
#: ``WINDOW_MIN_TOKENS`` tokens) on each side.
WINDOW_MARGIN = 0.25
WINDOW_MIN_TOKENS = 2
#: Planes whose detector objects are kept in memory.
PLANES_KEPT = 4


def tiles_at_scale(shape, scale: float, input_size: int) -> list[Tile]:
    """The tile layout of a plane at one scale: tiles of ``input_size / scale`` plane pixels
    overlapping by 3/8 of a tile (so every box of that scale fits whole in its tile)."""
    size = max(int(math.floor(input_size / scale)), 8)
    return tile_layout(shape, size, (3 * size) // 8)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of ``mask``, holes filled."""
    lab, n = ndi.label(mask)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        mask = lab == int(np.argmax(sizes))
    return ndi.binary_fill_holes(mask)


class BoxPrompter:
    """Box prompts for one :class:`~cellseek.segment.sam.SamSegmenter` (composition).

    Parameters
    ----------
    segmenter : SamSegmenter
        Provides the model, the embedding cache (``_embedding(image, scale)``), the prompt
        decoder and the detector options (``seed_options``).
    """

    def __init__(self, segmenter) -> None:
        self.segmenter = segmenter
        self._objects: OrderedDict[tuple, PlaneObjects] = OrderedDict()
        self._lock = threading.Lock()

    # -- the detector's objects --------------------------------------------------------------
    def _options(self, *, click: bool) -> dict:
        opts = {"stain": "auto", "target": "auto", "min_area": 150,
                **self.segmenter.seed_options}
        if click:  # any cell can be clicked, not only white cells
            opts["target"] = "cells"
            opts["min_area"] = min(int(opts["min_area"]), 30)
        return opts

    def objects(self, image: np.ndarray, plane: np.ndarray, *, click: bool) -> PlaneObjects:
        """The classical detector's objects on a plane (kept for the last few planes)."""
        opts = self._options(click=click)
        key = (self.segmenter.signature(image)["image_sha256"],
               tuple(sorted((k, str(v)) for k, v in opts.items())))
        with self._lock:
            hit = self._objects.get(key)
            if hit is not None:
                self._objects.move_to_end(key)
                return hit
        found = find_objects(plane, **opts)
        with self._lock:
            self._objects[key] = found
            while len(self._objects) > PLANES_KEPT:
                self._objects.popitem(last=False)
        return found

    # -- decoding ----------------------------------------------------------------------------
    def _decode(self, tile_image: np.ndarray, scale: float, boxes: np.ndarray):
        """Masks of ``boxes`` (tile pixels, ``row0, col0, row1, col1``) on one tile.

        Returns
        -------
        list of (ndarray, (int, int), float)
            Per box: its bool mask cropped to its decoding window, the window's top-left corner
            in tile pixels and the predicted IoU.
        """
        import torch

        from cellseek.segment.sam_fast_decoder import torch_threads

        seg = self.segmenter
        model = seg.model
        emb = seg._embedding(tile_image, scale)
        th, tw = emb.original_size
        fy, fx = emb.input_size[0] / th, emb.input_size[1] / tw
        grid = emb.features.shape[-1]
        token = seg.input_size / grid
        out = []
        for start in range(0, len(boxes), BATCH):
            batch = boxes[start : start + BATCH]
            windows, crops = [], []
            for r0, c0, r1, c1 in batch:
                mr = max(WINDOW_MARGIN * (r1 - r0) * fy, WINDOW_MIN_TOKENS * token)
                mc = max(WINDOW_MARGIN * (c1 - c0) * fx, WINDOW_MIN_TOKENS * token)
                g = (max(int((r0 * fy - mr) // token), 0),
                     min(int(math.ceil((r1 * fy + mr) / token)), grid),
                     max(int((c0 * fx - mc) // token), 0),
                     min(int(math.ceil((c1 * fx + mc) / token)), grid))
                windows.append(g)
                crops.append((max(int(g[0] * token / fy), 0),
                              min(int(math.ceil(g[1] * token / fy)), th),
                              max(int(g[2] * token / fx), 0),
                              min(int(math.ceil(g[3] * token / fx)), tw)))
            xyxy = np.stack([batch[:, 1] * fx, batch[:, 0] * fy,
                             batch[:, 3] * fx, batch[:, 2] * fy], axis=1).astype(np.float32)
            prompts = torch.as_tensor(xyxy, device=model.device)
            with torch_threads(1), seg._decoder_lock:
                logits, iou = seg._fast_decoder(emb).predict_batch(
                    None, None, boxes=prompts, multimask=False, windows=windows)
            with torch.inference_mode():
                full = model.postprocess_masks(logits.clamp_min(-1e4), tuple(emb.input_size),
                                               tuple(emb.original_size))
                masks = (full[:, 0] > model.mask_threshold).cpu().numpy()
            for m, (a0, a1, b0, b1), q in zip(masks, crops, iou.tolist()):
                out.append((m[a0:a1, b0:b1], (a0, b0), float(q)))
        return out

    def _groups(self, shape, boxes: np.ndarray, input_size: int, scale: float | None = None,
                *, one_scale: bool = False):
        """Boxes grouped by (scale, tile): ``{(scale, tile index): [box indices]}`` and the
        tile layouts per scale.

        Each box is taken at its own scale, unless ``scale`` is given, or with ``one_scale``
        (whole planes): every box at the scale of the plane's median box, except boxes too large
        to fit whole in a tile of that scale, which keep their own. One scale means one set of
        tiles to encode instead of one per cell size (debris and fragments would each add
        their own small tiles).
        """
        layouts: dict[float, list[Tile]] = {}
        groups: dict[tuple[float, int], list[int]] = {}
        sizes = np.sqrt(np.maximum(boxes[:, 2] - boxes[:, 0], 1)
                        * np.maximum(boxes[:, 3] - boxes[:, 1], 1)) / (1 + 2 * BOX_MARGIN)
        if scale is None and one_scale and len(boxes):
            scale = scale_for(float(np.median(sizes)))
        fixed = scale
        for i, (r0, c0, r1, c1) in enumerate(boxes):
            scale = fixed if fixed is not None else scale_for(sizes[i])
            if one_scale and max(r1 - r0, c1 - c0) * scale > 0.35 * input_size:
                scale = scale_for(sizes[i])  # does not fit a tile's overlap at the plane scale
            tiles = layouts.setdefault(scale, tiles_at_scale(shape, scale, input_size))
            centre = (min(int((r0 + r1) / 2), shape[0] - 1), min(int((c0 + c1) / 2), shape[1] - 1))
            groups.setdefault((scale, tile_for_point(tiles, centre)), []).append(i)
        return groups, layouts

    # -- clicks ------------------------------------------------------------------------------
    def click(self, image: np.ndarray, plane: np.ndarray, point_rc) -> np.ndarray:
        """The cell under a click: bool ``(Y, X)`` in the plane's pixels."""
        objects = self.objects(image, plane, click=True)
        box, _ = click_box(objects, point_rc)
        return self.box_mask(image, grow_box(box, BOX_MARGIN, image.shape))

    def box_mask(self, image: np.ndarray, box, scale: float | None = None) -> np.ndarray:
        """The mask of one box ``(row0, col0, row1, col1)`` (plane pixels) as bool ``(Y, X)``.

        ``scale`` defaults to the box's own (:func:`~cellseek.segment.sam_prompts.scale_for`);
        the mask is the largest connected component of the model's, holes filled.
        """
        box = np.asarray(box, float).reshape(4)
        groups, layouts = self._groups(image.shape, box[None], self.segmenter.input_size, scale)
        (scale, t), _ = next(iter(groups.items()))
        tile = layouts[scale][t]
        local = box - np.array([tile.row0, tile.col0, tile.row0, tile.col0], float)
        mask, (a0, b0), _ = self._decode(image[tile.slices], scale, local[None])[0]
        out = np.zeros(image.shape[:2], bool)
        if mask.any():
            r, c = tile.row0 + a0, tile.col0 + b0
            out[r : r + mask.shape[0], c : c + mask.shape[1]] = largest_component(mask)
        return out

    # -- whole planes ------------------------------------------------------------------------
    def tiles_needed(self, image: np.ndarray, plane: np.ndarray, *, missing_only: bool = False
                     ) -> list[tuple[np.ndarray, float]]:
        """``(tile image, scale)`` of every tile a click on a detected cell of this plane needs
        (only those not in the embedding cache with ``missing_only``)."""
        objects = self.objects(image, plane, click=True)
        boxes = np.stack([grow_box(b, BOX_MARGIN, image.shape) for b in objects.boxes]) \
            if len(objects) else np.zeros((0, 4))
        groups, layouts = self._groups(image.shape, boxes, self.segmenter.input_size)
        out = [(image[layouts[scale][t].slices], scale) for scale, t in groups]
        if missing_only:
            out = [(sub, scale) for sub, scale in out
                   if not self.segmenter.has_embedding(sub, scale)]
        return out

    def precompute(self, image: np.ndarray, plane: np.ndarray) -> int:
        """Encode every tile a click on this plane may need; returns the tiles encoded now."""
        missing = self.tiles_needed(image, plane, missing_only=True)
        for sub, scale in missing:
            self.segmenter._embedding(sub, scale)
        return len(missing)

    def segment_auto(self, image: np.ndarray, plane: np.ndarray, *, grid_only: bool = False,
                     stage: str = "segment:sam") -> Work[np.ndarray]:
        """Instance labels of a whole plane (a generator; see the module docstring)."""
        yield Progress(0, 1, stage, "classical seeds")
        objects = None if grid_only else self.objects(image, plane, click=False)
        use_grid = objects is None or len(objects) == 0
        if use_grid:
            boxes = grid_boxes(image.shape, DEFAULT_DIAMETER)
        else:
            boxes = np.stack([grow_box(b, BOX_MARGIN, image.shape) for b in objects.boxes])
        groups, layouts = self._groups(image.shape, boxes, self.segmenter.input_size,
                                       one_scale=True)
        total = sum(1 + math.ceil(len(v) / BATCH) for v in groups.values())
        done = 0
        found = []  # (area, score, row0, col0, mask)
        for (scale, t), idx in groups.items():
            tile = layouts[scale][t]
            yield Progress(done, total, stage, f"tile at scale {scale:.2f}: {len(idx)} boxes "
                           f"({self.segmenter.model_type})")
            offset = np.array([tile.row0, tile.col0, tile.row0, tile.col0], float)
            results = self._decode(image[tile.slices], scale, boxes[idx] - offset)
            done += 1 + math.ceil(len(idx) / BATCH)
            for i, (mask, (a0, b0), q) in zip(idx, results):
                r, c = tile.row0 + a0, tile.col0 + b0
                if mask.any():
                    mask = largest_component(mask)
                if use_grid:
                    area = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
                    if q < GRID_MIN_IOU or not 0.05 * area <= mask.sum() <= 0.9 * area:
                        continue
                elif q < MIN_PREDICTED_IOU or not mask.any():
                    r0, c0, r1, c1 = (int(v) for v in objects.boxes[i])
                    mask, r, c = objects.labels[r0:r1, c0:c1] == i + 1, r0, c0
                found.append((int(mask.sum()), q, r, c, mask))
        labels = _paint(image.shape[:2], found)
        yield Progress(total, total, stage,
                       f"{int(labels.max())} objects ({'box grid' if use_grid else 'box seeds'})")
        return labels


def _paint(shape, found, *, duplicate: float = 0.5) -> np.ndarray:
    """Paint cropped masks into labels 1..n.

    Duplicates go first: in order of predicted IoU, a mask whose pixels lie mostly (more than
    ``duplicate``) inside masks already kept is the same object seen again (two fragments of one
    cell whose boxes gave the same mask, overlapping grid boxes) and is dropped. The rest are
    painted largest first, so where two masks overlap the smaller one stays on top.
    """
    taken = np.zeros(shape, bool)
    kept = []
    for i in sorted(range(len(found)), key=lambda i: (-found[i][1], i)):
        area, _, r, c, mask = found[i]
        if area == 0:
            continue
        window = taken[r : r + mask.shape[0], c : c + mask.shape[1]]
        if window[mask].mean() > duplicate:
            continue
        window |= mask
        kept.append(i)
    out = np.zeros(shape, np.int32)
    for value, i in enumerate(sorted(kept, key=lambda i: (-found[i][0], -found[i][1], i)), 1):
        _, _, r, c, mask = found[i]
        out[r : r + mask.shape[0], c : c + mask.shape[1]][mask] = value
    # masks hidden by smaller ones on top disappear; renumber 1..n
    present = np.unique(out)
    present = present[present > 0]
    lut = np.zeros(len(kept) + 1, np.int32)
    lut[present] = np.arange(1, len(present) + 1, dtype=np.int32)
    return lut[out]
