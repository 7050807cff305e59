"""Per-model PCA: round trip, variance kept, persistence, effect on neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from cellseek.measure.bench_index import clustered_data, recall_at
from cellseek.search.reduce import PCA, ModelReducer
from cellseek.search.weighting import fuse, l2_normalise


@pytest.fixture(scope="module")
def embs():
    a, _ = clustered_data(3000, 96, n_clusters=20, seed=0)
    b, _ = clustered_data(3000, 48, n_clusters=20, seed=1)
    return {"a": a * 3.0, "b": b}  # scale must not matter: rows are normalised first


def test_full_rank_round_trip(embs):
    x = embs["b"][:500]
    pca = PCA.fit(x, 48)
    assert pca.components.dtype == np.float32 and pca.n_components == 48
    np.testing.assert_allclose(pca.inverse_transform(pca.transform(x)), l2_normalise(x),
                               atol=1e-4)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(48), atol=1e-4)
    assert pca.explained_fraction == pytest.approx(1.0, abs=1e-5)


def test_variance_fraction_picks_size_and_whitening(embs):
    pca = PCA.fit(embs["a"], 0.9)
    assert 1 <= pca.n_components < 96 and pca.explained_fraction >= 0.9
    white = PCA.fit(embs["a"], 10, whiten=True)
    assert not PCA.fit(embs["a"], 10).whiten  # off by default
    np.testing.assert_allclose(white.transform(embs["a"]).var(axis=0, ddof=1), 1.0, rtol=1e-2)
    with pytest.raises(ValueError, match="n_components"):
        PCA.fit(embs["a"], 500)


def test_reducer_bytes_round_trip_and_dims(embs):
    reducer = ModelReducer.fit(embs, {"a": 32, "b": 100})
    assert reducer.dims == {"a": 32, "b": 48}  # a size above the dim keeps the dim
    back = ModelReducer.from_bytes(reducer.to_bytes())
    out, out_back = reducer.transform(embs), back.transform(embs)
    for m in embs:
        np.testing.assert_array_equal(out[m], out_back[m])
        assert out[m].dtype == np.float32


def test_reduced_fusion_keeps_most_neighbours(embs):
    weights = {"a": 0.5, "b": 0.5}
    full = fuse(embs, weights, ["a", "b"])
    reducer = ModelReducer.fit(embs, 24)
    small = fuse(reducer.transform(embs), weights, ["a", "b"])
    assert small.shape[1] == 48
    q = slice(0, 100)
    truth = np.argsort(-(full[q] @ full.T), axis=1)[:, 1:11]
    found = np.argsort(-(small[q] @ small.T), axis=1)[:, 1:11]
    assert recall_at(found, truth, 10) >= 0.7  # measured 0.84
