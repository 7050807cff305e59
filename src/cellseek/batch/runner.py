"""Run the per-image task over many images on Dask, then merge the shards into a store.

:func:`embed_many` is what ``cellseek embed --workers N`` (or ``--scheduler``) calls: a local
cluster by default (one process per core, one thread each), any Dask scheduler by address, or
``scheduler="sync"`` to run in this process (debugging). Tasks are retried when a worker dies;
shards make a rerun resume where the last one stopped; the merge is all or nothing
(:mod:`cellseek.batch.merge`).
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from cellseek.batch.merge import merge_shards
from cellseek.batch.scheduler import check_scheduler
from cellseek.batch.shards import signature
from cellseek.batch.tasks import embedders_for, limit_threads, process_image
from cellseek.config import Config
from cellseek.errors import CellseekError
from cellseek.io.inputs import collect_inputs
from cellseek.text import count_text, spreadsheet_row

logger = logging.getLogger(__name__)

#: Environment of worker processes: one compute thread each.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "VECLIB_MAXIMUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}
#: ``scheduler`` values that run every task in the calling process, without Dask.
SYNC = ("sync", "synchronous", "inline")


def default_shard_dir(store_path) -> Path:
    """``<store>.shards`` next to the store."""
    store_path = Path(store_path).expanduser().absolute()
    return store_path.with_name(store_path.name + ".shards")


def resolve_run_config(store_path, config: Config | None, inputs=(),
                       plane_kw: Mapping | None = None) -> tuple[Config, dict[str, int]]:
    """The settings a run must use, and the model dims.

    An existing store's crop and embedding settings win over ``config`` (as in
    :class:`~cellseek.session.Session`); ``segment.method="auto"`` is resolved here, once, so
    that every worker segments the same way; and the physical crop pixel size is fixed here
    (from the store, or from the first calibrated input, as a session adding the same inputs in
    the same order would: :meth:`cellseek.pipeline.Pipeline.fix_target`).
    """
    from cellseek.pipeline import Pipeline, resolve_models
    from cellseek.segment import resolve_method
    from cellseek.session import Session
    from cellseek.zoo import get_spec

    config = config or Config()
    if Path(store_path).expanduser().exists():
        with Session.open(store_path, config, readonly=True) as session:
            config = session.config
    method = resolve_method(config.segment, weights_dir=config.embed.weights_dir)
    config = replace(config, segment=replace(config.segment, method=method))
    models = resolve_models(config)
    dims = {m: int(get_spec(m).dim) for m in sorted(models)}
    if config.crop.target_pixel_size_um is None and inputs:
        target = Pipeline(config, tuple(dims)).fix_target(inputs, **dict(plane_kw or {}))
        if target is not None:
            config = replace(config, crop=replace(config.crop, target_pixel_size_um=target))
    return config, dims


def quiet_dask() -> dict[str, str]:
    """Keep Dask's own INFO logs out of the terminal unless cellseek runs verbose (``-v``).

    Returns
    -------
    dict
        Environment for worker processes (their logging follows it).
    """
    if logger.isEnabledFor(logging.INFO):
        return {}
    import dask

    dask.config.set({"logging.distributed": "warning"})
    for name in ("distributed", "distributed.scheduler", "distributed.worker",
                 "distributed.nanny", "distributed.core", "distributed.http.proxy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return {"DASK_LOGGING__DISTRIBUTED": "warning"}


@contextmanager
def _client(scheduler, n_workers: int | None, progress: bool):
    """A Dask client: a new LocalCluster, an address, or an existing Client."""
    env = quiet_dask()
    from distributed import Client, LocalCluster

    if scheduler is not None and not isinstance(scheduler, str):
        yield scheduler  # an existing Client
        return
    if scheduler:
        client = Client(check_scheduler(scheduler))  # one line for a bad address first
        cluster = None
    else:
        n_workers = n_workers or os.cpu_count() or 1
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True,
            dashboard_address=":0", env={**WORKER_ENV, **env},
        )
        client = Client(cluster)
    try:
        import importlib.util

        link = client.dashboard_link
        if cluster is not None and importlib.util.find_spec("bokeh") is None:
            link += " (install bokeh to serve it)"
        logger.info("Dask dashboard: %s", link)
        if progress:
            print(f"Dask dashboard: {link}", file=sys.stderr)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _map(task: Callable, paths: list, kwargs: dict, *, scheduler, n_workers, progress) -> list:
    """Run ``task(path, **kwargs)`` for every path; one result (or exception) per path."""
    if isinstance(scheduler, str) and scheduler in SYNC:
        out = []
        for i, p in enumerate(paths):
            try:
                out.append(task(p, **kwargs))
            except Exception as exc:  # noqa: BLE001 - reported per image
                out.append(exc)
            if progress:
                print(f"\r[{i + 1}/{len(paths)}] images", end="", file=sys.stderr)
        if progress:
            print(file=sys.stderr)
        return out
    with _client(scheduler, n_workers, progress) as client:
        futures = client.map(task, paths, pure=False, retries=2, **kwargs)
        if progress:
            from distributed import progress as dask_progress

            dask_progress(futures)
        out = []
        for fut in futures:
            try:
                out.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - reported per image
                out.append(exc)
        del futures
        return out


def embed_many(
    inputs,
    store_path,
    config: Config | None = None,
    *,
    scheduler=None,
    n_workers: int | None = None,
    shard_dir=None,
    progress: bool = True,
    plane_kw: Mapping | None = None,
    source: str | None = None,
    task: Callable = process_image,
) -> dict:
    """Segment and embed many images in parallel and merge them into a reference store.

    Parameters
    ----------
    inputs : str, Path or sequence
        Anything :func:`cellseek.io.inputs.collect_inputs` accepts.
    store_path : path-like
        The reference store; created when missing (with the configured model set), otherwise
        opened with a model-set check. Its stored crop/embedding settings win over ``config``.
    config : Config, optional
        Settings (default ``Config()``: offline preset).
    scheduler : None, str or distributed.Client
        None: a new ``LocalCluster`` (``n_workers`` processes, one thread each); an address such
        as ``"tcp://10.0.0.5:8786"``; an existing ``Client``; or ``"sync"`` to run in this
        process without Dask.
    n_workers : int, optional
        Workers of the local cluster (default: the number of cores).
    shard_dir : path-like, optional
        Shard folder (default ``<store>.shards``). Keep it to resume an interrupted run; it can
        be deleted after a successful run.
    progress : bool
        Print the dashboard address and Dask's progress bar.
    plane_kw : mapping, optional
        Options of :func:`cellseek.io.iter_planes` (``z_mode``, ``z_index``, ``channel``).
    source : str, optional
        Provenance recorded on each image (default: the reader's device).
    task : callable
        The per-image function (default :func:`cellseek.batch.tasks.process_image`); for tests
        and extensions.

    Returns
    -------
    dict
        ``n_inputs``, ``computed``, ``skipped`` (valid shard reused), ``failed`` (list of
        ``{"input", "error"}``), ``images_added``, ``cells_added``, ``images_in_store``,
        ``duplicates``, ``created``, ``store``, ``shard_dir``, ``signature``, ``seconds``,
        ``results`` (one dict per input: ``input``, ``status``, ``content_hash``, ``n_cells``).
    """
    start = time.perf_counter()
    store_path = Path(store_path).expanduser().absolute()
    paths = collect_inputs(inputs)
    plane_kw = dict(plane_kw or {})
    config, dims = resolve_run_config(store_path, config, paths, plane_kw)
    models = tuple(dims)
    sig = signature(config, models, plane_kw)
    shard_dir = Path(shard_dir) if shard_dir is not None else default_shard_dir(store_path)
    shard_dir.mkdir(parents=True, exist_ok=True)
    logger.info("%d images -> %s (shards in %s, signature %s)", len(paths), store_path,
                shard_dir, sig)
    kwargs = {"config": config, "models": models, "sig": sig, "shard_dir": str(shard_dir),
              "plane_kw": plane_kw, "source": source}
    raw = _map(task, [str(p) for p in paths], kwargs, scheduler=scheduler, n_workers=n_workers,
               progress=progress)
    results, failed, shards = [], [], []
    for path, res in zip(paths, raw):
        if isinstance(res, BaseException):
            res = {"input": str(path), "status": "failed", "content_hash": None, "shard": None,
                   "n_cells": 0, "error": f"{type(res).__name__}: {res}"}
        results.append(res)
        if res["status"] == "failed":
            failed.append({"input": res["input"], "error": res["error"]})
        else:
            shards.append(res["shard"])
    if failed:
        logger.warning("%d of %d images failed; first: %s", len(failed), len(paths), failed[0])
    merged = merge_shards(shards, store_path, config, dims, sig=sig)
    merged["index"] = build_saved_index(store_path, config) if merged["images_added"] else None
    try:
        shard_dir.rmdir()  # only when empty: shards of the images that worked are kept
    except OSError:
        pass
    summary = {
        "n_inputs": len(paths),
        "computed": sum(r["status"] == "computed" for r in results),
        "skipped": sum(r["status"] == "skipped" for r in results),
        "failed": failed,
        **merged,
        "store": str(store_path),
        "shard_dir": str(shard_dir),
        "signature": sig,
        "seconds": time.perf_counter() - start,
        "results": [{k: r.get(k) for k in ("input", "status", "content_hash", "n_cells")}
                    for r in results],
    }
    logger.info("batch done: %s", {k: v for k, v in summary.items() if k != "results"})
    return summary


def build_saved_index(store_path, config: Config) -> str | None:
    """Build the search index once after a merge and save it with the store (issue 14).

    Returns a one-line description, or None when the store has no confirmed cells yet.
    """
    from cellseek.session import Session

    with Session.open(store_path, config) as session:
        if not session.store.n_cells(labelled=True):
            return None
        index = session.rebuild_index()
        return (f"{index.kind} index over {count_text(len(index), 'confirmed cell')}, saved "
                "with the store")


SUGGESTION_COLUMNS = ("input", "image_hash", "cell_id", "t", "z", "label_value", "centroid_row",
                      "centroid_col", "area", "suggestion", "confidence", "best_guess",
                      "entropy", "uncertain")


def suggest_many(
    inputs, store_path, config: Config | None = None, *, csv_path=None, **embed_kw
) -> dict:
    """:func:`embed_many`, then suggest labels for the unlabelled cells of these inputs.

    Parameters
    ----------
    inputs, store_path, config
        As in :func:`embed_many`.
    csv_path : path-like, optional
        Where to write the suggestions (default ``<store>.suggestions.csv``); written
        atomically, one row per cell, columns :data:`SUGGESTION_COLUMNS`.
    **embed_kw
        Passed to :func:`embed_many`.

    Returns
    -------
    dict
        The :func:`embed_many` summary plus ``csv`` and ``n_suggested``.
    """
    from cellseek.session import Session
    from cellseek.types import run_work

    store_path = Path(store_path).expanduser().absolute()
    summary = embed_many(inputs, store_path, config, **embed_kw)
    csv_path = Path(csv_path) if csv_path else store_path.with_name(
        store_path.stem + ".suggestions.csv")
    rows = []
    with Session.open(store_path, config) as session:
        cells = []
        for res in summary["results"]:
            if res["content_hash"] is None:
                continue
            image = session.store.image_by_hash(res["content_hash"])
            if image is None:
                continue
            for cell in session.store.cells(image["id"], labelled=False):
                cells.append((res["input"], res["content_hash"], cell))
        suggestions = run_work(session.suggest([c["id"] for _, _, c in cells]))
        for inp, digest, cell in cells:
            s = suggestions[cell["id"]]
            rows.append((inp, digest, cell["id"], cell["t"], cell["z"], cell["label_value"],
                         *cell["centroid"], cell["area"], s.label or "",
                         round(float(s.confidence), 4), s.best_label or "",
                         round(float(s.entropy), 4), int(s.uncertain)))
    _write_csv(csv_path, SUGGESTION_COLUMNS, rows)
    summary.update(csv=str(csv_path), n_suggested=len(rows))
    return summary


def _write_csv(path: Path, header, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(spreadsheet_row(header))
            writer.writerows(spreadsheet_row(row) for row in rows)  # class names, paths
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CellseekError(f"{path}: cannot write the suggestions ({exc})") from exc


def _warm(first_input: str, kwargs: dict) -> bool:
    """Load modules and embedders on a worker by processing one image into a throwaway folder."""
    limit_threads(1)
    embedders_for(kwargs["models"], kwargs["config"].embed)
    scratch = tempfile.mkdtemp(prefix="cellseek-warm-")
    try:
        process_image(first_input, **{**kwargs, "shard_dir": scratch})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return True


def bench_workers(inputs, config: Config | None = None, workers=(1, 2), *,
                  plane_kw: Mapping | None = None) -> list[dict]:
    """Images per second of the per-image task with 1, 2, ... worker processes.

    Each worker count gets a fresh ``LocalCluster`` (one thread per worker) whose workers are
    warmed up first (modules imported, embedders built, one image processed); then every input
    is processed into a fresh shard folder and the wall time of that map is measured. Nothing is
    merged.

    Parameters
    ----------
    inputs : str, Path or sequence
        As in :func:`embed_many` (e.g. 40 fields).
    config : Config, optional
    workers : sequence of int
        Worker counts to measure.
    plane_kw : mapping, optional

    Returns
    -------
    list of dict
        ``workers``, ``images``, ``cells``, ``seconds``, ``images_per_s``, ``task_s_mean`` (mean
        seconds per task: it grows with the worker count when the cores are not free),
        ``load_avg_1min`` (after the run) and ``speedup`` (relative to the first worker count).
    """
    from distributed import Client, LocalCluster, wait

    paths = [str(p) for p in collect_inputs(inputs)]
    config, dims = resolve_run_config("/nonexistent/cellseek-bench-store", config, paths,
                                      plane_kw)
    models = tuple(dims)
    sig = signature(config, models, plane_kw)
    rows = []
    for n in workers:
        scratch = tempfile.mkdtemp(prefix="cellseek-bench-")
        kwargs = {"config": config, "models": models, "sig": sig, "shard_dir": scratch,
                  "plane_kw": dict(plane_kw or {}), "source": None}
        try:
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                              dashboard_address=None, env=WORKER_ENV) as cluster, \
                    Client(cluster) as client:
                client.run(_warm, paths[0], kwargs)
                t0 = time.perf_counter()
                futures = client.map(process_image, paths, pure=False, **kwargs)
                wait(futures)
                seconds = time.perf_counter() - t0
                results = client.gather(futures)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        row = {"workers": n, "images": len(paths),
               "cells": sum(r["n_cells"] for r in results),
               "seconds": round(seconds, 3), "images_per_s": round(len(paths) / seconds, 3),
               "task_s_mean": round(sum(r["seconds"] for r in results) / len(results), 3),
               "load_avg_1min": round(os.getloadavg()[0], 2)}
        rows.append(row)
        logger.info("bench_workers: %s", row)
    base = rows[0]["images_per_s"] if rows else 1.0
    for row in rows:
        row["speedup"] = round(row["images_per_s"] / base, 3)
    return rows
