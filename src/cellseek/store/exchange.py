"""Merging stores, CSV export and backups, as functions on open SQLite connections.

:class:`cellseek.store.ReferenceStore` calls these inside its transactions (``merge_from``,
``export_cells_csv``, ``backup``); nothing here touches a store object's private state.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import sqlite3
from pathlib import Path

import numpy as np

from cellseek.errors import IncompatibleStoreError, StoreError
from cellseek.store import labels as label_ops
from cellseek.store import search_state, untrusted_json
from cellseek.store.blobs import VECTOR_DTYPE, BlobError, check_labels_blob, thumbnail_problem
from cellseek.store.common import format_models
from cellseek.store.connection import translate_error
from cellseek.store.files import copy_database, remove_quietly, temp_next_to
from cellseek.store.label_files import label_file, label_stems
from cellseek.store.meta import check_same_versions, read_models, read_value, read_versions
from cellseek.text import spreadsheet_row
from cellseek.types import cell_state

logger = logging.getLogger(__name__)

#: Columns of :func:`export_cells_csv`, in order.
CSV_COLUMNS = (
    "cell_id",
    "image_id",
    "image",
    "image_hash",
    "t",
    "z",
    "label_value",
    "label_image",
    "centroid_row",
    "centroid_col",
    "area",
    "class",
    "class_source",
    "state",
    "suggestion",
    "confidence",
    "best_guess",
)

_CELL_COPY_COLUMNS = (
    "label_value, t, z, bbox_row_min, bbox_col_min, bbox_row_max, bbox_col_max, centroid_row, "
    "centroid_col, area, touches_border"
)
_ROWS_PER_WRITE = 5000


# ---------------------------------------------------------------------------- merge


def _saved_crop(conn: sqlite3.Connection, where) -> tuple[dict | None, float | None]:
    """The crop settings and the crop pixel size a store's cells were made with (or None)."""
    raw = read_value(conn, "config", None, where)
    if isinstance(raw, str):
        try:
            raw = untrusted_json.loads(raw)
        except ValueError:
            raise StoreError(f"{where}: the saved settings are malformed JSON; the store is "
                             "damaged or was crafted") from None
    crop = raw.get("crop") if isinstance(raw, dict) else None
    target = read_value(conn, "target_pixel_size_um", None, where)
    return (crop if isinstance(crop, dict) else None,
            float(target) if isinstance(target, int | float) else None)


def check_mergeable(src: sqlite3.Connection, dst: sqlite3.Connection, src_path, dst_path, *,
                    labels_only: bool) -> None:
    """Refuse a merge whose embeddings would not be comparable with this store's.

    The other store must hold every model of this store with the same dim, and its cells must
    have been cropped with the same settings (crop config and crop pixel size, when both
    stores saved them): mixing crop scales silently makes suggestions worse, so it is refused,
    not warned about. ``labels_only`` copies no embeddings and skips both checks.
    """
    if Path(src_path).resolve() == Path(dst_path).resolve():
        raise StoreError(f"{dst_path}: cannot merge a store into itself")
    if labels_only:
        return
    mine, theirs = read_models(dst), read_models(src)
    if any(theirs.get(m) != d for m, d in mine.items()):
        raise IncompatibleStoreError(
            f"{src_path}: cannot merge into {dst_path}: the model sets are incompatible: this "
            f"store has {format_models(mine)}, the other store has {format_models(theirs)}"
        )
    check_same_versions(read_versions(dst, mine, dst_path), read_versions(src, theirs, src_path),
                        dst_path, who=str(src_path))
    (crop, target), (other_crop, other_target) = _saved_crop(dst, dst_path), _saved_crop(
        src, src_path)
    if crop is not None and other_crop is not None and crop != other_crop:
        raise IncompatibleStoreError(
            f"{src_path}: cannot merge into {dst_path}: its cells were cropped with {other_crop}, "
            f"this store's with {crop}; their embeddings are not comparable (merge with "
            "--labels-only to copy only the labels of shared cells)"
        )
    if target is not None and other_target is not None and not math.isclose(
            target, other_target, rel_tol=1e-6):
        raise IncompatibleStoreError(
            f"{src_path}: cannot merge into {dst_path}: its crops were resampled to "
            f"{other_target:.4g} um/pixel, this store's to {target:.4g} um/pixel; their "
            "embeddings are not comparable (merge with --labels-only to copy only labels)"
        )


