"""FAISS indexes to plain arrays and back, validating everything that comes back.

An index saved with a reference set travels to other labs; loading it is untrusted input. So it
is never stored as a FAISS serialisation (whose C++ reader trusts its input): it is stored as
plain typed arrays (vectors, graph, codebooks, codes), and :func:`rebuild` checks every dtype,
shape, range and cross-reference (a graph edge or an inverted-list entry pointing outside the
index) before it hands the arrays to FAISS through its array-copy API.
"""

from __future__ import annotations

import math

import numpy as np

#: Largest element count of any one array read back (about 8 GB of float32).
MAX_ELEMENTS = 2_000_000_000


def array(arrays: dict, name: str, dtype, *, ndim: int | None = None,
          shape: tuple | None = None) -> np.ndarray:
    """``arrays[name]`` checked for dtype and shape.

    Raises
    ------
    ValueError
        Missing, another dtype, another shape, or too large.
    """
    if name not in arrays:
        raise ValueError(f"index array {name!r} is missing")
    a = np.asarray(arrays[name])
    if a.dtype != np.dtype(dtype):
        raise ValueError(f"index array {name!r} has dtype {a.dtype}, expected {np.dtype(dtype)}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"index array {name!r} has {a.ndim} dimensions, expected {ndim}")
    if shape is not None and a.shape != tuple(shape):
        raise ValueError(f"index array {name!r} has shape {a.shape}, expected {tuple(shape)}")
    if a.size > MAX_ELEMENTS:
        raise ValueError(f"index array {name!r} is too large ({a.size} elements)")
    return a


def scalar(arrays: dict, name: str, low: int, high: int) -> int:
    """An integer scalar array in ``[low, high]``."""
    a = np.asarray(arrays.get(name, None))
    if a is None or a.shape != () or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"index value {name!r} is missing or not an integer")
    value = int(a)
    if not low <= value <= high:
        raise ValueError(f"index value {name!r} = {value} is outside [{low}, {high}]")
    return value


