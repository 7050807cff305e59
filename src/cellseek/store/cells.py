"""Cells with their embeddings and thumbnails, as functions on an open store connection.

Each function runs inside the caller's transaction; ``where`` is the store path named in errors.
Embeddings are stored as little-endian float16 and returned as float32, checked (length,
finiteness) on every read.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence

import numpy as np

from cellseek.errors import StoreError
from cellseek.store.blobs import VECTOR_DTYPE, BlobError, thumbnail_problem, vectors_from_blobs
from cellseek.store.common import chunks, format_models, marks, now
from cellseek.store.labels import new_batch
from cellseek.types import Cell

logger = logging.getLogger(__name__)

_CELL_FIELDS = (
    "id, image_id, label_value, t, z, bbox_row_min, bbox_col_min, bbox_row_max, bbox_col_max, "
    "centroid_row, centroid_col, area, touches_border, label, label_source, suggestion, "
    "confidence, labelled_at"
)


def cell_columns(version: int) -> str:
    """The ``SELECT`` list of a cell (``best_label`` reads as NULL in a schema-3 store)."""
    return _CELL_FIELDS + (", best_label" if version >= 4 else ", NULL AS best_label")


def cell_dict(row: sqlite3.Row) -> dict:
    """A ``cells`` row as the dict :meth:`ReferenceStore.cells` returns."""
    return {
        "id": row["id"],
        "image_id": row["image_id"],
        "label_value": row["label_value"],
        "t": row["t"],
        "z": row["z"],
        "bbox": (
            row["bbox_row_min"],
            row["bbox_col_min"],
            row["bbox_row_max"],
            row["bbox_col_max"],
        ),
        "centroid": (row["centroid_row"], row["centroid_col"]),
        "area": row["area"],
        "touches_border": bool(row["touches_border"]),
        "label": row["label"],
        "label_source": row["label_source"],
        "suggestion": row["suggestion"],
        "confidence": row["confidence"],
        "best_label": row["best_label"],
        "labelled_at": row["labelled_at"],
    }


def check_embeddings(
    models: Mapping[str, int], embeddings: Mapping[str, np.ndarray], n: int, where
) -> dict[str, np.ndarray]:
    """One float16 ``(n, dim)`` array per model of the store, or a :class:`StoreError`."""
    missing = sorted(set(models) - set(embeddings))
    unknown = sorted(set(embeddings) - set(models))
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"embeddings for model(s) {', '.join(missing)} are missing")
        if unknown:
            parts.append(f"model(s) {', '.join(unknown)} are not part of this store")
        raise StoreError(
            f"{where}: {'; '.join(parts)}. This store holds {format_models(dict(models))}. "
            "Nothing was saved."
        )
    out = {}
    for model, dim in models.items():
        arr = np.asarray(embeddings[model])
        if arr.shape != (n, dim):
            raise StoreError(
                f"{where}: embeddings of model {model!r} have shape {arr.shape}, expected "
                f"({n}, {dim}). Nothing was saved."
            )
        if not np.isfinite(arr).all():
            bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
            raise StoreError(
                f"{where}: embeddings of model {model!r} contain NaN or infinite values "
                f"(rows {bad[:10].tolist()}{' ...' if bad.size > 10 else ''}). "
                "Nothing was saved."
            )
        with np.errstate(over="ignore"):
            half = np.ascontiguousarray(arr, dtype=VECTOR_DTYPE)
        if not np.isfinite(half).all():
            raise StoreError(
                f"{where}: embeddings of model {model!r} hold values too large for float16 "
                "(|x| > 65504); normalise them. Nothing was saved."
            )
        out[model] = half
    return out


def insert_cells(
    conn: sqlite3.Connection,
    image_id: int,
    cells: Sequence[Cell],
    vectors: Mapping[str, np.ndarray],
    thumbnails: Sequence[bytes | None] | None,
    where,
) -> np.ndarray:
    """Insert cells of one image with float16 ``vectors`` (from :func:`check_embeddings`)."""
    ids = np.empty(len(cells), dtype=np.int64)
    for i, cell in enumerate(cells):
        try:
            cur = conn.execute(
                "INSERT INTO cells (image_id, label_value, t, z, bbox_row_min, "
                "bbox_col_min, bbox_row_max, bbox_col_max, centroid_row, centroid_col, "
                "area, touches_border) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    int(image_id),
                    int(cell.label),
                    int(cell.t),
                    int(cell.z),
                    *(int(b) for b in cell.bbox),
                    *(float(c) for c in cell.centroid),
                    int(cell.area),
                    int(bool(cell.touches_border)),
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise StoreError(
                f"{where}: image {image_id} already has a cell with label value "
                f"{cell.label} at t={cell.t}, z={cell.z}; delete the old cells first. "
                "Nothing was saved."
            ) from exc
        ids[i] = cur.lastrowid
    id_list = ids.tolist()
    for model, arr in vectors.items():
        conn.executemany(
            "INSERT INTO embeddings (cell_id, model, vector) VALUES (?, ?, ?)",
            ((cid, model, arr[i].tobytes()) for i, cid in enumerate(id_list)),
        )
    if thumbnails is not None:
        conn.executemany(
            "INSERT INTO thumbnails (cell_id, data) VALUES (?, ?)",
            ((cid, bytes(th)) for cid, th in zip(id_list, thumbnails) if th is not None),
        )
    return ids


def select_cells(
    conn: sqlite3.Connection, version: int, image_id: int | None = None,
    labelled: bool | None = None,
) -> list[dict]:
    """Cells (of one image, confirmed or not) as dicts, ordered by id."""
    where, params = [], []
    if image_id is not None:
        where.append("image_id = ?")
        params.append(int(image_id))
    if labelled is not None:
        where.append("label IS NOT NULL" if labelled else "label IS NULL")
    sql = f"SELECT {cell_columns(version)} FROM cells"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return [cell_dict(r) for r in conn.execute(sql + " ORDER BY id", params)]


def get_cell(conn: sqlite3.Connection, version: int, cell_id: int, where) -> dict:
    """One cell as a dict."""
    row = conn.execute(
        f"SELECT {cell_columns(version)} FROM cells WHERE id = ?", (int(cell_id),)
    ).fetchone()
    if row is None:
        raise StoreError(f"{where}: there is no cell with id {cell_id} in this store")
    return cell_dict(row)


def count_cells(conn: sqlite3.Connection, labelled: bool | None = None) -> int:
    """Number of cells (only confirmed / unconfirmed ones when ``labelled`` is set)."""
    sql = "SELECT COUNT(*) FROM cells"
    if labelled is not None:
        sql += " WHERE label IS NOT NULL" if labelled else " WHERE label IS NULL"
    return conn.execute(sql).fetchone()[0]


def cell_sources(conn: sqlite3.Connection,
                 cell_ids: Sequence[int] | None = None) -> tuple[np.ndarray, list[str]]:
    """``(cell ids, the source of each one's image)``: every cell ordered by id (one query), or
    only the cells given (ids the store does not hold are left out)."""
    sql = ("SELECT cells.id, images.source FROM cells JOIN images ON images.id = cells.image_id")
    rows: list = []
    if cell_ids is None:
        rows = conn.execute(sql + " ORDER BY cells.id").fetchall()
    else:
        wanted = [int(c) for c in cell_ids]
        for start in range(0, len(wanted), 900):
            chunk = wanted[start:start + 900]
            rows += conn.execute(sql + f" WHERE cells.id IN ({', '.join('?' * len(chunk))})",
                                 chunk).fetchall()
    return np.asarray([r[0] for r in rows], np.int64), [r[1] for r in rows]


def read_embeddings(
    conn: sqlite3.Connection, model: str, dim: int, cell_ids: Sequence[int] | None, where
) -> np.ndarray:
    """float32 ``(n, dim)`` embeddings of one model: all cells by id, or ``cell_ids`` in order.

    Raises
    ------
    StoreError
        A cell is unknown, or a stored vector is malformed or not finite (a damaged or crafted
        store: its values are never used).
    """
    if cell_ids is None:
        rows = conn.execute(
            "SELECT cell_id, vector FROM embeddings WHERE model = ? ORDER BY cell_id", (model,)
        ).fetchall()
        ids = [r[0] for r in rows]
        blobs = [r[1] for r in rows]
    else:
        ids = [int(i) for i in np.asarray(cell_ids, dtype=np.int64).ravel()]
        found: dict[int, bytes] = {}
        unique = sorted(set(ids))
        for chunk in chunks(unique):
            found.update(conn.execute(
                f"SELECT cell_id, vector FROM embeddings WHERE model = ? AND cell_id IN "
                f"({marks(len(chunk))})",
                (model, *chunk),
            ).fetchall())
        absent = [i for i in unique if i not in found]
        if absent:
            raise StoreError(
                f"{where}: no {model!r} embedding for cell id(s) {absent[:10]}"
                f"{' ...' if len(absent) > 10 else ''} (unknown or deleted cells)"
            )
        blobs = [found[i] for i in ids]
    try:
        return vectors_from_blobs(blobs, dim)
    except BlobError as exc:
        raise StoreError(
            f"{where}: the {model!r} embedding of cell {ids[exc.row]} is refused "
            f"({exc}): the store is damaged or was crafted; "
            "`cellseek check` lists every such cell"
        ) from None


def read_thumbnail(conn: sqlite3.Connection, cell_id: int, where) -> bytes | None:
    """The thumbnail of a cell, or None (also, with a warning, for an oversized one)."""
    row = conn.execute(
        "SELECT data FROM thumbnails WHERE cell_id = ?", (int(cell_id),)
    ).fetchone()
    if row is None:
        return None
    data = bytes(row[0])
    problem = thumbnail_problem(data)
    if problem is not None:
        logger.warning("%s: the thumbnail of cell %s is not shown: %s", where, cell_id, problem)
        return None
    return data


def select_for_display(conn: sqlite3.Connection, version: int, cell_ids: Sequence[int],
                       where) -> dict[int, dict]:
    """Cells by id with their image's path and thumbnail: one query per :data:`CHUNK` ids.

    Ids the store does not hold are left out. A thumbnail that is refused (see
    :func:`read_thumbnail`) reads as None.
    """
    best = "c.best_label AS best_label" if version >= 4 else "NULL AS best_label"
    columns = ", ".join(f"c.{name} AS {name}" for name in _CELL_FIELDS.split(", "))
    sql = (f"SELECT {columns}, {best}, i.path AS image_path, th.data AS thumbnail FROM cells c "
           "JOIN images i ON i.id = c.image_id LEFT JOIN thumbnails th ON th.cell_id = c.id "
           "WHERE c.id IN ({})")
    out: dict[int, dict] = {}
    for chunk in chunks(sorted({int(c) for c in cell_ids})):
        for row in conn.execute(sql.format(marks(len(chunk))), tuple(chunk)):
            cell = cell_dict(row)
            cell["image_path"] = row["image_path"]
            data = None if row["thumbnail"] is None else bytes(row["thumbnail"])
            problem = None if data is None else thumbnail_problem(data)
            if problem is not None:
                logger.warning("%s: the thumbnail of cell %s is not shown: %s", where,
                               cell["id"], problem)
                data = None
            cell["thumbnail"] = data
            out[int(cell["id"])] = cell
    return out


def delete_cells(conn: sqlite3.Connection, ids: Sequence[int], where) -> None:
    """Delete cells with their embeddings and thumbnails; one audit row each (not undoable)."""
    batch_id = new_batch(conn, "delete", undoable=False)
    stamp = now()
    for cid in ids:
        row = conn.execute("SELECT label, label_source FROM cells WHERE id = ?", (cid,)).fetchone()
        if row is None:
            raise StoreError(f"{where}: there is no cell with id {cid}; nothing was deleted")
        conn.execute(
            "INSERT INTO audit (batch_id, cell_id, action, old_label, new_label, "
            "old_source, new_source, time) VALUES (?, ?, 'delete', ?, NULL, ?, NULL, ?)",
            (batch_id, cid, row[0], row[1], stamp),
        )
    for chunk in chunks(list(ids)):
        conn.execute(f"DELETE FROM cells WHERE id IN ({marks(len(chunk))})", tuple(chunk))
