"""Torch helpers shared by the deep backends: device choice, batched preprocessing, the embedder.

Crops arrive as float32 ``(N, H, W, 3)`` in [0, 1]. They go to the device in one copy per batch
(pinned on CUDA), are resized there with antialiased bilinear interpolation to the model's input
size and normalised with the spec's mean/std. No per-crop Python loop.

Masks are not used by the deep models: the crop they see already reflects the crop
``mask_mode`` chosen upstream (:mod:`cellseek.crops`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from cellseek.zoo.base import ModelSpec

logger = logging.getLogger(__name__)


def choose_device(device: str = "auto"):
    """A ``torch.device``: ``"auto"`` picks CUDA, then Apple MPS, then the CPU."""
    import torch

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def check_crops(crops: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    """Validate a crop batch and return it as C-contiguous float32 ``(N, H, W, 3)``."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must be (N, H, W, 3), got shape {crops.shape}")
    if masks is not None and np.shape(masks)[:3] != crops.shape[:3]:
        raise ValueError(f"masks {np.shape(masks)} do not match crops {crops.shape}")
    return np.ascontiguousarray(crops, dtype=np.float32)


class TorchEmbedder:
    """An :class:`~cellseek.zoo.base.Embedder` around a torch module.

    Parameters
    ----------
    spec : ModelSpec
        ``input_size``, ``mean``, ``std`` and ``dim`` are used.
    model : torch.nn.Module
        Built and loaded; put in eval mode and moved to ``device`` here.
    device : str or torch.device
        ``"auto"`` picks the best available device.
    features : callable, optional
        ``features(model, x) -> (N, dim)`` tensor on preprocessed input ``x``; default
        ``model(x)``.
    batch_size : int
        Largest batch :meth:`embed` sends through the model at once.
    """

    def __init__(
        self,
        spec: ModelSpec,
        model,
        device="auto",
        features: Callable | None = None,
        batch_size: int = 64,
    ) -> None:
        import torch

        self.spec = spec
        self.device = choose_device(device) if not isinstance(device, torch.device) else device
        self.model = model.eval().to(self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._features = features
        self.batch_size = int(batch_size)
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(spec.mean, dtype=torch.float32, device=self.device).view(shape)
        self._std = torch.tensor(spec.std, dtype=torch.float32, device=self.device).view(shape)
        self._pin = self.device.type == "cuda"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r}, device={self.device})"

    # -- the three steps, public so a benchmark can time them apart -------------------------
    def preprocess(self, crops: np.ndarray):
        """Crops ``(N, H, W, 3)`` in [0, 1] -> normalised ``(N, 3, S, S)`` tensor on the device."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(check_crops(crops))
        if self._pin:
            x = x.pin_memory()
        x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        size = int(self.spec.input_size)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(
                x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        return ((x - self._mean) / self._std).contiguous()

    def forward(self, x):
        """Bare model forward on preprocessed input -> ``(N, dim)`` tensor (no grad)."""
        import torch

        with torch.inference_mode():
            return self._features(self.model, x) if self._features else self.model(x)

    def embed_async(self, crops: np.ndarray, masks: np.ndarray | None = None):
        """Queue a batch on the device; returns a callable giving the ``(N, dim)`` array.

        On CUDA the work runs asynchronously, so the next batch can be prepared meanwhile.
        """
        out = self.forward(self.preprocess(crops))

        def result() -> np.ndarray:
            return out.float().cpu().numpy()

        return result

    def embed(self, crops: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """Embed crops -> float32 ``(N, spec.dim)``; masks are ignored (see module doc)."""
        crops = check_crops(crops, masks)
        if len(crops) == 0:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        parts = [
            self.embed_async(crops[i : i + self.batch_size])()
            for i in range(0, len(crops), self.batch_size)
        ]
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return np.ascontiguousarray(out, dtype=np.float32)
