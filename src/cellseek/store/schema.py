"""Schema, versioning, migrations and error translation of the SQLite reference store.

Private helpers of :mod:`cellseek.store.reference_store`; the schema is documented in
``docs/store.md``.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from cellseek.errors import StoreError

logger = logging.getLogger(__name__)

#: Version of the schema this cellseek writes. Bump it and add a migration for every change.
SCHEMA_VERSION = 3
#: ``PRAGMA application_id`` of a cellseek store ("CSEK").
APPLICATION_ID = 0x4353454B
#: Value of the ``format`` meta key, a second way to recognise a store.
FORMAT_NAME = "cellseek-reference-store"
#: Label sources a confirmed label may carry.
LABEL_SOURCES = ("user", "accepted", "import")
#: Seconds a writer waits for another writer's lock before giving up.
BUSY_TIMEOUT_S = 10.0

# Batch actions that ``undo`` may revert.
UNDOABLE_ACTIONS = ("label", "clear", "rename", "merge_classes")

PLANES_SQL = """CREATE TABLE planes (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    t        INTEGER NOT NULL,
    z        INTEGER NOT NULL,
    labels   BLOB NOT NULL,             -- zlib-compressed .npy of the plane's label image
    PRIMARY KEY (image_id, t, z)
);
"""
SCHEMA_SQL = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL                 -- JSON
);
CREATE TABLE models (
    name   TEXT PRIMARY KEY,
    dim    INTEGER NOT NULL CHECK (dim > 0),
    weight REAL                         -- NULL until set_model_weights
);
CREATE TABLE images (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    path          TEXT NOT NULL,
    content_hash  TEXT NOT NULL UNIQUE,
    device        TEXT NOT NULL DEFAULT 'unknown',
    source        TEXT NOT NULL DEFAULT '',
    pixel_size_um REAL,
    shape         TEXT NOT NULL DEFAULT '[]',   -- JSON list of ints
    added_at      TEXT NOT NULL
);
CREATE TABLE cells (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id       INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    label_value    INTEGER NOT NULL,
    t              INTEGER NOT NULL DEFAULT 0,
    z              INTEGER NOT NULL DEFAULT 0,
    bbox_row_min   INTEGER NOT NULL,
    bbox_col_min   INTEGER NOT NULL,
    bbox_row_max   INTEGER NOT NULL,
    bbox_col_max   INTEGER NOT NULL,
    centroid_row   REAL NOT NULL,
    centroid_col   REAL NOT NULL,
    area           INTEGER NOT NULL,
    touches_border INTEGER NOT NULL DEFAULT 0,
    label          TEXT,
    label_source   TEXT CHECK (label_source IN ('user', 'accepted', 'import')),
    labelled_at    TEXT,
    suggestion     TEXT,
    confidence     REAL,
    UNIQUE (image_id, t, z, label_value),
    CHECK ((label IS NULL) = (label_source IS NULL))
);
CREATE INDEX cells_label ON cells(label);
CREATE TABLE embeddings (
    cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
    model   TEXT NOT NULL REFERENCES models(name),
    vector  BLOB NOT NULL,              -- float16, little endian, dim values
    PRIMARY KEY (model, cell_id)
) WITHOUT ROWID;
CREATE TABLE thumbnails (
    cell_id INTEGER PRIMARY KEY REFERENCES cells(id) ON DELETE CASCADE,
    data    BLOB NOT NULL
);
CREATE TABLE batches (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    action    TEXT NOT NULL,            -- label, clear, rename, merge_classes, delete, import, undo
    time      TEXT NOT NULL,
    note      TEXT NOT NULL DEFAULT '',
    undoable  INTEGER NOT NULL DEFAULT 0,
    undone_by INTEGER REFERENCES batches(id)
);
CREATE TABLE audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id   INTEGER NOT NULL REFERENCES batches(id),
    cell_id    INTEGER NOT NULL,        -- no foreign key: the log outlives deleted cells
    action     TEXT NOT NULL,
    old_label  TEXT,
    new_label  TEXT,
    old_source TEXT,
    new_source TEXT,
    note       TEXT NOT NULL DEFAULT '',
    time       TEXT NOT NULL
);
CREATE INDEX audit_cell ON audit(cell_id);
CREATE INDEX audit_batch ON audit(batch_id);
""" + PLANES_SQL


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Version 2 -> 3: the label image of every segmented plane (table ``planes``)."""
    conn.execute(PLANES_SQL)


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Version 1 -> 2: undo batches, model weights, image source and shape, thumbnails.

    Version 1 logged label changes one row at a time (``audit(id, cell_id, old_label, new_label,
    source, time)``), kept no thumbnails and had no model weights.
    """
    conn.execute("ALTER TABLE models ADD COLUMN weight REAL")
    conn.execute("ALTER TABLE images ADD COLUMN source TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE images ADD COLUMN shape TEXT NOT NULL DEFAULT '[]'")
    conn.execute(
        "CREATE TABLE thumbnails (cell_id INTEGER PRIMARY KEY REFERENCES cells(id) "
        "ON DELETE CASCADE, data BLOB NOT NULL)"
    )
    conn.execute("ALTER TABLE cells ADD COLUMN labelled_at TEXT")
    conn.execute("CREATE INDEX IF NOT EXISTS cells_label ON cells(label)")
    conn.execute(
        "CREATE TABLE batches (id INTEGER PRIMARY KEY AUTOINCREMENT, action TEXT NOT NULL, "
        "time TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', undoable INTEGER NOT NULL DEFAULT 0, "
        "undone_by INTEGER REFERENCES batches(id))"
    )
    conn.execute("ALTER TABLE audit RENAME TO audit_v1")
    conn.execute(
        "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, batch_id INTEGER NOT NULL "
        "REFERENCES batches(id), cell_id INTEGER NOT NULL, action TEXT NOT NULL, old_label TEXT, "
        "new_label TEXT, old_source TEXT, new_source TEXT, note TEXT NOT NULL DEFAULT '', "
        "time TEXT NOT NULL)"
    )
    # Every version-1 change becomes its own (not undoable) batch, with the same id.
    conn.execute(
        "INSERT INTO batches (id, action, time, note, undoable) "
        "SELECT id, CASE WHEN new_label IS NULL THEN 'clear' ELSE 'label' END, time, "
        "'migrated from schema 1', 0 FROM audit_v1 ORDER BY id"
    )
    conn.execute(
        "INSERT INTO audit (id, batch_id, cell_id, action, old_label, new_label, new_source, time) "
        "SELECT id, id, cell_id, CASE WHEN new_label IS NULL THEN 'clear' ELSE 'label' END, "
        "old_label, new_label, source, time FROM audit_v1 ORDER BY id"
    )
    conn.execute("DROP TABLE audit_v1")
    conn.execute("CREATE INDEX audit_cell ON audit(cell_id)")
    conn.execute("CREATE INDEX audit_batch ON audit(batch_id)")


