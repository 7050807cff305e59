"""Every deep backend, end to end through the real loading path, with random weights.

Each test builds the real architecture (smallest variant, small input), saves its weights the way
they are distributed, loads them with :func:`cellseek.zoo.load_embedder` and checks the output
against the in-memory model.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cellseek.zoo import get_spec, load_embedder  # noqa: E402
from cellseek.zoo.weights import IncompatibleWeightsError  # noqa: E402


def _reference(model, embedder, crops, features=None):
    model.eval()
    with torch.inference_mode():
        x = embedder.preprocess(crops)
        out = features(model, x) if features else model(x)
    return out.numpy()


def _check(embedder, spec, crops, masks, ref_model=None, features=None):
    out = embedder.embed(crops, masks)
    assert out.shape == (len(crops), spec.dim) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    if ref_model is not None:
        ref = _reference(ref_model, embedder, crops, features)
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    return out


def _same_weights(loaded, reference, prefix=""):
    ref = {prefix + k: v for k, v in reference.state_dict().items()}
    got = loaded.state_dict()
    assert set(ref) == set(got)
    for key, value in ref.items():
        assert torch.equal(got[key], value), key


# -- timm -------------------------------------------------------------------------------------
# the real architectures with fewer blocks (the spec's dim is kept), through the same code path
TIMM_CASES = [
    ("dinov2_vits14", 56, {"depth": 2, "embed_dim": 64, "num_heads": 2}, 64),
    ("convnext_tiny", 64, {"depths": (1, 1, 1, 1), "dims": (16, 32, 64, 128)}, 128),
    ("swin_tiny", 64, {"depths": (1, 1, 1, 1), "embed_dim": 16, "num_heads": (1, 1, 2, 2)}, 128),
]
SMALL_VIT = {"depth": 2, "embed_dim": 64, "num_heads": 2}
SMALL_DIM = 64


@pytest.mark.parametrize(("name", "size", "kwargs", "dim"), TIMM_CASES)
def test_timm_models_load_from_weights_dir_and_checkpoint(
    name, size, kwargs, dim, tmp_path, crops, writers
):
    from cellseek.zoo import timm_backend

    spec = dataclasses.replace(get_spec(name), input_size=size, dim=dim)
    ref = timm_backend.create_model(spec, **kwargs)
    # 1. the local weights folder layout, as a Hugging Face timm file with its head
    state = dict(ref.state_dict())
    state["head.fc.weight"] = torch.zeros(3, spec.dim)  # a classifier the embedder drops
    writers.safetensors(state, tmp_path / "w" / name / "model.safetensors")
    emb = load_embedder(
        name, spec=spec, weights_dir=tmp_path / "w", device="cpu", model_kwargs=kwargs
    )
    _same_weights(emb.model, ref)
    _check(emb, spec, *crops, ref_model=ref)
    # 2. an explicit checkpoint, as a .pth training container
    ckpt = writers.pth({"model": ref.state_dict()}, tmp_path / "elsewhere" / "ckpt.pth")
    emb2 = load_embedder(
        name, spec=spec, checkpoint=ckpt, weights_dir=tmp_path / "none", model_kwargs=kwargs
    )
    _check(emb2, spec, *crops, ref_model=ref)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dinov2_vits14", "convnext_tiny", "swin_tiny", "dinobloom_s"])
def test_timm_full_size_architecture_matches_spec(name, crops):
    from cellseek.zoo import timm_backend

    spec = get_spec(name)
    model = timm_backend.create_model(spec).eval()
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, spec.input_size, spec.input_size))
    assert out.shape == (1, spec.dim)


def test_timm_missing_parameters_are_reported(tmp_path, crops, writers):
    from cellseek.zoo import timm_backend

    spec = dataclasses.replace(get_spec("convnext_tiny"), input_size=32)
    kwargs = TIMM_CASES[1][2]
    state = dict(timm_backend.create_model(spec, **kwargs).state_dict())
    state.pop("stem.0.weight")
    writers.safetensors(state, tmp_path / "convnext_tiny" / "model.safetensors")
    with pytest.raises(IncompatibleWeightsError, match="stem.0.weight"):
        load_embedder("convnext_tiny", spec=spec, weights_dir=tmp_path, model_kwargs=kwargs)


def test_dinov2_original_meta_checkpoint_is_converted(tmp_path, crops, writers):
    """Meta's dinov2_vits14_pretrain.pth layout (mask_token, 518 px grid) loads at 56 px."""
    from cellseek.zoo import timm_backend

    spec518 = dataclasses.replace(get_spec("dinov2_vits14"), input_size=518, dim=SMALL_DIM)
    state = dict(timm_backend.create_model(spec518, **SMALL_VIT).state_dict())
    assert state["pos_embed"].shape[1] == 1 + 37 * 37
    state["mask_token"] = torch.zeros(1, SMALL_DIM)
    ckpt = writers.pth(state, tmp_path / "dinov2_vits14_pretrain.pth")
    spec = dataclasses.replace(get_spec("dinov2_vits14"), input_size=56, dim=SMALL_DIM)
    emb = load_embedder(
        "dinov2_vits14", spec=spec, checkpoint=ckpt, device="cpu", model_kwargs=SMALL_VIT
    )
    assert emb.model.pos_embed.shape[1] == 1 + 4 * 4
    _check(emb, spec, *crops)


