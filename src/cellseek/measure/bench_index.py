"""Index benchmark on synthetic clustered data: build time, latency, memory, recall@10.

``cellseek bench --index`` calls :func:`main_args`; :func:`run` returns the rows. Also runnable
as ``python -m cellseek.measure.bench_index --sizes 10000 100000 --dim 512``.

The data imitate cell embeddings: ``n_clusters`` (default 1,000) cell "types", each a random
centre on the unit sphere plus a ``local_dim``-dimensional (default 16) random subspace of
within-type variation and a little isotropic noise, normalised to unit length. The queries are
fresh draws from the same distribution. Recall@10 is the mean overlap of the index's top 10
with the exact top 10 (FAISS brute force).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace

import numpy as np

from cellseek.config import IndexConfig

logger = logging.getLogger(__name__)

#: Columns of the printed table.
COLUMNS = ("size", "dim", "kind", "build_s", "ms_query_b1", "ms_query_batch", "index_mb",
           "rss_delta_mb", "recall_at_10", "params")


def clustered_data(
    n: int, dim: int, *, n_clusters: int = 1000, local_dim: int = 16, local_scale: float = 0.7,
    noise: float = 0.3, seed: int = 0, centres=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors drawn around ``n_clusters`` centres on the sphere.

    Parameters
    ----------
    n, dim : int
        How many vectors, and their size.
    n_clusters : int
        Cell "types".
    local_dim : int
        Dimension of each type's subspace of variation.
    local_scale, noise : float
        Norm (roughly) of the within-type variation and of the isotropic noise, relative to
        the unit centre.
    seed : int
    centres : tuple, optional
        ``(centres, bases)`` from an earlier call, to draw queries from the same types.

    Returns
    -------
    data : ndarray
        float32 ``(n, dim)``, unit rows.
    model : tuple
        ``(centres, bases)`` to pass back as ``centres``.
    """
    rng = np.random.default_rng(seed)
    if centres is None:
        c = rng.standard_normal((n_clusters, dim)).astype(np.float32)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        bases = rng.standard_normal((n_clusters, local_dim, dim)).astype(np.float32)
        bases *= np.float32(local_scale / np.sqrt(dim * local_dim))
        centres = (c, bases)
    c, bases = centres
    labels = rng.integers(0, len(c), n)
    out = np.empty((n, dim), np.float32)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(len(c) + 1))
    for k in range(len(c)):
        rows = order[bounds[k] : bounds[k + 1]]
        if rows.size == 0:
            continue
        z = rng.standard_normal((rows.size, bases.shape[1])).astype(np.float32)
        block = c[k] + z @ bases[k]
        block += rng.standard_normal(block.shape).astype(np.float32) * np.float32(
            noise / np.sqrt(dim))
        out[rows] = block
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out, centres


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # pragma: no cover - not Linux
        return 0


