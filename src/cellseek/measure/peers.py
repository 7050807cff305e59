"""What a user would use instead: classifiers trained on the confirmed cells, on the same footing.

napari-feature-classifier and CellProfiler Analyst train a random forest or a linear classifier on
the annotated cells. :func:`compare` measures them beside cellseek's suggester on the same
features (each model's embedding, concatenated), the same labels, the same folds and the same
label budgets (at most n confirmed cells per class), in k-fold and in transfer, so the comparison
is always in front of us. scikit-learn provides both peers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from cellseek.config import Config
from cellseek.search.cellset import CellSet
from cellseek.types import Progress, Work

logger = logging.getLogger(__name__)

#: The peers: name -> description.
PEERS = {
    "random forest": "scikit-learn RandomForestClassifier, 300 trees",
    "logistic regression": "scikit-learn LogisticRegression on standardised features",
}
#: Label budgets compared (confirmed cells per class; None = all).
BUDGETS = (5, 20, None)


def make_peer(name: str, seed: int = 0):
    """A fresh, unfitted scikit-learn classifier."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "random forest":
        return RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=1)
    if name == "logistic regression":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    raise ValueError(f"unknown peer {name!r}; choose from {sorted(PEERS)}")


def features(cells: CellSet, models: Sequence[str] | None = None) -> np.ndarray:
    """Each model's embedding, concatenated (float32): what the peers are trained on."""
    models = list(models or cells.models)
    return np.concatenate([np.asarray(cells.embeddings[m], np.float32) for m in models], axis=1)


def budget_rows(labels: Sequence[str], rows: np.ndarray, per_class: int | None,
                seed: int = 0) -> np.ndarray:
    """At most ``per_class`` of ``rows`` per class (a seeded random pick; all when None)."""
    rows = np.asarray(rows)
    if per_class is None:
        return rows
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=object)
    keep = [rng.permutation(rows[labels[rows] == c])[:per_class]
            for c in sorted(set(labels[rows].tolist()))]
    return np.sort(np.concatenate(keep))


def _score(name: str, train: CellSet, test: CellSet, config: Config, seed: int) -> list:
    """Predicted labels of ``test`` by one method trained on ``train``."""
    from cellseek.measure.scoring import knn_predict

    if name == "cellseek":
        return knn_predict(train, test, config=config)[0]
    classes = sorted(set(train.labels))
    if len(classes) == 1:  # a fold without the rare classes: scikit-learn refuses to fit one
        return classes * len(test)  # class; a classifier of one class predicts it everywhere
    peer = make_peer(name, seed)
    peer.fit(features(train), np.asarray(train.labels, dtype=object))
    return list(peer.predict(features(test, train.models)))


def compare(reference: CellSet, query: CellSet | None = None, *, folds: int = 5,
            budgets: Sequence[int | None] = BUDGETS, config: Config | None = None,
            seed: int = 0) -> Work[list[dict]]:
    """Macro accuracy of cellseek and its peers at every label budget.

    Parameters
    ----------
    reference : CellSet
        Labelled cells; k-fold on it when ``query`` is None.
    query : CellSet, optional
        Labelled cells of another source (transfer; only shared classes count).
    folds : int
        Folds of the k-fold.
    budgets : sequence
        Confirmed cells per class available for training (None: all).
    config : Config, optional
        The suggester's settings.
    seed : int
        Seed of the folds, the budget picks and the forest.

    Returns
    -------
    list of dict
        One row per (method, budget): ``method``, ``budget`` ("all" or n per class),
        ``macro_accuracy``, ``mode``.
    """
    from cellseek.measure.scoring import (
        check_folds,
        distinct_sources,
        macro_accuracy,
        shared_classes,
        stratified_folds,
    )

    config = config or Config()
    methods = ["cellseek", *PEERS]
    if query is not None:
        reference, query, _ = shared_classes(reference, query, minimum=2)
        reference, query = distinct_sources(reference, query)
    else:
        check_folds(reference.labels, folds, reference.name)
    truth = reference.labels if query is None else query.labels
    total = len(methods) * len(budgets)
    rows, done = [], 0
    for budget in budgets:
        for method in methods:
            yield Progress(done, total, "peers", f"{method}, budget {budget or 'all'}")
            if query is None:
                fold = stratified_folds(reference.labels, folds, seed)
                predicted = [None] * len(reference)
                for f in range(folds):
                    test = np.flatnonzero(fold == f)
                    train = budget_rows(reference.labels, np.flatnonzero(fold != f), budget,
                                        seed + f)
                    pred = _score(method, reference.subset(train), reference.subset(test),
                                  config, seed)
                    for i, p in zip(test, pred):
                        predicted[i] = p
            else:
                train = budget_rows(reference.labels, np.arange(len(reference)), budget, seed)
                predicted = _score(method, reference.subset(train), query, config, seed)
            macro, _ = macro_accuracy(truth, predicted)
            rows.append({"method": method, "budget": "all" if budget is None else int(budget),
                         "macro_accuracy": macro,
                         "mode": "transfer" if query is not None else f"{folds}-fold"})
            done += 1
    yield Progress(total, total, "peers", "done")
    return rows


def format_peers(rows: Sequence[dict]) -> str:
    """A plain-text table: one line per method, one column per budget."""
    budgets = list(dict.fromkeys(r["budget"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    head = "".join(f"{(str(b) + '/class') if b != 'all' else 'all':>12}" for b in budgets)
    lines = [f"{'method (macro accuracy)':<26}{head}"]
    for m in methods:
        cells = {r["budget"]: r["macro_accuracy"] for r in rows if r["method"] == m}
        lines.append(f"{m:<26}" + "".join(f"{100 * cells[b]:11.1f}%" for b in budgets))
    return "\n".join(lines)