#: ``MIGRATIONS[n]`` turns a version-``n`` store into a version ``n + 1`` store, in place,
#: inside the caller's transaction.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
}


def is_cellseek_store(conn: sqlite3.Connection) -> bool:
    """Whether an open SQLite database is a cellseek reference store (any schema version)."""
    if conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
        return True
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        return False
    row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    return row is not None and FORMAT_NAME in row[0]


def translate_error(exc: BaseException, path: Path | str, doing: str) -> StoreError:
    """Turn a sqlite3 or OS error into a :class:`StoreError` a biologist can act on.

    Parameters
    ----------
    exc : BaseException
        The sqlite3.Error or OSError raised.
    path : Path or str
        The store file, named in the message.
    doing : str
        What was being done, e.g. ``"saving 3 labels"``.
    """
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    code = getattr(exc, "errno", None)
    if name.startswith("SQLITE_FULL") or "disk is full" in text or code == errno.ENOSPC:
        hint = (
            "the disk is full. Nothing from this change was saved; everything saved before is "
            "intact. Free some disk space (or move the store to a larger disk) and try again."
        )
    elif (
        name.startswith("SQLITE_READONLY")
        or "readonly" in text
        or "read-only" in text
        or code in (errno.EACCES, errno.EPERM, errno.EROFS)
    ):
        hint = (
            "the file or its folder is read-only (or the store was opened read-only). Nothing "
            "from this change was saved. Copy the store to a folder you can write to, or fix its "
            "permissions."
        )
    elif name.startswith("SQLITE_BUSY") or name.startswith("SQLITE_LOCKED") or "locked" in text:
        hint = (
            "the store is locked by another program (another napari window or cellseek command "
            "writing to it). Nothing from this change was saved; close the other program and "
            "try again."
        )
    elif name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text:
        hint = (
            "the file is damaged or is not a cellseek store. Restore it from a backup "
            "(`cellseek` makes one before every schema migration)."
        )
    elif name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        hint = "the file cannot be opened; check that the folder exists and that you may write it."
    elif name.startswith("SQLITE_IOERR") or isinstance(exc, OSError):
        hint = (
            f"the disk reported an input/output error ({exc}). Nothing from this change was "
            "saved; check the disk or network drive and try again."
        )
    else:
        hint = f"{exc}"
    err = StoreError(f"{path}: {doing} failed: {hint}")
    err.__cause__ = exc
    return err


def remove_quietly(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # pragma: no cover - best effort cleanup
            logger.warning("could not remove %s: %s", p, exc)


def sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def connect(path: Path, readonly: bool) -> sqlite3.Connection:
    uri = f"{path.as_uri()}?mode={'ro' if readonly else 'rw'}"
    conn = sqlite3.connect(
        uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False
    )
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def migrate(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """Upgrade a store from ``version`` to the current schema, after a backup copy."""
    backup_path = path.with_name(f"{path.name}.schema{version}.bak")
    try:
        dest = sqlite3.connect(backup_path)
        try:
            conn.backup(dest)
        finally:
            dest.close()
    except (sqlite3.Error, OSError) as exc:
        raise translate_error(exc, path, f"backing up to {backup_path} before the upgrade") from exc
    logger.info(
        "%s: upgrading schema %d -> %d (backup: %s)", path, version, SCHEMA_VERSION, backup_path
    )
    try:
        conn.execute("BEGIN IMMEDIATE")
        for v in range(version, SCHEMA_VERSION):
            if v not in MIGRATIONS:
                raise StoreError(f"{path}: no upgrade known from schema {v}; this file is damaged")
            MIGRATIONS[v](conn)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, (sqlite3.Error, OSError)):
            raise translate_error(exc, path, f"upgrading schema {version}") from exc
        raise


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
