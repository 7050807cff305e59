"""The building blocks every measurement shares: folds, macro accuracy, the suggester's vote.

Every prediction goes through :func:`cellseek.search.suggester.predict`, the suggester a session
uses; query labels never reach it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from cellseek.config import Config
from cellseek.errors import CellseekError
from cellseek.search.cellset import CellSet
from cellseek.text import cells_text, count_text


def eval_set(name: str, embeddings, labels, sources=None) -> CellSet:
    """A labelled set of embeddings (ids are row numbers)."""
    return CellSet.from_rows(embeddings, labels, sources, name)


def macro_accuracy(truth: Sequence[str], predicted: Sequence[str | None]) -> tuple[float, dict]:
    """Mean of per-class recall over the classes present in ``truth``.

    Returns
    -------
    macro : float
    per_class : dict
        Class -> recall.
    """
    truth = np.asarray(truth, dtype=object)
    predicted = np.asarray(predicted, dtype=object)
    per_class = {}
    for c in sorted(set(truth.tolist())):
        sel = truth == c
        per_class[c] = float(np.mean(predicted[sel] == c))
    return float(np.mean(list(per_class.values()))) if per_class else 0.0, per_class


def knn_predict(reference: CellSet, query: CellSet, *, config: Config | None = None,
                models: Sequence[str] | None = None) -> tuple[list[str], dict[str, float]]:
    """The best label of every query cell, by the suggester users run.

    Query labels are hidden from the suggester (they never shape the alignment).

    Returns
    -------
    predicted : list of str
        The winning class of every query (the vote never abstains here).
    weights : dict
        Model weights used.
    """
    result = predict_set(reference, query, config=config, models=models)
    return result.votes.best(), result.suggester.weights


def predict_set(reference: CellSet, query: CellSet, *, config: Config | None = None,
                models: Sequence[str] | None = None):
    """:func:`cellseek.search.suggester.predict` for a labelled query set, its labels hidden.

    Returns
    -------
    cellseek.search.suggester.Prediction
    """
    from cellseek.search.suggester import predict

    query = CellSet(np.arange(len(query)) + _id_offset(reference), query.embeddings,
                    query.sources, None, query.name)
    return predict(reference, query, config or Config(), models=models)


def _id_offset(reference: CellSet) -> int:
    """Query ids start above every reference id, so a query never counts as its own neighbour."""
    return int(reference.ids.max()) + 1 if len(reference) else 0


def vote_shares(reference: CellSet, query: CellSet, *, config: Config | None = None,
                models: Sequence[str] | None = None) -> tuple[np.ndarray, list[str], dict]:
    """The vote of every query: ``(Q, C)`` class shares, the class order and the weights."""
    result = predict_set(reference, query, config=config, models=models)
    return result.votes.shares, result.votes.classes, result.suggester.weights


def stratified_folds(labels: Sequence[str], folds: int, seed: int = 0) -> np.ndarray:
    """Fold index of every item, each class spread evenly over the folds."""
    labels = np.asarray(labels, dtype=object)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), np.int64)
    for c in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == c)
        rng.shuffle(rows)
        fold[rows] = np.arange(len(rows)) % folds
    return fold


def check_folds(labels: Sequence[str], folds: int, name: str) -> None:
    """Refuse a k-fold that would leave a fold without cells.

    :func:`stratified_folds` deals each class's cells to folds 0, 1, 2, ... in turn, so every
    fold gets a cell when the largest class has at least ``folds`` cells. A class with fewer
    cells than folds is simply absent from some folds (its cells are still all tested once).

    Raises
    ------
    CellseekError
        One line naming the set, the class sizes and the ``--folds`` that would work.
    """
    counts = {c: list(labels).count(c) for c in sorted(set(labels))}
    if not counts:
        raise CellseekError(f"{name}: no labelled cells to cross-validate")
    largest = max(counts, key=counts.get)
    if counts[largest] >= folds:
        return
    smallest = min(counts, key=counts.get)
    if counts[smallest] == counts[largest]:
        sizes = f"every class has {cells_text(counts[largest])}"
    else:
        sizes = (f"the largest class, {largest!r}, has {cells_text(counts[largest])} "
                 f"(the smallest, {smallest!r}, has {counts[smallest]})")
    fix = (f"use --folds {counts[largest]} or fewer" if counts[largest] >= 2
           else "label at least 2 cells of some class")
    raise CellseekError(f"{name}: {folds} folds would leave folds without cells: {sizes}; {fix}")


def with_modes(config: Config | None, *, weighting: str | None = None,
               align: str | None = None) -> Config:
    """``config`` with another weighting mode and/or source alignment (None: keep)."""
    config = config or Config()
    if weighting is not None:
        config = replace(config, weighting=replace(config.weighting, mode=weighting))
    if align is not None:
        config = replace(config, align=replace(config.align, method=align))
    return config


def shared_classes(reference: CellSet, query: CellSet, *,
                   minimum: int = 1) -> tuple[CellSet, CellSet, list[str]]:
    """Both sets restricted to the classes they share.

    Parameters
    ----------
    reference, query : CellSet
        Labelled sets.
    minimum : int
        Fewest shared classes accepted. A transfer needs 2: restricted to one shared class, the
        reference can only ever suggest that class, so every score would be 100 %.

    Raises
    ------
    CellseekError
        When the sets share fewer than ``minimum`` classes.
    """
    shared = sorted(set(reference.labels) & set(query.labels))
    if not shared:
        raise CellseekError(f"{reference.name} and {query.name} share no class: "
                            f"{sorted(set(reference.labels))} vs {sorted(set(query.labels))}")
    if len(shared) < minimum:
        raise CellseekError(
            f"{reference.name} and {query.name} share only "
            f"{count_text(len(shared), 'class', 'classes')} ({', '.join(map(repr, shared))}) "
            f"and a transfer needs at least {minimum}: "
            f"restricted to the shared classes, every suggestion would be {shared[0]!r}, so "
            f"there is nothing to measure; label more classes in both sets")
    return (reference.subset(np.flatnonzero(np.isin(reference.labels, shared))),
            query.subset(np.flatnonzero(np.isin(query.labels, shared))), shared)


def distinct_sources(reference: CellSet, query: CellSet) -> tuple[CellSet, CellSet]:
    """Make sure a transfer's two sets do not share a source name (they come from two devices)."""
    if not set(reference.sources) & set(query.sources):
        return reference, query
    return (CellSet(reference.ids, reference.embeddings,
                    [f"reference:{s}" for s in reference.sources], reference.labels,
                    reference.name),
            CellSet(query.ids, query.embeddings, [f"query:{s}" for s in query.sources],
                    query.labels, query.name))


