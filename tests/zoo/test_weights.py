"""Weight resolution: explicit checkpoint > local weights folder > standard caches; no download."""

from __future__ import annotations

import pytest

from cellseek.errors import CellseekError, MissingWeightsError
from cellseek.zoo import get_spec, load_embedder, weights_available
from cellseek.zoo import weights as W


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Point the HF hub cache, torch hub and $CELLSEEK_WEIGHTS_DIR at empty folders."""
    import huggingface_hub.constants as hf_constants

    hf = tmp_path / "hf"
    hf.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hf))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("CELLSEEK_WEIGHTS_DIR", raising=False)
    return hf


def _fake_hf_cache(hf_root, repo, filename, extra=()):
    """Lay out ``repo/filename`` the way huggingface_hub caches it."""
    folder = hf_root / f"models--{repo.replace('/', '--')}"
    snap = folder / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0123abc")
    for name in (filename, *extra):
        (snap / name).write_bytes(b"x")
    return snap / filename


def test_missing_weights_error_names_model_and_command(empty_caches, tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        W.resolve_weights(get_spec("convnext_tiny"), weights_dir=tmp_path / "none")
    msg = str(info.value)
    assert info.value.model == "convnext_tiny"
    assert "cellseek models pull convnext_tiny" in msg
    assert "huggingface.co/timm/convnext_tiny.fb_in22k" in msg
    assert "convnext_tiny/" in msg  # the folder to put it in
    ok, why = weights_available("convnext_tiny", tmp_path / "none")
    assert not ok and "cellseek models pull convnext_tiny" in why


def test_load_embedder_without_weights_raises_before_building(empty_caches, tmp_path):
    for name in ("dinov2_vits14", "clip_vitb32", "vit_mae_base", "dinobloom_s"):
        with pytest.raises(MissingWeightsError, match=f"cellseek models pull {name}"):
            load_embedder(name, weights_dir=tmp_path)


def test_explicit_checkpoint_must_exist(empty_caches, tmp_path):
    with pytest.raises(MissingWeightsError, match="does not exist"):
        W.resolve_weights(get_spec("swin_tiny"), checkpoint=tmp_path / "nope.pth")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(MissingWeightsError, match="holds no weights file"):
        W.resolve_weights(get_spec("swin_tiny"), checkpoint=tmp_path / "emptydir")


def test_resolution_order(empty_caches, tmp_path, monkeypatch):
    spec = get_spec("convnext_tiny")
    cached = _fake_hf_cache(empty_caches, spec.hub_repo, "model.safetensors")
    found = W.resolve_weights(spec, weights_dir=tmp_path / "none")
    assert (found.path, found.origin) == (cached, "hf_cache")
    assert weights_available(spec, tmp_path / "none") == (True, found.describe())

    local = tmp_path / "weights" / "convnext_tiny" / "convnext_tiny.safetensors"
    local.parent.mkdir(parents=True)
    local.write_bytes(b"x")
    found = W.resolve_weights(spec, weights_dir=tmp_path / "weights")
    assert (found.path, found.origin) == (local, "weights_dir")
    # the environment variable stands in for the argument
    monkeypatch.setenv("CELLSEEK_WEIGHTS_DIR", str(tmp_path / "weights"))
    assert W.resolve_weights(spec).origin == "weights_dir"

    explicit = tmp_path / "mine.pth"
    explicit.write_bytes(b"x")
    found = W.resolve_weights(spec, weights_dir=tmp_path / "weights", checkpoint=explicit)
    assert (found.path, found.origin) == (explicit, "checkpoint")


def test_hf_cache_needs_config_for_transformers(empty_caches):
    spec = get_spec("vit_mae_base")
    _fake_hf_cache(empty_caches, spec.hub_repo, "model.safetensors")
    with pytest.raises(MissingWeightsError):
        W.resolve_weights(spec)


def test_hf_cache_with_config(empty_caches):
    spec = get_spec("vit_mae_base")
    path = _fake_hf_cache(empty_caches, spec.hub_repo, "model.safetensors", ("config.json",))
    found = W.resolve_weights(spec)
    assert found.path == path and found.config == path.parent / "config.json"


def test_open_clip_cache_file_names(empty_caches):
    spec = get_spec("clip_vitb32")
    path = _fake_hf_cache(empty_caches, spec.hub_repo, "open_clip_pytorch_model.bin")
    assert W.resolve_weights(spec).path == path


def test_torch_hub_checkpoint_for_url_models(empty_caches, tmp_path):
    spec = get_spec("sam_vit_b")
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / "sam_vit_b_01ec64.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    found = W.resolve_weights(spec)
    assert (found.path, found.origin) == (ckpt, "torch_hub")


def test_flat_file_and_snapshot_layouts_in_weights_dir(empty_caches, tmp_path):
    root = tmp_path / "w"
    root.mkdir()
    (root / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    assert W.resolve_weights(get_spec("sam_vit_b"), weights_dir=root).path.name == (
        "sam_vit_b_01ec64.pth"
    )
    # a copied HF cache entry under the model's folder
    snap = root / "dinobloom_s" / "snapshots" / "r1"
    snap.mkdir(parents=True)
    (snap / "model.safetensors").write_bytes(b"x")
    assert W.resolve_weights(get_spec("dinobloom_s"), weights_dir=root).path == (
        snap / "model.safetensors"
    )
    # the original Zenodo file lying flat
    (root / "DinoBloom-B.pth").write_bytes(b"x")
    assert W.resolve_weights(get_spec("dinobloom_b"), weights_dir=root).path.name == (
        "DinoBloom-B.pth"
    )


def test_models_without_weights(empty_caches):
    assert weights_available("classical") == (True, "no weights needed")


def test_corrupt_file_gives_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CellseekError, match="could not read the weights file"):
        W.load_state_dict(bad, "convnext_tiny")


def test_unwrap_state_dict():
    sd = {"model": {"module.a": 1, "module.b": 2}}
    assert W.unwrap_state_dict(sd) == {"a": 1, "b": 2}
