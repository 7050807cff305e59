"""transformers backend: the ViT-MAE encoder (``facebook/vit-mae-base``).

The encoder is built from its config (``config.json`` next to the weights when present, else
transformers' ``ViTMAEConfig()`` defaults, which are the base model) with ``mask_ratio=0``, and
the weights file is loaded strictly. The hub checkpoint is ``ViTMAEForPreTraining``: its
``vit.`` prefix is stripped and the ``decoder.`` keys are dropped.

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
from cellseek.zoo.weights import load_checked, load_state_dict, resolve_weights, unwrap_state_dict

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


def create_model(spec: ModelSpec, config):
    """Build the encoder from ``config`` at random initialisation."""
    _, model_cls = _classes(getattr(spec, "arch", ""))
    return model_cls(config)


def _strip(state_dict: dict) -> dict:
    state_dict = unwrap_state_dict(state_dict)
    out = {}
    for key, value in state_dict.items():
        if key.startswith("decoder."):
            continue
        out[key[len("vit."):] if key.startswith("vit.") else key] = value
    return out


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
        out = model(
            pixel_values=x, noise=noise, interpolate_pos_encoding=size != self.image_size
        )
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
    model = create_model(spec, config)
    state_dict = _strip(load_state_dict(resolved.path, spec.name))
    load_checked(model, state_dict, model_name=spec.name, path=resolved.path)
    logger.info("%s: loaded %s", spec.name, resolved.describe())
    return TorchEmbedder(
        spec,
        model,
        device=device,
        features=_MeanPatchTokens(config.image_size),
        batch_size=options.get("batch_size", 64),
    )
