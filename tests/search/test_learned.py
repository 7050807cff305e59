"""What the suggester learns from confirmed cells: the head, where it is trusted, familiarity."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cellseek.config import Config, LearnConfig
from cellseek.search.cellset import CellSet
from cellseek.search.choice import choose, combine
from cellseek.search.familiarity import Familiarity
from cellseek.search.head import LinearHead
from cellseek.search.suggester import Suggester, predict


def _classes_in_noise(seed=0, n=60, d=30, informative=2, shift=None):
    """Three classes that differ in ``informative`` dims among ``d`` noisy ones."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(3), n)
    x = rng.normal(size=(len(codes), d)) * 3.0
    x[:, :informative] += np.array([[0, 0], [2.5, 0], [0, 2.5]])[codes][:, :informative]
    if shift is not None:
        x += shift
    return x.astype(np.float32), [f"c{c}" for c in codes]


def test_head_probabilities_follow_scikit_learn():
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression

    x, y = _classes_in_noise()
    mean, scale = x.mean(0), x.std(0)
    z = (x - mean) / scale
    ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(z, y)
    np.testing.assert_allclose(LinearHead.fit(x, y).proba(x), ref.predict_proba(z), atol=1e-4)
    ref = LogisticRegression(max_iter=1000).fit(z, y)
    np.testing.assert_allclose(LinearHead.fit(x, y, "logistic").proba(x), ref.predict_proba(z),
                               atol=1e-4)
    two = LinearHead.fit(x[:120], y[:120])  # two classes: one coefficient row
    p = two.proba(x[:120], ["c1", "c0", "unknown"])
    assert p.shape == (120, 3) and np.allclose(p[:, :2].sum(1), 1) and not p[:, 2].any()


@pytest.mark.parametrize("kind, cap_name", [("lda", "LDA_MAX_TRAIN"),
                                             ("logistic", "LOGISTIC_MAX_TRAIN")])
def test_a_head_learns_from_a_class_stratified_sample_above_its_cap(monkeypatch, kind, cap_name):
    import cellseek.search.head as head

    x, y = _classes_in_noise(n=100)  # 300 cells, 3 classes
    monkeypatch.setattr(head, cap_name, 90)
    capped = LinearHead.fit(x, y, kind)
    rows = head.stratified_cap(np.asarray(y), 90)
    assert len(rows) == 90 and sorted(np.unique(np.asarray(y)[rows], return_counts=True)[1]) == [
        30, 30, 30]
    monkeypatch.setattr(head, cap_name, 10_000)
    sample = LinearHead.fit(x[rows], [y[i] for i in rows], kind)
    full = LinearHead.fit(x, y, kind)
    np.testing.assert_allclose(capped.coef, sample.coef, rtol=1e-5, atol=1e-6)
    assert not np.allclose(capped.coef, full.coef)


def test_the_head_beats_the_knn_vote_in_noise_and_is_chosen_for_its_source():
    x, y = _classes_in_noise()
    cfg = Config()
    choice = choose(x, y, ["lab"] * len(y), cfg)
    assert choice.per_source["lab"] != "knn"
    assert choice.scores["lab"][choice.per_source["lab"]] > choice.scores["lab"]["knn"] + 0.05
    assert choice.default == "knn"  # one labelled source: nothing to validate a new device on
    off = choose(x, y, ["lab"] * len(y), replace(cfg, learn=LearnConfig(head="off")))
    assert not off.uses_head


def test_a_new_device_gets_the_head_only_where_it_carried_across_labelled_devices():
    """Leave-one-source-out over two labelled devices decides for a third one."""
    xa, ya = _classes_in_noise(0)
    xb, yb = _classes_in_noise(1)
    sources = ["a"] * len(ya) + ["b"] * len(yb)
    same = choose(np.concatenate([xa, xb]), ya + yb, sources, Config())
    assert same.default != "knn"  # the class directions are the same on both
    swapped = xb.copy()
    swapped[:, :2], swapped[:, 2:4] = xb[:, 2:4], xb[:, :2]  # device b: signal in other dims
    other = choose(np.concatenate([xa, swapped]), ya + yb, sources, Config())
    assert "*unseen*" in other.scores and other.default == "knn"


def test_familiarity_is_one_for_typical_cells_and_zero_far_away():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    fam = Familiarity.fit(x, ["a"] * 100 + ["b"] * 100)
    assert set(fam.low) == {"a", "b"}
    typical = fam.factor(["a"], np.array([fam.low["a"] + 0.01]))
    far = fam.factor(["a"], np.array([fam.low["a"] - 3 * fam.spread["a"]]))
    assert typical[0] == 1.0 and far[0] == 0.0
    assert fam.factor([None, "a"], np.array([1.0, -np.inf])).tolist() == [0.0, 0.0]


