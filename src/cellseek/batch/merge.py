"""Merge per-image shards into a reference store, all or nothing.

The shards are first written into a private temporary store next to the target (image by image,
one shard in memory at a time). Then either the temporary store is copied into place atomically
(the target did not exist: SQLite backup to a temporary name + rename), or the target takes it in
with :meth:`cellseek.store.ReferenceStore.merge_from`, which is one SQLite transaction. A run
killed at any point leaves the target as it was before (plus, at worst, a stale temporary file
that the next merge removes).

Canonical order
---------------
Images enter in the order of ``shard_paths`` (the runner passes the input order of
:func:`cellseek.io.inputs.collect_inputs`), the first occurrence of a content hash wins, and
images already in the target are skipped. Within an image, planes keep the order of
:func:`cellseek.io.iter_planes` and cells are ordered by ``(t, z, label)``. This is exactly the
order in which :meth:`cellseek.session.Session.add_image` called on the same inputs, one after
the other, inserts them, so both give the same store (same cell ids too, for a new store).
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from cellseek.batch.shards import read_shard
from cellseek.config import Config
from cellseek.errors import IncompatibleStoreError, StoreExistsError
from cellseek.store import untrusted_json
from cellseek.store.files import remove_store_files

logger = logging.getLogger(__name__)

_TMP_RE = re.compile(r"^\.(?P<name>.+)\.merge-(?P<pid>\d+)-[0-9a-f]{8}\.tmp(-wal|-shm|-journal)?$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(store_path) -> int:
    """Delete temporary merge stores of dead processes next to ``store_path``; returns a count."""
    store_path = Path(store_path)
    removed = 0
    if not store_path.parent.is_dir():
        return 0
    for p in store_path.parent.iterdir():
        m = _TMP_RE.match(p.name)
        if m and m["name"] == store_path.name and not _pid_alive(int(m["pid"])):
            try:
                p.unlink()
                removed += 1
            except OSError:
                pass
    if removed:
        logger.info("removed %d stale temporary merge files next to %s", removed, store_path)
    return removed


def _check_config(store, config: Config) -> None:
    raw = store.meta("config")
    if not raw:
        return
    try:
        data = untrusted_json.loads(raw)
        crop = data.get("crop") if isinstance(data, dict) else None
    except ValueError:
        raise IncompatibleStoreError(f"{store.path}: the store's saved settings are malformed "
                                     "JSON; the store is damaged or was crafted") from None
    if crop is not None and not isinstance(crop, dict):
        raise IncompatibleStoreError(f"{store.path}: the store's crop settings are malformed")
    if crop is not None and crop.get("target_pixel_size_um") is None:
        crop["target_pixel_size_um"] = store.meta("target_pixel_size_um")
    if crop is not None and crop != json.loads(json.dumps(asdict(config.crop))):
        raise IncompatibleStoreError(
            f"{store.path}: the store's cells were cropped with {crop}, this run with "
            f"{asdict(config.crop)}; use the store's crop settings (Session.open(...).config)"
        )


def merge_shards(
    shard_paths: Iterable, store_path, config: Config, models: dict[str, int], *,
    sig: str | None = None, progress=None,
) -> dict:
    """Merge shards into a reference store in one transaction (created when missing, unless
    nothing is added).

    Parameters
    ----------
    shard_paths : iterable of path-like
        Shards in canonical order (see the module docstring).
    store_path : path-like
        The reference store.
    config : Config
        Settings recorded in a new store (``Session.create`` semantics); an existing store must
        have the same crop settings.
    models : dict of str to int
        Model name -> dim; an existing store must hold exactly these.
    sig : str, optional
        Expected shard signature.
    progress : callable, optional
        Called with ``(done, total)`` after every shard.

    Returns
    -------
    dict
        ``images_added``, ``cells_added``, ``images_in_store`` (skipped: already in the store),
        ``duplicates`` (same content in several inputs), ``created`` (bool).

    Raises
    ------
    IncompatibleStoreError
        The existing store has another model set or crop settings.
    """
    from cellseek.session import Session
    from cellseek.store import ReferenceStore

    store_path = Path(store_path).expanduser().absolute()
    shard_paths = [Path(p) for p in shard_paths]
    remove_stale_temporaries(store_path)
    known: set[str] = set()
    created = not store_path.exists()
    if not created:
        with ReferenceStore.open(store_path, models=models, readonly=True) as target:
            _check_config(target, config)
            known = {img["content_hash"] for img in target.images()}
    tmp = store_path.with_name(
        f".{store_path.name}.merge-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    )
    counts = {"images_added": 0, "cells_added": 0, "images_in_store": 0, "duplicates": 0,
              "created": created}
    seen: set[str] = set()
    try:
        session = Session.create(tmp, config)
        staging = session.store
        try:
            if staging.models != models:
                raise IncompatibleStoreError(
                    f"the configured models {staging.models} differ from the shards' {models}"
                )
            for i, path in enumerate(shard_paths):
                shard = read_shard(path, sig=sig)
                digest = shard.content_hash
                if digest in known:
                    counts["images_in_store"] += 1
                elif digest in seen:
                    counts["duplicates"] += 1
                else:
                    seen.add(digest)
                    _add_shard(staging, shard)
                    counts["images_added"] += 1
                    counts["cells_added"] += len(shard.cells)
                if progress is not None:
                    progress(i + 1, len(shard_paths))
            if created and counts["images_added"]:
                try:
                    staging.backup(store_path, overwrite=False)  # exclusive, atomic
                except StoreExistsError:
                    # another process created the store meanwhile: merge into it instead
                    created = counts["created"] = False
            elif created:  # nothing to add: a merge never leaves an empty new store behind
                created = counts["created"] = False
                logger.warning("%s was not created: nothing was added to it", store_path)
        finally:
            session.close()
        if not created and counts["images_added"]:
            with ReferenceStore.open(store_path, models=models) as target:
                merged = target.merge_from(tmp)
            logger.info("merged into %s: %s", store_path, merged)
    finally:
        remove_store_files(tmp)
    logger.info("%s: %s", store_path, counts)
    return counts


def _add_shard(store, shard) -> None:
    """Insert one shard into the (private) staging store."""
    meta = shard.meta
    image_id = store.add_image(
        meta["path"],
        shard.content_hash,
        device=meta.get("device", "unknown"),
        source=meta.get("source", ""),
        pixel_size_um=meta.get("pixel_size_um"),
        shape=meta.get("shape", ()),
    )
    cells_by_plane: dict[tuple[int, int], list[int]] = {}
    for i, cell in enumerate(shard.cells):
        cells_by_plane.setdefault((cell.t, cell.z), []).append(i)
    for key, labels in shard.planes.items():
        store.set_plane_labels(image_id, key[0], key[1], labels)
        rows = cells_by_plane.get(key, [])
        if rows:
            store.add_cells(
                image_id,
                [shard.cells[i] for i in rows],
                {m: e[rows] for m, e in shard.embeddings.items()},
                thumbnails=[shard.thumbnails[i] for i in rows],
            )
