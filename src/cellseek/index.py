"""FAISS inner-product index over fused cell vectors.

Exact (flat) search while the reference set is small enough for interactive exact search, HNSW
beyond ``IndexConfig.exact_max``. Ids are the store's cell ids, so relabelling a cell never touches
the index; the index is a cache that :meth:`CellIndex.rebuild` recreates from the store.
"""

from __future__ import annotations

import logging

import numpy as np

from cellseek.config import IndexConfig

logger = logging.getLogger(__name__)


def _as_matrix(x: np.ndarray, dim: int, what: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return x


class CellIndex:
    """Inner-product nearest-neighbour index keyed by cell id.

    Parameters
    ----------
    dim : int
        Vector size.
    config : IndexConfig, optional
        When to switch from exact to HNSW and the HNSW parameters.
    """

    def __init__(self, dim: int, config: IndexConfig | None = None) -> None:
        self.dim = int(dim)
        self.config = config or IndexConfig()
        self._index = self._new_index(exact=True)
        self.kind = "exact"

    def _new_index(self, *, exact: bool):
        import faiss

        if exact:
            inner = faiss.IndexFlatIP(self.dim)
        else:
            inner = faiss.IndexHNSWFlat(self.dim, self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self.config.hnsw_ef_construction
            inner.hnsw.efSearch = self.config.hnsw_ef_search
        return faiss.IndexIDMap2(inner)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        """Cell ids held by the index, in insertion order."""
        import faiss

        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def vectors(self) -> np.ndarray:
        """All stored vectors in insertion order (a copy)."""
        if len(self) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._index.index.reconstruct_n(0, len(self))

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add vectors with their cell ids; switches to HNSW when the size passes ``exact_max``.

        Parameters
        ----------
        vectors : ndarray
            ``(n, dim)``.
        ids : ndarray
            ``(n,)`` int64 cell ids (not already in the index).
        """
        vectors = _as_matrix(vectors, self.dim, "vectors")
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.shape != (len(vectors),):
            raise ValueError(f"{len(vectors)} vectors but ids of shape {ids.shape}")
        if len(vectors) == 0:
            return
        if self.kind == "exact" and len(self) + len(vectors) > self.config.exact_max:
            self.rebuild(
                np.concatenate([self.vectors(), vectors]), np.concatenate([self.ids(), ids])
            )
            return
        self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        """Remove cells by id; returns how many were removed."""
        import faiss

        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.kind == "exact":
            return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))
        keep = ~np.isin(self.ids(), ids)
        removed = int((~keep).sum())
        if removed:
            self.rebuild(self.vectors()[keep], self.ids()[keep])
        return removed

    def rebuild(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Replace the content, choosing exact or HNSW from the size."""
        vectors = _as_matrix(vectors, self.dim, "vectors")
        exact = len(vectors) <= self.config.exact_max
        self._index = self._new_index(exact=exact)
        self.kind = "exact" if exact else "hnsw"
        logger.info("index rebuilt: %d cells, %s search", len(vectors), self.kind)
        if len(vectors):
            self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar cells of each query.

        Parameters
        ----------
        queries : ndarray
            ``(q, dim)``.
        k : int
            Neighbours per query.

        Returns
        -------
        sims : ndarray
            float32 ``(q, k)``, most similar first (``-inf`` where fewer than k exist).
        ids : ndarray
            int64 ``(q, k)`` cell ids (-1 where fewer than k exist).
        """
        queries = _as_matrix(queries, self.dim, "queries")
        k = int(k)
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        if len(self) == 0 or len(queries) == 0:
            return (
                np.full((len(queries), k), -np.inf, np.float32),
                np.full((len(queries), k), -1, np.int64),
            )
        sims, ids = self._index.search(queries, k)
        sims = np.where(ids >= 0, sims, -np.inf).astype(np.float32)
        return sims, ids.astype(np.int64)


def brute_force_search(
    references: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product search in NumPy (the benchmark's baseline); returns row indices."""
    sims = np.asarray(queries, np.float32) @ np.asarray(references, np.float32).T
    k = min(k, sims.shape[1])
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(sims, part, axis=1)
    order = np.argsort(-top, axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(part, order, axis=1)
