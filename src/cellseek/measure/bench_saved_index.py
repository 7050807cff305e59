"""``cellseek bench --saved-index``: opening a large store with its saved search index (issue 14).

Builds a real reference store of ``n`` confirmed cells (one synthetic model of ``dim`` values,
clustered like cell embeddings: :func:`cellseek.measure.bench_index.clustered_data`) plus a few
unconfirmed query cells, lets a :class:`~cellseek.session.Session` build and save the index
(IVF-PQ at a million cells, HNSW at 200k), then measures what a user waits for:

- opening the store in a new session and getting the first suggestion (saved index loaded);
- the same with the saved index dropped (the rebuild every opening paid before);
- confirming one more cell (label written, index updated; then found by its own vector);
- the saved state's size per cell and how much the store file grew.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from cellseek.config import AlignConfig, Config
from cellseek.types import Cell

logger = logging.getLogger(__name__)

MODEL = "bench"


def build_store(path, n: int, dim: int, *, n_queries: int = 1000, n_classes: int = 20,
                chunk: int = 50_000) -> list[int]:
    """A store of ``n`` confirmed cells and ``n_queries`` unconfirmed ones; returns the query
    cell ids."""
    from cellseek.measure.bench_index import clustered_data
    from cellseek.store import ReferenceStore

    data, model = clustered_data(n + n_queries, dim, seed=1)
    types = np.random.default_rng(2).integers(0, 1000, n + n_queries)  # only for the labels
    query_ids: list[int] = []
    with ReferenceStore.create(path, {MODEL: dim}) as store:
        image_id = store.add_image("bench.tif", "0" * 64, source="bench")
        for start in range(0, n + n_queries, chunk):
            stop = min(start + chunk, n + n_queries)
            cells = [Cell(label=i + 1, bbox=(0, 0, 1, 1), centroid=(0.5, 0.5), area=1)
                     for i in range(start, stop)]
            ids = store.add_cells(image_id, cells, {MODEL: data[start:stop]})
            labelled = [int(c) for c, i in zip(ids, range(start, stop)) if i < n]
            if labelled:
                store.set_labels(labelled, [f"type{types[i] % n_classes}" for i in
                                            range(start, start + len(labelled))],
                                 source="import")
            query_ids += [int(c) for c, i in zip(ids, range(start, stop)) if i >= n]
    del data, model
    return query_ids


def run(n: int = 1_000_000, dim: int = 512, *, folder=None) -> dict:
    """Build, save, reopen and time; see the module docstring."""
    from cellseek.session import Session

    config = Config(align=AlignConfig(method="balanced"))
    tmp = tempfile.TemporaryDirectory(dir=folder)
    path = Path(tmp.name) / "bench.cellseek"
    out: dict = {"cells": n, "dim": dim}
    t0 = time.perf_counter()
    queries = build_store(path, n, dim)
    out["store_build_s"] = time.perf_counter() - t0
    out["store_mb_without_index"] = os.path.getsize(path) / 1e6
    with Session.open(path, config) as session:
        t0 = time.perf_counter()
        index = session.rebuild_index()
        out["index_build_and_save_s"] = time.perf_counter() - t0
        out["kind"] = index.kind
        info = session.store.search_state_info()
    out["saved_index_mb"] = info["bytes"] / 1e6
    out["saved_bytes_per_cell"] = info["bytes"] / n
    out["store_mb_with_index"] = os.path.getsize(path) / 1e6
    # a new session: open, first suggestion from the saved index
    t0 = time.perf_counter()
    with Session.open(path, config) as session:
        first = session.suggest_cells(queries[:1])[0]
        out["open_first_suggestion_s"] = time.perf_counter() - t0
        out["origin"] = session.index_origin
        out["first_neighbours"] = len(first.neighbours)
        # confirming one more cell
        cell = queries[1]
        t0 = time.perf_counter()
        session.label([cell], ["type1"])
        out["confirm_one_cell_ms"] = 1000 * (time.perf_counter() - t0)
        vec = session.fused_vectors([cell])
        sims, ids = session.index().search(vec, 1)
        out["confirmed_cell_found"] = bool(ids[0, 0] == cell)
        out["index_size_after"] = len(session.index())
    from cellseek.store import ReferenceStore

    with ReferenceStore.open(path) as store:
        store.drop_search_state()
    t0 = time.perf_counter()
    with Session.open(path, config) as session:
        session.suggest_cells(queries[:1])
        out["open_first_suggestion_rebuild_s"] = time.perf_counter() - t0
        session.drop_saved_index()
    tmp.cleanup()
    return out


def format_result(out: dict) -> str:
    """The result as readable lines."""
    return "\n".join([
        f"saved index, {out['cells']:,} confirmed cells x {out['dim']} dims ({out['kind']}):",
        f"  build the store {out['store_build_s']:.0f} s; build + save the index "
        f"{out['index_build_and_save_s']:.0f} s",
        f"  open + first suggestion: {out['open_first_suggestion_s']:.2f} s from the saved index "
        f"({out['origin']}), {out['open_first_suggestion_rebuild_s']:.1f} s rebuilding",
        f"  confirm one more cell: {out['confirm_one_cell_ms']:.1f} ms (found by its own vector: "
        f"{out['confirmed_cell_found']}; {out['index_size_after']:,} cells in the index)",
        f"  saved index {out['saved_index_mb']:.0f} MB = {out['saved_bytes_per_cell']:.0f} bytes "
        f"per cell; store {out['store_mb_without_index']:.0f} MB -> "
        f"{out['store_mb_with_index']:.0f} MB",
    ])
