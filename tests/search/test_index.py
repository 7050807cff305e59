import numpy as np
import pytest

from cellseek.config import IndexConfig
from cellseek.search.index import CellIndex, brute_force_search
from cellseek.search.weighting import l2_normalise


def _data(n, dim=16, seed=0):
    return l2_normalise(np.random.default_rng(seed).normal(size=(n, dim)))


def test_exact_search_matches_brute_force():
    ref, qry = _data(200), _data(10, seed=1)
    index = CellIndex(16)
    index.add(ref, np.arange(1000, 1200))
    sims, ids = index.search(qry, 5)
    bsims, brows = brute_force_search(ref, qry, 5)
    np.testing.assert_array_equal(ids, brows + 1000)
    np.testing.assert_allclose(sims, bsims, atol=1e-5)
    assert index.kind == "exact" and len(index) == 200


def test_switches_to_hnsw_past_exact_max_and_keeps_ids():
    ref = _data(300)
    index = CellIndex(16, IndexConfig(exact_max=100))
    index.add(ref[:80], np.arange(80))
    assert index.kind == "exact"
    index.add(ref[80:], np.arange(80, 300))
    assert index.kind == "hnsw" and len(index) == 300
    _, ids = index.search(ref[:20], 1)
    assert (ids[:, 0] == np.arange(20)).mean() >= 0.95


def test_remove_and_rebuild():
    ref = _data(50)
    index = CellIndex(16)
    index.add(ref, np.arange(50))
    assert index.remove(np.array([0, 1])) == 2
    _, ids = index.search(ref[:1], 3)
    assert 0 not in ids
    index.rebuild(ref[:10], np.arange(10))
    assert len(index) == 10


def test_empty_index_and_bad_input():
    index = CellIndex(4)
    sims, ids = index.search(np.zeros((2, 4), np.float32), 3)
    assert (ids == -1).all() and np.isneginf(sims).all()
    with pytest.raises(ValueError, match="shape"):
        index.add(np.zeros((2, 5)), np.arange(2))
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.full((1, 4), np.nan), np.arange(1))


def test_fewer_references_than_k():
    index = CellIndex(4)
    index.add(_data(2, dim=4), np.array([7, 8]))
    sims, ids = index.search(_data(1, dim=4), 5)
    assert set(ids[0, :2]) == {7, 8} and (ids[0, 2:] == -1).all()
    assert np.isneginf(sims[0, 2:]).all()


def test_a_rebuild_reports_its_progress_and_builds_the_same_index(monkeypatch):
    import cellseek.search.index as index_module

    monkeypatch.setattr(index_module, "REBUILD_BLOCK", 100)
    ref, qry = _data(1000), _data(10, seed=1)
    reports = []
    with_progress = CellIndex(16)
    with_progress.rebuild(ref, np.arange(1000), progress=reports.append)
    plain = CellIndex(16)
    plain.rebuild(ref, np.arange(1000))
    assert [r.done for r in reports] == [0, *range(100, 1001, 100)]
    assert all(r.total == 1000 and r.stage == "index" for r in reports)
    assert "1,000 of 1,000 cells" in reports[-1].message
    np.testing.assert_array_equal(with_progress.search(qry, 5)[1], plain.search(qry, 5)[1])
