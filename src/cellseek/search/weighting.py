"""Entropy-guided model weights and the fusion of per-model embeddings.

Definition (``docs/method.md``): for every model m, each labelled reference cell looks up its k
nearest labelled neighbours in that model's space alone (itself left out); H_m is the mean Shannon
entropy of their label distributions, divided by log(C) so it lies in [0, 1] whatever the number of
classes C. The weights are ``softmax(-H_m / tau)``. With fewer than two classes they are uniform.

Fusion L2-normalises each model's embedding and scales it by sqrt(w_m) before concatenation, so
the inner product of two fused vectors is ``sum_m w_m cos_m``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

WEIGHTING_MODES = ("uniform", "global_entropy", "per_query_entropy")


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


def label_entropy(counts: np.ndarray, n_classes: int) -> np.ndarray:
    """Normalised Shannon entropy of each row of a count (or weight) matrix.

    Parameters
    ----------
    counts : ndarray
        ``(N, C)`` non-negative.
    n_classes : int
        C, used for the normaliser log(C).

    Returns
    -------
    ndarray
        ``(N,)`` entropies in [0, 1].
    """
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    p = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return h / np.log(n_classes) if n_classes > 1 else np.zeros(len(counts))


def _encode(labels: Sequence) -> tuple[np.ndarray, list]:
    classes, codes = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    return codes.astype(np.int64), list(classes)


def _knn_leave_one_out(
    emb: np.ndarray, query_rows: np.ndarray, k: int, block: int = 1024
) -> np.ndarray:
    """Indices of the k most cosine-similar rows of ``emb`` for each query row, itself excluded."""
    x = l2_normalise(emb)
    out = np.empty((len(query_rows), k), np.int64)
    for start in range(0, len(query_rows), block):
        rows = query_rows[start : start + block]
        sims = x[rows] @ x.T
        sims[np.arange(len(rows)), rows] = -np.inf
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out[start : start + block] = part
    return out


def model_entropies(
    embeddings: Mapping[str, np.ndarray],
    labels: Sequence,
    *,
    k: int = 10,
    max_cells: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """Mean normalised neighbour-label entropy H_m of every model on the labelled set.

    Parameters
    ----------
    embeddings : mapping
        Model name -> ``(N, d_m)`` embeddings of the labelled reference cells.
    labels : sequence
        N class labels.
    k : int
        Neighbours per cell (capped at N - 1).
    max_cells : int
        At most this many cells (a fixed random sample) are used as queries, all N as neighbours;
        keeps the cost linear in N for large reference sets.
    seed : int
        Seed of that sample.

    Returns
    -------
    dict
        Model name -> H_m in [0, 1] (lower = purer neighbourhoods).
    """
    codes, classes = _encode(labels)
    n = len(codes)
    if n < 2 or len(classes) < 2:
        return {name: 0.0 for name in embeddings}
    k = int(min(k, n - 1))
    rows = np.arange(n)
    if n > max_cells:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_cells, replace=False))
    result = {}
    for name, emb in embeddings.items():
        if len(emb) != n:
            raise ValueError(f"model {name!r}: {len(emb)} embeddings for {n} labels")
        nn = _knn_leave_one_out(np.asarray(emb), rows, k)
        counts = np.zeros((len(rows), len(classes)))
        np.add.at(counts, (np.repeat(np.arange(len(rows)), k), codes[nn].ravel()), 1.0)
        result[name] = float(label_entropy(counts, len(classes)).mean())
    return result


def weights_from_entropies(entropies: Mapping[str, float], tau: float = 0.1) -> dict[str, float]:
    """``softmax(-H_m / tau)`` over models, summing to 1."""
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    names = list(entropies)
    h = np.array([entropies[m] for m in names], dtype=np.float64)
    z = np.exp(-(h - h.min()) / tau)
    w = z / z.sum()
    return {m: float(v) for m, v in zip(names, w)}


def uniform_weights(models: Sequence[str]) -> dict[str, float]:
    """Equal weights summing to 1."""
    return {m: 1.0 / len(models) for m in models}


def entropy_weights(
    embeddings: Mapping[str, np.ndarray],
    labels: Sequence,
    *,
    k: int = 10,
    tau: float = 0.1,
    max_cells: int = 2000,
) -> dict[str, float]:
    """Global entropy-guided weights of every model (uniform with fewer than 2 classes).

    See :func:`model_entropies` and :func:`weights_from_entropies`.
    """
    if len(set(map(str, labels))) < 2:
        return uniform_weights(list(embeddings))
    return weights_from_entropies(
        model_entropies(embeddings, labels, k=k, max_cells=max_cells), tau
    )


def fuse(
    embeddings: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    models: Sequence[str] | None = None,
) -> np.ndarray:
    """Concatenate ``sqrt(w_m) * normalise(E_m)`` over models.

    The inner product of two fused vectors equals ``sum_m w_m cos_m``.

    Parameters
    ----------
    embeddings : mapping
        Model name -> ``(N, d_m)``.
    weights : mapping
        Model name -> weight (need not sum to 1; missing models weigh 0).
    models : sequence of str, optional
        Order of the blocks (default: the order of ``embeddings``).

    Returns
    -------
    ndarray
        float32 ``(N, sum_m d_m)``.
    """
    models = list(models or embeddings)
    if not models:
        raise ValueError("fuse needs at least one model")
    blocks = [
        l2_normalise(embeddings[m]) * np.float32(np.sqrt(max(weights.get(m, 0.0), 0.0)))
        for m in models
    ]
    return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)


def per_query_model_weights(
    neighbour_codes: Mapping[str, np.ndarray],
    n_classes: int,
    *,
    tau: float = 0.1,
    prior: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Per-query model weights from the entropy of each model's own neighbours for that query.

    Parameters
    ----------
    neighbour_codes : mapping
        Model name -> ``(Q, k)`` class codes of the query's k nearest neighbours in that model's
        space (-1 for missing).
    n_classes : int
        Number of classes.
    tau : float
        Temperature.
    prior : mapping, optional
        Global weights multiplied in (default uniform).

    Returns
    -------
    dict
        Model name -> ``(Q,)`` weights; at every query they sum to 1 over models.
    """
    names = list(neighbour_codes)
    entropies = []
    for m in names:
        codes = np.asarray(neighbour_codes[m])
        counts = np.zeros((codes.shape[0], n_classes))
        valid = codes >= 0
        rows = np.repeat(np.arange(codes.shape[0]), codes.shape[1]).reshape(codes.shape)
        np.add.at(counts, (rows[valid], codes[valid]), 1.0)
        entropies.append(label_entropy(counts, n_classes))
    h = np.stack(entropies, axis=1)
    logits = -(h - h.min(axis=1, keepdims=True)) / tau
    if prior is not None:
        logits = logits + np.log(np.maximum([prior.get(m, 0.0) for m in names], 1e-12))
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    w = z / z.sum(axis=1, keepdims=True)
    return {m: w[:, i] for i, m in enumerate(names)}
