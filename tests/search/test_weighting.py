import numpy as np
import pytest

from cellseek.search.weighting import (
    entropy_weights,
    fuse,
    label_entropy,
    model_entropies,
    per_query_model_weights,
    weights_from_entropies,
)


def _clustered(rng, n_per_class=30, informative=True, dim=8):
    labels = np.repeat(["a", "b", "c"], n_per_class)
    centres = rng.normal(size=(3, dim)) * 5
    codes = np.repeat(np.arange(3), n_per_class)
    if informative:
        return centres[codes] + rng.normal(size=(len(codes), dim)), labels
    return rng.normal(size=(len(codes), dim)), labels


def test_informative_model_gets_more_weight():
    rng = np.random.default_rng(0)
    good, labels = _clustered(rng)
    noise, _ = _clustered(rng, informative=False)
    h = model_entropies({"good": good, "noise": noise}, labels, k=5)
    assert h["good"] < 0.2 < h["noise"]
    w = entropy_weights({"good": good, "noise": noise}, labels, k=5, tau=0.1)
    assert w["good"] > 0.9 and sum(w.values()) == pytest.approx(1.0)


def test_uniform_without_two_classes():
    x = np.random.default_rng(1).normal(size=(10, 4))
    assert entropy_weights({"a": x, "b": x}, ["same"] * 10) == {"a": 0.5, "b": 0.5}


def test_fused_inner_product_is_weighted_cosine_sum():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 7))
    w = {"a": 0.3, "b": 0.7}
    f = fuse({"a": a, "b": b}, w)
    assert f.shape == (5, 10)

    def cos(x):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return x @ x.T

    np.testing.assert_allclose(f @ f.T, 0.3 * cos(a) + 0.7 * cos(b), atol=1e-5)


def test_label_entropy_bounds():
    h = label_entropy(np.array([[5, 0, 0], [1, 1, 1], [0, 0, 0]]), 3)
    np.testing.assert_allclose(h, [0.0, 1.0, 0.0], atol=1e-12)


def test_weights_from_entropies_rejects_bad_tau():
    with pytest.raises(ValueError):
        weights_from_entropies({"a": 0.1}, tau=0)


def test_per_query_weights_prefer_the_confident_model():
    codes = {"sure": np.array([[1, 1, 1, 1]]), "unsure": np.array([[0, 1, 2, -1]])}
    w = per_query_model_weights(codes, 3, tau=0.1)
    assert w["sure"][0] > 0.99 and w["sure"][0] + w["unsure"][0] == pytest.approx(1.0)


def test_alignment_removes_a_source_offset_in_transfer():
    from cellseek.measure.evaluate import eval_set, transfer, with_modes

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 8)) * 3
    codes = np.repeat(np.arange(3), 40)
    labels = [f"c{c}" for c in codes]
    ref = eval_set("ref", {"m": centres[codes] + rng.normal(size=(120, 8))}, labels)
    shifted = centres[codes] + rng.normal(size=(120, 8)) + 6.0  # a device offset
    qry = eval_set("qry", {"m": shifted}, labels)
    plain = transfer(ref, qry, config=with_modes(None, align="none"))["macro_accuracy"]
    for method in ("center", "balanced"):
        aligned = transfer(ref, qry, config=with_modes(None, align=method))["macro_accuracy"]
        assert aligned > max(plain, 0.9)
