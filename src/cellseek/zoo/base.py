"""The model spec and the embedder protocol every zoo backend follows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ModelSpec:
    """Light metadata of one zoo model; building it imports the backend only in the factory.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"dinov2_vits14"``.
    backend : str
        ``"timm"``, ``"transformers"``, ``"open_clip"``, ``"sam"``, ``"dinobloom"`` or
        ``"classical"``.
    factory : str
        ``"module:callable"`` building the embedder: ``callable(spec, *, weights_dir, device,
        checkpoint) -> Embedder``.
    weights_id : str
        Identifier in the backend's home (timm name, HF repo id, open_clip ``arch/pretrained``,
        SAM checkpoint file name); empty when no weights are needed.
    dim : int
        Embedding size.
    input_size : int
        Side of the square input in pixels.
    mean, std : tuple of float
        Per-channel normalisation applied to [0, 1] RGB input.
    licence : str
        Licence of the weights.
    source : str
        Where the weights come from (URL or hub id), for humans.
    description : str
        One line for ``cellseek models list``.
    version : int
        Version of the embedding space. Bumped whenever the meaning of the output changes (other
        features, another scaling), so that a reference store made with another version is
        refused instead of mixing two feature spaces (see
        :func:`cellseek.zoo.registry.model_versions`).
    """

    name: str
    backend: str
    factory: str
    weights_id: str = ""
    dim: int = 0
    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    licence: str = ""
    source: str = ""
    description: str = ""
    version: int = 1

    @property
    def needs_weights(self) -> bool:
        """Whether the model needs downloaded weights."""
        return bool(self.weights_id)


@runtime_checkable
class Embedder(Protocol):
    """Turns cell crops into embedding vectors."""

    spec: ModelSpec

    def embed(self, crops: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Embed a batch.

        Parameters
        ----------
        crops : ndarray
            float32 ``(N, H, W, 3)`` in [0, 1].
        masks : ndarray
            bool ``(N, H, W)``, True inside the cell.

        Returns
        -------
        ndarray
            float32 ``(N, spec.dim)``.
        """
        ...
