"""The one suggester: labelled reference cells -> suggestions for any cells.

Everything that turns embeddings into suggested labels goes through here: the
:class:`~cellseek.session.Session` (napari and the CLI), ``cellseek evaluate`` (k-fold, transfer,
ablations), the growth simulation and the whole-field evaluation. Its defaults are read from
:class:`cellseek.config.Config`.

A :class:`Suggester` is *fitted* on labelled reference cells (and, for the source alignment, on
the other cells of their sources and of the query sources, with their current classes):

1. model weights (:mod:`cellseek.search.weighting`; given, or computed from the reference),
2. per-source alignment (:class:`cellseek.search.align.Alignment`),
3. optional per-model PCA (:class:`cellseek.search.reduce.ModelReducer`),
4. the fused index of the reference cells (:class:`cellseek.search.index.CellIndex`),

5. what it learns from the confirmed cells: which search profile (all models with their weights,
   or the robust models alone: :mod:`cellseek.search.profiles`) and which predictor (the kNN vote,
   linear heads: :mod:`cellseek.search.head`) each source uses, validated per source
   (:mod:`cellseek.search.choice`), and the classes' own spacing per profile
   (:mod:`cellseek.search.familiarity`),

and then answers :meth:`Suggester.suggest` for any cells of known sources: the nearest reference
cells (always the neighbours shown), the adaptive similarity-weighted kNN vote
(:mod:`cellseek.search.vote`) or the validated head, and a confidence that falls when the
neighbours are far. The fitted transform is frozen between fits; confirmed cells join and leave
the index incrementally (:meth:`Suggester.add`, :meth:`Suggester.remove`) and the head refits on
the next suggestion.

:func:`predict` is the transductive run: the alignment uses the query cells' own suggestions,
so it fits, suggests and refits ``config.align.iterations`` times.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cellseek.config import Config
from cellseek.search.align import Alignment
from cellseek.search.cellset import CellSet, concat
from cellseek.search.choice import Choice, choose, combine, head_key
from cellseek.search.familiarity import Familiarity
from cellseek.search.head import LinearHead, stratified_cap
from cellseek.search.label_lookup import LabelLookup
from cellseek.search.profiles import ALL, column_factors, profiles_for, split_candidate
from cellseek.search.vote import adaptive_k, suggestions_from_votes, vote_matrix
from cellseek.search.weighting import (
    WEIGHTING_MODES,
    entropy_weights,
    fuse,
    l2_normalise,
    per_query_model_weights,
    uniform_weights,
)
from cellseek.types import Suggestion

logger = logging.getLogger(__name__)


def compute_weights(reference: CellSet, config: Config,
                    models: Sequence[str] | None = None) -> dict[str, float]:
    """Model weights from the labelled reference cells, as ``config.weighting`` says.

    Uniform for ``mode="uniform"``, a single model or fewer than two classes; otherwise the
    global entropy-guided weights (also the prior of ``"per_query_entropy"``).
    """
    models = list(models or reference.models)
    cfg = config.weighting
    if cfg.mode not in WEIGHTING_MODES:
        raise ValueError(f"unknown weighting {cfg.mode!r}")
    labels = reference.labels or []
    if cfg.mode == "uniform" or len(models) == 1 or len(set(labels)) < 2:
        return uniform_weights(models)
    return entropy_weights({m: reference.embeddings[m] for m in models}, labels,
                           k=cfg.k, tau=cfg.tau)


@dataclass
class Votes:
    """The vote of every query cell.

    Parameters
    ----------
    shares : ndarray
        ``(Q, C)`` vote shares (rows sum to 1, or 0 without neighbours).
    classes : list of str
        The C classes, sorted.
    sims, ids : ndarray
        ``(Q, k)`` similarities and cell ids of the nearest reference cells, best first
        (``-inf`` / -1 where missing).
    codes : ndarray
        ``(Q, k)`` class codes of those neighbours (-1 where missing).
    familiarity : ndarray
        ``(Q,)`` familiarity of the best class (:mod:`cellseek.search.familiarity`; 1 when off).
    predictors : list of str
        What produced each row's shares (a :data:`cellseek.search.choice.CANDIDATES` name).
    """

    shares: np.ndarray
    classes: list[str]
    sims: np.ndarray
    ids: np.ndarray
    codes: np.ndarray
    familiarity: np.ndarray | None = None
    predictors: list[str] | None = None

    @property
    def confidence(self) -> np.ndarray:
        """``(Q,)`` best share times familiarity: the suggestion's confidence."""
        best = self.shares.max(axis=1) if self.shares.size else np.zeros(len(self.shares))
        return best * (self.familiarity if self.familiarity is not None else 1.0)

    def suggestions(self, config) -> list[Suggestion]:
        """One :class:`~cellseek.types.Suggestion` per query."""
        return suggestions_from_votes(self.shares, self.classes, config, sims=self.sims,
                                      ids=self.ids, codes=self.codes,
                                      familiarity=self.familiarity, predictors=self.predictors)

    def best(self) -> list[str | None]:
        """The winning class of every query (None without any neighbour)."""
        return [self.classes[int(np.argmax(r))] if r.sum() > 0 else None for r in self.shares]


