"""Segment Anything for cells: point prompts and automatic whole-field segmentation.

:class:`SamSegmenter` wraps one SAM model (loaded once per process through
:func:`cellseek.zoo.sam_backend.load_sam`) and a cache of image embeddings
(:mod:`cellseek.segment.sam_cache`): each plane, or each tile of a large plane, is encoded once;
point prompts and the automatic mask grid then only run SAM's small prompt decoder.

* Planes are turned into the uint8 RGB SAM expects: grey planes are stacked to three channels;
  uint8 is kept; any other dtype is scaled between its 1st and 99.5th percentile.
* Planes larger than ``tile_size`` are cut into overlapping tiles
  (:mod:`cellseek.segment.tiling`); each tile is encoded (and cached) on its own, so a tile keeps
  SAM's native resolution instead of the whole field being shrunk to 1024 px.
* Automatic segmentation prompts a ``points_per_side`` x ``points_per_side`` grid on each tile
  (SAM's automatic mask generator: predicted-IoU and stability filters, box NMS), paints the
  masks largest first so that smaller masks stay on top, drops masks covering more than
  ``max_mask_fraction`` of a tile (usually the background), and stitches the tiles.

torch and segment_anything are imported inside functions only.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from cellseek.config import SegmentConfig, default_cache_dir
from cellseek.errors import CellseekError
from cellseek.segment.sam_cache import EmbeddingCache, SamEmbedding, embedding_signature
from cellseek.segment.tiling import masks_to_labels, stitch_tiles, tile_for_point, tile_layout
from cellseek.types import Progress, Work

logger = logging.getLogger(__name__)

__all__ = ["SamSegmenter", "plane_to_uint8_rgb", "segment_plane_sam"]

#: Percentiles mapped to 0 and 255 when a non-uint8 plane is converted for SAM.
PERCENTILES = (1.0, 99.5)
#: Progress stage name.
STAGE = "segment:sam"


def plane_to_uint8_rgb(plane: np.ndarray) -> np.ndarray:
    """A plane as the uint8 ``(rows, cols, 3)`` image SAM takes (the input is not modified).

    Parameters
    ----------
    plane : ndarray
        ``(Y, X)`` grey, ``(Y, X, 1)``, ``(Y, X, 3)`` RGB or ``(Y, X, 4)`` RGBA (alpha dropped).
        uint8 is kept as is; bool becomes 0/255; any other dtype is scaled linearly between its
        1st and 99.5th percentile (over all channels, so colours keep their balance), NaN -> 0.

    Returns
    -------
    ndarray
        uint8 ``(Y, X, 3)``, C-contiguous.
    """
    a = np.asarray(plane)
    if a.ndim == 3 and a.shape[-1] in (1, 3, 4):
        a = a[..., :3] if a.shape[-1] >= 3 else a[..., 0]
    if a.ndim not in (2, 3) or min(a.shape[:2]) < 1:
        raise CellseekError(
            f"SAM needs a (Y, X) or (Y, X, 3) plane, got an array of shape {np.shape(plane)}"
        )
    if a.dtype == np.uint8:
        out = a
    elif a.dtype == bool:
        out = a.astype(np.uint8) * 255
    else:
        f = a.astype(np.float32)
        finite = np.isfinite(f)
        if not finite.any():
            raise CellseekError("SAM cannot segment a plane without a single finite value")
        lo, hi = np.percentile(f[finite], PERCENTILES)
        if hi <= lo:
            hi = lo + 1.0
        f = np.where(finite, (f - lo) * (255.0 / (hi - lo)), 0.0)
        out = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    if out.ndim == 2:
        out = np.stack([out] * 3, axis=-1)
    return np.ascontiguousarray(out)


class SamSegmenter:
    """SAM segmentation of 2-D planes with cached image embeddings.

    Parameters
    ----------
    model_type : {"vit_b", "vit_l", "vit_h"}
        SAM variant.
    checkpoint : path-like, optional
        Explicit checkpoint; default: the file
        :func:`~cellseek.zoo.sam_backend.sam_checkpoint_path` finds.
    weights_dir : path-like, optional
        Local weights folder (default ``$CELLSEEK_WEIGHTS_DIR``).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    cache_dir : path-like, None or False
        Folder of the embedding cache; None: ``default_cache_dir() / "sam_embeddings"``;
        False: memory only.
    points_per_side : int
        Automatic mode: prompt grid per tile side.
    tile_size, tile_overlap : int
        Planes larger than ``tile_size`` are cut into tiles overlapping by ``tile_overlap``.
    img_size : int, optional
        Encoder input size; default the checkpoint's (1024). 512 gives the encoder 4x fewer
        tokens (faster on a CPU) at some cost in detail (position embeddings are interpolated).
    points_per_batch : int
        Prompts decoded at once in automatic mode (memory grows with it).
    pred_iou_thresh, stability_score_thresh, box_nms_thresh : float
        Automatic mode filters, as in ``SamAutomaticMaskGenerator``.
    max_mask_fraction : float
        Automatic mode drops masks covering more than this fraction of a tile.
    memory_items : int
        Embeddings kept in memory.

    Raises
    ------
    MissingWeightsError
        At construction, when the checkpoint is not on this machine.
    """

    def __init__(
        self,
        model_type: str = "vit_b",
        *,
        checkpoint=None,
        weights_dir=None,
        device="auto",
        cache_dir=None,
        points_per_side: int = 32,
        tile_size: int = 1024,
        tile_overlap: int = 128,
        img_size: int | None = None,
        points_per_batch: int = 32,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        box_nms_thresh: float = 0.7,
        max_mask_fraction: float = 0.5,
        memory_items: int = 4,
    ) -> None:
        from cellseek.zoo.sam_backend import _model_type, _resolve_checkpoint

        self.model_type = _model_type(model_type)
        self.checkpoint = _resolve_checkpoint(self.model_type, checkpoint, weights_dir)
        self.device = device
        self.points_per_side = int(points_per_side)
        self.tile_size = int(tile_size)
        self.tile_overlap = int(tile_overlap)
        try:
            tile_layout((1, 1), self.tile_size, self.tile_overlap)  # validates the pair
        except ValueError as exc:
            raise CellseekError(f"SAM tiling: {exc}") from exc
        if self.points_per_side < 1:
            raise CellseekError(f"points_per_side must be at least 1, got {points_per_side}")
        self.img_size = None if img_size is None else int(img_size)
        self.points_per_batch = max(int(points_per_batch), 1)
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_score_thresh = float(stability_score_thresh)
        self.box_nms_thresh = float(box_nms_thresh)
        self.max_mask_fraction = float(max_mask_fraction)
        if cache_dir is False:
            directory = None
        elif cache_dir is None:
            directory = default_cache_dir() / "sam_embeddings"
        else:
            directory = cache_dir
        self.cache = EmbeddingCache(directory, memory_items=memory_items)
        self._model = None
        self._predictor = None
        self._predictor_key = None
        self._decoder = None
        self._decoder_key = None
        self._generator = None
        self._weights = None

    def __repr__(self) -> str:
        return (f"SamSegmenter({self.model_type!r}, checkpoint={str(self.checkpoint)!r}, "
                f"tile_size={self.tile_size}, cache={self.cache.directory})")

    # -- model -------------------------------------------------------------------------------
    @property
    def model(self):
        """The SAM model (loaded on first use; shared within the process)."""
        if self._model is None:
            from cellseek.zoo.sam_backend import load_sam

            self._model = load_sam(self.model_type, checkpoint=self.checkpoint,
                                   device=self.device, img_size=self.img_size)
        return self._model

    @property
    def input_size(self) -> int:
        """The encoder's input side in pixels."""
        return int(self.model.image_encoder.img_size)

    @property
    def predictor(self):
        """A ``SamPredictor`` on :attr:`model`, whose image state this class restores from cache."""
        if self._predictor is None:
            from segment_anything import SamPredictor

            self._predictor = SamPredictor(self.model)
        return self._predictor

    @property
    def weights_fingerprint(self) -> str:
        """Identity of the checkpoint file, part of every embedding signature."""
        if self._weights is None:
            from cellseek.zoo.sam_backend import weights_fingerprint

            self._weights = weights_fingerprint(self.checkpoint)
        return self._weights

    # -- embeddings --------------------------------------------------------------------------
    def signature(self, image: np.ndarray) -> dict:
        """The cache signature of a uint8 RGB image (see :mod:`cellseek.segment.sam_cache`)."""
        return embedding_signature(image, model_type=self.model_type,
                                   weights=self.weights_fingerprint, input_size=self.input_size)

    def _embedding(self, image: np.ndarray) -> SamEmbedding:
        """Embedding of a uint8 RGB image: from the cache, else encoded once and cached."""
        signature = self.signature(image)
        hit = self.cache.get(signature)
        if hit is not None:
            return hit
        predictor = self.predictor
        predictor.set_image(image)  # runs the image encoder
        emb = SamEmbedding(
            features=predictor.features.detach().float().cpu().numpy(),
            original_size=tuple(int(v) for v in predictor.original_size),
            input_size=tuple(int(v) for v in predictor.input_size),
            signature=signature,
        )
        self._predictor_key = signature
        self.cache.put(emb)
        return emb

    def _restore(self, emb: SamEmbedding):
        """Put ``emb`` into the predictor as if ``set_image`` had run (no encoding)."""
        import torch

        predictor = self.predictor
        if predictor.is_image_set and self._predictor_key == emb.signature:
            return predictor
        predictor.reset_image()
        predictor.features = torch.from_numpy(emb.features).to(predictor.device)
        predictor.original_size = tuple(emb.original_size)
        predictor.input_size = tuple(emb.input_size)
        predictor.is_image_set = True
        self._predictor_key = emb.signature
        return predictor

    def image_embedding(self, plane: np.ndarray) -> np.ndarray:
        """SAM's embedding of a whole plane, computed once and cached (memory and disk).

        Parameters
        ----------
        plane : ndarray
            Any plane :func:`plane_to_uint8_rgb` accepts; encoded as one image.

        Returns
        -------
        ndarray
            float32 ``(1, 256, g, g)`` with ``g = input_size / 16``.
        """
        return self._embedding(plane_to_uint8_rgb(plane)).features

    # -- point prompts -----------------------------------------------------------------------
    def segment_point(self, plane: np.ndarray, point_rc, *, multimask: bool = True) -> np.ndarray:
        """The cell under one positive click.

        Parameters
        ----------
        plane : ndarray
            ``(Y, X)`` or ``(Y, X, 3)``.
        point_rc : (float, float)
            ``(row, col)`` of the click in plane pixels.
        multimask : bool
            Ask SAM for three candidate masks and keep the one with the best predicted IoU
            (better for a single ambiguous click); else one mask.

        Returns
        -------
        ndarray
            bool ``(Y, X)``. On a tiled plane the mask comes from the tile where the click is
            most central (a cell larger than the tile overlap may be cut at that tile's edge).
        """
        image = plane_to_uint8_rgb(plane)
        rows, cols = image.shape[:2]
        r, c = float(point_rc[0]), float(point_rc[1])
        if not (0 <= r < rows and 0 <= c < cols):
            raise CellseekError(f"point {tuple(point_rc)} lies outside the plane {(rows, cols)}")
        tiles = tile_layout(image.shape, self.tile_size, self.tile_overlap)
        tile = tiles[tile_for_point(tiles, (int(r), int(c)))]
        emb = self._embedding(image[tile.slices])
        coords = np.array([[c - tile.col0, r - tile.row0]], dtype=np.float32)  # SAM wants (x, y)
        with _torch_threads(1):
            # The prompt decoder's matrices are small: one thread avoids the contention that
            # made a click 5-8x slower on a busy 2-core machine (see docs/benchmarks.md).
            mask = self._point_mask(emb, coords, bool(multimask))
        out = np.zeros((rows, cols), bool)
        out[tile.slices] = mask
        return out

    def _point_mask(self, emb: SamEmbedding, coords: np.ndarray, multimask: bool) -> np.ndarray:
        """The best mask for positive points ``coords`` (x, y in the embedded image's frame).

        Decoded by :class:`~cellseek.segment.sam_fast_decoder.FastPointDecoder` (the same
        function as ``SamPredictor.predict``, in half the arithmetic), which keeps the
        click-independent part of the decoder for the last embedding it saw.
        """
        import torch

        from cellseek.segment.sam_fast_decoder import FastPointDecoder

        if self._decoder is None:
            self._decoder = FastPointDecoder(self.model)
        device = self.predictor.device
        if self._decoder_key != emb.signature:
            self._decoder.set_image(torch.from_numpy(emb.features).to(device))
            self._decoder_key = emb.signature
        model = self.model
        points = self.predictor.transform.apply_coords(coords, tuple(emb.original_size))
        points = torch.as_tensor(points, dtype=torch.float, device=device)[None]
        labels = torch.ones((1, points.shape[1]), dtype=torch.int, device=device)
        logits, _ = self._decoder.predict(points, labels, multimask=multimask)
        with torch.inference_mode():
            mask = model.postprocess_masks(logits, tuple(emb.input_size),
                                           tuple(emb.original_size))
        return (mask[0, 0] > model.mask_threshold).cpu().numpy()

    # -- automatic segmentation --------------------------------------------------------------
    def _mask_generator(self):
        if self._generator is None:
            from segment_anything import SamAutomaticMaskGenerator

            gen = SamAutomaticMaskGenerator(
                self.model,
                points_per_side=self.points_per_side,
                points_per_batch=self.points_per_batch,
                pred_iou_thresh=self.pred_iou_thresh,
                stability_score_thresh=self.stability_score_thresh,
                box_nms_thresh=self.box_nms_thresh,
            )
            gen.predictor = self.predictor  # share the predictor whose state we restore
            self._generator = gen
        return self._generator

    def _tile_masks(self, image: np.ndarray, emb: SamEmbedding):
        """Generator over point batches of one tile; returns ``(masks, scores)``."""
        import torch
        from segment_anything.utils.amg import MaskData, rle_to_mask
        from torchvision.ops.boxes import batched_nms

        gen = self._mask_generator()
        self._restore(emb)
        h, w = image.shape[:2]
        points = gen.point_grids[0] * np.array([[w, h]])
        data = MaskData()
        for start in range(0, len(points), self.points_per_batch):
            batch = points[start : start + self.points_per_batch]
            # inference mode per batch only: it must not stay on in the caller across the yield
            with torch.inference_mode():
                self._restore(emb)  # the predictor is shared with segment_point
                # SAM's own per-batch step: decode, filter by predicted IoU and stability, RLE
                data.cat(gen._process_batch(batch, (h, w), [0, 0, w, h], (h, w)))
            yield
        if len(data["rles"]) == 0:
            return [], []
        keep = batched_nms(
            data["boxes"].float(), data["iou_preds"],
            torch.zeros(len(data["boxes"])), iou_threshold=self.box_nms_thresh,
        )
        data.filter(keep)
        data.to_numpy()
        masks = [rle_to_mask(rle) for rle in data["rles"]]
        scores = (np.asarray(data["iou_preds"]) + np.asarray(data["stability_score"])) / 2
        return masks, scores.tolist()

    def segment_auto(self, plane: np.ndarray) -> Work[np.ndarray]:
        """Automatic instance segmentation of a whole plane (a generator).

        Parameters
        ----------
        plane : ndarray
            ``(Y, X)`` or ``(Y, X, 3)``; not modified.

        Yields
        ------
        Progress
            Stage ``"segment:sam"``: one step per tile encoding and per prompt batch.

        Returns
        -------
        ndarray
            int32 ``(Y, X)`` labels, 0 background, cells 1..n.
        """
        image = plane_to_uint8_rgb(plane)
        tiles = tile_layout(image.shape, self.tile_size, self.tile_overlap)
        batches = math.ceil(self.points_per_side**2 / self.points_per_batch)
        total = len(tiles) * (1 + batches)
        done = 0
        tile_labels = []
        for i, tile in enumerate(tiles, start=1):
            where = f"tile {i}/{len(tiles)}"
            yield Progress(done, total, STAGE, f"{where}: image embedding")
            sub = image[tile.slices]
            emb = self._embedding(sub)
            done += 1
            work = self._tile_masks(sub, emb)
            while True:
                try:
                    next(work)
                except StopIteration as stop:
                    masks, scores = stop.value
                    break
                done += 1
                yield Progress(done, total, STAGE, f"{where}: prompts")
            tile_labels.append(
                masks_to_labels(masks, tile.shape, scores, max_fraction=self.max_mask_fraction)
            )
            done = i * (1 + batches)
        labels = stitch_tiles(image.shape, tiles, tile_labels)
        yield Progress(total, total, STAGE, f"{int(labels.max())} objects")
        return labels


