import numpy as np

from cellseek.measure.evaluate import eval_set
from cellseek.measure.growth import plot_growth, simulate_growth
from cellseek.types import run_work


def _blobs(seed=0, n=60, dim=6):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 3
    codes = np.repeat(np.arange(3), n)
    emb = centres[codes] + rng.normal(size=(len(codes), dim))
    return eval_set("blobs", {"m": emb.astype(np.float32)}, [f"c{c}" for c in codes])


def test_growth_curves_and_plot(tmp_path):
    result = run_work(simulate_growth(_blobs(), start_per_class=(1, 5), step=5, max_added=20))
    assert len(result["curves"]) == 4
    for c in result["curves"]:
        assert c["n_labelled"][0] == 3 * c["start_per_class"]
        assert np.all(np.diff(c["n_labelled"]) == 5)
        assert c["macro_accuracy"][-1] > 0.8  # separable blobs are learned
    plot_growth(result, tmp_path / "growth.png")
    assert (tmp_path / "growth.png").stat().st_size > 10_000
