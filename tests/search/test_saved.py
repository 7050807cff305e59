"""A fitted suggester saved as plain arrays and loaded back answers exactly like the original."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cellseek.config import Config, IndexConfig
from cellseek.search.cellset import CellSet
from cellseek.search.saved import SavedStateError, dump, label_changes, load, state_key
from cellseek.search.suggester import Suggester

DIMS = {"a": 12, "b": 6}


def _cells(seed=0, n=90, source="s1", offset=0.0, labelled=True, start=0):
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(3), n // 3)
    embs = {m: (rng.normal(size=(3, d)) * 3)[codes] + rng.normal(size=(len(codes), d)) + offset
            for m, d in DIMS.items()}
    return CellSet(np.arange(len(codes)) + start, embs, [source] * len(codes),
                   [f"c{c}" for c in codes] if labelled else None)


def _fitted(config):
    ref = _cells()
    context = _cells(1, source="s2", offset=0.5, labelled=False, start=1000)
    return Suggester(config, list(DIMS)).fit(ref, context), context


@pytest.mark.parametrize("config", [
    Config(),
    Config(index=IndexConfig(pca_components=4)),
    replace(Config(), learn=replace(Config().learn, head="on")),
])
def test_a_loaded_state_suggests_exactly_like_the_fitted_one(config):
    s, query = _fitted(config)
    want = s.suggest(query)
    key = state_key(config, list(DIMS), DIMS)
    header, arrays = dump(s, key)
    import json

    header = json.loads(json.dumps(header))  # the header travels as JSON
    back = load(header, arrays, config, key, DIMS)
    got = back.suggest(query)
    assert [g.label for g in got] == [w.label for w in want]
    assert [g.confidence for g in got] == pytest.approx([w.confidence for w in want], abs=1e-5)
    assert [[n.cell_id for n in g.neighbours] for g in got] == \
        [[n.cell_id for n in w.neighbours] for w in want]
    # it keeps learning: a new confirmed cell joins the loaded index
    extra = _cells(2, n=3, start=5000)
    back.add(extra)
    assert set(extra.ids.tolist()) <= set(back.index.ids().tolist())


def test_another_key_or_a_tampered_array_is_refused():
    config = Config()
    s, _ = _fitted(config)
    key = state_key(config, list(DIMS), DIMS)
    header, arrays = dump(s, key)
    with pytest.raises(SavedStateError, match="other models or settings"):
        load(header, arrays, config, state_key(replace(config, index=IndexConfig(hnsw_m=8)),
                                               list(DIMS), DIMS), DIMS)
    bad = dict(arrays)
    bad["labels/codes"] = bad["labels/codes"] + 100
    with pytest.raises(SavedStateError):
        load(header, bad, config, key, DIMS)
    bad = dict(arrays)
    bad["offsets/a"] = bad["offsets/a"][:, :3]
    with pytest.raises(SavedStateError, match="shape"):
        load(header, bad, config, key, DIMS)
    with pytest.raises(SavedStateError, match="not a cellseek"):
        load({"format": "other"}, arrays, config, key, DIMS)


def test_label_changes_since_the_state_was_built():
    s, _ = _fitted(Config())
    now = dict(s.labels)
    first = next(iter(now))
    now.pop(first)
    second = next(iter(now))
    now[second] = "other"
    now[99_999] = "c0"
    assert label_changes(s, now) == ([99_999], [first], [second])
