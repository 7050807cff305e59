"""Creating and opening store files: exclusive creation; recognise, repair, migrate and check.

:class:`~cellseek.store.ReferenceStore` calls :func:`create_file` and :func:`open_connection`
and wraps the connection; everything a file must pass before it is used happens here.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from cellseek.errors import IncompatibleStoreError, StoreError, StoreExistsError
from cellseek.store import connection, files, schema, trust
from cellseek.store import meta as meta_ops
from cellseek.store.common import format_models, now
from cellseek.store.schema import (
    APPLICATION_ID,
    FORMAT_NAME,
    READABLE_VERSIONS,
    SCHEMA_SQL,
    SCHEMA_VERSION,
)

logger = logging.getLogger(__name__)


def _build(tmp: Path, models: dict[str, int], extra_meta: dict[str, str]) -> None:
    """Write an empty current-schema store into the (private, new) file ``tmp``."""
    from cellseek import __version__

    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        # The file is private until published and fsynced as a whole, so building it needs no
        # per-statement syncs.
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA_SQL.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        info = {"format": FORMAT_NAME, "created_by": f"cellseek {__version__}",
                "created_at": now()}
        rows = [(k, json.dumps(v)) for k, v in info.items()] + list(extra_meta.items())
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", rows)
        conn.executemany("INSERT INTO models (name, dim) VALUES (?, ?)", sorted(models.items()))
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def create_file(path: Path, models: dict[str, int], *, overwrite: bool,
                meta: Mapping[str, object] | None) -> None:
    """Build a new store under a temporary name and publish it at ``path`` (exclusively unless
    ``overwrite``); see :meth:`ReferenceStore.create`."""
    extra = {k: meta_ops.encode_value(k, v) for k, v in (meta or {}).items()}
    if path.exists() and not overwrite:
        raise StoreExistsError(
            f"{path}: a file already exists here. Open it with ReferenceStore.open, or pass "
            "overwrite=True to replace it."
        )
    files.remove_stale_temps(path)  # what a create killed before it published left here
    tmp = files.temp_next_to(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb"):  # an OSError here names the real cause (read-only, full)
            pass
        _build(tmp, models, extra)
        files.fsync_file(tmp)
        if overwrite or not path.exists():
            # -wal/-shm files left at this path (by the store replaced here, or by one deleted
            # without them) would be read into the new file: they go
            files.remove_quietly(*files.sidecars(path))
        files.publish(tmp, path, overwrite=overwrite)
        files.fsync_dir(path.parent)
    except (sqlite3.Error, OSError) as exc:
        files.remove_quietly(tmp, *files.sidecars(tmp))
        raise connection.translate_error(exc, path, "creating the store") from exc
    except BaseException:
        files.remove_quietly(tmp, *files.sidecars(tmp))
        raise
    logger.info("created reference store %s with models %s", path, format_models(models))


def _repair(conn: sqlite3.Connection, path: Path, extra: list[tuple[str, str]]) -> None:
    """Drop SQL objects cellseek does not create, after a backup copy, in one transaction."""
    try:
        backup_path = files.backup_beside(conn, path, "repair")
        conn.execute("BEGIN IMMEDIATE")
        trust.drop_objects(conn, extra)
        conn.execute("COMMIT")
    except (sqlite3.Error, OSError) as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise connection.translate_error(exc, path, "repairing the store") from exc
    logger.warning("%s: removed %s (backup: %s)", path,
                   ", ".join(f"{k} {n!r}" for k, n in extra), backup_path)


def _prepare(conn: sqlite3.Connection, path: Path, readonly: bool, repair: bool) -> int:
    """Recognise, repair and migrate the store on ``conn``; returns its schema version."""
    if not trust.is_cellseek_store(conn):
        raise StoreError(f"{path}: this file is not a cellseek reference store (it is an "
                         "SQLite database of another program)")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise IncompatibleStoreError(
            f"{path}: made by a newer cellseek (schema {version} > {SCHEMA_VERSION}); "
            "upgrade cellseek"
        )
    extra = trust.unexpected_objects(conn, version)
    if extra and repair:
        _repair(conn, path, extra)
    elif extra:
        trust.check_schema(conn, path, version)  # raises, naming the objects
    if not readonly:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":  # pragma: no cover - e.g. some network file systems
            logger.warning("%s: WAL mode unavailable, using %s journal", path, mode)
    conn.execute("PRAGMA synchronous=FULL")
    if version < SCHEMA_VERSION:
        if not readonly:
            schema.migrate(conn, path, version)
            return SCHEMA_VERSION
        if version not in READABLE_VERSIONS:
            raise StoreError(
                f"{path}: the store has schema {version} and needs an upgrade to schema "
                f"{SCHEMA_VERSION}; open it once without readonly (a backup is made first)"
            )
    return version


def _refuse_odd_sidecars(path: Path) -> None:
    """Refuse a store whose ``-wal``, ``-shm`` or ``-journal`` file is a symbolic link or not
    a regular file: a received folder could point one at another file for SQLite to write."""
    for side in (*files.sidecars(path), path.with_name(path.name + "-journal")):
        if side.is_symlink() or (os.path.lexists(side) and not side.is_file()):
            raise StoreError(
                f"{path}: refused: {side.name} beside it is a symbolic link or not a regular "
                "file, and SQLite would write through it. Remove it (it is not part of a "
                "store you made) and try again")


def open_connection(path: Path, *, readonly: bool, repair: bool) -> sqlite3.Connection:
    """A connection to a store file that passed every check; see :meth:`ReferenceStore.open`."""
    if path.is_dir():
        raise StoreError(f"{path}: this is a folder; give the path of a reference store file")
    if not path.is_file():
        if path.exists():  # a FIFO, a device such as /dev/zero, a socket: never opened
            raise StoreError(f"{path}: this is not a regular file (a pipe, a device or a "
                             "socket); give the path of a reference store file")
        raise StoreError(f"{path}: no such reference store (the file does not exist)")
    _refuse_odd_sidecars(path)
    if repair and readonly:
        raise StoreError(f"{path}: a repair changes the store; open it without readonly")
    trust.sniff(path)
    conn = None
    try:
        conn = connection.connect(path, readonly)
        version = _prepare(conn, path, readonly, repair)
        trust.check_schema(conn, path, version)
        trust.check_values(conn, path, version)
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        raise connection.translate_error(exc, path, "opening the store") from exc
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    return conn
