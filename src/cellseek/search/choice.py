"""Which predictor to trust for each source: the robust kNN vote, a learned head, or a blend.

A head learned from the confirmed cells (:mod:`cellseek.search.head`: shrinkage LDA or logistic
regression) beats the kNN vote on cells like the ones it was trained on, and can lose on another
microscope: it learns the reference device as much as the classes. So it is used for a source
only where it is validated:

- a source with confirmed cells (at least ``min_per_class`` in at least two classes): in-source
  folds over its confirmed cells, each fold predicted from every other confirmed cell;
- any other source (a new microscope): leave-one-source-out over the labelled sources when the
  labels span at least two of them (does the head carry over to a device it has not seen?);
  with a single labelled source there is nothing to validate on and the kNN vote is used.

The candidates (:data:`CANDIDATES`, most robust first: the kNN vote, its blend with the LDA head,
the LDA head, its blend with the logistic head, the logistic head) are compared by macro
accuracy; a less robust candidate must beat the best more robust one by ``LearnConfig.margin``.

Each predictor runs on every search profile (:mod:`cellseek.search.profiles`): the global model
weights (``"all"``) and the robust profile (the hand-crafted features alone, by default). A
candidate is named ``"<predictor>"`` on ``"all"`` and ``"<predictor>@<profile>"`` otherwise; on a
profile the robust one comes first, so a new microscope with nothing to validate on is searched
with the robust profile and the kNN vote.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from cellseek.search.profiles import ALL, candidate_name, split_candidate
from cellseek.search.vote import adaptive_k, vote_matrix

logger = logging.getLogger(__name__)

#: At most this many confirmed cells of a source are validated (each predicted from all others).
MAX_VALIDATED = 3000
#: Candidates, most robust first (ties go to the earlier one).
CANDIDATES = ("knn", "blend-lda", "lda", "blend-logistic", "logistic")
#: The head each candidate uses.
HEAD_OF = {"blend-lda": "lda", "lda": "lda", "blend-logistic": "logistic",
           "logistic": "logistic"}


def candidates(profiles: Sequence[str] = (ALL,), predictors: Sequence[str] = CANDIDATES
               ) -> tuple[str, ...]:
    """Every predictor on every profile, most robust first (other profiles before ``"all"``)."""
    order = [p for p in profiles if p != ALL] + ([ALL] if ALL in profiles else [])
    return tuple(candidate_name(pred, prof) for pred in predictors for prof in order)


def head_key(candidate: str) -> str | None:
    """The head a candidate uses (``"lda"``, ``"lda@classical"`` ...), or None for a kNN vote."""
    predictor, profile = split_candidate(candidate)
    kind = HEAD_OF.get(predictor)
    return candidate_name(kind, profile) if kind else None


def combine(candidate: str, knn: np.ndarray, heads: Mapping[str, np.ndarray]) -> np.ndarray:
    """Class shares of a candidate from the kNN shares and the heads' probabilities
    (``heads``: head key (:func:`head_key`) -> ``(q, C)``; a missing head falls back to the kNN
    shares). ``knn`` is the vote on the candidate's own profile."""
    predictor, _ = split_candidate(candidate)
    if predictor not in CANDIDATES:
        raise ValueError(f"unknown candidate {candidate!r}; choose from {CANDIDATES}")
    key = head_key(candidate)
    head = heads.get(key) if key else None
    if head is None:
        return knn
    return 0.5 * (knn + head) if predictor.startswith("blend") else head


@dataclass
class Choice:
    """The predictor of every source, and how it was chosen.

    Parameters
    ----------
    per_source : dict
        Source -> candidate, for sources validated on their own confirmed cells.
    default : str
        Candidate for every other source.
    scores : dict
        Source (or ``"*unseen*"``) -> candidate -> validated macro accuracy.
    """

    per_source: dict[str, str] = field(default_factory=dict)
    default: str = "knn"
    scores: dict[str, dict[str, float]] = field(default_factory=dict)

    def for_source(self, source: str) -> str:
        """The candidate used for cells of ``source``."""
        return self.per_source.get(str(source), self.default)

    def profile_of(self, source: str) -> str:
        """The search profile the cells of ``source`` are searched with."""
        return split_candidate(self.for_source(source))[1]

    @property
    def used(self) -> set[str]:
        """Every candidate some source uses."""
        return {*self.per_source.values(), self.default}

    @property
    def heads_needed(self) -> set[str]:
        """The heads some source uses (head keys, :func:`head_key`)."""
        return {k for k in map(head_key, self.used) if k}

    @property
    def uses_head(self) -> bool:
        """Whether any source uses a head."""
        return bool(self.heads_needed)


def _macro(truth: np.ndarray, predicted: np.ndarray) -> float:
    classes = np.unique(truth)
    return float(np.mean([np.mean(predicted[truth == c] == c) for c in classes]))


