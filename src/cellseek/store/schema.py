"""Schema, versioning and migrations of the SQLite reference store.

The schema is documented in ``docs/store.md``; :mod:`cellseek.store.trust` checks a file's
schema against the one defined here.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from functools import cache
from pathlib import Path

from cellseek.errors import StoreError
from cellseek.store.connection import translate_error
from cellseek.store.files import backup_beside

logger = logging.getLogger(__name__)

#: Version of the schema this cellseek writes. Bump it and add a migration for every change.
SCHEMA_VERSION = 5
#: Older schemas that open read-only without an upgrade (missing columns read as NULL, missing
#: tables as empty).
READABLE_VERSIONS = (3, 4)
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
SEARCH_SQL = """CREATE TABLE search_state (
    id       INTEGER PRIMARY KEY CHECK (id = 1),   -- one saved search state per store
    key      TEXT NOT NULL,             -- digest of the settings it was built with
    header   TEXT NOT NULL,             -- JSON (see cellseek.search.saved)
    saved_at TEXT NOT NULL
);
CREATE TABLE search_arrays (
    name  TEXT NOT NULL,
    part  INTEGER NOT NULL,             -- large arrays are split into parts
    dtype TEXT NOT NULL,                -- numpy dtype name (a short list is accepted)
    shape TEXT NOT NULL,                -- JSON list of ints
    data  BLOB NOT NULL,                -- raw little-endian values of this part
    PRIMARY KEY (name, part)
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
    suggestion     TEXT,               -- the suggested class, NULL when the vote abstained
    confidence     REAL,               -- vote share of best_label
    best_label     TEXT,               -- the winning class of the vote, also when it abstained
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
""" + PLANES_SQL + SEARCH_SQL


def _migrate_4_to_5(conn: sqlite3.Connection) -> None:
    """Version 4 -> 5: the saved search state (index, alignment, learned head; issue 14)."""
    for statement in SEARCH_SQL.split(";"):
        if statement.strip():
            conn.execute(statement)


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    """Version 3 -> 4: the winning class of every suggestion, also when it abstained."""
    conn.execute("ALTER TABLE cells ADD COLUMN best_label TEXT")


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
    3: _migrate_3_to_4,
    4: _migrate_4_to_5,
}

#: Columns a table gained in a schema version: a readable older store lacks them.
ADDED_COLUMNS = {4: {"cells": ("best_label",)}}
#: Tables added in a schema version: a readable older store lacks them.
ADDED_TABLES = {5: ("search_state", "search_arrays")}

#: ``sqlite_master`` entries SQLite itself may add (``ANALYZE`` statistics).
SQLITE_INTERNAL_TABLES = ("sqlite_sequence", "sqlite_stat1", "sqlite_stat2", "sqlite_stat3",
                          "sqlite_stat4")


@cache
def expected_objects() -> dict[tuple[str, str], tuple[str, ...] | None]:
    """``(type, name) -> column names`` (tables) or None (indexes) of a current-schema store.

    Built from :data:`SCHEMA_SQL` in memory, so it can never drift from what :func:`create`
    writes; column order is ignored by the check (a migrated table appends its new columns).
    """
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA_SQL)
        out: dict[tuple[str, str], tuple[str, ...] | None] = {}
        for kind, name in conn.execute("SELECT type, name FROM sqlite_master"):
            columns = None
            if kind == "table":
                columns = tuple(sorted(r[1] for r in conn.execute(f'PRAGMA table_xinfo("{name}")')))
            out[(kind, name)] = columns
        return out
    finally:
        conn.close()


def expected_for(version: int) -> dict[tuple[str, str], tuple[str, ...] | None]:
    """:func:`expected_objects` of a store of schema ``version`` (current or readable)."""
    later = {t for v, tables in ADDED_TABLES.items() if v > version for t in tables}

    def added_later(name: str) -> bool:
        return name in later or any(name.startswith(f"sqlite_autoindex_{t}_") for t in later)

    return {k: v for k, v in expected_objects().items() if not added_later(k[1])}


def expected_columns(table: str, version: int) -> tuple[str, ...] | None:
    """Column names of ``table`` in a store of schema ``version`` (current or readable)."""
    columns = expected_objects().get(("table", table))
    if columns is None:
        return None
    gone = {c for v, tables in ADDED_COLUMNS.items() if v > version for c in tables.get(table, ())}
    return tuple(c for c in columns if c not in gone)


def migrate(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """Upgrade a store from ``version`` to the current schema, after a backup copy."""
    try:
        backup_path = backup_beside(conn, path, f"schema{version}")
    except (sqlite3.Error, OSError) as exc:
        raise translate_error(exc, path, "backing up the store before the upgrade") from exc
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


