"""timm backend: DINOv2 ViTs, ConvNeXt, Swin (and DinoBloom through :mod:`.dinobloom`).

The architecture is built with ``timm.create_model(arch, pretrained=False, num_classes=0)`` at
the spec's input size, then the weights file found by :func:`cellseek.zoo.weights.resolve_weights`
is loaded through the architecture's own timm ``checkpoint_filter_fn``. That filter converts
original checkpoints (Meta's DINOv2 / ConvNeXt ``.pth``, Microsoft's Swin ``.pth``) to timm's
layout and resamples position embeddings / relative position tables to the input size, so both
the Hugging Face ``timm/...`` files and the original URLs work.

Embedding: timm's pooled pre-logits feature (``num_classes=0``): the CLS token after the final
norm for DINOv2 ViTs, global average pool + LayerNorm for ConvNeXt, global average pool after the
final norm for Swin.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from cellseek.zoo._torch_utils import TorchEmbedder
from cellseek.zoo.base import ModelSpec
from cellseek.zoo.weights import (
    IncompatibleWeightsError,
    load_checked,
    load_state_dict,
    resolve_weights,
    unwrap_state_dict,
)

logger = logging.getLogger(__name__)


def _arch(spec: ModelSpec) -> str:
    return getattr(spec, "arch", "") or spec.weights_id.split(".")[0]


def create_model(spec: ModelSpec, **model_kwargs):
    """Build ``spec``'s timm architecture at random initialisation (no download).

    ``img_size`` is set to ``spec.input_size`` for architectures with a fixed input size
    (ViT, Swin). ``model_kwargs`` go to ``timm.create_model`` (tests use them to shrink a model).
    """
    import timm
    from timm.models import get_pretrained_cfg

    arch = _arch(spec)
    cfg = None
    if spec.weights_id and "/" not in spec.weights_id:
        cfg = get_pretrained_cfg(spec.weights_id, allow_unregistered=True)
    cfg = cfg or get_pretrained_cfg(arch, allow_unregistered=True)
    kwargs = {"pretrained": False, "num_classes": 0}
    if cfg is not None and getattr(cfg, "fixed_input_size", False):
        kwargs["img_size"] = int(spec.input_size)
    kwargs.update(model_kwargs)
    return timm.create_model(arch, **kwargs)


def _checkpoint_filter(model) -> Callable | None:
    module = importlib.import_module(type(model).__module__)
    return getattr(module, "checkpoint_filter_fn", None)


def load_weights(model, state_dict: dict, *, spec: ModelSpec, path) -> None:
    """Convert ``state_dict`` with timm's filter for this architecture and load it strictly."""
    state_dict = unwrap_state_dict(state_dict)
    filter_fn = _checkpoint_filter(model)
    if filter_fn is not None:
        try:
            state_dict = filter_fn(state_dict, model)
        except Exception as exc:  # noqa: BLE001 - a foreign file; say so plainly
            raise IncompatibleWeightsError(
                f"{spec.name}: could not convert the weights in {path} to the "
                f"{_arch(spec)} architecture: {exc}"
            ) from exc
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or "head"
    heads = (head, "head", "fc.", "classifier")
    load_checked(model, state_dict, model_name=spec.name, path=path, ignore_prefixes=heads)


def build_model(spec: ModelSpec, *, weights_dir=None, checkpoint=None, convert=None, **options):
    """Build the architecture and load the resolved weights; returns the torch module.

    Parameters
    ----------
    convert : callable, optional
        ``convert(state_dict) -> state_dict`` applied before timm's filter (DinoBloom uses it).
    options
        ``model_kwargs`` (dict) for :func:`create_model`.
    """
    resolved = resolve_weights(spec, weights_dir=weights_dir, checkpoint=checkpoint)
    model = create_model(spec, **dict(options.get("model_kwargs") or {}))
    state_dict = load_state_dict(resolved.path, spec.name)
    if convert is not None:
        state_dict = convert(state_dict)
    load_weights(model, state_dict, spec=spec, path=resolved.path)
    logger.info("%s: loaded %s", spec.name, resolved.describe())
    return model


def build(spec: ModelSpec, *, weights_dir=None, device="auto", checkpoint=None, **options):
    """Factory: a :class:`TorchEmbedder` for a timm model of the zoo."""
    model = build_model(spec, weights_dir=weights_dir, checkpoint=checkpoint, **options)
    return TorchEmbedder(spec, model, device=device, batch_size=options.get("batch_size", 64))
