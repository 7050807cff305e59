"""Adaptive kNN vote: neighbours -> suggested label, confidence, entropy; the review queue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cellseek.config import SuggestConfig
from cellseek.search.weighting import label_entropy
from cellseek.types import Neighbour, Suggestion


def adaptive_k(class_counts: Mapping[str, int], config: SuggestConfig | None = None) -> int:
    """Choose k from the reference set.

    k grows with the reference set as ``round(sqrt(n))``, is kept within
    ``[k_min, k_max]`` and never exceeds what the smallest class can fill (but is at least
    ``k_min``, so confidences stay graded), so a rare class can still win a vote; the
    similarity weighting lets a single very close neighbour outvote farther ones.

    Parameters
    ----------
    class_counts : mapping
        Class -> number of labelled reference cells.
    config : SuggestConfig, optional
        Bounds.

    Returns
    -------
    int
        k (0 when there is no reference cell).
    """
    config = config or SuggestConfig()
    counts = [int(c) for c in class_counts.values() if c > 0]
    if not counts:
        return 0
    n = sum(counts)
    k = int(np.clip(round(np.sqrt(n)), config.k_min, config.k_max))
    return int(max(1, min(k, max(min(counts), config.k_min), n)))


def vote_matrix(
    sims: np.ndarray, codes: np.ndarray, n_classes: int, temperature: float
) -> np.ndarray:
    """Similarity-weighted vote shares of every query over classes.

    Parameters
    ----------
    sims : ndarray
        ``(q, k)`` similarities, best first (``-inf`` for missing neighbours).
    codes : ndarray
        ``(q, k)`` class codes of the neighbours (-1 for missing).
    n_classes : int
        Number of classes.
    temperature : float
        Softness of the similarity weighting.

    Returns
    -------
    ndarray
        ``(q, n_classes)`` shares summing to 1 per query with any neighbour (else 0).
    """
    sims = np.asarray(sims, np.float64)
    codes = np.asarray(codes)
    valid = (codes >= 0) & np.isfinite(sims)
    top = np.where(valid, sims, -np.inf).max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    weights = np.where(valid, np.exp((np.where(valid, sims, 0.0) - top) / temperature), 0.0)
    shares = np.zeros((sims.shape[0], n_classes))
    rows = np.broadcast_to(np.arange(sims.shape[0])[:, None], codes.shape)
    np.add.at(shares, (rows[valid], codes[valid]), weights[valid])
    totals = shares.sum(axis=1, keepdims=True)
    return np.divide(shares, totals, out=np.zeros_like(shares), where=totals > 0)


def suggestions_from_votes(
    shares: np.ndarray,
    classes: Sequence[str],
    config: SuggestConfig | None = None,
    *,
    sims: np.ndarray | None = None,
    ids: np.ndarray | None = None,
    codes: np.ndarray | None = None,
    familiarity: np.ndarray | None = None,
    predictors: Sequence[str] | None = None,
) -> list[Suggestion]:
    """Build one :class:`~cellseek.types.Suggestion` per row of a vote-share matrix.

    ``sims``, ``ids`` and ``codes`` (all ``(q, k)``), when given, fill the neighbour list.
    ``familiarity`` (``(q,)``, default 1) scales each confidence
    (:mod:`cellseek.search.familiarity`); ``predictors`` names what produced each row's shares.
    """
    config = config or SuggestConfig()
    classes = list(classes)
    entropy = label_entropy(shares, max(len(classes), 2)) * np.log(max(len(classes), 2))
    out = []
    for q, row in enumerate(shares):
        if row.sum() <= 0:
            out.append(Suggestion(label=None, confidence=0.0, entropy=0.0))
            continue
        best = int(np.argmax(row))
        fam = float(familiarity[q]) if familiarity is not None else 1.0
        conf = float(row[best]) * fam
        neighbours: tuple[Neighbour, ...] = ()
        if ids is not None and sims is not None and codes is not None:
            neighbours = tuple(
                Neighbour(int(i), classes[int(c)], float(s))
                for i, c, s in zip(ids[q], codes[q], sims[q])
                if i >= 0 and c >= 0
            )
        out.append(
            Suggestion(
                label=classes[best] if conf >= config.threshold else None,
                confidence=conf,
                entropy=float(entropy[q]),
                votes={classes[c]: float(row[c]) for c in np.flatnonzero(row)},
                neighbours=neighbours,
                best_label=classes[best],
                familiarity=fam,
                predictor=predictors[q] if predictors is not None else "knn",
            )
        )
    return out


def suggest_from_neighbours(
    sims: np.ndarray,
    ids: np.ndarray,
    id_to_label: Mapping[int, str],
    config: SuggestConfig | None = None,
    *,
    classes: Sequence[str] | None = None,
) -> list[Suggestion]:
    """Vote over index search results.

    Parameters
    ----------
    sims, ids : ndarray
        ``(q, k)`` from :meth:`cellseek.search.index.CellIndex.search`.
    id_to_label : mapping
        Cell id -> confirmed label of every reference cell; neighbours without a label are
        ignored.
    config : SuggestConfig, optional
        Threshold and temperature.
    classes : sequence of str, optional
        Class order (default: sorted labels of ``id_to_label``).

    Returns
    -------
    list of Suggestion
    """
    config = config or SuggestConfig()
    classes = list(classes) if classes is not None else sorted(set(id_to_label.values()))
    code_of = {c: i for i, c in enumerate(classes)}
    ids = np.asarray(ids)
    codes = np.array(
        [[code_of.get(id_to_label.get(int(i), ""), -1) for i in row] for row in ids],
        dtype=np.int64,
    ).reshape(ids.shape)
    shares = vote_matrix(sims, codes, len(classes), config.temperature)
    return suggestions_from_votes(shares, classes, config, sims=sims, ids=ids, codes=codes)


def review_queue(suggestions: Sequence[Suggestion]) -> np.ndarray:
    """Order in which to review cells: abstained first, then by rising confidence.

    Parameters
    ----------
    suggestions : sequence of Suggestion

    Returns
    -------
    ndarray
        Indices into ``suggestions``.
    """
    keys = np.array(
        [(0 if s.uncertain else 1, s.confidence, -s.entropy) for s in suggestions],
        dtype=[("abstained", "i4"), ("confidence", "f8"), ("entropy", "f8")],
    )
    return np.argsort(keys, order=("abstained", "confidence", "entropy"), kind="stable")
