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


def test_balanced_alignment_in_the_suggester_is_robust_to_class_mix():
    """A shifted query dominated by one class: the class-balanced offset (fitted on the query's
    own suggestions, refined over passes) recovers it; the plain mean does not do as well."""
    from cellseek.config import AlignConfig, Config
    from cellseek.search.cellset import CellSet
    from cellseek.search.suggester import predict

    a, b, y = _two_sources(n=90)
    keep = np.concatenate(
        [np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:5], np.flatnonzero(y == 2)[:5]]
    )
    qb, qy = b[keep] / 1.5, y[keep]
    ref = CellSet(np.arange(len(a)), {"m": a}, ["ref"] * len(a), [str(c) for c in y])
    qry = CellSet(np.arange(len(qb)) + 1000, {"m": qb}, ["qry"] * len(qb))
    accuracy = {}
    for method in ("balanced", "center"):
        cfg = Config(align=AlignConfig(method=method, iterations=3))
        pred = predict(ref, qry, cfg).votes.best()
        accuracy[method] = np.mean(np.array(pred) == qy.astype(str))
    assert accuracy["balanced"] > 0.9 and accuracy["balanced"] >= accuracy["center"]


def test_alignment_transforms_known_sources_and_refuses_unknown_ones():
    from cellseek.search.align import Alignment, UnknownSourceError

    a, b, y = _two_sources(n=30)
    emb = {"m": np.concatenate([a, b])}
    sources = ["a"] * len(a) + ["b"] * len(b)
    classes = [str(c) for c in y] + [None] * len(b)
    al = Alignment.fit("balanced", emb, sources, classes)
    out = al.transform({"m": b}, ["b"] * len(b))["m"]
    assert np.allclose(out.mean(0), 0, atol=1e-4)  # no class known in b: its plain mean
    assert al.knows(["a", "b"]) and not al.knows(["c"])
    with pytest.raises(UnknownSourceError):
        al.transform({"m": b[:2]}, ["c", "c"])
    none = Alignment.fit("none", emb, sources)
    assert np.array_equal(none.transform({"m": a}, ["z"] * len(a))["m"], a.astype(np.float32))