@dataclass
class TrainSample:
    """The confirmed cells the head and the familiarity learn from (a capped, stratified sample).

    Parameters
    ----------
    ids : ndarray
        Cell ids.
    x : ndarray
        ``(n, d)`` their vectors in the search space.
    labels, sources : list of str
    """

    ids: np.ndarray
    x: np.ndarray
    labels: list[str]
    sources: list[str]

    @classmethod
    def of(cls, fused: np.ndarray, reference: CellSet, cap: int, seed: int = 0) -> TrainSample:
        """At most ``cap`` rows, every class keeping its share (and at least its own cells up to
        ``cap // n_classes``)."""
        rows = stratified_cap(np.asarray(reference.labels, dtype=object), cap, seed)
        return cls(reference.ids[rows].copy(), np.asarray(fused[rows], np.float32),
                   [str(reference.labels[i]) for i in rows],
                   [reference.sources[i] for i in rows])

    def add(self, vectors: np.ndarray, cells: CellSet, cap: int) -> None:
        """Append newly confirmed cells (while under the cap)."""
        room = max(cap - len(self.ids), 0)
        if not room:
            return
        vectors, cells = vectors[:room], cells.subset(np.arange(min(room, len(cells))))
        self.ids = np.concatenate([self.ids, cells.ids])
        self.x = np.concatenate([self.x, np.asarray(vectors, np.float32)])
        self.labels += [str(c) for c in cells.labels]
        self.sources += list(cells.sources)

    def remove(self, ids: np.ndarray) -> None:
        """Drop cells that are no longer confirmed."""
        keep = ~np.isin(self.ids, ids)
        self.ids, self.x = self.ids[keep], self.x[keep]
        self.labels = [lab for lab, k in zip(self.labels, keep) if k]
        self.sources = [s for s, k in zip(self.sources, keep) if k]

    def relabel(self, ids: Sequence[int], labels: Sequence[str]) -> None:
        """Change the labels of cells in the sample."""
        new = dict(zip(map(int, ids), map(str, labels)))
        self.labels = [new.get(int(i), lab) for i, lab in zip(self.ids, self.labels)]


