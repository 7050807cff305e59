"""Confidence that falls when the neighbours are far.

A vote share alone says which class wins among the nearest reference cells, not whether those
cells are near: a cell unlike anything confirmed still gets a share of 1.00 when all its (far)
neighbours agree. Familiarity measures the distance against the reference set's own spacing:
for every class, how similar a confirmed cell is to its nearest fellow of the same class
(leave-one-out). A query whose nearest cell of its suggested class is as similar as most
confirmed cells are to theirs is familiar (1); the factor falls linearly to 0 as the similarity
drops below the class's low quantile, reaching 0 at two spreads (median - low quantile) below it.
The suggestion's confidence is its vote share (or head probability) times its familiarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Familiarity:
    """Per-class spacing of the reference cells.

    Parameters
    ----------
    low, spread : dict
        Class -> the low quantile of the leave-one-out same-class nearest-neighbour
        similarity, and (median - low), floored.
    default_low, default_spread : float
        The same over all classes, for classes with fewer than two cells.
    """

    low: dict[str, float] = field(default_factory=dict)
    spread: dict[str, float] = field(default_factory=dict)
    default_low: float = -1.0
    default_spread: float = 1.0

    @classmethod
    def fit(cls, x: np.ndarray, labels: Sequence[str], *, quantile: float = 0.05,
            max_per_class: int = 500, min_spread: float = 0.01, seed: int = 0) -> Familiarity:
        """Measure the spacing of every class (at most ``max_per_class`` probe cells each).

        Parameters
        ----------
        x : ndarray
            ``(n, d)`` reference vectors in the search space (inner product = similarity).
        labels : sequence of str
        quantile : float
            The low quantile of the same-class nearest-neighbour similarity.
        max_per_class : int
            Probe cells per class (their nearest fellow is searched among all of the class).
        min_spread : float
            Floor of the spread.
        seed : int
            Seed of the probe sample.
        """
        x = np.asarray(x, np.float32)
        labels = np.asarray(labels, dtype=object)
        rng = np.random.default_rng(seed)
        out, pooled = cls(), []
        for c in sorted(set(labels.tolist())):
            rows = np.flatnonzero(labels == c)
            if len(rows) < 2:
                continue
            probe = rows if len(rows) <= max_per_class else rng.choice(rows, max_per_class,
                                                                        replace=False)
            sims = x[probe] @ x[rows].T
            sims[np.arange(len(probe)), np.searchsorted(rows, probe)] = -np.inf
            nearest = sims.max(axis=1)
            lo, mid = np.quantile(nearest, quantile), np.median(nearest)
            out.low[str(c)] = float(lo)
            out.spread[str(c)] = float(max(mid - lo, min_spread))
            pooled.append(nearest)
        if pooled:
            allv = np.concatenate(pooled)
            lo, mid = np.quantile(allv, quantile), np.median(allv)
            out.default_low, out.default_spread = float(lo), float(max(mid - lo, min_spread))
        return out

    def factor(self, best: Sequence[str | None], similarity: np.ndarray) -> np.ndarray:
        """Familiarity in [0, 1] of each query.

        Parameters
        ----------
        best : sequence
            The suggested class of each query (None: no suggestion, factor 0).
        similarity : ndarray
            ``(q,)`` similarity of each query to its nearest reference cell of that class
            (``-inf`` when none is among its neighbours).
        """
        similarity = np.asarray(similarity, np.float64)
        out = np.zeros(len(similarity))
        for i, (c, s) in enumerate(zip(best, similarity)):
            if c is None or not np.isfinite(s):
                continue
            lo = self.low.get(c, self.default_low)
            spread = self.spread.get(c, self.default_spread)
            out[i] = np.clip(1.0 - (lo - s) / (2.0 * spread), 0.0, 1.0)
        return out
