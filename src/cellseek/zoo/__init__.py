"""The model zoo: registry, weight resolution and the embedders.

Importing this package is light: the registry is plain data and each backend (torch, timm,
transformers, open_clip, segment_anything) is imported only when :func:`load_embedder` builds a
model of that backend.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from cellseek.zoo.base import Embedder, ModelSpec
from cellseek.zoo.embed import embed_all, embed_crops, raw_forward_fn
from cellseek.zoo.registry import (
    MODELS,
    PRESETS,
    get_spec,
    list_models,
    model_versions,
    resolve_models,
)
from cellseek.zoo.weights import resolve_weights
from cellseek.zoo.weights import weights_available as _weights_available

logger = logging.getLogger(__name__)

__all__ = [
    "MODELS",
    "PRESETS",
    "Embedder",
    "ModelSpec",
    "embed_all",
    "embed_crops",
    "get_spec",
    "list_models",
    "load_embedder",
    "model_versions",
    "raw_forward_fn",
    "resolve_models",
    "resolve_weights",
    "weights_available",
]


def weights_available(name, weights_dir=None) -> tuple[bool, str]:
    """Whether a model's weights are on this machine, cheaply (no model build).

    ``"sam_auto"`` (``SegmentConfig.sam_model="auto"`` with the ``sam_`` prefix) asks whether
    any SAM model is here (:func:`cellseek.zoo.sam_loader.any_sam_weights`); every other name
    is looked up by :func:`cellseek.zoo.weights.weights_available`.

    Returns
    -------
    (bool, str)
        True and where they are, or False and why not.
    """
    if name == "sam_auto":
        from cellseek.zoo.sam_loader import any_sam_weights

        return any_sam_weights(weights_dir)
    return _weights_available(name, weights_dir)


def _factory(spec: ModelSpec):
    module_name, _, attr = spec.factory.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        from cellseek.errors import CellseekError

        raise CellseekError(
            f"model {spec.name!r} needs the {spec.backend} backend, which cannot be imported "
            f"({exc}). Install the missing package or choose another model."
        ) from exc
    return getattr(module, attr)


def load_embedder(
    name: str,
    *,
    weights_dir=None,
    device: str = "auto",
    checkpoint=None,
    spec: ModelSpec | None = None,
    **options: Any,
) -> Embedder:
    """Build one model of the zoo with its weights; never downloads.

    Parameters
    ----------
    name : str
        Registry name (see :func:`list_models`).
    weights_dir : path, optional
        Local weights folder, ``<dir>/<name>/``; default ``$CELLSEEK_WEIGHTS_DIR``.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
    checkpoint : path, optional
        Explicit weights file (or folder), used before anything else.
    spec : ModelSpec, optional
        Use this spec instead of the registered one (e.g. ``dataclasses.replace(get_spec(name),
        input_size=112)``).
    **options
        Backend-specific build options (``batch_size``; ``model_kwargs`` for timm;
        ``config_overrides`` for transformers).

    Returns
    -------
    Embedder

    Raises
    ------
    MissingWeightsError
        The weights are not on this machine; the message says how to get them.
    CellseekError
        Unknown model, or weights that do not fit the architecture.
    """
    spec = spec if spec is not None else get_spec(name)
    build = _factory(spec)
    return build(spec, weights_dir=weights_dir, device=device, checkpoint=checkpoint, **options)
