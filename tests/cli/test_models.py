"""`cellseek models list|pull|check` functions; downloads are monkeypatched (no network here)."""

from __future__ import annotations

import numpy as np
import pytest

from cellseek.cli import models as models_cli
from cellseek.errors import CellseekError
from cellseek.zoo import get_spec


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("CELLSEEK_WEIGHTS_DIR", raising=False)
    return tmp_path


def test_list_models_table(no_weights):
    (no_weights / "w" / "swin_tiny").mkdir(parents=True)
    (no_weights / "w" / "swin_tiny" / "model.safetensors").write_bytes(b"x")
    table = models_cli.list_models_table(weights_dir=no_weights / "w")
    lines = table.splitlines()
    assert lines[0].split()[:6] == ["name", "backend", "dim", "input", "licence", "weights"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert "yes (weights_dir)" in rows["swin_tiny"]
    assert " no " in rows["convnext_tiny"]
    assert "not needed" in rows["classical"]
    assert "384" in rows["dinov2_vits14"] and "518" not in rows["dinov2_vits14"]


def test_pull_uses_hf_hub_download(no_weights, monkeypatch):
    calls = []

    def fake_download(repo, filename, local_dir=None, **kw):
        calls.append((repo, filename, local_dir))
        return f"/cache/{repo}/{filename}"

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    path = models_cli.pull("dinobloom_b")
    assert calls == [("1aurent/vit_base_patch14_224.dinobloom", "model.safetensors", None)]
    assert str(path).endswith("model.safetensors")
    calls.clear()
    models_cli.pull("vit_mae_base", weights_dir=no_weights / "w")
    assert [c[1] for c in calls] == ["model.safetensors", "config.json"]
    assert calls[0][2] == str(no_weights / "w" / "vit_mae_base")


def test_pull_falls_back_to_next_file_and_reports_failure(no_weights, monkeypatch):
    tried = []

    def fake_download(repo, filename, local_dir=None, **kw):
        tried.append(filename)
        if filename == "open_clip_pytorch_model.bin":
            return "/cache/x.bin"
        raise OSError("no such file")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    assert str(models_cli.pull("clip_vitb32")) == "/cache/x.bin"
    assert tried == list(get_spec("clip_vitb32").hub_files)

    def offline(repo, filename, local_dir=None, **kw):
        raise OSError("network unreachable")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", offline)
    with pytest.raises(CellseekError, match="could not download.*convnext_tiny.*network"):
        models_cli.pull("convnext_tiny")


def test_pull_single_file_checkpoint_uses_torch_hub(no_weights, monkeypatch):
    pytest.importorskip("torch")
    import torch.hub

    got = {}

    def fake(url, dst, progress=True):
        got["url"], got["dst"] = url, dst
        open(dst, "wb").close()

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    path = models_cli.pull("sam_vit_b")
    assert got["url"] == get_spec("sam_vit_b").url
    assert path == no_weights / "torch" / "hub" / "checkpoints" / "sam_vit_b_01ec64.pth"
    path = models_cli.pull("sam_vit_b", weights_dir=no_weights / "w")
    assert path == no_weights / "w" / "sam_vit_b" / "sam_vit_b_01ec64.pth"


def test_pull_errors(no_weights):
    assert models_cli.pull("classical") is None
    with pytest.raises(CellseekError, match="unknown model"):
        models_cli.pull("nope")


def test_check_reports_each_model(no_weights, monkeypatch):
    class Fake:
        spec = get_spec("dinov2_vits14")

        def embed(self, crops, masks):
            return np.ones((len(crops), self.spec.dim), np.float32)

    import cellseek.zoo

    real_load = cellseek.zoo.load_embedder

    def fake_load(name, **kw):
        return Fake() if name == "dinov2_vits14" else real_load(name, **kw)

    monkeypatch.setattr(cellseek.zoo, "load_embedder", fake_load)
    report = models_cli.check(["dinov2_vits14", "convnext_tiny", "nope"])
    ok = {name: (good, detail) for name, good, detail in report}
    assert ok["dinov2_vits14"][0] and "dim 384" in ok["dinov2_vits14"][1]
    assert not ok["convnext_tiny"][0]
    assert "cellseek models pull convnext_tiny" in ok["convnext_tiny"][1]
    assert not ok["nope"][0] and "unknown model" in ok["nope"][1]
