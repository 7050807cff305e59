"""open_clip backend: the image tower of a CLIP model (``ViT-B-32`` / ``laion2b_s34b_b79k``).

``open_clip.create_model(arch, pretrained=None)`` builds the architecture without weights (at the
spec's input size), the ``visual.*`` entries of the weights file are loaded strictly into the
image tower, and the text tower is dropped. When the input size differs from the checkpoint's,
open_clip's ``resize_pos_embed`` interpolates the position embedding.

Embedding: the projected image embedding (``model.visual(x)``, the CLS token times the visual
projection), not L2-normalised (fusion normalises every model).
"""

from __future__ import annotations

import logging

from cellseek.zoo._torch_utils import TorchEmbedder
from cellseek.zoo.base import ModelSpec
from cellseek.zoo.weights import load_checked, load_state_dict, resolve_weights, unwrap_state_dict

logger = logging.getLogger(__name__)


def _arch(spec: ModelSpec) -> str:
    return getattr(spec, "arch", "") or spec.weights_id.split("/")[0]


def create_visual(spec: ModelSpec, **model_kwargs):
    """Build the CLIP model at random initialisation; returns ``(full_model, visual)``.

    ``model_kwargs`` override the open_clip model config (tests shrink the model this way).
    """
    import open_clip

    size = int(spec.input_size)
    if "vision_cfg" in model_kwargs:
        model_kwargs["vision_cfg"] = {**model_kwargs["vision_cfg"], "image_size": size}
    model = open_clip.create_model(
        _arch(spec), pretrained=None, force_image_size=size, **model_kwargs
    )
    return model, model.visual


def load_visual(model, state_dict: dict, *, spec: ModelSpec, path) -> None:
    """Load the ``visual.*`` part of a full CLIP state dict into ``model.visual``."""
    from open_clip.model import resize_pos_embed

    state_dict = unwrap_state_dict(state_dict)
    if not any(k.startswith("visual.") for k in state_dict):  # a bare image-tower file
        state_dict = {f"visual.{k}": v for k, v in state_dict.items()}
    state_dict = dict(state_dict)
    resize_pos_embed(state_dict, model)
    visual = {k[len("visual.") :]: v for k, v in state_dict.items() if k.startswith("visual.")}
    load_checked(model.visual, visual, model_name=spec.name, path=path)


def build(spec: ModelSpec, *, weights_dir=None, device="auto", checkpoint=None, **options):
    """Factory: a :class:`TorchEmbedder` around the CLIP image tower."""
    resolved = resolve_weights(spec, weights_dir=weights_dir, checkpoint=checkpoint)
    model, visual = create_visual(spec, **dict(options.get("model_kwargs") or {}))
    load_visual(model, load_state_dict(resolved.path, spec.name), spec=spec, path=resolved.path)
    del model  # drop the text tower
    logger.info("%s: loaded %s", spec.name, resolved.describe())
    return TorchEmbedder(spec, visual, device=device, batch_size=options.get("batch_size", 64))
