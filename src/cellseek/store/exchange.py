"""Merging stores, CSV export and backups of the reference store.

Private helpers of :mod:`cellseek.store.reference_store`; use the methods of
:class:`cellseek.store.ReferenceStore` (``merge_from``, ``export_cells_csv``, ``backup``).
"""

from __future__ import annotations

import csv
import logging
import os
import sqlite3
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from cellseek.errors import IncompatibleStoreError, StoreError
from cellseek.store.schema import remove_quietly, translate_error

if TYPE_CHECKING:
    from cellseek.store.reference_store import ReferenceStore

logger = logging.getLogger(__name__)

#: Columns of :func:`export_cells_csv`, in order.
CSV_COLUMNS = (
    "cell_id",
    "image",
    "image_hash",
    "t",
    "z",
    "label_value",
    "centroid_row",
    "centroid_col",
    "area",
    "label",
    "label_source",
    "suggestion",
    "confidence",
)

_CELL_COPY_COLUMNS = (
    "label_value, t, z, bbox_row_min, bbox_col_min, bbox_row_max, bbox_col_max, centroid_row, "
    "centroid_col, area, touches_border"
)


def _temp_next_to(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def merge(target: ReferenceStore, other, *, labels_only: bool = False) -> dict:
    """Merge ``other`` (a store or a path) into ``target``; see ``ReferenceStore.merge_from``."""
    from cellseek.store.reference_store import ReferenceStore, check_versions

    owned = not isinstance(other, ReferenceStore)
    if owned:
        other = ReferenceStore.open(other, readonly=True)
    try:
        if Path(other.path).resolve() == Path(target.path).resolve():
            raise StoreError(f"{target.path}: cannot merge a store into itself")
        if not labels_only:
            bad = {m: d for m, d in target.models.items() if other.models.get(m) != d}
            if bad:
                fmt = "{" + ", ".join(f"{k}: {v}" for k, v in sorted(target.models.items())) + "}"
                ofmt = "{" + ", ".join(f"{k}: {v}" for k, v in sorted(other.models.items())) + "}"
                raise IncompatibleStoreError(
                    f"{other.path}: cannot merge into {target.path}: the model sets are "
                    f"incompatible: this store has {fmt}, the other store has {ofmt}"
                )
            check_versions(target, other.model_versions, what=str(other.path))
        with (
            other._read("reading the store to merge") as src,
            target._write(f"merging {other.path}") as dst,
        ):
            return _merge(target, src, dst, other.path, labels_only)
    finally:
        if owned:
            other.close()


def _merge(
    target, src: sqlite3.Connection, dst: sqlite3.Connection, other_path, labels_only: bool
) -> dict:
    counts = dict.fromkeys(
        (
            "images_added",
            "images_matched",
            "cells_added",
            "cells_matched",
            "labels_added",
            "labels_unchanged",
            "label_conflicts",
        ),
        0,
    )
    note = f"merged from {other_path}"
    image_map: dict[int, int] = {}
    for img in src.execute(
        "SELECT id, path, content_hash, device, source, pixel_size_um, shape, added_at FROM images "
        "ORDER BY id"
    ).fetchall():
        row = dst.execute("SELECT id FROM images WHERE content_hash = ?", (img[2],)).fetchone()
        if row is not None:
            image_map[img[0]] = row[0]
            counts["images_matched"] += 1
        elif not labels_only:
            cur = dst.execute(
                "INSERT INTO images (path, content_hash, device, source, pixel_size_um, shape, "
                "added_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                tuple(img[1:]),
            )
            image_map[img[0]] = cur.lastrowid
            counts["images_added"] += 1
            dst.executemany(
                "INSERT INTO planes (image_id, t, z, labels) VALUES (?, ?, ?, ?)",
                [(cur.lastrowid, *p) for p in src.execute(
                    "SELECT t, z, labels FROM planes WHERE image_id = ?", (img[0],))],
            )
    models = list(target.models)
    label_changes: list[tuple[int, str, str]] = []
    for cell in src.execute(
        f"SELECT id, image_id, {_CELL_COPY_COLUMNS}, label FROM cells ORDER BY id"
    ).fetchall():
        other_id, other_image, label = cell[0], cell[1], cell[-1]
        if other_image not in image_map:
            continue
        image_id = image_map[other_image]
        values = tuple(cell[2:-1])
        row = dst.execute(
            "SELECT id, label FROM cells WHERE image_id = ? AND t = ? AND z = ? AND "
            "label_value = ?",
            (image_id, values[1], values[2], values[0]),
        ).fetchone()
        if row is not None:
            counts["cells_matched"] += 1
            cell_id, here = row
            if label is None:
                continue
            if here is None:
                label_changes.append((cell_id, label, "import"))
            elif here == label:
                counts["labels_unchanged"] += 1
            else:
                counts["label_conflicts"] += 1
                logger.info(
                    "merge %s: cell %d is %r here and %r there; kept %r",
                    other_path,
                    cell_id,
                    here,
                    label,
                    here,
                )
            continue
        if labels_only:
            continue
        cur = dst.execute(
            f"INSERT INTO cells (image_id, {_CELL_COPY_COLUMNS}) VALUES "
            f"(?, {', '.join('?' * len(values))})",
            (image_id, *values),
        )
        cell_id = cur.lastrowid
        counts["cells_added"] += 1
        vectors = dict(
            src.execute(
                "SELECT model, vector FROM embeddings WHERE cell_id = ?", (other_id,)
            ).fetchall()
        )
        missing = [m for m in models if m not in vectors]
        if missing:
            raise StoreError(
                f"{other_path}: cell {other_id} has no embedding for model(s) {missing}; the "
                "store is incomplete, nothing was merged"
            )
        dst.executemany(
            "INSERT INTO embeddings (cell_id, model, vector) VALUES (?, ?, ?)",
            [(cell_id, m, vectors[m]) for m in models],
        )
        thumb = src.execute("SELECT data FROM thumbnails WHERE cell_id = ?", (other_id,)).fetchone()
        if thumb is not None:
            dst.execute("INSERT INTO thumbnails (cell_id, data) VALUES (?, ?)", (cell_id, thumb[0]))
        if label is not None:
            label_changes.append((cell_id, label, "import"))
    counts["labels_added"] = len(label_changes)
    target._change_labels(dst, "import", label_changes, undoable=False, note=note)
    logger.info("merged %s into %s: %s", other_path, target.path, counts)
    return counts


def export_cells_csv(store: ReferenceStore, path, *, image_id: int | None = None) -> int:
    """Write the cells of ``store`` as CSV, atomically; returns the number of rows."""
    path = Path(path).expanduser()
    sql = (
        "SELECT c.id, i.path, i.content_hash, c.t, c.z, c.label_value, c.centroid_row, "
        "c.centroid_col, c.area, c.label, c.label_source, c.suggestion, c.confidence "
        "FROM cells c JOIN images i ON i.id = c.image_id"
    )
    params: tuple = ()
    if image_id is not None:
        sql += " WHERE c.image_id = ?"
        params = (int(image_id),)
    with store._read("exporting cells") as conn:
        rows = conn.execute(sql + " ORDER BY c.id", params).fetchall()
    tmp = _temp_next_to(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_COLUMNS)
            for row in rows:
                writer.writerow(["" if v is None else v for v in row])
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        remove_quietly(tmp)
        raise translate_error(exc, path, "writing the CSV export") from exc
    return len(rows)


def backup(store: ReferenceStore, path) -> Path:
    """Copy ``store`` to ``path`` with SQLite's online backup, atomically."""
    path = Path(path).expanduser().absolute()
    if path.exists() and path.resolve() == Path(store.path).resolve():
        raise StoreError(f"{path}: cannot back a store up onto itself")
    tmp = _temp_next_to(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        dest = sqlite3.connect(tmp)
        try:
            with store._lock:
                store._connection().backup(dest)
            dest.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        finally:
            dest.close()
        for side in ("-wal", "-shm"):
            remove_quietly(path.with_name(path.name + side))
        os.replace(tmp, path)
    except (sqlite3.Error, OSError) as exc:
        remove_quietly(tmp, tmp.with_name(tmp.name + "-journal"))
        raise translate_error(exc, path, "writing the backup") from exc
    return path