def test_a_cell_unlike_anything_confirmed_is_uncertain_not_confident():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 16)) * 4
    codes = np.repeat([0, 1], 30)
    ref = CellSet(np.arange(60), {"m": centres[codes] + rng.normal(size=(60, 16))}, ["s"] * 60,
                  [f"c{c}" for c in codes])
    stranger = CellSet(np.array([1000]), {"m": rng.normal(size=(1, 16)) * 4 + 20}, ["s"])
    near = CellSet(np.array([1001]), {"m": centres[:1] + rng.normal(size=(1, 16))}, ["s"])
    s = Suggester(Config(), ["m"]).fit(ref, concat_ok(stranger, near))
    far_s, near_s = s.suggest(stranger)[0], s.suggest(near)[0]
    assert near_s.label == "c0" and near_s.confidence > 0.6
    assert far_s.uncertain and far_s.confidence < 0.6 and far_s.familiarity < 0.5
    assert far_s.neighbours  # the nearest reference cells are still shown


def concat_ok(*sets):
    from cellseek.search.cellset import concat

    return concat(sets)


def test_confirmed_cells_refit_the_head_on_the_next_suggestion():
    x, y = _classes_in_noise()
    ref = CellSet(np.arange(len(y)), {"m": x}, ["lab"] * len(y), y)
    s = Suggester(Config(learn=LearnConfig(head="on")), ["m"]).fit(ref)
    q = CellSet(np.array([10_000]), {"m": x[:1]}, ["lab"])
    s.suggest(q)
    first = s.heads["lda"]
    extra = CellSet(np.arange(5) + 5000, {"m": x[:5]}, ["lab"] * 5, ["c2"] * 5)
    s.add(extra)
    s.suggest(q)
    assert s.heads["lda"] is not first and "c2" in s.heads["lda"].classes
    assert s.suggest(q)[0].predictor == "blend-lda"


def test_predict_keeps_the_knn_vote_for_a_new_device_and_reports_the_predictor():
    x, y = _classes_in_noise()
    xq, yq = _classes_in_noise(5, shift=1.0)
    ref = CellSet(np.arange(len(y)), {"m": x}, ["lab"] * len(y), y)
    qry = CellSet(np.arange(len(yq)) + 1000, {"m": xq}, ["new"] * len(yq))
    result = predict(ref, qry, Config())
    assert set(result.votes.predictors) == {"knn"}
    inside = CellSet(np.arange(len(yq)) + 1000, {"m": xq - 1.0}, ["lab"] * len(yq))
    assert "knn" not in set(predict(ref, inside, Config()).votes.predictors)


@pytest.mark.parametrize("name", ["knn", "blend-lda", "lda", "blend-logistic", "logistic"])
def test_combine(name):
    knn = np.array([[1.0, 0.0, 0.0]])
    heads = {"lda": np.array([[0.0, 1.0, 0.0]]), "logistic": np.array([[0.0, 0.0, 1.0]])}
    expect = {"knn": [1, 0, 0], "lda": [0, 1, 0], "blend-lda": [0.5, 0.5, 0],
              "logistic": [0, 0, 1], "blend-logistic": [0.5, 0, 0.5]}[name]
    assert combine(name, knn, heads).tolist() == [expect]
    assert combine(name, knn, {}).tolist() == [[1, 0, 0]]  # no head fitted: the vote


@pytest.mark.parametrize("n_classes, dims", [(2, 60), (5, 60), (2, 700), (5, 700)])
def test_the_lda_head_equals_scikit_learns_shrinkage_lda(n_classes, dims):
    """The LDA solved by Cholesky (more cells than dimensions) or by the Woodbury identity
    (fewer) gives scikit-learn's ``solver="lsqr", shrinkage="auto"`` fit."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from cellseek.search.head import shrinkage_lda

    rng = np.random.default_rng(n_classes)
    y = np.array([f"c{i % n_classes}" for i in range(240)])
    x = rng.normal(size=(240, dims)).astype(np.float32)
    x[:, :3] += np.arange(240)[:, None] % n_classes  # class signal in three features
    x[:, 7] = 2.0  # a constant feature
    ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x, y)
    classes, coef, intercept = shrinkage_lda(x, y)
    assert list(classes) == list(ref.classes_)
    np.testing.assert_allclose(coef, ref.coef_, rtol=1e-4, atol=1e-4 * np.abs(ref.coef_).max())
    np.testing.assert_allclose(intercept, ref.intercept_, rtol=1e-4, atol=1e-4)
