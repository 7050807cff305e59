"""Search profiles: one fused index, searched with other model weights per source."""

from __future__ import annotations

import numpy as np
import pytest

from cellseek.config import Config
from cellseek.search.cellset import CellSet
from cellseek.search.profiles import (
    ALL,
    candidate_name,
    column_factors,
    profiles_for,
    split_candidate,
)
from cellseek.search.suggester import Suggester, predict
from cellseek.search.weighting import fuse, l2_normalise


def test_profiles_hold_the_weights_and_the_robust_models():
    got = profiles_for(["classical", "cnn", "vit"], {"classical": 0.2, "cnn": 0.5, "vit": 0.3},
                       ("classical",))
    assert got == {ALL: {"classical": 0.2, "cnn": 0.5, "vit": 0.3},
                   "classical": {"classical": 1.0, "cnn": 0.0, "vit": 0.0}}
    # nothing robust in the set, or only robust models: one profile
    assert list(profiles_for(["cnn", "vit"], {"cnn": 0.5, "vit": 0.5}, ("classical",))) == [ALL]
    assert list(profiles_for(["classical"], {"classical": 1.0}, ("classical",))) == [ALL]


def test_candidate_names_round_trip():
    assert split_candidate("lda") == ("lda", ALL)
    assert split_candidate("blend-lda@classical") == ("blend-lda", "classical")
    assert candidate_name("knn", ALL) == "knn"
    assert candidate_name("knn", "classical") == "knn@classical"


def test_a_rescaled_query_searches_the_fused_index_with_the_profile_weights():
    """q' . r = sum_m v_m cos_m for reference vectors fused with other weights w."""
    rng = np.random.default_rng(0)
    models, sizes = ["a", "b", "c"], {"a": 5, "b": 7, "c": 3}
    ref = {m: rng.normal(size=(20, d)) for m, d in sizes.items()}
    qry = {m: rng.normal(size=(4, d)) for m, d in sizes.items()}
    w = {"a": 0.6, "b": 0.3, "c": 0.1}
    v = {"a": 0.0, "b": 0.25, "c": 0.75}
    got = (fuse(qry, w, models) * column_factors(models, sizes, w, v, query=True)) \
        @ fuse(ref, w, models).T
    want = sum(v[m] * l2_normalise(qry[m]) @ l2_normalise(ref[m]).T for m in models)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # both sides scaled: the same similarities between two sets of fused vectors
    f = column_factors(models, sizes, w, v, query=False)
    np.testing.assert_allclose((fuse(qry, w, models) * f) @ (fuse(ref, w, models) * f).T, want,
                               atol=1e-5)


def _device_sets(seed=0, n=60):
    """Three classes. ``classical`` separates them the same way on both devices, a little
    blurred; ``deep`` separates them sharply on device A, but on device B its class directions
    are permuted (it learned the device): searching B with it finds the wrong class."""
    rng = np.random.default_rng(seed)
    centres_c = rng.normal(size=(3, 8)) * 3
    centres_d = rng.normal(size=(3, 16)) * 6

    def cells(device, start):
        codes = np.repeat(np.arange(3), n // 3)
        classical = centres_c[codes] + rng.normal(size=(len(codes), 8)) * 2.6
        order = np.array([0, 1, 2]) if device == "A" else np.array([1, 2, 0])
        deep = centres_d[order[codes]] + rng.normal(size=(len(codes), 16))
        return CellSet(np.arange(len(codes)) + start, {"classical": classical, "deep": deep},
                       [device] * len(codes), [f"c{c}" for c in codes])

    return cells("A", 0), cells("B", 10_000)


def _accuracy(prediction, truth):
    return float(np.mean([s.label == t for s, t in zip(prediction.suggestions, truth)]))


def test_a_new_device_is_searched_with_the_robust_profile_and_its_own_source_validates():
    ref, other = _device_sets()
    config = Config()
    # a new device, nothing to validate on: the robust profile (classical) and the kNN vote
    result = predict(ref, other.with_labels(None), config)
    assert result.suggester.choice.default == "knn@classical"
    assert result.votes.predictors == ["knn@classical"] * len(other)
    robust = _accuracy(result, other.labels)
    assert robust > 0.8
    # the same cells searched with every model (the "all" profile) go wrong: what the robust
    # default protects against
    forced = Suggester(config, ref.models).fit(ref, other.with_labels(None))
    forced.choice.default = "knn"
    all_models = np.mean([s.label == t for s, t in zip(forced.suggest(other), other.labels)])
    assert all_models < robust - 0.3
    # device A validated on its own cells: the sharper all-model search is chosen there
    train = ref.subset(np.arange(0, len(ref), 2))
    held = ref.subset(np.arange(1, len(ref), 2))
    fitted = Suggester(config, ref.models).fit(train, held.with_labels(None))
    assert split_candidate(fitted.choice.per_source["A"])[1] == ALL


def test_the_neighbours_shown_are_those_of_the_profile_that_voted():
    ref, other = _device_sets(1)
    result = predict(ref, other.with_labels(None), Config())
    s = result.suggester
    sims, ids = s.neighbours(other, 3)
    want = np.stack([(l2_normalise(other.embeddings["classical"]
                                   - s.alignment.offsets["B"]["classical"])
                      @ l2_normalise(ref.embeddings["classical"]
                                     - s.alignment.offsets["A"]["classical"]).T)[i]
                     for i in range(len(other))])
    best = np.sort(want, axis=1)[:, ::-1][:, :3]
    np.testing.assert_allclose(sims, best, atol=1e-4)


@pytest.mark.parametrize("head", ["auto", "off"])
def test_profiles_survive_saving(head):
    import json
    from dataclasses import replace

    from cellseek.search.saved import dump, load, state_key

    ref, other = _device_sets(2)
    config = replace(Config(), learn=replace(Config().learn, head=head))
    s = Suggester(config, ref.models).fit(ref, other.with_labels(None))
    want = s.suggest(other)
    dims = {m: ref.embeddings[m].shape[1] for m in ref.models}
    key = state_key(config, list(ref.models), dims)
    header, arrays = dump(s, key)
    back = load(json.loads(json.dumps(header)), arrays, config, key, dims)
    got = back.suggest(other)
    assert back.profiles == s.profiles
    assert [g.label for g in got] == [w.label for w in want]
    assert [g.confidence for g in got] == pytest.approx([w.confidence for w in want], abs=1e-5)
