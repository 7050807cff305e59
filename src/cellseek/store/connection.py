"""Connections and transactions of the reference store, and its error messages.

:func:`connect` opens the SQLite file (writable, read-only, or immutable on read-only media);
:class:`Transactions` serialises the calls of one store object and runs each write as one
``BEGIN IMMEDIATE … COMMIT``; :func:`translate_error` turns SQLite and OS errors into one line
a biologist can act on.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cellseek.errors import StoreError
from cellseek.store.files import sidecars

logger = logging.getLogger(__name__)

#: Seconds a writer waits for another writer's lock before giving up.
BUSY_TIMEOUT_S = 10.0


def _exhausted_ids(conn: sqlite3.Connection | None) -> list[str]:
    """Tables whose AUTOINCREMENT counter is at its maximum (SQLite then reports "full")."""
    if conn is None:
        return []
    try:
        return [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_sequence WHERE seq >= 9223372036854775807")]
    except sqlite3.Error:
        return []


def translate_error(exc: BaseException, path: Path | str, doing: str,
                    conn: sqlite3.Connection | None = None) -> StoreError:
    """Turn a sqlite3 or OS error into a :class:`StoreError` a biologist can act on.

    Parameters
    ----------
    exc : BaseException
        The sqlite3.Error or OSError raised.
    path : Path or str
        The store file, named in the message.
    doing : str
        What was being done, e.g. ``"saving 3 labels"``.
    conn : sqlite3.Connection, optional
        The store's connection, to tell a full disk from an id counter at its maximum (both
        are "full" to SQLite).
    """
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    code = getattr(exc, "errno", None)
    full = name.startswith("SQLITE_FULL") or "disk is full" in text or code == errno.ENOSPC
    exhausted = _exhausted_ids(conn) if full else []
    if exhausted:
        hint = (
            f"the store's id counter of table {exhausted[0]!r} is at its maximum (2**63 - 1), "
            "so nothing more can be added to it: the store was crafted or damaged (cellseek "
            "counts up from 1). Nothing from this change was saved; everything saved before is "
            "intact."
        )
    elif full:
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
    elif name.startswith("SQLITE_NOTADB") or "not a database" in text:
        hint = "this file is not a cellseek reference store (it is not an SQLite database)."
    elif name.startswith("SQLITE_CORRUPT") or "malformed" in text:
        hint = (
            "the file is damaged. Restore it from a backup "
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


def _sqlite_connect(uri: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False
    )
    try:
        # SQL stored in a file made elsewhere (views, triggers, defaults) may not call functions
        # with side effects; trust.check_schema refuses triggers and views altogether.
        conn.execute("PRAGMA trusted_schema=OFF")
        conn.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def connect(path: Path, readonly: bool) -> sqlite3.Connection:
    """Open the store file.

    Writable: ``mode=rw``. Read-only, four cases:

    - a non-empty ``-wal`` file lies beside the store (left by a program that was killed, or
      written by one that is running): ``mode=ro``. It reads the changes in that file but
      never merges them into the store (a ``mode=rw`` connection closing last would
      checkpoint: the store file's bytes and time would change under a "read-only" open);
      SQLite adds its ``-shm`` index file when it is missing;
    - the file and its folder are writable: ``mode=rw`` with ``PRAGMA query_only``, so SQLite
      removes its ``-wal``/``-shm`` files when the last connection closes (``mode=ro`` would
      leave them behind, empty);
    - otherwise, when no ``-wal``/``-shm`` file exists (no program has the store open):
      ``immutable=1``, which reads a WAL-mode store on read-only media without creating files;
    - otherwise ``mode=ro`` (reads what another program is writing), falling back to
      ``immutable=1`` when SQLite cannot use the shared-memory file; a non-empty ``-wal`` is
      then unreadable, which is logged.
    """
    base = path.as_uri()
    if not readonly:
        return _sqlite_connect(f"{base}?mode=rw")
    wal, shm = sidecars(path)
    if _writable(path) and wal.is_file() and wal.stat().st_size > 0:
        conn = _sqlite_connect(f"{base}?mode=ro")
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:  # pragma: no cover - fall back to a query_only open
            conn.close()
            logger.info("%s: read-only open with its -wal file failed; opening query-only",
                        path)
    if _writable(path):
        conn = _sqlite_connect(f"{base}?mode=rw")
        conn.execute("PRAGMA query_only=ON")
        return conn
    if not wal.exists() and not shm.exists():
        return _sqlite_connect(f"{base}?mode=ro&immutable=1")
    try:
        conn = _sqlite_connect(f"{base}?mode=ro")
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        if wal.exists() and wal.stat().st_size > 0:
            logger.warning(
                "%s: opened read-only without its -wal file (%s): the changes saved in %s are "
                "not visible; copy the store with that file to a writable folder to see them",
                path, exc, wal.name,
            )
        return _sqlite_connect(f"{base}?mode=ro&immutable=1")


class Transactions:
    """The connection of one store object: a lock, read snapshots and write transactions.

    Parameters
    ----------
    path : Path
        The store file (named in every error).
    conn : sqlite3.Connection
        Opened by :func:`connect` (autocommit mode: transactions are explicit).
    readonly : bool
        Refuse every write with a :class:`StoreError`.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, *, readonly: bool) -> None:
        self.path = path
        self.readonly = readonly
        self.lock = threading.RLock()
        self._conn: sqlite3.Connection | None = conn

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._conn is None

    def connection(self) -> sqlite3.Connection:
        """The open connection; raises :class:`StoreError` once closed."""
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._conn

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def write(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT); rolled back on any error."""
        if self.readonly:
            raise StoreError(
                f"{self.path}: {doing} failed: the store was opened read-only; open it without "
                "readonly=True to change it"
            )
        with self.lock:
            conn = self.connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:  # pragma: no cover - SQLite already rolled back
                        logger.exception("%s: rollback failed", self.path)
                if isinstance(exc, (sqlite3.Error, OSError)):
                    raise translate_error(exc, self.path, doing, conn) from exc
                raise

    @contextmanager
    def read(self, doing: str = "reading the store") -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several queries (a deferred read transaction)."""
        with self.lock:
            conn = self.connection()
            try:
                conn.execute("BEGIN")
                yield conn
            except (sqlite3.Error, OSError) as exc:
                raise translate_error(exc, self.path, doing) from exc
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