# -- DinoBloom --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dinobloom_ref():
    from cellseek.zoo import timm_backend

    spec = dataclasses.replace(get_spec("dinobloom_s"), dim=SMALL_DIM)
    model = timm_backend.create_model(spec, **SMALL_VIT)
    assert model.pos_embed.shape == (1, 257, SMALL_DIM)
    return spec, model


def _original_dinobloom_layout(model, chunked=False):
    """The Zenodo DinoBloom-S.pth layout: DINOv2 training checkpoint, teacher backbone."""
    teacher = {}
    for key, value in model.state_dict().items():
        if chunked and key.startswith("blocks."):
            i = int(key.split(".")[1])
            key = f"blocks.{i // 1}.{key[len('blocks.') :]}"
        teacher[f"backbone.{key}"] = value
    teacher["backbone.mask_token"] = torch.zeros(1, SMALL_DIM)
    teacher["dino_head.mlp.0.weight"] = torch.zeros(8, SMALL_DIM)
    teacher["dino_head.last_layer.weight_g"] = torch.zeros(16, 1)
    teacher["ibot_head.mlp.0.weight"] = torch.zeros(8, SMALL_DIM)
    return {"teacher": teacher}


def test_dinobloom_original_zenodo_checkpoint(dinobloom_ref, tmp_path, crops, writers):
    spec, ref = dinobloom_ref
    writers.pth(_original_dinobloom_layout(ref), tmp_path / "w" / "DinoBloom-S.pth")
    emb = load_embedder(
        "dinobloom_s", spec=spec, weights_dir=tmp_path / "w", device="cpu", model_kwargs=SMALL_VIT
    )
    _same_weights(emb.model, ref)
    _check(emb, spec, *crops, ref_model=ref)


def test_dinobloom_hf_timm_conversion_and_small_input(dinobloom_ref, tmp_path, crops, writers):
    spec, ref = dinobloom_ref
    writers.safetensors(ref.state_dict(), tmp_path / "w" / "dinobloom_s" / "model.safetensors")
    emb = load_embedder(
        "dinobloom_s", spec=spec, weights_dir=tmp_path / "w", device="cpu", model_kwargs=SMALL_VIT
    )
    _check(emb, spec, *crops, ref_model=ref)
    small = dataclasses.replace(spec, input_size=56)  # pos_embed resampled 16x16 -> 4x4
    emb = load_embedder(
        "dinobloom_s", spec=small, weights_dir=tmp_path / "w", device="cpu", model_kwargs=SMALL_VIT
    )
    assert emb.model.pos_embed.shape == (1, 17, SMALL_DIM)
    _check(emb, small, *crops)


def test_dinobloom_chunked_blocks_are_unchunked(dinobloom_ref):
    from cellseek.zoo.dinobloom import convert_original_state_dict

    _, ref = dinobloom_ref
    converted = convert_original_state_dict(_original_dinobloom_layout(ref, chunked=True))
    assert set(converted) == set(ref.state_dict()) | {"mask_token"}


