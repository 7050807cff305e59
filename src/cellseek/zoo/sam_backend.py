"""The SAM cell embedder (zoo factory ``cellseek.zoo.sam_backend:build``).

The embedder runs a SAM image encoder (any of :data:`cellseek.zoo.sam_loader.SAM_MODELS`: SAM's
ViT-B/L/H, MobileSAM's TinyViT, micro-sam's light-microscopy models) on each cell crop and
averages the ``(256, h, w)`` feature map inside the cell's mask. The model comes from the one SAM
loader, :func:`cellseek.zoo.sam_loader.load_sam`, so the segmenter, the embedder and
``cellseek models list|check`` find the same weights and share one model object.

The loader's and the architecture module's public names are re-exported here for code written
against earlier versions (``load_sam``, ``sam_checkpoint_path``, ``build_sam_model``, ...).

torch and segment_anything are imported inside functions only.
"""

from __future__ import annotations

import logging

import numpy as np

from cellseek.errors import CellseekError
from cellseek.zoo.base import ModelSpec
from cellseek.zoo.sam_arch import (
    NATIVE_SIZE,
    OFFICIAL_LAYOUTS,
    PIXEL_MEAN,
    PIXEL_STD,
    PROMPT_DIM,
    build_sam_model,
    layout_from_state_dict,
    resize_position_embeddings,
)
from cellseek.zoo.sam_loader import (
    SAM_MODELS,
    clear_model_cache,
    load_sam,
    missing_weights_hint,
    sam_checkpoint_path,
    sam_model_name,
    sam_weights_available,
    weights_fingerprint,
)

logger = logging.getLogger(__name__)

__all__ = [
    "NATIVE_SIZE",
    "OFFICIAL_LAYOUTS",
    "PIXEL_MEAN",
    "PIXEL_STD",
    "SAM_MODELS",
    "SamEmbedder",
    "build",
    "build_sam_model",
    "clear_model_cache",
    "layout_from_state_dict",
    "load_sam",
    "missing_weights_hint",
    "resize_position_embeddings",
    "sam_checkpoint_path",
    "sam_weights_available",
    "weights_fingerprint",
]


# -- the embedder ----------------------------------------------------------------------------
class SamEmbedder:
    """Cell embeddings from SAM's image encoder, averaged inside each cell's mask.

    Parameters
    ----------
    spec : ModelSpec
        ``input_size`` is the encoder's input side; ``dim`` is 256.
    model : segment_anything.modeling.Sam
        Built with ``img_size == spec.input_size`` (see :func:`load_sam`).
    batch_size : int
        Crops per encoder pass.
    """

    def __init__(self, spec: ModelSpec, model, batch_size: int = 8) -> None:
        self.spec = spec
        self.model = model
        self.encoder = model.image_encoder
        self.device = model.device
        self.batch_size = max(int(batch_size), 1)
        if int(self.encoder.img_size) != int(spec.input_size):
            raise CellseekError(
                f"{spec.name}: the encoder takes {self.encoder.img_size} px but the spec says "
                f"{spec.input_size} px"
            )

    def __repr__(self) -> str:
        return f"SamEmbedder({self.spec.name!r}, {self.spec.input_size} px, device={self.device})"

    def preprocess(self, crops: np.ndarray):
        """Crops ``(N, H, W, 3)`` in [0, 1] -> ``(N, 3, S, S)`` with SAM's pixel normalisation."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).to(self.device)
        x = x.permute(0, 3, 1, 2)
        size = int(self.spec.input_size)
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
        x = x.clamp(0.0, 1.0) * 255.0
        return (x - self.model.pixel_mean) / self.model.pixel_std

    def forward(self, x):
        """Bare image-encoder pass on preprocessed input -> ``(N, 256, h, w)`` (for benchmarks)."""
        import torch

        with torch.inference_mode():
            return self.encoder(x)

    def pool(self, features, masks):
        """Average ``(N, C, h, w)`` features inside the masks (resized to ``(h, w)`` by area).

        A mask that is empty after resizing falls back to the whole map.
        """
        import torch
        import torch.nn.functional as F

        whole = features.mean(dim=(2, 3))
        if masks is None:
            return whole
        m = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32)).to(features.device)
        w = F.interpolate(m[:, None], size=features.shape[-2:], mode="area")
        total = w.sum(dim=(2, 3))
        inside = (features * w).sum(dim=(2, 3)) / total.clamp_min(1e-12)
        return torch.where(total > 1e-6, inside, whole)

    def embed(self, crops: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """Embed crops -> float32 ``(N, 256)``.

        Parameters
        ----------
        crops : ndarray
            float32 ``(N, H, W, 3)`` in [0, 1].
        masks : ndarray, optional
            bool ``(N, H, W)``; without masks the whole feature map is averaged.
        """
        import torch

        from cellseek.zoo._torch_utils import check_crops

        crops = check_crops(crops, masks)
        if len(crops) == 0:
            return np.zeros((0, self.spec.dim or PROMPT_DIM), np.float32)
        parts = []
        with torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                feats = self.forward(self.preprocess(crops[i : i + self.batch_size]))
                batch_masks = None if masks is None else masks[i : i + self.batch_size]
                parts.append(self.pool(feats, batch_masks).float().cpu().numpy())
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def build(spec: ModelSpec, *, weights_dir=None, device="auto", checkpoint=None,
          batch_size: int = 8) -> SamEmbedder:
    """Zoo factory: the SAM cell embedder for ``spec`` (e.g. ``sam_vit_b``, ``sam_vit_t_lm``).

    The encoder is built at ``spec.input_size`` (a ViT's position embeddings interpolated when
    that differs from the checkpoint's 1024 px). Raises
    :class:`~cellseek.errors.MissingWeightsError` when the checkpoint is absent.
    """
    model = load_sam(sam_model_name(spec.name), checkpoint=checkpoint, weights_dir=weights_dir,
                     device=device, img_size=int(spec.input_size))
    return SamEmbedder(spec, model, batch_size=batch_size)
