"""DinoBloom (Koch et al. 2024): DINOv2 ViTs fine-tuned on ~380k blood cells, at 224 px.

Two weight layouts load into timm's ``vit_{small,base}_patch14_dinov2`` built at 224 px (position
embedding 1 + 16 x 16 tokens):

* the timm conversion on the Hugging Face hub (``1aurent/vit_small_patch14_224.dinobloom``,
  ``..._base_...``): ``model.safetensors`` in timm's layout;
* the original Zenodo checkpoints (``DinoBloom-S.pth`` ...; https://zenodo.org/records/10908163):
  a DINOv2 training checkpoint ``{"teacher": {"backbone.<key>": ..., "dino_head.*": ...,
  "ibot_head.*": ...}}`` whose backbone keys are Meta's DINOv2 names (``cls_token``,
  ``pos_embed`` of shape (1, 257, D), ``mask_token``, ``patch_embed.proj.*``,
  ``blocks.<i>.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}.*``,
  ``norm.*``), possibly chunked as ``blocks.<chunk>.<i>.*`` (FSDP block chunks).

:func:`convert_original_state_dict` maps the second layout to the first; timm's ViT filter then
drops ``mask_token`` and resamples ``pos_embed`` when the input size is not 224.

Embedding: the CLS token after the final norm, as in the DinoBloom paper's feature extraction.
"""

from __future__ import annotations

import logging
import re

from cellseek.zoo import timm_backend
from cellseek.zoo._torch_utils import TorchEmbedder
from cellseek.zoo.base import ModelSpec

logger = logging.getLogger(__name__)

_CHUNKED = re.compile(r"^blocks\.\d+\.(\d+)\.")
_HEADS = ("dino_head.", "ibot_head.", "dino_loss.", "ibot_patch_loss.")


def convert_original_state_dict(state_dict: dict) -> dict:
    """Map an original DinoBloom/DINOv2 training checkpoint to plain DINOv2 backbone keys.

    A state dict already in timm's (or Meta's hub) layout passes through unchanged.
    """
    if isinstance(state_dict.get("teacher"), dict):
        state_dict = state_dict["teacher"]
    elif isinstance(state_dict.get("model"), dict) and "teacher" not in state_dict:
        state_dict = state_dict["model"]
    out = {}
    for key, value in state_dict.items():
        if key.startswith(_HEADS):
            continue
        if key.startswith("backbone."):
            key = key[len("backbone.") :]
        key = _CHUNKED.sub(r"blocks.\1.", key)
        out[key] = value
    return out


def build(spec: ModelSpec, *, weights_dir=None, device="auto", checkpoint=None, **options):
    """Factory: a :class:`TorchEmbedder` for DinoBloom-S/B."""
    model = timm_backend.build_model(
        spec,
        weights_dir=weights_dir,
        checkpoint=checkpoint,
        convert=convert_original_state_dict,
        **options,
    )
    return TorchEmbedder(spec, model, device=device, batch_size=options.get("batch_size", 64))
