"""cellseek evaluate measures the suggester sessions use (one suggester, one pipeline)."""

from __future__ import annotations

import numpy as np
import pytest

from _shared import synthetic_field
from cellseek.config import AlignConfig, Config, SegmentConfig, SuggestConfig
from cellseek.errors import CellseekError
from cellseek.measure.evaluate import cross_validate, eval_set, knn_predict, transfer, with_modes
from cellseek.session import Session
from cellseek.types import ImageData, run_work

CFG = Config(segment=SegmentConfig(method="classical"))


def _store_with_two_sources(path, config=CFG):
    session = Session.create(path, config)
    for seed, source in ((0, "reference-device"), (3, "reference-device"), (1, "new-device"),
                         (2, "new-device")):
        rgb, labels, classes = synthetic_field(seed)
        if source == "new-device":
            rgb = np.clip(rgb.astype(int) - 25, 0, 255).astype(np.uint8)  # a darker device
        image = ImageData(rgb, "YXS", path=f"f{seed}.png", device="test")
        image_id = run_work(session.add_image(image, labels={(0, 0): labels}, source=source))
        if source == "reference-device":
            cells = session.store.cells(image_id)
            session.label([c["id"] for c in cells], [classes[c["label_value"]] for c in cells])
    return session


@pytest.mark.parametrize("align", ["balanced", "none"])
def test_evaluate_predictions_equal_session_suggestions(tmp_path, align):
    config = with_modes(CFG, align=align)
    with _store_with_two_sources(tmp_path / f"s-{align}.cellseek", config) as session:
        suggestions = run_work(session.suggest())
        reference = session.reference_set()
        query_ids = list(suggestions)
        query = session.cell_set(query_ids, classes=["hidden"] * len(query_ids))
        predicted, weights = knn_predict(reference, query, config=session.config)
        session_weights = session.model_weights()
    assert predicted == [suggestions[c].best_label for c in query_ids]
    assert weights == pytest.approx(session_weights)


def test_cross_validation_and_transfer_go_through_the_suggester():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 10)) * 3
    codes = np.repeat(np.arange(3), 30)
    labels = [f"c{c}" for c in codes]
    ref = eval_set("ref", {"m": centres[codes] + rng.normal(size=(90, 10))}, labels)
    res = cross_validate(ref, folds=3, config=Config())
    assert res["macro_accuracy"] > 0.9 and res["align"] == "balanced"
    qry = eval_set("qry", {"m": centres[codes] + rng.normal(size=(90, 10)) + 5}, labels)
    out = transfer(ref, qry, config=Config())
    assert out["macro_accuracy"] > 0.9 and out["n_query"] == 90
    # query labels never reach the suggester: shuffling them changes nothing it predicts
    shuffled = eval_set("qry", qry.embeddings, list(rng.permutation(labels)))
    assert knn_predict(ref, shuffled)[0] == knn_predict(ref, qry)[0]


def test_bad_evaluations_are_clear_errors():
    one_class = eval_set("one", {"m": np.eye(4)}, ["a"] * 4)
    with pytest.raises(CellseekError, match="two classes"):
        cross_validate(one_class)
    other = eval_set("other", {"m": np.eye(4)}, ["b"] * 4)
    with pytest.raises(CellseekError, match="share no class"):
        transfer(one_class, other)
    with pytest.raises(CellseekError, match="at least 2"):
        cross_validate(one_class, folds=1)


def test_config_defaults_reach_evaluate():
    """The threshold and the vote temperature of the config are the ones evaluate uses."""
    cfg = Config(suggest=SuggestConfig(temperature=100.0), align=AlignConfig(method="none"))
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(20, 4))
    ref = eval_set("r", {"m": emb}, ["a"] * 10 + ["b"] * 10)
    res = cross_validate(ref, folds=2, config=cfg)
    assert res["align"] == "none" and res["weighting"] == "global_entropy"


def _blobs(counts: dict, seed: int = 0, name: str = "small.csv"):
    """A labelled set: ``counts`` class -> cells, each class a tight blob of its own."""
    rng = np.random.default_rng(seed)
    labels = [c for c, n in counts.items() for _ in range(n)]
    centres = {c: rng.normal(size=6) * 5 for c in counts}
    emb = np.stack([centres[c] + rng.normal(size=6) * 0.1 for c in labels])
    return eval_set(name, {"m": emb}, labels)


def test_more_folds_than_cells_per_class_is_one_clear_line():
    """3 + 3 cells in 5 folds left folds 3 and 4 empty (TypeError deep in the suggester)."""
    small = _blobs({"basophil": 3, "eosinophil": 3})
    with pytest.raises(CellseekError) as info:
        cross_validate(small, folds=5)
    message = str(info.value)
    assert message.startswith("small.csv: 5 folds") and "\n" not in message
    assert "every class has 3 cells" in message and "--folds 3 or fewer" in message
    with pytest.raises(CellseekError, match="largest class, 'a', has 4 cells .*smallest, 'b', "
                       "has 1.*--folds 4"):
        cross_validate(_blobs({"a": 4, "b": 1}), folds=5)
    assert cross_validate(small, folds=3)["n"] == 6  # as many folds as cells per class: runs


def test_a_class_smaller_than_the_folds_is_cross_validated_with_the_peers():
    """Every fold has a cell, but fold 0 trains on one class only: the peers predict it."""
    from cellseek.measure.peers import compare

    data = _blobs({"a": 5, "b": 1})
    res = cross_validate(data, folds=5)
    assert res["per_class_recall"]["a"] == 1.0 and set(res["per_class_recall"]) == {"a", "b"}
    rows = run_work(compare(data, folds=5, budgets=(None,)))
    assert {r["method"] for r in rows} == {"cellseek", "random forest", "logistic regression"}
    # b's only cell is tested against a's cells alone: every method misses it, none crashes
    assert all(r["macro_accuracy"] == pytest.approx(0.5) for r in rows)
    with pytest.raises(CellseekError, match="--folds 3"):
        run_work(compare(_blobs({"a": 3, "b": 3}), folds=5))


def test_a_transfer_with_one_shared_class_is_refused():
    """One shared class: the peers crashed in scikit-learn, cellseek scored a trivial 100 %."""
    from cellseek.measure.peers import compare

    ref = _blobs({"basophil": 4, "eosinophil": 4}, name="ref.csv")
    qry = _blobs({"basophil": 4, "lymphocyte": 4}, seed=1, name="query.csv")
    for run in (lambda: transfer(ref, qry), lambda: run_work(compare(ref, qry))):
        with pytest.raises(CellseekError) as info:
            run()
        message = str(info.value)
        assert message.startswith("ref.csv and query.csv share only 1 class ('basophil')")
        assert "at least 2" in message and "\n" not in message
