"""`cellseek models list|pull|check` functions; downloads are monkeypatched (no network here)."""

from __future__ import annotations

import numpy as np
import pytest

from cellseek.cli import models as models_cli
from cellseek.errors import CellseekError
from cellseek.zoo import get_spec


@pytest.fixture
def no_weights(tmp_path, monkeypatch, no_packaged_weights):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path / "microsam"))
    monkeypatch.delenv("CELLSEEK_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("CELLSEEK_PINS", str(tmp_path / "pins.json"))
    return tmp_path


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_file(root, repo, filename, local_dir=None, revision=None, content=b"weights"):
    """Write a file where hf_hub_download would (a snapshot folder, or ``local_dir``)."""
    from pathlib import Path

    cache = Path(root) / "hf" / f"models--{repo.replace('/', '--')}" / "snapshots"
    folder = Path(local_dir) if local_dir else cache / (revision or COMMIT)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_bytes(content)
    return str(folder / filename)


@pytest.fixture
def online(monkeypatch):
    """Pretend the download hosts answer (the downloads themselves are monkeypatched)."""
    monkeypatch.setattr(models_cli, "check_reachable", lambda url, timeout=0: None)


@pytest.fixture
def offline(monkeypatch):
    """Block the network: every TCP connection fails as on a machine without one."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)


def test_list_models_table_shows_sources_and_licence_warnings(no_weights):
    (no_weights / "w" / "swin_tiny").mkdir(parents=True)
    (no_weights / "w" / "swin_tiny" / "model.safetensors").write_bytes(b"x")
    table = models_cli.list_models_table(weights_dir=no_weights / "w")
    lines = table.splitlines()
    assert lines[0].split()[:6] == ["name", "backend", "dim", "input", "licence", "weights"]
    models_part = lines[2:lines.index("")]
    rows = {line.split()[0]: line for line in models_part}
    assert "yes" in rows["swin_tiny"] and "model.safetensors (weights_dir)" in rows["swin_tiny"]
    assert " no " in rows["convnext_tiny"]
    assert "would pull hf://timm/convnext_tiny.fb_in22k" in rows["convnext_tiny"]
    assert "would pull https://dl.fbaipublicfiles.com/segment_anything/" in rows["sam_vit_b"]
    assert "not needed" in rows["classical"]
    assert "384" in rows["dinov2_vits14"] and "518" not in rows["dinov2_vits14"]
    assert "CC-BY-NC-4.0 [non-commercial]" in rows["vit_mae_base"]
    assert " MIT " in rows["convnext_base"] and "see the authors" in rows["dinobloom_b"]
    assert "warning: preset 'paper' includes non-commercial weights (vit_mae_base)" in table


def test_pull_uses_hf_hub_download(no_weights, online, monkeypatch):
    calls = []

    def fake_download(repo, filename, local_dir=None, **kw):
        calls.append((repo, filename, local_dir))
        return _hub_file(no_weights, repo, filename, local_dir)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    monkeypatch.setattr(models_cli, "_commit_of", lambda repo, path: COMMIT)
    path = models_cli.pull("dinobloom_b")
    assert calls == [("1aurent/vit_base_patch14_224.dinobloom", "model.safetensors", None)]
    assert str(path).endswith("model.safetensors")
    calls.clear()
    models_cli.pull("vit_mae_base", weights_dir=no_weights / "w")
    assert [c[1] for c in calls] == ["model.safetensors", "config.json"]
    assert calls[0][2] == str(no_weights / "w" / "vit_mae_base")


def test_pull_falls_back_to_next_file_and_reports_failure(no_weights, online, monkeypatch):
    tried = []

    def fake_download(repo, filename, local_dir=None, **kw):
        tried.append(filename)
        if filename == "open_clip_pytorch_model.bin":
            return _hub_file(no_weights, repo, filename, local_dir)
        raise OSError("no such file")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    assert str(models_cli.pull("clip_vitb32")).endswith("open_clip_pytorch_model.bin")
    assert tried == list(get_spec("clip_vitb32").hub_files)

    def offline(repo, filename, local_dir=None, **kw):
        raise OSError("network unreachable")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", offline)
    with pytest.raises(CellseekError, match="could not download.*convnext_tiny.*network"):
        models_cli.pull("convnext_tiny")
    assert not (no_weights / "hf" / "models--timm--convnext_tiny.fb_in22k").exists()


def test_pull_single_file_checkpoint_uses_torch_hub(no_weights, online, monkeypatch):
    pytest.importorskip("torch")
    import torch.hub

    import cellseek.zoo.checksums as checksums

    got = {}

    def fake(url, dst, progress=True):
        got["url"], got["dst"] = url, dst
        open(dst, "wb").close()

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    monkeypatch.setattr(checksums, "verify_checksum", lambda *a, **k: None)
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


def test_pull_offline_fails_fast_with_one_line_per_model_and_leaves_nothing(
        no_weights, offline, capsys):
    import time

    from cellseek.cli.main import main

    weights = no_weights / "w"
    start = time.perf_counter()
    rc = main(["models", "pull", "sam_vit_t", "fast", "vit_mae_base", "nope", "classical",
               "--weights-dir", str(weights)])
    took = time.perf_counter() - start
    err = capsys.readouterr().err.splitlines()
    assert rc == 1 and took < 10
    failed = [line.split(":")[0] for line in err if line.startswith("FAILED")]
    assert failed == ["FAILED sam_vit_t", "FAILED dinov2_vits14", "FAILED convnext_tiny",
                      "FAILED vit_mae_base", "FAILED nope"]  # every name tried, preset expanded
    assert any(line.startswith("ok     classical") for line in err)
    assert len(err) == 6  # one line per model
    assert "Network is unreachable" in err[0] and "mobile_sam.pt" in err[0]
    assert not weights.exists()  # no folder, lock or partial file left behind
    assert not (no_weights / "hf").exists() and not (no_weights / "torch").exists()


def test_pull_verifies_the_published_checksum(no_weights, online, monkeypatch):
    pytest.importorskip("torch")
    import hashlib

    import torch.hub

    from cellseek.zoo.checksums import ChecksumMismatchError, file_digest, verify_checksum

    def fake(url, dst, progress=True):
        with open(dst, "wb") as f:
            f.write(b"not the published weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    with pytest.raises(ChecksumMismatchError, match="mobile_sam.pt.*published"):
        models_cli.pull("sam_vit_t", weights_dir=no_weights / "w")
    assert not (no_weights / "w").exists()  # the bad file and the new folders are gone
    # the digests themselves
    path = no_weights / "f.bin"
    path.write_bytes(b"abc")
    assert file_digest(path) == "sha256:" + hashlib.sha256(b"abc").hexdigest()
    verify_checksum(path, file_digest(path, "xxh128"))
    with pytest.raises(ChecksumMismatchError):
        verify_checksum(path, "xxh128:" + "0" * 32)
    # a micro-sam model pulls its decoder too, each checked against its own digest
    import xxhash

    seen = []

    def fake_good(url, dst, progress=True):
        seen.append(url)
        with open(dst, "wb") as f:
            f.write(url.encode())

    spec = get_spec("sam_vit_t_lm")
    digests = {spec.url: spec.checksum, spec.decoder_url: spec.decoder_checksum}
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_good)
    import cellseek.zoo.checksums as checksums

    def check(path, checksum, model=""):
        url = next(u for u, c in digests.items() if c == checksum)
        assert checksum.startswith("xxh128:")
        assert xxhash.xxh128(url.encode()).hexdigest()  # the real algorithm is available
        seen.append(("verified", path.name.removeprefix(".").removesuffix(".part")))

    monkeypatch.setattr(checksums, "verify_checksum", check)
    path = models_cli.pull("sam_vit_t_lm", weights_dir=no_weights / "w2")
    assert path.name == "vit_t_lm.pt"
    assert ("verified", "vit_t_lm.pt") in seen and ("verified", "vit_t_lm_decoder.pt") in seen
    assert (no_weights / "w2" / "sam_vit_t_lm" / "vit_t_lm_decoder.pt").is_file()


def test_hub_pulls_pass_the_pinned_revision(no_weights, online, monkeypatch):
    import dataclasses

    import cellseek.zoo.registry as registry

    calls = []

    def fake_download(repo, filename, local_dir=None, revision=None, **kw):
        calls.append(revision)
        return _hub_file(no_weights, repo, filename, local_dir, revision)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    pinned = dataclasses.replace(get_spec("swin_tiny"), revision="a" * 40)
    monkeypatch.setitem(registry.MODELS._specs, "swin_tiny", pinned)
    models_cli.pull("swin_tiny")
    assert calls == ["a" * 40]


def test_check_without_names_checks_the_present_models_only(no_weights, monkeypatch):
    (no_weights / "w" / "swin_tiny").mkdir(parents=True)
    (no_weights / "w" / "swin_tiny" / "model.safetensors").write_bytes(b"x")
    assert models_cli.present_models(no_weights / "w") == ["swin_tiny", "classical"]
    lines = []
    rc = models_cli.check_many(None, weights_dir=no_weights / "w", echo=lines.append)
    assert [line.split(":")[0].split()[-1] for line in lines] == ["swin_tiny", "classical"]
    assert rc == 1 and lines[0].startswith("FAILED swin_tiny")  # a 1-byte file is no model
    assert lines[1].startswith("ok     classical")


def test_licences_and_the_non_commercial_warning():
    from cellseek.zoo import PRESETS
    from cellseek.zoo.licences import licence_warning, non_commercial_models

    assert get_spec("vit_mae_base").licence.startswith("CC-BY-NC-4.0")
    assert get_spec("convnext_tiny").licence.startswith("MIT")
    assert get_spec("dinobloom_s").licence.startswith("see the authors")
    assert get_spec("sam_vit_t").licence == "Apache-2.0"
    assert get_spec("sam_vit_b_lm").licence.startswith("CC-BY-4.0")
    assert non_commercial_models(PRESETS["paper"]) == ("vit_mae_base",)
    warning = licence_warning(PRESETS["paper"])
    assert "vit_mae_base (CC-BY-NC-4.0)" in warning and "non-commercial" in warning
    for preset in ("fast", "hematology", "offline"):
        assert licence_warning(PRESETS[preset]) is None


def test_the_first_pull_pins_the_commit_and_later_pulls_get_it(no_weights, online, monkeypatch):
    """Lock-file pins: the first pull records the commit and the file digests; later pulls ask
    for that commit and refuse a file whose digest differs."""
    import json

    from cellseek.zoo.pins import PinMismatchError, read_pins

    asked, content = [], {"value": b"weights v1"}

    def fake_download(repo, filename, local_dir=None, revision=None, **kw):
        asked.append(revision)
        return _hub_file(no_weights, repo, filename, local_dir, revision, content["value"])

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    models_cli.pull("convnext_tiny")
    pin = read_pins()["convnext_tiny"]
    assert asked == [None] and pin["revision"] == COMMIT
    assert pin["repo"] == "timm/convnext_tiny.fb_in22k" and len(pin["files"]) == 1
    models_cli.pull("convnext_tiny")
    assert asked[-1] == COMMIT  # the pinned commit is asked for
    content["value"] = b"tampered"
    with pytest.raises(PinMismatchError, match="SHA-256"):
        models_cli.pull("convnext_tiny")
    pins = json.loads((no_weights / "pins.json").read_text())
    assert pins["convnext_tiny"]["files"] == pin["files"]  # the pin is unchanged
