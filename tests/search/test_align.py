"""Tests of cellseek.search.align."""

from __future__ import annotations

import numpy as np
import pytest

from cellseek.search.align import SourceAligner, center_scale_per_source


def _two_sources(seed=0, n=60, d=8):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (3, d))
    y = np.repeat(np.arange(3), n // 3)
    a = centres[y] + rng.normal(0, 0.3, (n, d))
    b = (centres[y] + rng.normal(0, 0.3, (n, d))) * 1.5 + 4.0  # device shift and gain
    return a, b, y


def _knn1(ref, ry, qry):
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    qry = qry / np.linalg.norm(qry, axis=1, keepdims=True)
    return ry[(qry @ ref.T).argmax(1)]


@pytest.mark.parametrize("method", ["center", "center_scale", "coral"])
def test_alignment_recovers_classes_across_sources(method):
    a, b, y = _two_sources()
    before = (_knn1(a, y, b) == y).mean()
    src = np.array(["a"] * len(a) + ["b"] * len(b))
    al = SourceAligner(method).fit_transform(np.concatenate([a, b]), src)
    after = (_knn1(al[: len(a)], y, al[len(a) :]) == y).mean()
    assert after > 0.9 and after > before


def test_center_scale_per_source_stats():
    a, b, _ = _two_sources()
    src = ["a"] * len(a) + ["b"] * len(b)
    out = center_scale_per_source(np.concatenate([a, b]), src)
    assert out.dtype == np.float32
    for s in ("a", "b"):
        rows = np.array(src) == s
        assert np.allclose(out[rows].mean(0), 0, atol=1e-5)
        assert np.allclose(out[rows].std(0), 1, atol=1e-4)


def test_transform_unseen_source_and_errors():
    a, b, _ = _two_sources()
    al = SourceAligner("center").fit(a, ["a"] * len(a))
    out = al.transform(b, ["new"] * len(b))
    assert np.allclose(out.mean(0), 0, atol=1e-5)
    assert np.array_equal(SourceAligner("none").fit_transform(a, ["a"] * len(a)), a.astype("f4"))
    with pytest.raises(ValueError):
        SourceAligner("bogus")
    with pytest.raises(ValueError):
        SourceAligner().fit(a, ["a"])


def test_balanced_center_is_robust_to_class_mix():
    from cellseek.search.align import balanced_center

    a, b, y = _two_sources(n=90)
    # the query is dominated by one class (label shift) and shifted (device shift)
    keep = np.concatenate(
        [np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:5], np.flatnonzero(y == 2)[:5]]
    )
    qb, qy = b[keep] / 1.5, y[keep]
    ref_c, q_c = balanced_center(a, y, qb)
    assert ref_c.shape == a.shape and q_c.shape == qb.shape
    acc = (_knn1(ref_c, y, q_c) == qy).mean()
    assert acc > 0.9
