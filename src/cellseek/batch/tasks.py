"""The per-image task run on a Dask worker: read, segment, crop, embed, write one shard.

:func:`process_image` is a plain function of its arguments and the file system: it returns a
small summary dict and writes at most one shard file (atomically). Only one image is in memory at
a time and crops live for one plane. Embedders are built once per worker process and cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cellseek.batch.shards import Shard, is_valid, shard_path, write_shard
from cellseek.config import Config, EmbedConfig
from cellseek.errors import CellseekError

logger = logging.getLogger(__name__)

_EMBEDDERS: dict[tuple, dict] = {}


def embedders_for(models: Sequence[str], embed: EmbedConfig) -> dict:
    """The embedders of a model set, built once per process (weights load here)."""
    from cellseek.zoo import load_embedder

    key = (tuple(models), embed.weights_dir, embed.device)
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = {
            name: load_embedder(name, weights_dir=embed.weights_dir, device=embed.device)
            for name in models
        }
        limit_threads(1)
    return _EMBEDDERS[key]


def limit_threads(n: int = 1) -> None:
    """Keep a worker process to ``n`` compute threads (torch when loaded, BLAS via env)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _pointer_path(shard_dir, sig: str, path: Path) -> Path:
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:24]
    return Path(shard_dir) / sig / "inputs" / f"{key}.json"


def _stat_key(path: Path) -> list | None:
    if not path.is_file():
        return None  # a folder's content is not described by its own stat
    st = path.stat()
    return [int(st.st_size), int(st.st_mtime_ns)]


def _read_pointer(pointer: Path, path: Path) -> str | None:
    """Content hash recorded for an unchanged input file, or None."""
    try:
        doc = json.loads(pointer.read_text())
    except (OSError, ValueError):
        return None
    stat = _stat_key(path)
    if stat is None or doc.get("stat") != stat or doc.get("path") != str(path.resolve()):
        return None
    return doc.get("content_hash")


def _write_pointer(pointer: Path, path: Path, content_hash: str) -> None:
    stat = _stat_key(path)
    if stat is None:
        return
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = pointer.with_name(f".{pointer.name}.{uuid.uuid4().hex[:8]}.tmp")
    doc = {"path": str(path.resolve()), "stat": stat, "content_hash": content_hash}
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, pointer)


def process_image(
    path,
    *,
    config: Config,
    models: Sequence[str],
    sig: str,
    shard_dir,
    plane_kw: Mapping | None = None,
    source: str | None = None,
) -> dict:
    """Segment, crop and embed every plane of one image and write its shard.

    A valid shard for the image (same content hash, same signature) is reused: the image is not
    even read when its file's size and modification time match a previous run.

    Parameters
    ----------
    path : path-like
        An image file (or a folder :func:`cellseek.io.read_image` reads as one stack).
    config : Config
        Segmentation (method already resolved), crop and embedding settings.
    models : sequence of str
        Model names, in store order.
    sig : str
        :func:`cellseek.batch.shards.signature` of these settings.
    shard_dir : path-like
        Root folder of the shards.
    plane_kw : mapping, optional
        Passed to :func:`cellseek.io.iter_planes`.
    source : str, optional
        Provenance recorded on the image (default: the reader's device).

    Returns
    -------
    dict
        ``status`` (``"computed"``, ``"skipped"`` or ``"failed"``), ``input``,
        ``content_hash``, ``shard``, ``n_cells``, ``seconds``, ``error``.
    """
    from cellseek.crops import cells_from_labels, crop_pixel_sizes, extract_crops, thumbnail_png
    from cellseek.io import content_hash, iter_planes, read_image
    from cellseek.segment import segment_plane
    from cellseek.types import run_work
    from cellseek.zoo.embed import embed_all

    start = time.perf_counter()
    path = Path(path)
    plane_kw = dict(plane_kw or {})
    out = {"input": str(path), "status": "skipped", "content_hash": None, "shard": None,
           "n_cells": 0, "seconds": 0.0, "error": None}
    pointer = _pointer_path(shard_dir, sig, path)
    known = _read_pointer(pointer, path)
    if known is not None and is_valid(shard_path(shard_dir, known, sig), sig):
        out.update(content_hash=known, shard=str(shard_path(shard_dir, known, sig)))
        out["seconds"] = time.perf_counter() - start
        return out
    try:
        image = read_image(path)
        digest = content_hash(image)
        target = shard_path(shard_dir, digest, sig)
        out.update(content_hash=digest, shard=str(target))
        if is_valid(target, sig):
            _write_pointer(pointer, path, digest)
            out["seconds"] = time.perf_counter() - start
            return out
        embedders = embedders_for(models, config.embed)
        cells, thumbs, planes = [], [], {}
        embs: dict[str, list[np.ndarray]] = {m: [] for m in models}
        for t, z, plane in iter_planes(image, **plane_kw):
            plane = np.asarray(plane)
            labels = np.asarray(run_work(segment_plane(plane, config.segment)))
            planes[(t, z)] = labels
            found = cells_from_labels(labels, t=t, z=z)
            if not found:
                continue
            crops, masks = extract_crops(plane, labels, found, config.crop,
                                         pixel_size_um=image.pixel_size_um)
            sizes = crop_pixel_sizes(found, config.crop, pixel_size_um=image.pixel_size_um)
            result = run_work(embed_all(embedders, crops, masks,
                                        batch_size=config.embed.batch_size, pixel_size=sizes))
            for m in models:
                with np.errstate(over="ignore"):
                    half = np.asarray(result[m], np.float32).astype("<f2")
                if not np.isfinite(half).all():
                    raise CellseekError(
                        f"model {m!r} gave NaN, infinite or too large (> 65504) embeddings "
                        f"for plane t={t} z={z}"
                    )
                embs[m].append(half)
            thumbs.extend(thumbnail_png(c) for c in crops)
            cells.extend(found)
            del crops, masks
    except CellseekError as exc:
        logger.warning("%s: %s", path, exc)
        out.update(status="failed", error=str(exc), seconds=time.perf_counter() - start)
        return out
    meta = {
        "content_hash": digest,
        "signature": sig,
        "path": image.path or str(path),
        "device": image.device,
        "source": source or image.device,
        "pixel_size_um": image.pixel_size_um,
        "shape": [int(s) for s in image.shape],
        "models": {m: int(embedders[m].spec.dim) for m in models},
    }
    dims = meta["models"]
    embeddings = {
        m: np.concatenate(embs[m]) if embs[m] else np.zeros((0, dims[m]), "<f2") for m in models
    }
    write_shard(target, Shard(meta=meta, cells=cells, embeddings=embeddings, thumbnails=thumbs,
                              planes=planes))
    _write_pointer(pointer, path, digest)
    out.update(status="computed", n_cells=len(cells), seconds=time.perf_counter() - start)
    return out