def _finite(a: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(a).all():
        raise ValueError(f"index array {name!r} holds NaN or infinite values")
    return a


def _vec(v) -> np.ndarray:
    import faiss

    return faiss.vector_to_array(v).copy()


def _set_vec(values: np.ndarray, v, spare: int = 0) -> None:
    """Copy ``values`` into the FAISS vector ``v``, leaving room for ``spare`` more values."""
    import faiss

    _reserve(v, values.size, spare)
    if values.size:
        faiss.copy_array_to_vector(np.ascontiguousarray(values), v)


def spare_rows(n: int) -> int:
    """Rows of room left after a loaded index's per-row arrays, so that the cells confirmed in
    the next session are added without reallocating (and copying) arrays of the whole index:
    at a million cells one such copy is a third of a second per confirmed cell."""
    return max(1024, n // 16)


def _reserve(v, size: int, spare: int) -> None:
    """Make ``v`` hold ``size`` values with capacity for ``spare`` more (a C++ vector keeps
    its capacity when it shrinks)."""
    v.resize(0)
    if spare > 0:
        v.resize(size + spare)
    v.resize(size)


# ---------------------------------------------------------------------------------- export
def export(index, kind: str) -> dict[str, np.ndarray]:
    """The content of a FAISS index built by :class:`cellseek.search.index.CellIndex`."""
    import faiss

    if kind == "exact":
        return {"vectors": index.reconstruct_n(0, index.ntotal) if index.ntotal
                else np.zeros((0, index.d), np.float32)}
    if kind == "hnsw":
        h = index.hnsw
        return {"vectors": index.storage.reconstruct_n(0, index.ntotal) if index.ntotal
                else np.zeros((0, index.d), np.float32),
                "hnsw_offsets": _vec(h.offsets).astype(np.uint64),
                "hnsw_neighbors": _vec(h.neighbors).astype(np.int32),
                "hnsw_levels": _vec(h.levels).astype(np.int32),
                "hnsw_assign_probas": _vec(h.assign_probas).astype(np.float64),
                "hnsw_cum_nneighbor_per_level": _vec(h.cum_nneighbor_per_level).astype(np.int32),
                "hnsw_entry_point": np.array(h.entry_point, np.int64),
                "hnsw_max_level": np.array(h.max_level, np.int64)}
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    lists = ivf.invlists
    sizes = np.array([lists.list_size(i) for i in range(ivf.nlist)], np.int64)
    ids, codes = [], []
    for i, size in enumerate(sizes):
        if size:
            ids.append(faiss.rev_swig_ptr(lists.get_ids(i), int(size)).copy())
            codes.append(faiss.rev_swig_ptr(lists.get_codes(i), int(size) * lists.code_size)
                         .copy())
    out = {"ivf_centroids": faiss.downcast_index(ivf.quantizer).reconstruct_n(0, ivf.nlist),
           "ivf_pq_centroids": _vec(ivf.pq.centroids).astype(np.float32),
           "ivf_pq_m": np.array(ivf.pq.M, np.int64), "ivf_nbits": np.array(ivf.pq.nbits,
                                                                             np.int64),
           "ivf_list_sizes": sizes,
           "ivf_list_ids": np.concatenate(ids) if ids else np.zeros(0, np.int64),
           "ivf_list_codes": np.concatenate(codes) if codes else np.zeros(0, np.uint8),
           "ivf_refine": np.array({"none": 0, "sq8": 1, "flat": 2}[_refine_kind(index)],
                                  np.int64)}
    if hasattr(index, "refine_index"):
        refine = faiss.downcast_index(index.refine_index)
        out["refine_codes"] = _vec(refine.codes).astype(np.uint8)
        if _refine_kind(index) == "sq8":
            out["refine_trained"] = _vec(refine.sq.trained).astype(np.float32)
    return out


def _refine_kind(index) -> str:
    import faiss

    if not hasattr(index, "refine_index"):
        return "none"
    refine = faiss.downcast_index(index.refine_index)
    return "sq8" if isinstance(refine, faiss.IndexScalarQuantizer) else "flat"


# ---------------------------------------------------------------------------------- rebuild
def rebuild(arrays: dict, kind: str, dim: int, n: int, config):
    """A FAISS index of ``kind`` from validated arrays (see :func:`export`)."""
    if kind == "exact":
        return _exact(arrays, dim, n)
    if kind == "hnsw":
        return _hnsw(arrays, dim, n, config)
    return _ivfpq(arrays, dim, n, config)


def _exact(arrays, dim, n):
    import faiss

    vectors = _finite(array(arrays, "vectors", np.float32, shape=(n, dim)), "vectors")
    index = faiss.IndexFlatIP(dim)
    if n:
        index.add(np.ascontiguousarray(vectors))
    return index


def _hnsw(arrays, dim, n, config):
    import faiss

    vectors = _finite(array(arrays, "vectors", np.float32, shape=(n, dim)), "vectors")
    cum = array(arrays, "hnsw_cum_nneighbor_per_level", np.int32, ndim=1)
    levels = array(arrays, "hnsw_levels", np.int32, shape=(n,))
    offsets = array(arrays, "hnsw_offsets", np.uint64, shape=(n + 1,))
    neighbors = array(arrays, "hnsw_neighbors", np.int32, ndim=1)
    probas = array(arrays, "hnsw_assign_probas", np.float64, ndim=1)
    n_levels = len(cum) - 1
    if n_levels < 1 or len(probas) != n_levels or cum[0] != 0 or np.any(np.diff(cum) < 0) \
            or cum[1] < 2 or cum[1] % 2:
        raise ValueError("the HNSW level table is malformed")
    if n and (levels.min() < 1 or levels.max() > n_levels):
        raise ValueError("an HNSW node level is outside the level table")
    expected = np.concatenate([[0], np.cumsum(cum[levels].astype(np.uint64))])
    if not np.array_equal(offsets, expected.astype(np.uint64)) or \
            len(neighbors) != int(offsets[-1]):
        raise ValueError("the HNSW adjacency offsets do not match the node levels")
    if neighbors.size and (neighbors.min() < -1 or neighbors.max() >= n):
        raise ValueError("an HNSW edge points outside the index")
    entry = scalar(arrays, "hnsw_entry_point", -1, max(n - 1, -1))
    max_level = scalar(arrays, "hnsw_max_level", -1, n_levels - 1)
    if n and (entry < 0 or levels[entry] - 1 != max_level):
        raise ValueError("the HNSW entry point is not a node of the top level")
    index = faiss.IndexHNSWFlat(dim, int(cum[1]) // 2, faiss.METRIC_INNER_PRODUCT)
    spare = spare_rows(n)
    storage = faiss.downcast_index(index.storage)
    _set_vec(np.ascontiguousarray(vectors).reshape(-1).view(np.uint8), storage.codes,
             spare * dim * 4)
    storage.ntotal = n
    h = index.hnsw
    _set_vec(cum, h.cum_nneighbor_per_level)
    _set_vec(probas, h.assign_probas)
    _set_vec(levels, h.levels, spare)
    _set_vec(offsets, h.offsets, spare)
    _set_vec(neighbors, h.neighbors, 2 * spare * int(cum[1]))  # most nodes: level 1
    h.entry_point, h.max_level = entry, max_level
    h.efSearch = config.hnsw_ef_search
    h.efConstruction = config.hnsw_ef_construction
    index.ntotal = n
    return index


def _ivfpq(arrays, dim, n, config):
    import faiss

    pq_m = scalar(arrays, "ivf_pq_m", 1, dim)
    nbits = scalar(arrays, "ivf_nbits", 1, 16)
    if dim % pq_m:
        raise ValueError(f"the product quantiser splits {dim} dims into {pq_m} parts")
    centroids = _finite(array(arrays, "ivf_centroids", np.float32, ndim=2), "ivf_centroids")
    nlist = centroids.shape[0]
    if centroids.shape[1] != dim or not 1 <= nlist <= 1 << 22:
        raise ValueError("the coarse centroids have the wrong shape")
    pq = _finite(array(arrays, "ivf_pq_centroids", np.float32, shape=(dim * (1 << nbits),)),
                 "ivf_pq_centroids")
    sizes = array(arrays, "ivf_list_sizes", np.int64, shape=(nlist,))
    if sizes.min(initial=0) < 0 or int(sizes.sum()) != n:
        raise ValueError("the inverted list sizes do not add up to the index size")
    code_size = math.ceil(pq_m * nbits / 8)
    ids = array(arrays, "ivf_list_ids", np.int64, shape=(n,))
    codes = array(arrays, "ivf_list_codes", np.uint8, shape=(n * code_size,))
    if n and (ids.min() < 0 or ids.max() >= n or np.bincount(ids, minlength=n).max() != 1):
        raise ValueError("the inverted lists do not hold each position exactly once")
    refine = {0: "none", 1: "sq8", 2: "flat"}.get(scalar(arrays, "ivf_refine", 0, 2))
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(np.ascontiguousarray(centroids))
    base = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, nbits, faiss.METRIC_INNER_PRODUCT)
    _set_vec(pq, base.pq.centroids)
    base.is_trained = True
    start = 0
    for i, size in enumerate(sizes.tolist()):
        if size:
            lid = np.ascontiguousarray(ids[start:start + size])
            lcode = np.ascontiguousarray(codes[start * code_size:(start + size) * code_size])
            base.invlists.add_entries(i, size, faiss.swig_ptr(lid), faiss.swig_ptr(lcode))
            start += size
    base.ntotal = n
    base.nprobe = config.ivf_nprobe
    base.precompute_table()
    quantizer.this.disown()
    base.own_fields = True
    if refine == "none":
        return base
    if refine == "sq8":
        trained = _finite(array(arrays, "refine_trained", np.float32, shape=(2 * dim,)),
                          "refine_trained")
        store = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit,
                                           faiss.METRIC_INNER_PRODUCT)
        _set_vec(trained, store.sq.trained)
        rcodes = array(arrays, "refine_codes", np.uint8, shape=(n * dim,))
    else:
        store = faiss.IndexFlatIP(dim)
        rcodes = array(arrays, "refine_codes", np.uint8, shape=(n * dim * 4,))
        _finite(rcodes.view(np.float32), "refine_codes")
    store.is_trained = True
    _set_vec(rcodes, store.codes, spare_rows(n) * (rcodes.size // max(n, 1)))
    store.ntotal = n
    index = faiss.IndexRefine(base, store)
    index.k_factor = float(config.ivf_refine_k_factor)
    base.this.disown()
    store.this.disown()
    index.own_fields = True
    return index
