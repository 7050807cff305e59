"""``weights_dir`` reaches SAM on every path (issue 10): a SAM file in a weights folder that is
*not* ``$CELLSEEK_WEIGHTS_DIR`` is found by ``models list --weights-dir``, ``models check``,
``resolve_method`` / ``segment_plane(weights_dir=...)`` (``method="auto"`` picks SAM), and the
SAM loader; without ``weights_dir`` it is not found.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("segment_anything")

from cellseek.cli.main import main  # noqa: E402
from cellseek.config import SegmentConfig  # noqa: E402
from cellseek.segment import resolve_method, segment_plane  # noqa: E402
from cellseek.types import run_work  # noqa: E402
from cellseek.zoo import sam_loader  # noqa: E402

from .conftest import SAM_FILE, save_small_sam  # noqa: E402


@pytest.fixture
def folder(tmp_path, monkeypatch, no_packaged_weights):
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("CELLSEEK_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CELLSEEK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path / "microsam"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))

    sam_loader.clear_model_cache()
    save_small_sam(tmp_path / "lab-weights" / SAM_FILE)
    return tmp_path / "lab-weights"


def test_models_list_and_check_find_it(folder, capsys):
    assert main(["models", "list", "--weights-dir", str(folder)]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("sam_vit_b "))
    assert " yes " in row and str(folder / SAM_FILE) in row
    assert main(["models", "list"]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("sam_vit_b "))
    assert " no " in row
    assert main(["models", "check", "--weights-dir", str(folder)]) == 0  # every present model
    out = capsys.readouterr().out
    assert "ok     sam_vit_b: dim 256" in out and "ok     classical" in out
    assert "convnext" not in out  # absent models are not checked


def test_segmentation_finds_it_and_auto_picks_sam(folder):
    config = SegmentConfig(method="auto", sam_tile_size=128, sam_tile_overlap=32, min_area=0)
    assert resolve_method(config) == "classical"
    assert resolve_method(config, weights_dir=folder) == "sam"
    assert resolve_method(SegmentConfig(sam_model="vit_b"), weights_dir=folder) == "sam"
    plane = np.zeros((96, 96), np.float32)
    plane[30:60, 30:60] = 1.0
    progress = []
    labels = run_work(segment_plane(plane, config, weights_dir=folder), progress.append)
    assert labels.shape == plane.shape
    assert any(p.stage == "segment:sam" for p in progress)  # SAM ran, not the classical one
    model = sam_loader.load_sam("vit_b", weights_dir=folder, device="cpu")
    assert model.cellseek_checkpoint == folder / SAM_FILE


def test_the_commands_find_it_with_and_without_workers(folder, tmp_path, capsys):
    """``segment --method sam`` and the batch path (``embed --scheduler sync``, what workers
    run) find SAM in ``--weights-dir``; without it, one line says the weights are missing."""
    import json

    from PIL import Image

    rgb = np.full((96, 96, 3), 230, np.uint8)
    rgb[30:60, 30:60] = (120, 60, 150)
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(rgb).save(images / "a.png")
    args = ["--method", "sam", "-q"]
    assert main(["segment", str(images), *args, "--weights-dir", str(folder),
                 "-o", str(tmp_path / "out")]) == 0
    assert "(sam segmentation)" in capsys.readouterr().out
    assert main(["segment", str(images), *args, "-o", str(tmp_path / "out2")]) == 1
    err = capsys.readouterr().err
    assert "sam" in err.lower() and "weights" in err.lower() and "Traceback" not in err
    store = tmp_path / "s.cellseek"
    code = main(["embed", str(images), "--store", str(store), *args, "--weights-dir",
                 str(folder), "--scheduler", "sync"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and not summary["failed"] and summary["computed"] == 1
