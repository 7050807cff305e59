"""FAISS inner-product index over fused cell vectors; its type follows the size.

- up to ``IndexConfig.exact_max`` cells: exact search (``IndexFlatIP``);
- up to ``IndexConfig.ivf_min``: HNSW (``IndexHNSWFlat``, graph over the float32 vectors);
- beyond: IVF-PQ (``IndexIVFPQ`` trained on a sample, candidates re-ranked with 8-bit scalar
  quantised or exact vectors, ``IndexRefine``).

Ids are the store's cell ids, so relabelling a cell never touches the index; the index is a
cache that :meth:`CellIndex.rebuild` recreates from the store. The FAISS index holds positions
``0..n-1``; this class maps them to cell ids. Removal is physical for exact search; HNSW and
IVF-PQ mark removed cells and skip them at search (a FAISS ``IDSelectorBitmap``) until they pass
``IndexConfig.compact_fraction`` of the index, when it is rebuilt without them.

Measured figures and the choice of defaults are in ``docs/scaling.md``.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from cellseek.config import IndexConfig
from cellseek.types import Progress

logger = logging.getLogger(__name__)

#: Index kinds, smallest to largest.
KINDS = ("exact", "hnsw", "ivfpq")
#: Confirmed cells added one batch at a time switch the index to the next kind only once they
#: pass its threshold by this factor (a rebuild picks the kind for the size).
SWITCH_GRACE = 1.25
#: Vectors added per progress report during a rebuild (at least; at most 50 reports).
REBUILD_BLOCK = 20_000


def _as_matrix(x: np.ndarray, dim: int, what: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return x


def kind_for_size(n: int, config: IndexConfig) -> str:
    """The index kind :class:`CellIndex` uses for ``n`` cells."""
    if n <= config.exact_max:
        return "exact"
    if n <= config.ivf_min:
        return "hnsw"
    return "ivfpq"


def ivf_layout(n: int, dim: int, config: IndexConfig) -> dict:
    """IVF-PQ parameters for ``n`` vectors of size ``dim``.

    Returns
    -------
    dict
        ``nlist``, ``pq_m``, ``nbits``, ``train_size``.
    """
    nlist = config.ivf_nlist or 2 ** max(4, round(math.log2(4 * math.sqrt(max(n, 1)))))
    while nlist > 16 and 39 * nlist > n:
        nlist //= 2
    pq_m = max(m for m in range(1, min(config.ivf_pq_m, dim) + 1) if dim % m == 0)
    nbits = int(config.ivf_pq_nbits)
    while nbits > 4 and 39 * 2**nbits > n:
        nbits -= 1
    train = int(min(n, max(config.ivf_train_size, 39 * nlist, 39 * 2**nbits)))
    return {"nlist": int(nlist), "pq_m": int(pq_m), "nbits": nbits, "train_size": train}


class CellIndex:
    """Inner-product nearest-neighbour index keyed by cell id.

    Parameters
    ----------
    dim : int
        Vector size.
    config : IndexConfig, optional
        Size thresholds and the parameters of each kind.
    kind : {"auto", "exact", "hnsw", "ivfpq"}
        ``"auto"`` follows the size; any other value pins the kind (benchmarks, tests).

    Attributes
    ----------
    kind : str
        The current kind.
    """

    def __init__(self, dim: int, config: IndexConfig | None = None, *, kind: str = "auto") -> None:
        if kind != "auto" and kind not in KINDS:
            raise ValueError(f"kind must be 'auto' or one of {KINDS}, got {kind!r}")
        self.dim = int(dim)
        self.config = config or IndexConfig()
        self._pinned = kind
        self.kind = "exact" if kind in ("auto", "ivfpq") else kind
        self._index = self._new_index(self.kind)
        self._ids = np.zeros(0, np.int64)  # position -> cell id
        self._alive = np.zeros(0, bool)
        self._n_dead = 0
        self.layout: dict = {}

    # ------------------------------------------------------------------ construction
    def _target_kind(self, n: int) -> str:
        if self._pinned != "auto":
            # IVF-PQ needs training data: below a few hundred vectors search exactly
            return self._pinned if self._pinned != "ivfpq" or n >= 256 else "exact"
        return kind_for_size(n, self.config)

    def _must_switch(self, n: int) -> bool:
        """Whether growing to ``n`` cells one add at a time must change the kind now.

        A kind serves well somewhat past its threshold, and switching means rebuilding (for
        IVF-PQ, training): so confirmed cells switch it only once the size passes the next
        threshold by :data:`SWITCH_GRACE`; a rebuild (a suggestion run, ``cellseek index
        build``) picks the kind for the size. A pinned kind never switches.
        """
        target = self._target_kind(n)
        if target == self.kind:
            return False
        if self._pinned != "auto":
            return True
        threshold = self.config.exact_max if self.kind == "exact" else self.config.ivf_min
        return KINDS.index(target) < KINDS.index(self.kind) or n > threshold * SWITCH_GRACE

    def _new_index(self, kind: str, train: np.ndarray | None = None, n: int = 0):
        import faiss

        cfg = self.config
        if kind == "exact":
            return faiss.IndexFlatIP(self.dim)
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = cfg.hnsw_ef_construction
            index.hnsw.efSearch = cfg.hnsw_ef_search
            return index
        layout = ivf_layout(n, self.dim, cfg)
        self.layout = layout
        quantizer = faiss.IndexFlatIP(self.dim)
        base = faiss.IndexIVFPQ(quantizer, self.dim, layout["nlist"], layout["pq_m"],
                                layout["nbits"], faiss.METRIC_INNER_PRODUCT)
        base.cp.niter = 10  # k-means iterations of the coarse quantiser (FAISS default 25)
        base.pq.cp.niter = 10  # and of each sub-quantiser
        base.nprobe = cfg.ivf_nprobe
        if cfg.ivf_refine == "none":
            index = base
        elif cfg.ivf_refine == "flat":
            index = faiss.IndexRefineFlat(base)
        elif cfg.ivf_refine == "sq8":
            refine = faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_8bit,
                                                faiss.METRIC_INNER_PRODUCT)
            index = faiss.IndexRefine(base, refine)
        else:
            raise ValueError(f"ivf_refine must be 'sq8', 'flat' or 'none', got {cfg.ivf_refine!r}")
        if index is not base:
            index.k_factor = float(cfg.ivf_refine_k_factor)
            index.own_fields = True  # keep ``base`` alive with the refine index
            base.this.disown()
        quantizer.this.disown()
        base.own_fields = True
        if train is not None:
            index.train(train)
        return index

    def __len__(self) -> int:
        return int(self._alive.size - self._n_dead)

    def set_nprobe(self, nprobe: int) -> None:
        """Inverted lists an IVF-PQ search visits (recall against speed); other kinds ignore
        it until they become IVF-PQ."""
        from dataclasses import replace

        import faiss

        self.config = replace(self.config, ivf_nprobe=int(nprobe))
        if self.kind == "ivfpq":
            faiss.extract_index_ivf(self._index).nprobe = int(nprobe)

    def ids(self) -> np.ndarray:
        """Cell ids held by the index, in insertion order."""
        return self._ids[self._alive].copy()

    def vectors(self) -> np.ndarray:
        """All stored vectors in insertion order (a copy).

        Exact for the exact and HNSW kinds and for IVF-PQ with ``ivf_refine="flat"``; the 8-bit
        (``"sq8"``) or PQ (``"none"``) reconstruction otherwise.
        """
        import faiss

        n = self._alive.size
        if len(self) == 0:
            return np.zeros((0, self.dim), np.float32)
        index = self._index
        if self.kind == "ivfpq":
            if hasattr(index, "refine_index"):
                index = index.refine_index
            else:
                faiss.extract_index_ivf(index).make_direct_map()
        out = index.reconstruct_n(0, n)
        return out if self._n_dead == 0 else out[self._alive]

    def nbytes(self) -> int:
        """Size of the FAISS index serialised (about its memory use), plus the id map."""
        import faiss

        return int(faiss.serialize_index(self._index).size) + int(self._ids.nbytes
                                                                   + self._alive.nbytes)

    # ------------------------------------------------------------------ changes
    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add vectors with their cell ids; the kind changes when the size passes a threshold.

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
        if self._must_switch(len(self) + len(vectors)):
            self.rebuild(np.concatenate([self.vectors(), vectors]),
                         np.concatenate([self.ids(), ids]))
            return
        self._index.add(vectors)
        self._ids = np.concatenate([self._ids, ids])
        self._alive = np.concatenate([self._alive, np.ones(len(ids), bool)])

    def remove(self, ids: np.ndarray) -> int:
        """Remove cells by id; returns how many were removed."""
        import faiss

        ids = np.ascontiguousarray(ids, dtype=np.int64)
        hit = np.isin(self._ids, ids) & self._alive
        removed = int(hit.sum())
        if not removed:
            return 0
        if self.kind == "exact":
            positions = np.flatnonzero(hit).astype(np.int64)
            self._index.remove_ids(faiss.IDSelectorBatch(positions))
            self._ids = self._ids[~hit]
            self._alive = self._alive[~hit]
            return removed
        self._alive = self._alive & ~hit
        self._n_dead += removed
        if self._n_dead > self.config.compact_fraction * self._alive.size or len(self) == 0:
            self.rebuild(self.vectors(), self.ids())
        return removed

    def rebuild(self, vectors: np.ndarray, ids: np.ndarray, *, progress=None) -> None:
        """Replace the content, choosing the kind from the size (IVF-PQ is trained here).

        ``progress``, when given, is called with a :class:`~cellseek.types.Progress` before the
        training and after each block of vectors added (stage ``"index"``): an HNSW graph of
        200,000 cells takes minutes on two cores.
        """
        vectors = _as_matrix(vectors, self.dim, "vectors")
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.shape != (len(vectors),):
            raise ValueError(f"{len(vectors)} vectors but ids of shape {ids.shape}")
        n = len(vectors)
        kind = self._target_kind(n)
        train = None
        if kind == "ivfpq":
            size = ivf_layout(n, self.dim, self.config)["train_size"]
            rows = np.sort(np.random.default_rng(0).choice(n, size, replace=False))
            train = vectors[rows]
        if progress is not None:
            progress(Progress(0, n, "index", f"preparing a {kind} index of {n:,} cells"))
        self._index = self._new_index(kind, train, n)
        self.kind = kind
        self._ids = ids.copy()
        self._alive = np.ones(n, bool)
        self._n_dead = 0
        block = n if progress is None else max(REBUILD_BLOCK, -(-n // 50))
        for start in range(0, n, max(block, 1)):
            self._index.add(vectors[start:start + block])
            if progress is not None:
                done = min(start + block, n)
                progress(Progress(done, n, "index", f"{done:,} of {n:,} cells in the {kind} index"))
        logger.info("index rebuilt: %d cells, %s search %s", n, kind,
                    self.layout if kind == "ivfpq" else "")

    # ------------------------------------------------------------------ search
    def _search_params(self, k: int):
        import faiss

        if self._n_dead == 0:
            return None
        self._bitmap = np.packbits(self._alive, bitorder="little")  # alive while searching
        sel = faiss.IDSelectorBitmap(self._alive.size, faiss.swig_ptr(self._bitmap))
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=sel, efSearch=self.config.hnsw_ef_search)
        params = faiss.SearchParametersIVF(sel=sel, nprobe=self.config.ivf_nprobe)
        if hasattr(self._index, "refine_index"):
            return faiss.IndexRefineSearchParameters(
                k_factor=float(self.config.ivf_refine_k_factor), base_index_params=params)
        return params

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
        params = self._search_params(k)
        if params is None:
            sims, pos = self._index.search(queries, k)
        else:
            sims, pos = self._index.search(queries, k, params=params)
        found = pos >= 0
        ids = np.where(found, self._ids[np.where(found, pos, 0)], -1)
        sims = np.where(found, sims, -np.inf).astype(np.float32)
        return sims, ids.astype(np.int64)

    # ------------------------------------------------------------------ persistence
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The index as plain arrays (no FAISS serialisation): see :mod:`cellseek.search.saved`.

        Exact: the vectors. HNSW: the vectors and the graph. IVF-PQ: the coarse centroids, the
        product-quantiser codebooks, the inverted lists (positions and codes) and the re-ranking
        codes. Always the id map and the removal marks.
        """
        from cellseek.search import faiss_arrays

        out = {"ids": self._ids.copy(), "alive": self._alive.copy(),
               "dim": np.array(self.dim, np.int64)}
        out.update(faiss_arrays.export(self._index, self.kind))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], kind: str,
                    config: IndexConfig | None = None) -> CellIndex:
        """Rebuild an index from :meth:`to_arrays` output, validating every array first.

        Raises
        ------
        ValueError
            An array is missing, has the wrong dtype or shape, or holds out-of-range values.
        """
        from cellseek.search import faiss_arrays

        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}")
        dim = int(faiss_arrays.scalar(arrays, "dim", 1, 1 << 16))
        ids = faiss_arrays.array(arrays, "ids", np.int64, ndim=1)
        alive = faiss_arrays.array(arrays, "alive", np.bool_, shape=ids.shape)
        out = cls(dim, config)
        out._index = faiss_arrays.rebuild(arrays, kind, dim, len(ids), out.config)
        out.kind = kind
        out._ids = ids.copy()
        out._alive = alive.copy()
        out._n_dead = int((~alive).sum())
        return out


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
