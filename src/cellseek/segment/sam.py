"""Segment Anything for cells: point prompts, automatic segmentation, pre-computation.

:class:`SamSegmenter` wraps one SAM model (from the one SAM loader,
:func:`cellseek.zoo.sam_loader.load_sam`; ``model="auto"`` asks
:func:`cellseek.zoo.sam_choice.choose_sam_model` for the best model whose weights are here: a
MobileSAM-class encoder on a CPU) and a cache of image embeddings
(:mod:`cellseek.segment.sam_cache`): each plane, or each tile of a large plane, is encoded once;
point prompts and automatic segmentation then only run SAM's small decoders.

* Planes are turned into the uint8 RGB SAM expects by the one plane convention
  (:func:`cellseek.io.planes.plane_to_uint8_rgb`): uint8 RGB is kept, other RGB is scaled by
  :func:`cellseek.io.planes.rgb_range`, grey planes are stretched between their 0.5th and 99.5th
  percentiles and stacked to three channels.
* Planes larger than ``tile_size`` are cut into overlapping tiles
  (:mod:`cellseek.segment.tiling`); each tile is encoded (and cached) on its own, so a tile keeps
  SAM's native resolution instead of the whole field being shrunk to 1024 px.
* Automatic segmentation (:meth:`SamSegmenter.segment_auto`) has three modes:

  - ``"decoder"``: micro-sam's instance-segmentation decoder (light-microscopy models) predicts
    foreground, centre and boundary distances from the embedding; a seeded watershed gives the
    cells (:mod:`cellseek.zoo.sam_instance_decoder`);
  - ``"seeds"``: the classical detector (:mod:`cellseek.segment.classical`) proposes one point
    per cell; SAM decodes all of them in batches, each mask computed only in a window around its
    seed's object (:meth:`~cellseek.segment.sam_fast_decoder.FastPointDecoder.predict_batch`);
  - ``"grid"``: SAM's automatic mask generator on a ``points_per_side`` grid (IoU and stability
    filters, box NMS): thorough, but minutes per plane on a CPU.

  ``"auto"`` (default) is ``"decoder"`` when the model has one, else ``"seeds"``. Masks are
  painted largest first, so smaller masks stay on top; masks covering more than
  ``max_mask_fraction`` of a tile are dropped; tiles are stitched.
* :meth:`SamSegmenter.precompute` embeds planes ahead of the user (the visible one first), so a
  click on the next time point only runs the decoder. Encoding is thread-safe: a click on a plane
  that a background worker is encoding waits for that encoding instead of starting another.

torch and segment_anything are imported inside functions only.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np

from cellseek.config import SegmentConfig, default_cache_dir
from cellseek.errors import CellseekError
from cellseek.segment.sam_cache import EmbeddingCache, SamEmbedding, embedding_signature
from cellseek.segment.sam_fast_decoder import torch_threads
from cellseek.segment.tiling import masks_to_labels, stitch_tiles, tile_for_point, tile_layout
from cellseek.types import Progress, Work

logger = logging.getLogger(__name__)

__all__ = [
    "AUTO_MODES",
    "SamSegmenter",
    "plane_to_uint8_rgb",
    "precompute_order",
    "segment_plane_sam",
    "shared_segmenter",
]

#: Progress stage name.
STAGE = "segment:sam"
#: Automatic segmentation modes (see the module docstring).
AUTO_MODES = ("auto", "decoder", "seeds", "grid")
#: Seed prompts decoded together.
SEED_BATCH = 16
#: A seed's mask is computed in its object's box grown by this fraction of its size on each side
#: (at least ``SEED_MIN_MARGIN`` pixels).
SEED_MARGIN = 0.75
SEED_MIN_MARGIN = 24


def plane_to_uint8_rgb(plane: np.ndarray) -> np.ndarray:
    """A plane as the uint8 ``(rows, cols, 3)`` image SAM takes (the input is not modified).

    The one plane convention of cellseek (:func:`cellseek.io.planes.plane_to_uint8_rgb`), with
    SAM's own refusals.

    Parameters
    ----------
    plane : ndarray
        ``(Y, X)`` grey, ``(Y, X, 1)``, ``(Y, X, 3)`` RGB or ``(Y, X, 4)`` RGBA (alpha dropped).

    Returns
    -------
    ndarray
        uint8 ``(Y, X, 3)``, C-contiguous.

    Raises
    ------
    CellseekError
        Another shape, or no finite value at all.
    """
    from cellseek.io.planes import plane_to_uint8_rgb as convert

    a = np.asarray(plane)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (1, 3, 4)) \
            or min(a.shape[:2]) < 1:
        raise CellseekError(
            f"SAM needs a (Y, X) or (Y, X, 3) plane, got an array of shape {np.shape(plane)}"
        )
    if a.dtype.kind == "f" and not np.isfinite(a).any():
        raise CellseekError("SAM cannot segment a plane without a single finite value")
    return convert(a)


class SamSegmenter:
    """SAM segmentation of 2-D planes with cached image embeddings.

    Parameters
    ----------
    model_type : str
        ``"auto"`` (default: :func:`~cellseek.zoo.sam_choice.choose_sam_model` for ``device``)
        or a name of :data:`cellseek.zoo.sam_loader.SAM_MODELS` (``"vit_t_lm"``, ``"vit_b"``,
        ...; ``"sam_"`` prefix accepted).
    checkpoint : path-like, optional
        Explicit checkpoint; default: the file the one SAM weights lookup finds.
    weights_dir : path-like, optional
        Local weights folder (default ``$CELLSEEK_WEIGHTS_DIR``).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    cache_dir : path-like, None or False
        Folder of the embedding cache; None: ``default_cache_dir() / "sam_embeddings"``;
        False: memory only.
    auto_mode : {"auto", "decoder", "seeds", "grid"}
        How :meth:`segment_auto` finds the cells (see the module docstring).
    points_per_side : int
        ``"grid"`` mode: prompt grid per tile side.
    tile_size, tile_overlap : int
        Planes larger than ``tile_size`` are cut into tiles overlapping by ``tile_overlap``.
    img_size : int, optional
        Encoder input size; default the checkpoint's (1024).
    points_per_batch : int
        ``"grid"`` mode: prompts decoded at once.
    pred_iou_thresh, stability_score_thresh, box_nms_thresh : float
        ``"grid"`` mode filters, as in ``SamAutomaticMaskGenerator``.
    max_mask_fraction : float
        Automatic modes drop masks covering more than this fraction of a tile.
    memory_items : int
        Embeddings kept in memory.
    seed_options : dict, optional
        ``"seeds"`` mode: keyword arguments of :func:`cellseek.segment.classical.segment`
        (``stain``, ``target``, ``min_area``).

    Attributes
    ----------
    model_type : str
        The SAM model in use.
    model_reason : str
        Why this model (for the user: the widget shows it).

    Raises
    ------
    MissingWeightsError
        At construction, when the checkpoint is not on this machine.
    """

    def __init__(
        self,
        model_type: str = "auto",
        *,
        checkpoint=None,
        weights_dir=None,
        device="auto",
        cache_dir=None,
        auto_mode: str = "auto",
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
        seed_options: dict | None = None,
    ) -> None:
        from cellseek.errors import MissingWeightsError
        from cellseek.zoo.sam_loader import find_sam_checkpoint, sam_model_name

        if str(model_type) == "auto":
            if checkpoint is not None:
                raise CellseekError("SAM: name the model (e.g. 'vit_b') of an explicit checkpoint")
            from cellseek.zoo.sam_choice import choose_sam_model

            name, reason = choose_sam_model(device, weights_dir)
            if name is None:
                raise MissingWeightsError("sam", reason)
        else:
            name, reason = sam_model_name(model_type), "chosen by the caller"
        self.model_type = name
        self.model_reason = reason
        self.checkpoint = find_sam_checkpoint(name, weights_dir=weights_dir,
                                              checkpoint=checkpoint).path
        self.weights_dir = weights_dir
        self.device = device
        if auto_mode not in AUTO_MODES:
            raise CellseekError(f"unknown SAM automatic mode {auto_mode!r}; choose one of "
                                f"{', '.join(AUTO_MODES)}")
        self.auto_mode = auto_mode
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
        self.seed_options = dict(seed_options or {})
        if cache_dir is False:
            directory = None
        elif cache_dir is None:
            directory = default_cache_dir() / "sam_embeddings"
        else:
            directory = cache_dir
        self.cache = EmbeddingCache(directory, memory_items=memory_items)
        self._lock = threading.RLock()  # guards the cache, the pending table and lazy state
        self._pending: dict[str, threading.Event] = {}
        self._model = None
        self._predictor = None
        self._predictor_key = None
        self._decoder = None
        self._decoder_key = None
        self._decoder_lock = threading.Lock()
        self._generator = None
        self._weights = None
        from cellseek.zoo.sam_loader import BOX_PROMPT_MODELS

        self._boxes = None
        if name in BOX_PROMPT_MODELS:
            from cellseek.segment.sam_boxes import BoxPrompter

            self._boxes = BoxPrompter(self)

    @property
    def box_prompts(self) -> bool:
        """Whether the model is prompted with boxes (LiteMedSAM), not points (see
        :mod:`cellseek.segment.sam_boxes`)."""
        return self._boxes is not None

    def __repr__(self) -> str:
        return (f"SamSegmenter({self.model_type!r}, checkpoint={str(self.checkpoint)!r}, "
                f"auto_mode={self.auto_mode!r}, tile_size={self.tile_size}, "
                f"cache={self.cache.directory})")

    # -- model -------------------------------------------------------------------------------
    @property
    def model(self):
        """The SAM model (loaded on first use; shared within the process)."""
        if self._model is None:
            from cellseek.zoo.sam_loader import load_sam

            with self._lock:
                if self._model is None:
                    self._model = load_sam(self.model_type, checkpoint=self.checkpoint,
                                           device=self.device, img_size=self.img_size)
        return self._model

    @property
    def instance_decoder(self):
        """micro-sam's instance decoder of this model, or None (loaded on first use)."""
        from cellseek.zoo.sam_loader import load_sam_decoder

        if self.img_size not in (None, 1024):
            return None  # the decoder was trained on 1024 px embeddings
        return load_sam_decoder(self.model_type, checkpoint=self.checkpoint,
                                weights_dir=self.weights_dir, device=self.device)

    def resolved_auto_mode(self) -> str:
        """The automatic mode :meth:`segment_auto` will use (``"auto"`` resolved).

        A box-prompted model has no instance decoder: ``"auto"`` and ``"decoder"`` are
        ``"seeds"`` (detected boxes), ``"grid"`` a grid of boxes.
        """
        if self.box_prompts:
            return "grid" if self.auto_mode == "grid" else "seeds"
        if self.auto_mode != "auto":
            return self.auto_mode
        return "decoder" if self.instance_decoder is not None else "seeds"

    @property
    def input_size(self) -> int:
        """The encoder's input side in pixels."""
        return int(self.model.image_encoder.img_size)

    @property
    def predictor(self):
        """A ``SamPredictor`` on :attr:`model` (its coordinate transform; grid mode state)."""
        if self._predictor is None:
            from segment_anything import SamPredictor

            with self._lock:
                if self._predictor is None:
                    self._predictor = SamPredictor(self.model)
        return self._predictor

    @property
    def weights_fingerprint(self) -> str:
        """Identity of the checkpoint file, part of every embedding signature."""
        if self._weights is None:
            from cellseek.zoo.sam_loader import weights_fingerprint

            self._weights = weights_fingerprint(self.checkpoint)
        return self._weights

    # -- embeddings --------------------------------------------------------------------------
    def signature(self, image: np.ndarray, scale: float | None = None) -> dict:
        """The cache signature of a uint8 RGB image (see :mod:`cellseek.segment.sam_cache`)."""
        return embedding_signature(image, model_type=self.model_type,
                                   weights=self.weights_fingerprint, input_size=self.input_size,
                                   scale=scale)

    def _resized(self, image: np.ndarray, scale: float | None) -> np.ndarray:
        """The image as the encoder sees it before padding: SAM's longest-side resize to the
        input size, or (box models) resized by ``scale`` and at most the input size."""
        if scale is None:
            return self.predictor.transform.apply_image(image)
        from PIL import Image
        from torchvision.transforms.functional import resize

        size = self.input_size
        h, w = image.shape[:2]
        target = tuple(min(max(int(round(n * scale)), 1), size) for n in (h, w))
        if target == (h, w):
            return np.array(image)
        return np.array(resize(Image.fromarray(image), list(target)))

    def _encode(self, image: np.ndarray, signature: dict, scale: float | None = None
                ) -> SamEmbedding:
        """Run the image encoder on a uint8 RGB image (as ``SamPredictor.set_image`` does).

        Touches no shared state, so a background worker can encode while clicks are decoded.
        """
        import torch

        model = self.model
        resized = self._resized(image, scale)
        x = torch.as_tensor(resized, device=model.device).permute(2, 0, 1).contiguous()[None]
        with torch.inference_mode():
            features = model.image_encoder(model.preprocess(x.float()))
        return SamEmbedding(
            features=features.detach().float().cpu().numpy(),
            original_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=(int(resized.shape[0]), int(resized.shape[1])),
            signature=signature,
        )

    def _embedding(self, image: np.ndarray, scale: float | None = None) -> SamEmbedding:
        """Embedding of a uint8 RGB image: from the cache, else encoded once and cached.

        When another thread is encoding the same image, waits for it instead of encoding twice.
        ``scale``: see :meth:`_resized`.
        """
        from cellseek.segment.sam_cache import signature_key

        signature = self.signature(image, scale)
        key = signature_key(signature)
        while True:
            with self._lock:
                hit = self.cache.get(signature)
                if hit is not None:
                    return hit
                pending = self._pending.get(key)
                if pending is None:
                    done = self._pending[key] = threading.Event()
                    break
            pending.wait()  # another thread is encoding this image; then read the cache
        try:
            emb = self._encode(image, signature, scale)
            with self._lock:
                self.cache.put(emb)
            return emb
        finally:
            with self._lock:
                self._pending.pop(key, None)
            done.set()

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

    def predictor_for(self, plane: np.ndarray):
        """``segment_anything``'s ``SamPredictor`` set to ``plane`` (from the embedding cache;
        for comparisons with SAM's own prompt path, e.g. ``cellseek bench --sam-click``)."""
        return self._restore(self._embedding(plane_to_uint8_rgb(plane)))

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

    def has_embedding(self, image: np.ndarray, scale: float | None = None) -> bool:
        """Whether the embedding of a uint8 RGB image (at ``scale``) is in the cache."""
        with self._lock:
            return self.cache.get(self.signature(image, scale)) is not None

    def is_embedded(self, plane: np.ndarray) -> bool:
        """Whether every tile of ``plane`` is already in the cache (memory or disk).

        For a box-prompted model: every tile a click on the plane's detected cells needs.
        """
        image = plane_to_uint8_rgb(plane)
        if self.box_prompts:
            return self._boxes.tiles_needed(image, plane, missing_only=True) == []
        tiles = tile_layout(image.shape, self.tile_size, self.tile_overlap)
        return all(self.has_embedding(image[t.slices]) for t in tiles)

    def precompute(self, planes: Iterable) -> Work[int]:
        """Embed planes ahead of the user (a cancellable generator).

        Parameters
        ----------
        planes : iterable of (key, plane) or of planes
            In the order to embed them, the visible plane first (see :func:`precompute_order`).
            ``plane`` may be a zero-argument callable returning the plane, so planes are read
            only when their turn comes.

        Yields
        ------
        Progress
            Stage ``"sam:precompute"``, one step per plane, before each plane is encoded: a
            consumer that stops iterating (a napari worker's ``quit``) cancels the rest.

        Returns
        -------
        int
            Planes encoded now (planes already cached are skipped, not counted).
        """
        items = list(planes)
        encoded = 0
        for i, item in enumerate(items):
            key, plane = item if isinstance(item, tuple) and len(item) == 2 else (i, item)
            yield Progress(i, len(items), "sam:precompute", f"plane {key}")
            plane = plane() if callable(plane) else plane
            image = plane_to_uint8_rgb(plane)
            if self.box_prompts:
                encoded += self._boxes.precompute(image, plane)
                continue
            for tile in tile_layout(image.shape, self.tile_size, self.tile_overlap):
                sub = image[tile.slices]
                with self._lock:
                    cached = self.cache.get(self.signature(sub)) is not None
                if not cached:
                    self._embedding(sub)
                    encoded += 1
        yield Progress(len(items), len(items), "sam:precompute", f"{encoded} encoded")
        return encoded

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
        if self.box_prompts:  # the box of the cell under the click, at that cell's scale
            return self._boxes.click(image, plane, (r, c))
        tiles = tile_layout(image.shape, self.tile_size, self.tile_overlap)
        tile = tiles[tile_for_point(tiles, (int(r), int(c)))]
        emb = self._embedding(image[tile.slices])
        coords = np.array([[c - tile.col0, r - tile.row0]], dtype=np.float32)  # SAM wants (x, y)
        with torch_threads(1):
            # The prompt decoder's matrices are small: one thread avoids the contention that
            # made a click 5-8x slower on a busy 2-core machine (see docs/benchmarks.md).
            mask = self._point_mask(emb, coords, bool(multimask))
        out = np.zeros((rows, cols), bool)
        out[tile.slices] = mask
        return out

    def segment_box(self, plane: np.ndarray, box, *, scale: float | None = None) -> np.ndarray:
        """The object in a box, for a box-prompted model (LiteMedSAM).

        Parameters
        ----------
        plane : ndarray
            ``(Y, X)`` or ``(Y, X, 3)``.
        box : sequence of float
            ``(row0, col0, row1, col1)`` in plane pixels.
        scale : float, optional
            Encode the plane at this scale; default: the one that makes the box about
            :data:`cellseek.segment.sam_prompts.TARGET_DIAMETER` px wide.

        Returns
        -------
        ndarray
            bool ``(Y, X)``.
        """
        if not self.box_prompts:
            raise CellseekError(f"SAM {self.model_type} is prompted with points; use "
                                "segment_point")
        image = plane_to_uint8_rgb(plane)
        return self._boxes.box_mask(image, box, scale)

    def _fast_decoder(self, emb: SamEmbedding):
        """The fast point decoder, prepared for ``emb`` (call with ``_decoder_lock`` held)."""
        import torch

        from cellseek.segment.sam_fast_decoder import FastPointDecoder

        if self._decoder is None:
            self._decoder = FastPointDecoder(self.model)
        if self._decoder_key != emb.signature:
            self._decoder.set_image(torch.from_numpy(emb.features).to(self.model.device))
            self._decoder_key = emb.signature
        return self._decoder

    def _point_mask(self, emb: SamEmbedding, coords: np.ndarray, multimask: bool) -> np.ndarray:
        """The best mask for positive points ``coords`` (x, y in the embedded image's frame).

        Decoded by :class:`~cellseek.segment.sam_fast_decoder.FastPointDecoder` (the same
        function as ``SamPredictor.predict``, in half the arithmetic), which keeps the
        click-independent part of the decoder for the last embedding it saw.
        """
        import torch

        model = self.model
        device = model.device
        points = self.predictor.transform.apply_coords(coords, tuple(emb.original_size))
        points = torch.as_tensor(points, dtype=torch.float, device=device)[None]
        labels = torch.ones((1, points.shape[1]), dtype=torch.int, device=device)
        with self._decoder_lock:
            logits, _ = self._fast_decoder(emb).predict(points, labels, multimask=multimask)
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

    def _grid_masks(self, image: np.ndarray, emb: SamEmbedding):
        """Generator over point batches of one tile; returns ``(masks, scores)``."""
        import torch
        from segment_anything.utils.amg import MaskData, rle_to_mask
        from torchvision.ops.boxes import batched_nms

        gen = self._mask_generator()
        h, w = image.shape[:2]
        points = gen.point_grids[0] * np.array([[w, h]])
        data = MaskData()
        for start in range(0, len(points), self.points_per_batch):
            batch = points[start : start + self.points_per_batch]
            # inference mode per batch only: it must not stay on in the caller across the yield
            with torch.inference_mode(), self._lock:
                self._restore(emb)  # the predictor is shared
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

    def _seed_masks(self, emb: SamEmbedding, seeds: list):
        """Generator over seed batches of one tile; returns ``(masks, scores)``.

        ``seeds`` holds ``(row, col, (r0, c0, r1, c1))`` in the tile's frame: a point inside an
        object of the classical detector and the object's box.
        """
        import torch

        model = self.model
        device = model.device
        grid = emb.features.shape[-1]
        scale = max(emb.input_size) / max(emb.original_size)  # tile pixels -> input pixels
        tokens = self.input_size / grid
        masks, scores = [], []
        for start in range(0, len(seeds), SEED_BATCH):
            batch = seeds[start : start + SEED_BATCH]
            coords = np.array([[[c, r]] for r, c, _ in batch], dtype=np.float32)
            windows = []
            for _, _, (r0, c0, r1, c1) in batch:
                mr = max(SEED_MARGIN * (r1 - r0), SEED_MIN_MARGIN)
                mc = max(SEED_MARGIN * (c1 - c0), SEED_MIN_MARGIN)
                windows.append((
                    max(int((r0 - mr) * scale // tokens), 0),
                    min(int(math.ceil((r1 + mr) * scale / tokens)), grid),
                    max(int((c0 - mc) * scale // tokens), 0),
                    min(int(math.ceil((c1 + mc) * scale / tokens)), grid),
                ))
            points = self.predictor.transform.apply_coords(
                coords.reshape(-1, 2), tuple(emb.original_size)).reshape(-1, 1, 2)
            points = torch.as_tensor(points, dtype=torch.float, device=device)
            labels = torch.ones((len(batch), 1), dtype=torch.int, device=device)
            with torch_threads(1), self._decoder_lock:
                logits, iou = self._fast_decoder(emb).predict_batch(points, labels,
                                                                    windows=windows)
            with torch.inference_mode():
                logits = logits.clamp_min(-1e4)  # -inf outside the windows: finite for resizing
                full = model.postprocess_masks(logits, tuple(emb.input_size),
                                               tuple(emb.original_size))
            for m, q in zip((full[:, 0] > model.mask_threshold).cpu().numpy(), iou.tolist()):
                masks.append(m)
                scores.append(float(q))
            yield
        return masks, scores

    def _seeds(self, image: np.ndarray, plane: np.ndarray):
        """Per plane: ``(row, col, box)`` of each object of the classical detector."""
        from scipy import ndimage as ndi

        from cellseek.segment.classical import segment

        options = {"min_area": 150, **self.seed_options}
        labels = segment(plane, **options)
        seeds = []
        for value, sl in enumerate(ndi.find_objects(labels), start=1):
            if sl is None:
                continue
            inside = labels[sl] == value
            dist = ndi.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
            r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
            seeds.append((sl[0].start + r, sl[1].start + c,
                          (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)))
        return seeds

    def segment_auto(self, plane: np.ndarray) -> Work[np.ndarray]:
        """Automatic instance segmentation of a whole plane (a generator).

        Parameters
        ----------
        plane : ndarray
            ``(Y, X)`` or ``(Y, X, 3)``; not modified.

        Yields
        ------
        Progress
            Stage ``"segment:sam"``: one step per tile encoding and per decoding batch.

        Returns
        -------
        ndarray
            int32 ``(Y, X)`` labels, 0 background, cells 1..n.
        """
        image = plane_to_uint8_rgb(plane)
        mode = self.resolved_auto_mode()
        if self.box_prompts:
            return (yield from self._boxes.segment_auto(image, plane, grid_only=mode == "grid",
                                                        stage=STAGE))
        tiles = tile_layout(image.shape, self.tile_size, self.tile_overlap)
        seeds_by_tile: list[list] = [[] for _ in tiles]
        if mode == "seeds":
            yield Progress(0, 1, STAGE, "classical seeds")
            for r, c, (r0, c0, r1, c1) in self._seeds(image, plane):
                t = tile_for_point(tiles, (r, c))
                tile = tiles[t]
                seeds_by_tile[t].append((r - tile.row0, c - tile.col0,
                                         (r0 - tile.row0, c0 - tile.col0,
                                          r1 - tile.row0, c1 - tile.col0)))
            steps = [math.ceil(len(s) / SEED_BATCH) for s in seeds_by_tile]
        elif mode == "grid":
            steps = [math.ceil(self.points_per_side**2 / self.points_per_batch)] * len(tiles)
        else:
            steps = [1] * len(tiles)
        total = len(tiles) + sum(steps)
        done = 0
        tile_labels = []
        for i, tile in enumerate(tiles):
            where = f"tile {i + 1}/{len(tiles)}"
            sub = image[tile.slices]
            if mode == "seeds" and not seeds_by_tile[i]:
                tile_labels.append(np.zeros(tile.shape, np.int32))  # nothing to prompt
                done += 1 + steps[i]
                continue
            yield Progress(done, total, STAGE, f"{where}: image embedding ({self.model_type})")
            emb = self._embedding(sub)
            done += 1
            if mode == "decoder":
                tile_labels.append(self._decoder_labels(emb))
                done += 1
                yield Progress(done, total, STAGE, f"{where}: instance decoder")
                continue
            work = (self._seed_masks(emb, seeds_by_tile[i]) if mode == "seeds"
                    else self._grid_masks(sub, emb))
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
        labels = stitch_tiles(image.shape, tiles, tile_labels)
        yield Progress(total, total, STAGE, f"{int(labels.max())} objects ({mode})")
        return labels

    def _decoder_labels(self, emb: SamEmbedding) -> np.ndarray:
        """Instance labels of one tile from micro-sam's decoder and a seeded watershed."""
        import torch

        from cellseek.zoo.sam_instance_decoder import decoder_maps, instances_from_decoder_output

        decoder = self.instance_decoder
        features = torch.from_numpy(emb.features).to(self.model.device)
        maps = decoder_maps(decoder, features, emb.input_size, emb.original_size,
                            self.input_size)
        labels = instances_from_decoder_output(maps)
        h, w = labels.shape
        if self.max_mask_fraction < 1 and labels.max() > 0:
            sizes = np.bincount(labels.ravel())
            big = np.flatnonzero(sizes > self.max_mask_fraction * h * w)
            labels[np.isin(labels, big[big > 0])] = 0
        return labels


def precompute_order(keys, current) -> list:
    """Plane keys in the order to pre-compute them: ``current``, then the next ones, then back.

    Parameters
    ----------
    keys : sequence
        Every plane key in display order (e.g. ``(t, z)`` tuples sorted by time).
    current
        The visible plane's key (must be in ``keys``).

    Returns
    -------
    list
        ``current``, ``current + 1``, ... to the end, then ``current - 1`` down to the start
        (users step forward through a time-lapse far more often than back).
    """
    keys = list(keys)
    i = keys.index(current)
    return keys[i:] + keys[:i][::-1]


_SEGMENTERS: OrderedDict[tuple, SamSegmenter] = OrderedDict()
_SEGMENTERS_LOCK = threading.Lock()
_MAX_SEGMENTERS = 2


def shared_segmenter(model: str = "auto", *, weights_dir=None, device="auto",
                     **options) -> SamSegmenter:
    """The process's :class:`SamSegmenter` for these settings (created on first use).

    The click tool, automatic segmentation and pre-computation should all take their segmenter
    here, so they share one model and one in-memory embedding cache (the last two settings are
    kept).

    Parameters
    ----------
    model : str
        ``"auto"`` or a SAM model name (see :class:`SamSegmenter`).
    weights_dir : path-like, optional
    device : str
    **options
        Any other :class:`SamSegmenter` argument.
    """
    if weights_dir is None:  # the folder the lookup will use: a changed variable, a new model
        weights_dir = os.environ.get("CELLSEEK_WEIGHTS_DIR")
    key = (str(model), str(weights_dir), str(device),
           tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _SEGMENTERS_LOCK:
        segmenter = _SEGMENTERS.get(key)
        if segmenter is None:
            segmenter = SamSegmenter(model, weights_dir=weights_dir, device=device, **options)
            _SEGMENTERS[key] = segmenter
            while len(_SEGMENTERS) > _MAX_SEGMENTERS:
                _SEGMENTERS.popitem(last=False)
        else:
            _SEGMENTERS.move_to_end(key)
        return segmenter


def segment_plane_sam(plane: np.ndarray, config: SegmentConfig | None = None, *,
                      weights_dir=None, **kw) -> Work[np.ndarray]:
    """Automatic SAM segmentation of a plane with the settings of a :class:`SegmentConfig`.

    The :class:`SamSegmenter` comes from :func:`shared_segmenter`, so its model and in-memory
    embeddings are reused between calls (and with the click tool).

    Parameters
    ----------
    plane : ndarray
        ``(Y, X)`` or ``(Y, X, 3)``.
    config : SegmentConfig, optional
        ``sam_model``, ``sam_auto_mode``, ``sam_points_per_side``, ``sam_tile_size``,
        ``sam_tile_overlap`` are used, and ``stain``, ``target``, ``min_area`` for the seeds
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
        auto_mode=config.sam_auto_mode,
        points_per_side=config.sam_points_per_side,
        tile_size=config.sam_tile_size,
        tile_overlap=config.sam_tile_overlap,
        seed_options=dict(stain=config.stain, target=config.target, min_area=config.min_area),
    )
    args.update(kw)
    segmenter = shared_segmenter(config.sam_model, weights_dir=weights_dir, **args)
    return (yield from segmenter.segment_auto(plane))