def _next_cell_id(dst: sqlite3.Connection) -> int:
    seq = dst.execute("SELECT seq FROM sqlite_sequence WHERE name = 'cells'").fetchone()
    top = dst.execute("SELECT MAX(id) FROM cells").fetchone()[0]
    return max(seq[0] if seq else 0, top or 0) + 1


def _copy_images(src, dst, counts, labels_only: bool, src_path) -> tuple[dict, set]:
    """Match images by content hash, copy new ones with their label images."""
    known = dict(dst.execute("SELECT content_hash, id FROM images"))
    image_map: dict[int, int] = {}
    new: set[int] = set()
    for img in src.execute(
        "SELECT id, path, content_hash, device, source, pixel_size_um, shape, added_at "
        "FROM images ORDER BY id"
    ).fetchall():
        if img[2] in known:
            image_map[img[0]] = known[img[2]]
            counts["images_matched"] += 1
        elif not labels_only:
            cur = dst.execute(
                "INSERT INTO images (path, content_hash, device, source, pixel_size_um, shape, "
                "added_at) VALUES (?, ?, ?, ?, ?, ?, ?)", tuple(img[1:]))
            image_map[img[0]] = cur.lastrowid
            new.add(img[0])
            counts["images_added"] += 1
    if new:
        rows = []
        for image_id, t, z, blob in src.execute(
                "SELECT image_id, t, z, labels FROM planes ORDER BY image_id, t, z"):
            if image_id not in new:
                continue
            try:
                check_labels_blob(blob)
            except BlobError as exc:
                raise StoreError(f"{src_path}: the label image of image {image_id}, plane t={t} "
                                 f"z={z} is refused ({exc}); nothing was merged") from None
            rows.append((image_map[image_id], t, z, blob))
        dst.executemany("INSERT INTO planes (image_id, t, z, labels) VALUES (?, ?, ?, ?)", rows)
    return image_map, new


def _insert_vectors(dst, model: str, dim: int, pending: list[tuple[int, int, bytes]],
                    src_path) -> int:
    """Insert ``(new id, source id, blob)`` rows of one model after checking every value."""
    if not pending:
        return 0
    arr = np.frombuffer(b"".join(b for _, _, b in pending), VECTOR_DTYPE)
    bad = ~np.isfinite(arr.reshape(len(pending), dim)).all(axis=1)
    if bad.any():
        raise StoreError(
            f"{src_path}: the {model!r} embedding of cell {pending[int(np.argmax(bad))][1]} is "
            "not finite; the store is damaged or was crafted, nothing was merged")
    dst.executemany("INSERT INTO embeddings (cell_id, model, vector) VALUES (?, ?, ?)",
                    [(new_id, model, blob) for new_id, _, blob in pending])
    return len(pending)


