"""The full integrity check of a store (``ReferenceStore.check``, ``cellseek check``).

Beyond what every open checks (:mod:`cellseek.store.trust`), it reads everything: SQLite's own
``integrity_check`` and ``foreign_key_check``, every embedding (length and finiteness), that
every cell has an embedding per model, every label image (bounded decompression) and every
thumbnail header, and the saved crop settings.
"""

from __future__ import annotations

import sqlite3

from cellseek.config import CropConfig, check_crop_config
from cellseek.store import untrusted_json
from cellseek.store.blobs import BlobError, bad_vector_rows, check_labels_blob, thumbnail_problem
from cellseek.store.meta import read_models
from cellseek.store.trust import schema_problems, value_problems

_BATCH = 10_000
_MAX_LISTED = 20


def _sqlite_problems(conn: sqlite3.Connection) -> list[str]:
    rows = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
    out = [] if rows == ["ok"] else [f"SQLite integrity check: {r}" for r in rows]
    out += [f"foreign key: {table} row {rowid} points to a missing {parent} row"
            for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check")]
    return out


def _bad_cells(conn: sqlite3.Connection, model: str, dim: int) -> list[int]:
    """Cells whose ``model`` vector is malformed or not finite (streamed in batches)."""
    bad: list[int] = []
    ids: list[int] = []
    blobs: list[bytes] = []
    for cell_id, vector in conn.execute(
            "SELECT cell_id, vector FROM embeddings WHERE model = ? ORDER BY cell_id", (model,)):
        ids.append(cell_id)
        blobs.append(vector)
        if len(ids) >= _BATCH:
            bad.extend(ids[i] for i in bad_vector_rows(blobs, dim))
            ids, blobs = [], []
    bad.extend(ids[i] for i in bad_vector_rows(blobs, dim))
    return bad


def _embedding_problems(conn: sqlite3.Connection, models: dict[str, int]) -> list[str]:
    out = []
    for model, dim in models.items():
        bad = _bad_cells(conn, model, dim)
        if bad:
            out.append(f"{len(bad)} {model!r} embeddings are malformed or not finite (cells "
                       f"{bad[:_MAX_LISTED]}{' ...' if len(bad) > _MAX_LISTED else ''})")
        missing = [r[0] for r in conn.execute(
            "SELECT c.id FROM cells c WHERE NOT EXISTS (SELECT 1 FROM embeddings e "
            "WHERE e.model = ? AND e.cell_id = c.id) ORDER BY c.id LIMIT ?",
            (model, _MAX_LISTED + 1))]
        if missing:
            out.append(f"cells without a {model!r} embedding: {missing[:_MAX_LISTED]}"
                       f"{' ...' if len(missing) > _MAX_LISTED else ''}")
    return out


def _blob_problems(conn: sqlite3.Connection) -> list[str]:
    out = []
    for image_id, t, z, blob in conn.execute(
            "SELECT image_id, t, z, labels FROM planes WHERE typeof(labels) = 'blob'"):
        try:
            check_labels_blob(blob)
        except BlobError as exc:
            out.append(f"label image of image {image_id}, plane t={t} z={z}: {exc}")
    for cell_id, data in conn.execute(
            "SELECT cell_id, data FROM thumbnails WHERE typeof(data) = 'blob'"):
        problem = thumbnail_problem(bytes(data))
        if problem is not None:
            out.append(f"thumbnail of cell {cell_id}: {problem}")
    return out[: 2 * _MAX_LISTED]


def _config_problems(conn: sqlite3.Connection) -> list[str]:
    row = conn.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
    if row is None:
        return []
    try:
        data = untrusted_json.loads(row[0])
        if isinstance(data, str):
            data = untrusted_json.loads(data)
        if "crop" in data:
            check_crop_config(CropConfig(**data["crop"]))
    except (ValueError, TypeError, AttributeError) as exc:
        return [f"the saved settings are not usable: {exc}"]
    return []


def integrity_problems(conn: sqlite3.Connection, version: int) -> list[str]:
    """Every problem found (empty list: the store is intact). Reads the whole store.

    Runs SQLite's integrity and foreign-key checks, the schema and value checks of every open,
    and checks every embedding (length, finite values), that every cell has one per model, every
    label image (bounded decompression), every thumbnail header and the saved crop settings.
    """
    problems = _sqlite_problems(conn)
    problems += schema_problems(conn, version)
    problems += value_problems(conn, version, limit=_MAX_LISTED, history=True)
    problems += _embedding_problems(conn, read_models(conn))
    problems += _blob_problems(conn)
    problems += _config_problems(conn)
    return problems
