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