def _copy_vectors(src, dst, cell_map: dict[int, int], models: dict[str, int], src_path) -> None:
    """Copy each model's embeddings of the new cells, checking every blob (one pass each)."""
    for model, dim in models.items():
        copied = 0
        pending: list[tuple[int, int, bytes]] = []
        for cell_id, vector in src.execute(
                "SELECT cell_id, vector FROM embeddings WHERE model = ? ORDER BY cell_id",
                (model,)):
            new_id = cell_map.get(cell_id)
            if new_id is None:
                continue
            if not isinstance(vector, bytes) or len(vector) != 2 * dim:
                raise StoreError(f"{src_path}: the {model!r} embedding of cell {cell_id} is not "
                                 f"{dim} float16 values; nothing was merged")
            pending.append((new_id, cell_id, vector))
            if len(pending) >= _ROWS_PER_WRITE:
                copied += _insert_vectors(dst, model, dim, pending, src_path)
                pending = []
        copied += _insert_vectors(dst, model, dim, pending, src_path)
        if copied != len(cell_map):
            have = {r[0] for r in dst.execute(
                "SELECT cell_id FROM embeddings WHERE model = ? AND cell_id >= ?",
                (model, min(cell_map.values())))}
            missing = [old for old, new in cell_map.items() if new not in have]
            raise StoreError(
                f"{src_path}: cell {missing[0]} has no embedding for model {model!r}; the "
                "store is incomplete, nothing was merged"
            )


def _copy_thumbnails(src, dst, cell_map: dict[int, int], src_path) -> None:
    rows = []
    for cell_id, data in src.execute("SELECT cell_id, data FROM thumbnails ORDER BY cell_id"):
        new_id = cell_map.get(cell_id)
        if new_id is None:
            continue
        problem = thumbnail_problem(bytes(data))
        if problem is not None:
            logger.warning("%s: thumbnail of cell %s not copied: %s", src_path, cell_id, problem)
            continue
        rows.append((new_id, data))
        if len(rows) >= _ROWS_PER_WRITE:
            dst.executemany("INSERT INTO thumbnails (cell_id, data) VALUES (?, ?)", rows)
            rows.clear()
    dst.executemany("INSERT INTO thumbnails (cell_id, data) VALUES (?, ?)", rows)


def merge(src: sqlite3.Connection, dst: sqlite3.Connection, *, src_path, dst_path,
          labels_only: bool = False) -> dict:
    """Merge the store open on ``src`` into the one on ``dst``, inside ``dst``'s transaction.

    Linear in the size of both stores: images are matched by content hash with one lookup
    table, cells by ``(image, t, z, label_value)`` with one table per matched image, and every
    other table is streamed once in key order. See :meth:`ReferenceStore.merge_from`.
    """
    counts = dict.fromkeys(("images_added", "images_matched", "cells_added", "cells_matched",
                            "labels_added", "labels_unchanged", "label_conflicts"), 0)
    models = read_models(dst)
    image_map, new_images = _copy_images(src, dst, counts, labels_only, src_path)
    here: dict[tuple[int, int, int, int], tuple[int, str | None]] = {}
    for dst_image in {v for k, v in image_map.items() if k not in new_images}:
        for t, z, value, cell_id, label in dst.execute(
                "SELECT t, z, label_value, id, label FROM cells WHERE image_id = ?", (dst_image,)):
            here[(dst_image, t, z, value)] = (cell_id, label)
    next_id = _next_cell_id(dst)
    cell_map: dict[int, int] = {}
    rows: list[tuple] = []
    changes: list[tuple[int, str, str]] = []
    insert = (f"INSERT INTO cells (id, image_id, {_CELL_COPY_COLUMNS}) VALUES "
              f"({', '.join('?' * 13)})")
    for cell in src.execute(f"SELECT id, image_id, {_CELL_COPY_COLUMNS}, label FROM cells "
                            "ORDER BY id"):
        other_id, other_image, label = cell[0], cell[1], cell[-1]
        if other_image not in image_map:
            continue
        image_id = image_map[other_image]
        values = tuple(cell[2:-1])
        match = here.get((image_id, values[1], values[2], values[0]))
        if match is not None:
            counts["cells_matched"] += 1
            cell_id, mine = match
            if label is None:
                continue
            if mine is None:
                changes.append((cell_id, label, "import"))
            elif mine == label:
                counts["labels_unchanged"] += 1
            else:
                counts["label_conflicts"] += 1
                logger.info("merge %s: cell %d is %r here and %r there; kept %r",
                            src_path, cell_id, mine, label, mine)
            continue
        if labels_only:
            continue
        cell_map[other_id] = next_id
        rows.append((next_id, image_id, *values))
        if label is not None:
            changes.append((next_id, label, "import"))
        next_id += 1
        if len(rows) >= _ROWS_PER_WRITE:
            dst.executemany(insert, rows)
            rows.clear()
    dst.executemany(insert, rows)
    counts["cells_added"] = len(cell_map)
    if cell_map:
        _copy_vectors(src, dst, cell_map, models, src_path)
        _copy_thumbnails(src, dst, cell_map, src_path)
    counts["labels_added"] = len(changes)
    label_ops.change_labels(dst, "import", changes, dst_path, undoable=False,
                            note=f"merged from {src_path}")
    if counts["cells_added"] or counts["labels_added"]:
        search_state.drop(dst)  # built from other cells: rebuilt on next use
    logger.info("merged %s into %s: %s", src_path, dst_path, counts)
    return counts