# -- transformers: ViT-MAE ----------------------------------------------------------------------
SMALL_MAE = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    image_size=64,
    decoder_hidden_size=32,
    decoder_num_hidden_layers=1,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=64,
)


def test_vit_mae_hf_snapshot_and_checkpoint(tmp_path, crops, writers):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    from cellseek.zoo.transformers_backend import _MeanPatchTokens

    # what facebook/vit-mae-base holds: a ViTMAEForPreTraining save (encoder + decoder)
    full = ViTMAEForPreTraining(ViTMAEConfig(**SMALL_MAE)).eval()
    snapshot = tmp_path / "w" / "vit_mae_base"
    full.save_pretrained(snapshot)
    assert (snapshot / "config.json").is_file()
    full.config.mask_ratio = 0.0  # the reference sees every patch, like the embedder
    spec = dataclasses.replace(get_spec("vit_mae_base"), dim=64, input_size=64)
    emb = load_embedder("vit_mae_base", spec=spec, weights_dir=tmp_path / "w", device="cpu")
    _same_weights(emb.model, full.vit)
    out = _check(emb, spec, *crops, ref_model=full.vit, features=_MeanPatchTokens(64))
    # deterministic (no random patch shuffling) and size-flexible
    np.testing.assert_array_equal(out, emb.embed(*crops))
    spec80 = dataclasses.replace(spec, input_size=80)
    emb80 = load_embedder("vit_mae_base", spec=spec80, checkpoint=snapshot, device="cpu")
    _check(emb80, spec80, *crops)
    # a bare weights file without config.json: the config comes from the options
    bare = writers.pth(full.state_dict(), tmp_path / "mae.bin")
    emb3 = load_embedder(
        "vit_mae_base", spec=spec, checkpoint=bare, config_overrides=SMALL_MAE, device="cpu"
    )
    _check(emb3, spec, *crops, ref_model=full.vit, features=_MeanPatchTokens(64))


def test_vit_mae_wrong_file_is_reported(tmp_path, writers):
    writers.pth({"something": torch.zeros(2)}, tmp_path / "vit_mae_base" / "x.bin")
    with pytest.raises(IncompatibleWeightsError, match="do not fit"):
        load_embedder(
            "vit_mae_base", weights_dir=tmp_path, config_overrides=SMALL_MAE, device="cpu"
        )


# -- open_clip ----------------------------------------------------------------------------------
SMALL_CLIP = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 128, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


def test_open_clip_image_tower(tmp_path, crops, writers):
    import open_clip

    # ViT-B-32 with a narrow, shallow config: the same code path, a fraction of the init time
    spec = dataclasses.replace(get_spec("clip_vitb32"), dim=64)
    ref = open_clip.create_model("ViT-B-32", pretrained=None, **SMALL_CLIP).eval()
    writers.pth(ref.state_dict(), tmp_path / "w" / "clip_vitb32" / "open_clip_pytorch_model.bin")
    emb = load_embedder(
        "clip_vitb32", spec=spec, weights_dir=tmp_path / "w", device="cpu", model_kwargs=SMALL_CLIP
    )
    _same_weights(emb.model, ref.visual)
    _check(emb, spec, *crops, ref_model=ref.visual)
    # explicit checkpoint at a smaller input: the position embedding is interpolated
    small = dataclasses.replace(spec, input_size=64)
    ckpt = writers.safetensors(ref.state_dict(), tmp_path / "clip.safetensors")
    emb = load_embedder(
        "clip_vitb32", spec=small, checkpoint=ckpt, device="cpu", model_kwargs=SMALL_CLIP
    )
    assert emb.model.positional_embedding.shape[0] == 1 + 2 * 2
    _check(emb, small, *crops)


@pytest.mark.slow
def test_open_clip_full_size_dim(tmp_path, crops):
    from cellseek.zoo.open_clip_backend import create_visual

    spec = get_spec("clip_vitb32")
    _, visual = create_visual(spec)
    with torch.inference_mode():
        assert visual(torch.zeros(1, 3, 224, 224)).shape == (1, spec.dim)
