import numpy as np
import pytest
from PIL import Image

from cellseek.cli.demo import run_demo
from cellseek.config import DEFAULT_PRESET
from cellseek.zoo import PRESETS


@pytest.mark.default_preset
def test_demo_runs_offline_and_writes_everything(tmp_path, capsys):
    """The demo as a user runs it: the default preset, its real packaged weights, no network."""
    summary = run_demo(tmp_path / "demo", quiet=True)
    assert sorted(summary["models"]) == sorted(PRESETS[DEFAULT_PRESET])
    assert "effnet_lite0" in summary["models"]  # real pretrained weights, not only classical
    assert summary["reference_cells"] == 30
    assert summary["query_cells"] >= 6  # at least the white blood cell of each field
    assert all(f["cells"] >= 1 for f in summary["fields"])
    png = np.asarray(Image.open(summary["overview"]).convert("RGB")).astype(float)
    assert png.shape[0] > 300 and png.std() > 20  # a real picture, not a blank canvas
    for path in summary["export"].values():
        assert (tmp_path / "demo" / "export").exists() and __import__("os").path.exists(path)
    out = capsys.readouterr().out
    assert "matches the known WBC type" in out and "overview" in out
