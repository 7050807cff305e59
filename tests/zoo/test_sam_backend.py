"""The SAM backend: checkpoint lookup, loading (with input-size change) and the cell embedder.

A small random SAM (real architecture, two narrow encoder blocks, 128 px) stands in for the
official checkpoints, saved under the official file name.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("segment_anything")

from cellseek.errors import CellseekError, MissingWeightsError  # noqa: E402
from cellseek.zoo import sam_backend as B  # noqa: E402
from cellseek.zoo.registry import get_spec  # noqa: E402

SAM_FILE = "sam_vit_b_01ec64.pth"
SMALL_LAYOUT = dict(img_size=128, depth=2, embed_dim=128, num_heads=2, global_attn_indexes=(1,))


def _save_small_sam(path, seed=0):
    import torch

    torch.manual_seed(seed)
    model = B.build_sam_model("vit_b", **SMALL_LAYOUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), str(path))
    return model


@pytest.fixture(scope="module")
def small_sam(tmp_path_factory):
    """(weights folder, the model that was saved there)."""
    root = tmp_path_factory.mktemp("sam_weights")
    return root, _save_small_sam(root / SAM_FILE)


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """No weights anywhere: empty weights folder, torch hub and home inside tmp_path."""
    monkeypatch.setenv("CELLSEEK_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


# -- finding the checkpoint ------------------------------------------------------------------
def test_checkpoint_search_order(homes, monkeypatch):
    import torch

    assert B.sam_checkpoint_path("vit_b") is None
    assert not B.sam_weights_available("vit_b")

    home = _touch(homes / "home" / ".cache" / "cellseek" / "sam" / SAM_FILE)
    assert B.sam_checkpoint_path("vit_b") == home
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(homes / "torch" / "hub"))
    hub = _touch(homes / "torch" / "hub" / "checkpoints" / SAM_FILE)
    assert B.sam_checkpoint_path("vit_b") == hub
    flat = _touch(homes / "weights" / SAM_FILE)
    assert B.sam_checkpoint_path("sam_vit_b") == flat
    # the model's own folder comes first, as for every zoo model (one lookup, docs/models.md)
    nested = _touch(homes / "weights" / "sam_vit_b" / SAM_FILE)
    assert B.sam_checkpoint_path("vit_b") == nested
    explicit = _touch(homes / "mine" / SAM_FILE)
    assert B.sam_checkpoint_path("vit_b", weights_dir=homes / "mine") == explicit
    assert B.sam_weights_available("vit_b")
    assert B.sam_checkpoint_path("vit_l") is None  # other file name
    with pytest.raises(CellseekError):
        B.sam_checkpoint_path("vit_q")


def test_missing_weights_error_names_model_command_and_url(homes):
    with pytest.raises(MissingWeightsError) as info:
        B.load_sam("vit_l")
    assert info.value.model == "sam_vit_l"
    assert "cellseek models pull sam_vit_l" in str(info.value)
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth" in str(info.value)
    with pytest.raises(MissingWeightsError):
        B.load_sam("vit_b", checkpoint=homes / "missing.pth")
    with pytest.raises(MissingWeightsError) as info:
        B.build(get_spec("sam_vit_b"))
    assert "sam_vit_b" in str(info.value)


def test_non_sam_checkpoint_is_refused(tmp_path):
    import torch

    path = tmp_path / SAM_FILE
    torch.save({"conv.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(CellseekError, match="SAM"):
        B.load_sam("vit_b", checkpoint=path, device="cpu")


# -- loading ---------------------------------------------------------------------------------
def test_load_sam_restores_the_weights_and_caches_the_model(small_sam, monkeypatch):
    root, saved = small_sam
    monkeypatch.setenv("CELLSEEK_WEIGHTS_DIR", str(root))
    model = B.load_sam("vit_b", device="cpu")
    assert model.image_encoder.img_size == 128
    ref = saved.state_dict()
    for key, value in model.state_dict().items():
        assert np.array_equal(value.numpy(), ref[key].numpy()), key
    assert not any(p.requires_grad for p in model.parameters())
    assert B.load_sam("vit_b", device="cpu") is model  # not rebuilt
    assert B.load_sam("vit_b", checkpoint=root / SAM_FILE, device="cpu") is model
    assert B.load_sam("vit_b", checkpoint=root, device="cpu") is model  # a folder works too


def test_layout_is_read_from_the_checkpoint(small_sam):
    _, saved = small_sam
    layout = B.layout_from_state_dict(saved.state_dict())
    assert layout == dict(embed_dim=128, depth=2, num_heads=2, global_attn_indexes=(1,),
                          img_size=128)


def test_another_input_size_interpolates_the_position_embeddings(small_sam):
    import torch
    import torch.nn.functional as F

    root, saved = small_sam
    model = B.load_sam("vit_b", checkpoint=root / SAM_FILE, device="cpu", img_size=64)
    enc = model.image_encoder
    assert enc.img_size == 64 and tuple(enc.pos_embed.shape) == (1, 4, 4, 128)
    src = saved.image_encoder.pos_embed.detach().permute(0, 3, 1, 2)
    want = F.interpolate(src, size=(4, 4), mode="bicubic", align_corners=False, antialias=True)
    torch.testing.assert_close(enc.pos_embed.permute(0, 3, 1, 2), want)
    # the global block's relative table shrinks (2*4-1), the windowed block's stays (2*14-1)
    assert enc.blocks[1].attn.rel_pos_h.shape[0] == 7
    assert enc.blocks[0].attn.rel_pos_h.shape[0] == 27
    torch.testing.assert_close(enc.blocks[0].attn.rel_pos_h, saved.image_encoder.blocks[0]
                               .attn.rel_pos_h)
    with torch.inference_mode():
        out = enc(torch.zeros(1, 3, 64, 64))
    assert tuple(out.shape) == (1, 256, 4, 4)
    assert torch.isfinite(out).all()


# not slow: 1-4 s, and it is what proves the real layout (issue 15)
def test_official_layout_matches_segment_anything_registry():
    from segment_anything.build_sam import _build_sam

    ours = B.build_sam_model("vit_b", img_size=1024, depth=12, embed_dim=768, num_heads=12,
                             global_attn_indexes=(2, 5, 8, 11))
    mine = B.build_sam_model("vit_b", img_size=512, embed_dim=768)  # the non-registry path
    theirs = _build_sam(768, 12, 12, [2, 5, 8, 11])
    shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == shapes
    assert set(mine.state_dict()) == set(shapes)
    assert B.layout_from_state_dict(theirs.state_dict()) == dict(
        embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11), img_size=1024
    )


# -- the embedder ----------------------------------------------------------------------------
@pytest.fixture
def embedder(small_sam, monkeypatch):
    root, _ = small_sam
    monkeypatch.setenv("CELLSEEK_WEIGHTS_DIR", str(root))
    spec = dataclasses.replace(get_spec("sam_vit_b"), input_size=128)
    return B.build(spec, device="cpu", batch_size=3)


def test_embedder_returns_finite_256_vectors(embedder, crops):
    x, m = crops
    out = embedder.embed(x, m)
    assert out.shape == (5, 256) and out.dtype == np.float32
    assert np.isfinite(out).all()
    one = np.concatenate([embedder.embed(x[i : i + 1], m[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(one, out, rtol=1e-4, atol=1e-5)  # batching changes nothing
    assert embedder.embed(x[:0], m[:0]).shape == (0, 256)
    assert embedder.model is B.load_sam("vit_b", device="cpu", img_size=128)


def test_pooling_respects_the_mask(embedder, crops):
    x, _ = crops
    same = np.repeat(x[:1], 3, axis=0)
    masks = np.zeros((3, 40, 48), bool)
    masks[0, :20] = True  # top half
    masks[1, 20:] = True  # bottom half
    # masks[2] stays empty: falls back to the whole feature map
    out = embedder.embed(same, masks)
    assert not np.allclose(out[0], out[1])
    whole = embedder.embed(same[:1], None)
    np.testing.assert_allclose(out[2], whole[0], rtol=1e-5, atol=1e-6)
    full = embedder.embed(same[:1], np.ones((1, 40, 48), bool))
    np.testing.assert_allclose(full, whole, rtol=1e-5, atol=1e-6)


def test_embedder_uses_sam_normalisation(embedder):
    import torch

    x = np.full((1, 16, 16, 3), 0.5, np.float32)
    pre = embedder.preprocess(x)
    want = (127.5 - torch.tensor(B.PIXEL_MEAN)) / torch.tensor(B.PIXEL_STD)
    torch.testing.assert_close(pre[0, :, 0, 0], want)
    assert tuple(pre.shape) == (1, 3, 128, 128)


def test_embedder_refuses_a_spec_that_does_not_match_the_encoder(embedder):
    spec = dataclasses.replace(embedder.spec, input_size=64)
    with pytest.raises(CellseekError):
        B.SamEmbedder(spec, embedder.model)


def test_raw_forward_hook_for_benchmarks(embedder, crops):
    from cellseek.types import run_work
    from cellseek.zoo.embed import embed_crops, raw_forward_fn

    x, m = crops
    hook = raw_forward_fn(embedder)
    feats = hook.forward(hook.prepare(x, m))
    assert tuple(feats.shape) == (5, 256, 8, 8)
    out = run_work(embed_crops(embedder, x, m, batch_size=2))
    np.testing.assert_allclose(out, embedder.embed(x, m), rtol=1e-4, atol=1e-5)