def recall_at(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean fraction of the true top k among the found top k."""
    hits = [len(np.intersect1d(f[:k], t[:k])) for f, t in zip(found, truth)]
    return float(np.mean(hits) / k)


def _time_queries(index, queries: np.ndarray, k: int, n_single: int):
    """Seconds per query one at a time and batched, and the batched result ids."""
    index.search(queries[:8], k)  # warm-up
    t0 = time.perf_counter()
    for q in queries[:n_single]:
        index.search(q[None], k)
    single = (time.perf_counter() - t0) / min(n_single, len(queries))
    t0 = time.perf_counter()
    _, found = index.search(queries, k)
    return single, (time.perf_counter() - t0) / len(queries), found


def _params(index) -> str:
    cfg = index.config
    if index.kind == "hnsw":
        return f"HNSW{cfg.hnsw_m},efC={cfg.hnsw_ef_construction},efS={cfg.hnsw_ef_search}"
    if index.kind == "ivfpq":
        lay = index.layout
        return (f"IVF{lay['nlist']},PQ{lay['pq_m']}x{lay['nbits']},refine={cfg.ivf_refine}"
                f"x{cfg.ivf_refine_k_factor},nprobe={cfg.ivf_nprobe},train={lay['train_size']}")
    return "Flat"


def run(
    sizes=(10_000, 100_000, 1_000_000),
    dim: int = 512,
    n_queries: int = 1000,
    *,
    kinds=("auto",),
    k: int = 10,
    n_single: int = 200,
    n_clusters: int = 1000,
    config: IndexConfig | None = None,
    seed: int = 0,
    nprobes=(),
    data_kw: dict | None = None,
) -> list[dict]:
    """Measure :class:`cellseek.search.index.CellIndex` on synthetic clustered data.

    Parameters
    ----------
    sizes : sequence of int
        Reference set sizes.
    dim : int
        Vector size.
    n_queries : int
        Queries for recall and the batched latency.
    kinds : sequence of str
        ``"auto"`` (the kind the size selects) and/or pinned kinds ``"exact"``, ``"hnsw"``,
        ``"ivfpq"``.
    k : int
        Neighbours (recall@k).
    n_single : int
        Queries timed one at a time (batch size 1).
    n_clusters : int
        Cell types of the synthetic data.
    config : IndexConfig, optional
        Index settings (default ``IndexConfig()``).
    seed : int
    nprobes : sequence of int
        Also measure an IVF-PQ index at these ``nprobe`` values (no rebuild; extra rows).
    data_kw : dict, optional
        More options of :func:`clustered_data` (``local_dim``, ``local_scale``, ``noise``).

    Returns
    -------
    list of dict
        One row per (size, kind[, nprobe]) with :data:`COLUMNS` plus ``threads`` and
        ``index_bytes``.
    """
    import faiss

    from cellseek.search.index import CellIndex

    config = config or IndexConfig()
    rows = []
    for size in sizes:
        t0 = time.perf_counter()
        data, model = clustered_data(size, dim, n_clusters=n_clusters, seed=seed,
                                     **(data_kw or {}))
        queries, _ = clustered_data(n_queries, dim, seed=seed + 1, centres=model,
                                    **(data_kw or {}))
        _, truth = faiss.knn(queries, data, k, metric=faiss.METRIC_INNER_PRODUCT)
        logger.info("size %d: data and exact top %d in %.1f s", size, k, time.perf_counter() - t0)
        ids = np.arange(size, dtype=np.int64)
        for kind in kinds:
            rss0 = _rss_bytes()
            t0 = time.perf_counter()
            index = CellIndex(dim, config, kind=kind)
            index.rebuild(data, ids)
            build = time.perf_counter() - t0
            rss = _rss_bytes() - rss0
            nbytes = index.nbytes()
            sweep = [None] + ([p for p in nprobes if p != config.ivf_nprobe]
                              if index.kind == "ivfpq" else [])
            for nprobe in sweep:
                params = _params(index)
                if nprobe is not None:
                    index.set_nprobe(nprobe)
                    params = params.replace(f"nprobe={config.ivf_nprobe}", f"nprobe={nprobe}")
                single, batch, found = _time_queries(index, queries, k, n_single)
                row = {
                    "size": size, "dim": dim, "kind": index.kind, "build_s": round(build, 2),
                    "ms_query_b1": round(single * 1e3, 3),
                    "ms_query_batch": round(batch * 1e3, 4),
                    "index_bytes": nbytes, "index_mb": round(nbytes / 2**20, 1),
                    "rss_delta_mb": round(rss / 2**20, 1),
                    "recall_at_10": round(recall_at(found, truth, k), 4),
                    "params": params, "threads": faiss.omp_get_max_threads(),
                }
                logger.info("bench_index: %s", row)
                rows.append(row)
            del index
        del data
    return rows


def format_table(rows: list[dict]) -> str:
    """Rows as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main_args(sizes=(10_000, 100_000, 1_000_000), dim: int = 512, n_queries: int = 1000, *,
              kinds=("auto",), config: IndexConfig | None = None, **kwargs) -> list[dict]:
    """Run :func:`run`, print a Markdown table and return the rows (``cellseek bench --index``)."""
    rows = run(sizes, dim, n_queries, kinds=kinds, config=config, **kwargs)
    print(format_table(rows))
    if rows:
        print(f"(faiss threads: {rows[0]['threads']}; data: {kwargs.get('n_clusters', 1000)} "
              "clusters on the unit sphere, see cellseek.measure.bench_index)")
    return rows


def _main(argv=None) -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--kinds", nargs="+", default=["auto"])
    parser.add_argument("--nprobe", type=int, default=None)
    parser.add_argument("--ef-search", type=int, default=None)
    parser.add_argument("--refine", default=None)
    parser.add_argument("--k-factor", type=int, default=None)
    parser.add_argument("--nprobes", type=int, nargs="*", default=[],
                        help="also measure IVF-PQ at these nprobe values")
    parser.add_argument("--noise", type=float, default=0.3,
                        help="isotropic noise of the synthetic data (0.3; 1.0 is much harder)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = IndexConfig()
    overrides = {"ivf_nprobe": args.nprobe, "hnsw_ef_search": args.ef_search,
                 "ivf_refine": args.refine, "ivf_refine_k_factor": args.k_factor}
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    rows = main_args(args.sizes, args.dim, args.queries, kinds=tuple(args.kinds), config=cfg,
                     nprobes=tuple(args.nprobes), data_kw={"noise": args.noise})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    _main()