class Suggester:
    """Suggest labels from labelled reference cells (see the module docstring).

    Parameters
    ----------
    config : Config
        Weighting, alignment, index and suggestion settings.
    models : sequence of str
        The models used, in fusion order.
    """

    def __init__(self, config: Config, models: Sequence[str]) -> None:
        self.config = config
        self.models = tuple(models)
        self.weights: dict[str, float] = uniform_weights(self.models)
        self.alignment = Alignment()
        self.reducer = None
        self.index = None
        self.labels: dict[int, str] = {}  # a property: setting it resets the lookup
        self.choice = Choice()
        self.heads: dict[str, LinearHead] = {}
        self.profiles: dict[str, dict[str, float]] = {ALL: dict(self.weights)}
        self.block_sizes: dict[str, int] = {}
        self.familiarities: dict[str, Familiarity] = {}
        self.train_sample: TrainSample | None = None
        self.head_stale = False
        self._ref_unit: dict = {}

    @property
    def familiarity(self) -> Familiarity | None:
        """The familiarity of the ``"all"`` profile (None when off or not fitted)."""
        return self.familiarities.get(ALL)

    def set_profiles(self, block_sizes: Mapping[str, int]) -> None:
        """The search profiles of the current weights (:func:`profiles_for`) and the fused
        vector's block sizes (model -> columns)."""
        self.block_sizes = {m: int(block_sizes[m]) for m in self.models}
        self.profiles = profiles_for(self.models, self.weights,
                                     self.config.learn.robust_models)

    def factors(self, profile: str, *, query: bool) -> np.ndarray | None:
        """Column factors of ``profile`` (:func:`cellseek.search.profiles.column_factors`);
        None for ``"all"`` (nothing to scale)."""
        if profile == ALL or profile not in self.profiles or not self.block_sizes:
            return None
        return column_factors(self.models, self.block_sizes, self.weights,
                              self.profiles[profile], query=query)

    def in_profile(self, x: np.ndarray, profile: str) -> np.ndarray:
        """Vectors of the search space (or the training sample) in ``profile``'s space."""
        f = self.factors(profile, query=False)
        return x if f is None else np.asarray(x * f, np.float32)

    @property
    def labels(self) -> dict[int, str]:
        """Reference cell id -> its class. Change it through :meth:`add`, :meth:`remove`
        and :meth:`relabel` (or assign a new dictionary), which keep the lookup in step."""
        return self._labels

    @labels.setter
    def labels(self, value: dict[int, str]) -> None:
        self._labels = value
        self._lookup: LabelLookup | None = None

    def _label_lookup(self) -> LabelLookup:
        if self._lookup is None:
            self._lookup = LabelLookup(self._labels)
        return self._lookup

    # ------------------------------------------------------------------ fitting
    def fit(self, reference: CellSet, context: CellSet | None = None, *,
            weights: Mapping[str, float] | None = None,
            choice: Choice | None = None, progress=None) -> Suggester:
        """Fit weights, alignment, PCA and the index on labelled reference cells.

        Parameters
        ----------
        reference : CellSet
            Labelled cells (``labels`` set, one per cell).
        context : CellSet, optional
            Other cells of the sources to align (query cells, unlabelled cells of the store),
            with their current classes as ``labels`` (None where unknown). They shape the
            per-source alignment only; they never enter the index.
        weights : mapping, optional
            Model weights to use instead of computing them.
        choice : Choice, optional
            The per-source predictors to use instead of validating them again (e.g. from an
            earlier pass of :func:`predict` on the same reference cells).
        progress : callable, optional
            Called with :class:`~cellseek.types.Progress` reports while the index is built
            (see :meth:`~cellseek.search.index.CellIndex.rebuild`).

        Returns
        -------
        Suggester
            ``self``.
        """
        if reference.labels is None:
            raise ValueError("the reference cells of a suggester need labels")
        reference = reference.select_models(self.models)
        self.weights = dict(weights) if weights is not None else compute_weights(
            reference, self.config, self.models)
        everything = concat([reference, context.select_models(self.models)]) \
            if context is not None and len(context) else reference
        align = self.config.align
        self.alignment = Alignment.fit(align.method, everything.embeddings, everything.sources,
                                       everything.labels, min_count=align.min_count)
        aligned = self.alignment.transform(reference.embeddings, reference.sources)
        self.reducer = self._fit_reducer(aligned)
        self.labels = dict(zip(reference.ids.tolist(), map(str, reference.labels)))
        from cellseek.search.index import CellIndex

        fused = self._fuse(aligned)
        reduced = self.reducer.transform(aligned) if self.reducer is not None else aligned
        self.set_profiles({m: np.shape(reduced[m])[1] for m in self.models})
        self.index = CellIndex(fused.shape[1], self.config.index)
        if len(reference):
            self.index.rebuild(fused, reference.ids, progress=progress)
        self._fit_per_model(aligned, reference.ids)
        self._fit_learned(TrainSample.of(fused, reference, self.config.learn.max_train), choice)
        return self

    def _fit_learned(self, sample: TrainSample, choice: Choice | None = None) -> None:
        """The per-source choice, the head and the familiarity from the confirmed cells."""
        learn = self.config.learn
        self.train_sample = sample
        if choice is None:
            factors = {p: (self.factors(p, query=False) if p != ALL
                           else np.ones(sample.x.shape[1], np.float32)) for p in self.profiles}
            choice = choose(sample.x, sample.labels, sample.sources, self.config,
                            profiles=factors)
        self.choice = choice
        self.heads = {}
        self.head_stale = self.choice.uses_head
        used = {split_candidate(c)[1] for c in self.choice.used} | {ALL}
        self.familiarities = {
            p: Familiarity.fit(self.in_profile(sample.x, p), sample.labels,
                               quantile=learn.familiarity_quantile)
            for p in sorted(used) if p in self.profiles
        } if learn.familiarity and len(sample.labels) else {}

    def current_heads(self) -> dict[str, LinearHead]:
        """The heads some source uses (head key -> head), refitted when confirmed cells changed
        since."""
        if self.head_stale and self.train_sample is not None:
            labels = self.train_sample.labels
            heads = {}
            if len(set(labels)) >= 2:
                for key in sorted(self.choice.heads_needed):
                    kind, profile = split_candidate(key)
                    heads[key] = LinearHead.fit(self.in_profile(self.train_sample.x, profile),
                                                labels, kind)
            self.heads = heads
            self.head_stale = False
        return self.heads

    def _fit_reducer(self, aligned: Mapping[str, np.ndarray]):
        """Per-model PCA of the models wider than ``config.index.pca_components`` dims (the
        others pass through unchanged), with at most one component fewer than the reference
        cells."""
        from cellseek.search.reduce import ModelReducer

        n = int(self.config.index.pca_components)
        rows = len(next(iter(aligned.values())))
        wide = {m: aligned[m] for m in self.models if np.shape(aligned[m])[1] > n}
        if n <= 0 or rows < 2 or not wide:
            return None
        return ModelReducer.fit(wide, min(n, rows - 1))

    def _fit_per_model(self, aligned: Mapping[str, np.ndarray], ids: np.ndarray) -> None:
        """Per-model unit vectors for ``per_query_entropy`` (exact search per model)."""
        self._ref_unit = {}
        if self.config.weighting.mode != "per_query_entropy" or len(self.models) < 2:
            return
        blocks = self.reducer.transform(aligned) if self.reducer is not None else aligned
        self._ref_unit = {m: (ids.copy(), l2_normalise(blocks[m])) for m in self.models}

    # ------------------------------------------------------------------ vectors
    def knows(self, sources: Sequence[str]) -> bool:
        """Whether the fitted alignment covers these sources (else refit with their cells)."""
        return self.alignment.knows(sources)

    def _fuse(self, aligned: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.reducer is not None:
            aligned = self.reducer.transform(aligned)
        return fuse(aligned, self.weights, self.models)

    def vectors(self, cells: CellSet) -> np.ndarray:
        """Fused search vectors of cells (aligned, reduced, weighted): the space suggestions use.

        Raises
        ------
        cellseek.search.align.UnknownSourceError
            A source the fitted alignment does not know.
        """
        cells = cells.select_models(self.models)
        return self._fuse(self.alignment.transform(cells.embeddings, cells.sources))

    # ------------------------------------------------------------------ incremental updates
    def add(self, cells: CellSet) -> None:
        """Add labelled cells to the index (the fitted transform is kept)."""
        if self.index is None:
            raise RuntimeError("fit the suggester first")
        if not len(cells):
            return
        vectors = self.vectors(cells)
        self.index.add(vectors, cells.ids)
        self._labels.update(zip(cells.ids.tolist(), map(str, cells.labels)))
        if self._lookup is not None:
            self._lookup.set(cells.ids.tolist(), list(map(str, cells.labels)))
        if self.train_sample is not None:
            self.train_sample.add(vectors, cells, self.config.learn.max_train)
            self.head_stale = self.choice.uses_head
        if self._ref_unit:
            aligned = self.alignment.transform(cells.select_models(self.models).embeddings,
                                               cells.sources)
            blocks = self.reducer.transform(aligned) if self.reducer is not None else aligned
            for m in self.models:
                ids, unit = self._ref_unit[m]
                self._ref_unit[m] = (np.concatenate([ids, cells.ids]),
                                     np.concatenate([unit, l2_normalise(blocks[m])]))

    def remove(self, ids: Sequence[int]) -> None:
        """Remove cells from the index."""
        ids = np.asarray(list(ids), np.int64)
        if self.index is not None and len(ids):
            self.index.remove(ids)
        for c in ids.tolist():
            self._labels.pop(c, None)
        if self._lookup is not None:
            self._lookup.drop(ids.tolist())
        if self.train_sample is not None and len(ids):
            self.train_sample.remove(ids)
            self.head_stale = self.choice.uses_head
        for m, (ref_ids, unit) in list(self._ref_unit.items()):
            keep = ~np.isin(ref_ids, ids)
            self._ref_unit[m] = (ref_ids[keep], unit[keep])

    def relabel(self, ids: Sequence[int], labels: Sequence[str]) -> None:
        """Change the label of cells already in the index."""
        self._labels.update(zip(map(int, ids), map(str, labels)))
        if self._lookup is not None:
            self._lookup.set(list(map(int, ids)), list(map(str, labels)))
        if self.train_sample is not None and len(ids):
            self.train_sample.relabel(ids, labels)
            self.head_stale = self.choice.uses_head

    # ------------------------------------------------------------------ suggestions
    @property
    def classes(self) -> list[str]:
        """Sorted classes of the reference cells."""
        return list(self._label_lookup().class_counts())

    def codes_of(self, ids: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """Class code (index into ``classes``) of each reference id; -1 for unknown ids."""
        return self._label_lookup().codes_of(ids, classes)

    def k(self) -> int:
        """The adaptive k of the current reference set."""
        return adaptive_k(self._label_lookup().class_counts(), self.config.suggest)

    def neighbours(self, cells: CellSet, k: int,
                   vectors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest reference cells of each cell, the cell itself excluded.

        Parameters
        ----------
        cells : CellSet
        k : int
        vectors : ndarray, optional
            The cells' search vectors when already computed (:meth:`vectors`).

        Returns
        -------
        sims, ids : ndarray
            ``(Q, k)``, best first; ``-inf`` / -1 where fewer than k exist.
        """
        queries = self.vectors(cells) if vectors is None else vectors
        profiles = [self.choice.profile_of(src) for src in cells.sources]
        if all(p == ALL for p in profiles):
            return _without_self(*self.index.search(queries, k + 1), cells.ids, k)
        sims = np.full((len(cells), k), -np.inf, np.float32)
        ids = np.full((len(cells), k), -1, np.int64)
        for profile in sorted(set(profiles)):
            rows = np.flatnonzero(np.asarray(profiles) == profile)
            f = self.factors(profile, query=True)
            q = queries[rows] if f is None else np.asarray(queries[rows] * f, np.float32)
            s_, i_ = _without_self(*self.index.search(q, k + 1), cells.ids[rows], k)
            sims[rows, : s_.shape[1]], ids[rows, : i_.shape[1]] = s_, i_
        return sims, ids

    def votes(self, cells: CellSet, k: int | None = None) -> Votes:
        """The adaptive kNN vote of every cell (see :class:`Votes`)."""
        classes = self.classes
        k = k or self.k()
        q = len(cells)
        if k == 0 or not q:
            empty = np.zeros((q, 0))
            return Votes(np.zeros((q, len(classes))), classes, empty, empty.astype(np.int64),
                         empty.astype(np.int64))
        vectors = self.vectors(cells)
        sims, ids = self.neighbours(cells, k, vectors)
        codes = self.codes_of(ids, classes)
        code_of = {c: i for i, c in enumerate(classes)}
        temperature = self.config.suggest.temperature
        predictors = [self.choice.for_source(s) for s in cells.sources]
        profiles = np.asarray([split_candidate(p)[1] for p in predictors], dtype=object)
        if self._ref_unit:
            shares = np.zeros((q, len(classes)))
            for profile in sorted(set(profiles.tolist())):
                rows = np.flatnonzero(profiles == profile)
                shares[rows] = self._per_query_shares(cells.subset(rows), k, code_of,
                                                      len(classes), profile)
        else:
            shares = vote_matrix(sims, codes, len(classes), temperature)
        if any(split_candidate(p)[0] != "knn" for p in predictors):
            heads = self.current_heads()
            for name in sorted(set(predictors)):
                rows = np.flatnonzero(np.asarray(predictors) == name)
                key = head_key(name)
                if key is None or key not in heads:
                    continue
                x = self.in_profile(vectors[rows], split_candidate(name)[1])
                shares[rows] = combine(name, shares[rows], {key: heads[key].proba(x, classes)})
            predictors = [p if head_key(p) is None or head_key(p) in heads
                          else "knn" if split_candidate(p)[1] == ALL
                          else f"knn@{split_candidate(p)[1]}" for p in predictors]
        familiarity = None
        if self.familiarities:
            best = shares.argmax(axis=1)
            of_best = np.where(codes == best[:, None], sims, -np.inf).max(axis=1) \
                if sims.size else np.full(q, -np.inf)
            named = [classes[b] if s > 0 else None for b, s in zip(best, shares.sum(axis=1))]
            familiarity = np.ones(q)
            for profile in sorted(set(profiles.tolist())):
                fam = self.familiarities.get(profile)
                if fam is None:
                    continue
                rows = np.flatnonzero(profiles == profile)
                familiarity[rows] = fam.factor([named[i] for i in rows], of_best[rows])
        return Votes(shares, classes, sims, ids, codes, familiarity, predictors)

    def _per_query_shares(self, cells: CellSet, k: int, code_of: dict, n_classes: int,
                          profile: str = ALL):
        """Per-model votes weighted by the entropy of each model's own neighbours per query
        (over the models the profile uses)."""
        aligned = self.alignment.transform(cells.select_models(self.models).embeddings,
                                           cells.sources)
        blocks = self.reducer.transform(aligned) if self.reducer is not None else aligned
        temperature = self.config.suggest.temperature
        per_shares, per_codes = {}, {}
        models = [m for m in self.models if self.profiles.get(profile, self.weights).get(m, 0) > 0]
        for m in models or self.models:
            ref_ids, unit = self._ref_unit[m]
            sims = l2_normalise(blocks[m]) @ unit.T
            sims[ref_ids[None, :] == cells.ids[:, None]] = -np.inf
            kk = min(k, unit.shape[0])
            top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            s = np.take_along_axis(sims, top, axis=1)
            codes = self.codes_of(ref_ids[top], list(code_of))
            codes = np.where(np.isfinite(s), codes, -1)
            per_codes[m] = codes
            per_shares[m] = vote_matrix(s, codes, n_classes, temperature)
        w = per_query_model_weights(per_codes, n_classes, tau=self.config.weighting.tau)
        return sum(w[m][:, None] * per_shares[m] for m in per_shares)

    def suggest(self, cells: CellSet, k: int | None = None) -> list[Suggestion]:
        """One :class:`~cellseek.types.Suggestion` per cell (with its neighbours)."""
        return self.votes(cells, k).suggestions(self.config.suggest)


def _without_self(sims: np.ndarray, ids: np.ndarray, query_ids: np.ndarray, k: int):
    """Drop each query's own id from its neighbours and keep the best ``k``."""
    own = ids == np.asarray(query_ids, np.int64)[:, None]
    sims = np.where(own, -np.inf, sims)
    ids = np.where(own, -1, ids)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), np.take_along_axis(ids, order, axis=1)


@dataclass
class Prediction:
    """What :func:`predict` found.

    Parameters
    ----------
    suggestions : list of Suggestion
        One per query cell.
    votes : Votes
        The final vote.
    suggester : Suggester
        The suggester of the final pass (fitted, reusable for clicks on the same cells).
    """

    suggestions: list[Suggestion]
    votes: Votes
    suggester: Suggester


def predict(reference: CellSet, query: CellSet, config: Config | None = None, *,
            models: Sequence[str] | None = None, weights: Mapping[str, float] | None = None,
            background: CellSet | None = None, passes: int | None = None) -> Prediction:
    """Suggest labels for query cells from labelled reference cells (transductive alignment).

    With source alignment on, each pass fits the alignment on the reference cells (confirmed
    labels), the query cells (their suggestion of the previous pass; their ``labels`` at the
    first pass, which must therefore not be ground truth — pass ``query.with_labels(None)``) and
    ``background`` cells, then suggests. ``config.align.iterations`` passes (1 without
    alignment).

    Parameters
    ----------
    reference : CellSet
        Labelled cells.
    query : CellSet
        Cells to suggest labels for (their ``labels`` seed the first pass's alignment).
    config : Config, optional
    models : sequence of str, optional
        Models to use (default: the reference's).
    weights : mapping, optional
        Model weights (default: computed from the reference).
    background : CellSet, optional
        More cells of the sources involved (e.g. the rest of a store), with their current
        classes as labels, for the alignment only.
    passes : int, optional
        Override of the number of passes.

    Returns
    -------
    Prediction
    """
    config = config or Config()
    models = tuple(models or reference.models)
    if passes is None:
        passes = config.align.iterations if config.align.method != "none" else 1
    classes = list(query.labels) if query.labels is not None else [None] * len(query)
    suggester = Suggester(config, models)
    if weights is None:
        weights = compute_weights(reference, config, models)
    votes, choice = None, None
    for _ in range(max(int(passes), 1)):
        context = concat([query.with_labels(classes), background]) if background is not None \
            else query.with_labels(classes)
        suggester = Suggester(config, models).fit(reference, context, weights=weights,
                                                  choice=choice)
        choice = suggester.choice
        votes = suggester.votes(query)
        classes = votes.best()
    return Prediction(votes.suggestions(config.suggest), votes, suggester)