_SEGMENTERS: OrderedDict[tuple, SamSegmenter] = OrderedDict()
_MAX_SEGMENTERS = 2


def segment_plane_sam(plane: np.ndarray, config: SegmentConfig | None = None, *,
                      weights_dir=None, **kw) -> Work[np.ndarray]:
    """Automatic SAM segmentation of a plane with the settings of a :class:`SegmentConfig`.

    The :class:`SamSegmenter` is kept between calls (for the same settings), so its model and
    in-memory embeddings are reused.

    Parameters
    ----------
    plane : ndarray
        ``(Y, X)`` or ``(Y, X, 3)``.
    config : SegmentConfig, optional
        ``sam_model``, ``sam_points_per_side``, ``sam_tile_size``, ``sam_tile_overlap`` are used
        (area and border filters are the caller's job).
    weights_dir : path-like, optional
        Local weights folder.
    **kw
        Any other :class:`SamSegmenter` argument (``checkpoint``, ``device``, ``img_size``, ...).

    Yields
    ------
    Progress

    Returns
    -------
    ndarray
        int32 labels.
    """
    config = config or SegmentConfig()
    args = dict(
        points_per_side=config.sam_points_per_side,
        tile_size=config.sam_tile_size,
        tile_overlap=config.sam_tile_overlap,
        weights_dir=weights_dir,
    )
    args.update(kw)
    key = (config.sam_model, tuple(sorted((k, repr(v)) for k, v in args.items())))
    segmenter = _SEGMENTERS.get(key)
    if segmenter is None:
        segmenter = SamSegmenter(config.sam_model, **args)
        _SEGMENTERS[key] = segmenter
        while len(_SEGMENTERS) > _MAX_SEGMENTERS:
            _SEGMENTERS.popitem(last=False)
    else:
        _SEGMENTERS.move_to_end(key)
    return (yield from segmenter.segment_auto(plane))


@contextmanager
def _torch_threads(n: int):
    """Run a block with ``n`` torch intra-op threads, then restore the previous number."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
