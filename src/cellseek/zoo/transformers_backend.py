"""transformers backend: the ViT-MAE encoder (``facebook/vit-mae-base``).

The encoder is built from its config (``config.json`` next to the weights when present, else
transformers' ``ViTMAEConfig()`` defaults, which are the base model) with ``mask_ratio=0``, and
the weights are loaded through transformers (``from_pretrained(None, config=..., state_dict=...)``,
so its key conversions apply); missing parameters are an error. The hub checkpoint is
``ViTMAEForPreTraining``: its ``decoder.`` keys are dropped, its ``vit.`` prefix is handled by
transformers.

Embedding: the mean of the patch tokens of the last hidden state (after the final LayerNorm).
MAE's CLS token gets no training signal of its own, so the mean is the more meaningful summary.
Patch order is fixed (``noise = arange``) so that the embedding is deterministic; with
``mask_ratio=0`` every patch is kept. Inputs whose size differs from the config's image size use
interpolated position embeddings.
"""

from __future__ import annotations

import logging

from cellseek.errors import CellseekError
from cellseek.zoo._torch_utils import TorchEmbedder
from cellseek.zoo.base import ModelSpec
from cellseek.zoo.weights import (
    IncompatibleWeightsError,
    load_state_dict,
    resolve_weights,
    unwrap_state_dict,
)

logger = logging.getLogger(__name__)


def _classes(arch: str):
    if arch in ("vit_mae", ""):
        from transformers import ViTMAEConfig, ViTMAEModel

        return ViTMAEConfig, ViTMAEModel
    raise CellseekError(f"the transformers backend does not know the architecture {arch!r}")


def make_config(spec: ModelSpec, config_path=None, config_overrides: dict | None = None):
    """The model config: from ``config_path`` (a ``config.json``) or defaults, plus overrides."""
    config_cls, _ = _classes(getattr(spec, "arch", ""))
    if config_path is not None:
        config = config_cls.from_pretrained(str(config_path.parent), local_files_only=True)
    else:
        config = config_cls()
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    config.mask_ratio = 0.0
    return config


def create_model(spec: ModelSpec, config, state_dict: dict | None = None, *, path=""):
    """Build the encoder from ``config``; with ``state_dict``, load it through transformers.

    Loading goes through ``from_pretrained(None, config=..., state_dict=...)`` so that
    transformers applies its own key conversions (the ``vit.`` prefix of the pre-training
    checkpoint, and the renamed attention/MLP keys of transformers >= 5). Missing parameters
    raise :class:`IncompatibleWeightsError`.
    """
    _, model_cls = _classes(getattr(spec, "arch", ""))
    if state_dict is None:
        return model_cls(config)
    model, info = model_cls.from_pretrained(
        None, config=config, state_dict=state_dict, output_loading_info=True
    )
    missing = list(info.get("missing_keys") or ())
    mismatched = list(info.get("mismatched_keys") or ())
    if missing or mismatched:
        what = ", ".join(map(str, (missing + mismatched)[:8]))
        raise IncompatibleWeightsError(
            f"{spec.name}: the weights in {path} do not fit the architecture "
            f"({len(missing)} missing, {len(mismatched)} of the wrong shape, e.g. {what}); "
            "is it the right file?"
        )
    unexpected = list(info.get("unexpected_keys") or ())
    if unexpected:
        logger.warning(
            "%s: %d unused entries in %s (e.g. %s)",
            spec.name,
            len(unexpected),
            path,
            ", ".join(map(str, unexpected[:5])),
        )
    return model


def _strip(state_dict: dict) -> dict:
    """Drop the MAE decoder (only the encoder embeds)."""
    state_dict = unwrap_state_dict(state_dict)
    return {k: v for k, v in state_dict.items() if not k.startswith("decoder.")}


class _MeanPatchTokens:
    """Feature function: mean of patch tokens, fixed patch order, interpolated positions."""

    def __init__(self, image_size: int) -> None:
        self.image_size = int(image_size)

    def __call__(self, model, x):
        import torch

        size = x.shape[-1]
        patch = model.config.patch_size
        n = (x.shape[-2] // patch) * (size // patch)
        noise = torch.arange(n, device=x.device, dtype=torch.float32).expand(x.shape[0], n)
        out = model(pixel_values=x, noise=noise, interpolate_pos_encoding=size != self.image_size)
        return out.last_hidden_state[:, 1:].mean(dim=1)


def build(
    spec: ModelSpec,
    *,
    weights_dir=None,
    device="auto",
    checkpoint=None,
    config_overrides: dict | None = None,
    **options,
):
    """Factory: a :class:`TorchEmbedder` for a transformers model of the zoo.

    Parameters
    ----------
    config_overrides : dict, optional
        Config attributes to set before building (tests build a small ViT-MAE this way).
    """
    resolved = resolve_weights(spec, weights_dir=weights_dir, checkpoint=checkpoint)
    config = make_config(spec, resolved.config, config_overrides)
    state_dict = _strip(load_state_dict(resolved.path, spec.name))
    model = create_model(spec, config, state_dict, path=resolved.path)
    logger.info("%s: loaded %s", spec.name, resolved.describe())
    return TorchEmbedder(
        spec,
        model,
        device=device,
        features=_MeanPatchTokens(config.image_size),
        batch_size=options.get("batch_size", 64),
    )