def _predictions(x, labels, train, test, classes, config, profiles, predictors
                 ) -> dict[str, np.ndarray]:
    """Predicted class codes of ``test`` rows by every candidate trained on ``train`` rows
    (``profiles``: profile -> column factors of ``x``)."""
    import faiss

    from cellseek.search.head import HEADS, LinearHead

    code = {c: i for i, c in enumerate(classes)}
    y = np.array([code[c] for c in labels])
    counts = {c: int((y[train] == i).sum()) for i, c in enumerate(classes)}
    k = min(adaptive_k(counts, config.suggest), len(train))
    out = {}
    for profile, factors in profiles.items():
        xp = np.ascontiguousarray(x * factors, dtype=np.float32)
        index = faiss.IndexFlatIP(xp.shape[1])
        index.add(np.ascontiguousarray(xp[train]))
        sims, top = index.search(np.ascontiguousarray(xp[test]), k)
        knn = vote_matrix(sims, np.where(top >= 0, y[train][np.maximum(top, 0)], -1),
                          len(classes), config.suggest.temperature)
        heads = {}
        if len({labels[i] for i in train}) >= 2 and len(predictors) > 1:
            for kind in HEADS:
                fitted = LinearHead.fit(xp[train], [labels[i] for i in train], kind)
                heads[candidate_name(kind, profile)] = fitted.proba(xp[test], classes)
        for pred in predictors:
            name = candidate_name(pred, profile)
            out[name] = combine(name, knn, heads).argmax(axis=1)
    return out


def _folds(labels: np.ndarray, rows: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    fold = np.empty(len(rows), np.int64)
    for c in np.unique(labels[rows]):
        sel = np.flatnonzero(labels[rows] == c)
        rng.shuffle(sel)
        fold[sel] = np.arange(len(sel)) % folds
    return [rows[fold == f] for f in range(folds)]


def _best(scores: dict[str, float], margin: float, order: Sequence[str]) -> str:
    """The most robust candidate that no less robust one beats by more than ``margin``."""
    best = order[0]
    for c in order[1:]:
        if scores[c] > scores[best] + margin:
            best = c
    return best


def choose(x: np.ndarray, labels: Sequence[str], sources: Sequence[str], config,
           *, seed: int = 0, profiles: Mapping[str, np.ndarray] | None = None) -> Choice:
    """Validate the candidates per source on the confirmed cells (see the module docstring).

    Parameters
    ----------
    x : ndarray
        ``(n, d)`` confirmed cells in the search space.
    labels, sources : sequence of str
        Their labels and sources.
    config : Config
        ``learn`` (``head``, ``min_per_class``, ``folds``) and ``suggest`` settings.
    seed : int
        Seed of the folds.
    profiles : mapping, optional
        Search profile -> ``(d,)`` column factors turning ``x`` into that profile's space
        (:func:`cellseek.search.profiles.column_factors`, ``query=False``); default: ``"all"``
        only.

    Returns
    -------
    Choice
    """
    learn = config.learn
    labels = np.asarray(labels, dtype=object).astype(str)
    sources = np.asarray(sources, dtype=object).astype(str)
    classes = sorted(set(labels.tolist()))
    x = np.asarray(x, np.float32)
    profiles = dict(profiles) if profiles else {ALL: np.ones(x.shape[1], np.float32)}
    predictors = ("knn",) if learn.head == "off" else CANDIDATES
    order = candidates(list(profiles), predictors)
    if len(classes) < 2:
        return Choice(default=order[0])
    if learn.head == "on":
        return Choice(default="blend-lda")
    out = Choice(default=order[0])
    eligible = []
    for src in sorted(set(sources.tolist())):
        rows = np.flatnonzero(sources == src)
        counts = {c: int((labels[rows] == c).sum()) for c in set(labels[rows].tolist())}
        usable = [c for c, n in counts.items() if n >= learn.min_per_class]
        if len(usable) < 2:
            continue
        eligible.append(src)
        rows = rows[np.isin(labels[rows], usable)]
        if len(rows) > MAX_VALIDATED:  # enough to decide: a stratified sample is validated
            rows = np.sort(np.random.default_rng(seed).choice(rows, MAX_VALIDATED, replace=False))
            counts = {c: int((labels[rows] == c).sum()) for c in usable}
            usable = [c for c in usable if counts[c] >= 2]
            rows = rows[np.isin(labels[rows], usable)]
            if len(usable) < 2:
                continue
        n_folds = int(min(learn.folds, min(counts[c] for c in usable)))
        truth, pred = [], {c: [] for c in order}
        for val in _folds(labels, rows, n_folds, seed):
            train = np.setdiff1d(np.arange(len(labels)), val)
            got = _predictions(x, labels, train, val, classes, config, profiles, predictors)
            truth.append(labels[val])
            for c in order:
                pred[c].append(np.asarray(classes, dtype=object)[got[c]])
        truth_all = np.concatenate(truth)
        out.scores[src] = {c: _macro(truth_all, np.concatenate(pred[c])) for c in order}
        out.per_source[src] = _best(out.scores[src], learn.margin, order)
    if len(eligible) >= 2:
        per = {c: [] for c in order}
        rng = np.random.default_rng(seed)
        for src in eligible:
            val = np.flatnonzero(sources == src)
            if len(val) > MAX_VALIDATED:
                val = np.sort(rng.choice(val, MAX_VALIDATED, replace=False))
            train = np.flatnonzero(sources != src)
            if len(set(labels[train].tolist())) < 2:
                continue
            got = _predictions(x, labels, train, val, classes, config, profiles, predictors)
            for c in order:
                per[c].append(_macro(labels[val], np.asarray(classes, dtype=object)[got[c]]))
        if per[order[0]]:
            out.scores["*unseen*"] = {c: float(np.mean(v)) for c, v in per.items()}
            out.default = _best(out.scores["*unseen*"], learn.margin, order)
    logger.info("suggester: %s for unseen sources; per source %s", out.default, out.per_source)
    return out