# ---------------------------------------------------------------------------- CSV export


def export_cells_csv(conn: sqlite3.Connection, version: int, path, *,
                     image_id: int | None = None, suggestions=None) -> int:
    """Write one row per cell (columns :data:`CSV_COLUMNS`) atomically; returns the row count.

    ``label_image`` names the label image file of the cell's plane in an export folder
    (:func:`cellseek.store.label_files.label_file`, after the image's file name and the plane;
    empty when the store has no label image of that plane); the cell's pixels there have the
    value ``label_value``.
    """
    path = Path(path).expanduser()
    best = "c.best_label" if version >= 4 else "NULL"
    sql = (
        "SELECT c.id, c.image_id, i.path, i.content_hash, c.t, c.z, c.label_value, "
        "p.image_id IS NOT NULL, c.centroid_row, c.centroid_col, c.area, c.label, "
        f"c.label_source, c.suggestion, c.confidence, {best} FROM cells c "
        "JOIN images i ON i.id = c.image_id "
        "LEFT JOIN planes p ON p.image_id = c.image_id AND p.t = c.t AND p.z = c.z"
    )
    params: tuple = ()
    if image_id is not None:
        sql += " WHERE c.image_id = ?"
        params = (int(image_id),)
    rows = conn.execute(sql + " ORDER BY c.id", params).fetchall()
    stems = label_stems(conn.execute("SELECT id, path FROM images"))
    tmp = temp_next_to(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "x", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_COLUMNS)
            for (cid, img, img_path, digest, t, z, value, has_plane, row, col, area, label,
                 source, suggestion, confidence, best_label) in rows:
                if suggestions and cid in suggestions:  # computed, not stored (read-only)
                    s = suggestions[cid]
                    suggestion, confidence, best_label = s.label, s.confidence, s.best_label
                name = label_file(stems[int(img)], t, z) if has_plane else None
                out = (cid, img, img_path, digest, t, z, value, name, row, col, area, label,
                       source, cell_state(label, suggestion, confidence), suggestion,
                       confidence, best_label if best_label is not None else suggestion)
                writer.writerow(spreadsheet_row(out))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        remove_quietly(tmp)
        raise translate_error(exc, path, "writing the CSV export") from exc
    return len(rows)


# ---------------------------------------------------------------------------- backup


def backup(conn: sqlite3.Connection, store_path, path, *, overwrite: bool = True) -> Path:
    """Copy the database on ``conn`` to ``path`` with SQLite's online backup, atomically.

    With ``overwrite=False`` the copy is put in place exclusively (a store at ``path``, also
    one another process creates at the same moment, is never replaced):
    :class:`~cellseek.errors.StoreExistsError`.
    """
    path = Path(path).expanduser().absolute()
    if path.exists() and path.resolve() == Path(store_path).resolve():
        raise StoreError(f"{path}: cannot back a store up onto itself")
    try:
        copy_database(conn, path, overwrite=overwrite)
    except (sqlite3.Error, OSError) as exc:
        raise translate_error(exc, path, "writing the backup") from exc
    return path
