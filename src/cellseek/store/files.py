"""File-system helpers of the store: temporary names, sidecars, fsync, exclusive publishing.

Every file the store writes is built under a temporary name in the target folder and then put in
place in one step, so a crash never leaves a half-written file at the target path. Files are
created with ``open`` (mode ``0o666`` less the user's umask), never ``mkstemp`` (``0o600``).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import socket
import sqlite3
import uuid
from pathlib import Path

from cellseek.errors import StoreExistsError

logger = logging.getLogger(__name__)

# link(2) is not supported everywhere (FAT, some network file systems): fall back then.
_NO_LINK = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}


#: Characters of the target's name kept in a temporary name (a long name must fail as itself).
_TEMP_PREFIX_CHARS = 100
_TEMP_NAME = re.compile(r"^\.(?P<prefix>.*)\.(?P<host>[0-9a-f]{6})-(?P<pid>\d+)\.[0-9a-f]{8}"
                        r"\.tmp(?:-journal|-wal|-shm)?$", re.DOTALL)


def _owner() -> str:
    """``<host tag>-<pid>``: which process on which machine a temporary name belongs to."""
    host = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]
    return f"{host}-{os.getpid()}"


def temp_next_to(path: Path) -> Path:
    """A fresh hidden temporary name in the folder of ``path`` (same file system: rename works).

    ``.<name>.<host>-<pid>.<random>.tmp``: the owner in the name lets a later run remove what a
    killed one left (:func:`remove_stale_temps`) without touching a running one's files.
    """
    return path.with_name(f".{path.name[:_TEMP_PREFIX_CHARS]}.{_owner()}."
                          f"{uuid.uuid4().hex[:8]}.tmp")


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # pragma: no cover - os.kill(pid, 0) would end the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


def stale_temps(path: Path) -> list[Path]:
    """Temporary files and folders of :func:`temp_next_to` for ``path`` whose process is gone.

    Only names made on this machine are judged (a process id says nothing about another
    machine sharing the folder); a running process's files are never listed.
    """
    prefix = path.name[:_TEMP_PREFIX_CHARS]
    host = _owner().split("-")[0]
    out = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if (match and match["prefix"] == prefix and match["host"] == host
                and not _pid_alive(int(match["pid"]))):
            out.append(Path(entry.path))
    return sorted(out)


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove what killed runs left next to ``path`` (see :func:`stale_temps`); returns it."""
    import shutil

    gone = []
    for stale in stale_temps(path):
        try:
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:  # pragma: no cover - best effort cleanup
            logger.warning("could not remove %s left by an interrupted run: %s", stale, exc)
            continue
        logger.info("removed %s, left by an interrupted run", stale)
        gone.append(stale)
    return gone


def sidecars(path: Path) -> tuple[Path, Path]:
    """The ``-wal`` and ``-shm`` files SQLite keeps next to a WAL-mode database."""
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def remove_store_files(path) -> None:
    """Remove a store file with its ``-wal``, ``-shm`` and ``-journal`` files, quietly."""
    path = Path(path)
    remove_quietly(path, *sidecars(path), path.with_name(path.name + "-journal"))


def remove_quietly(*paths: Path) -> None:
    """Remove files that may not exist; log (do not raise) other failures."""
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # pragma: no cover - best effort cleanup
            logger.warning("could not remove %s: %s", p, exc)


def fsync_file(path: Path) -> None:
    """Flush a file's data to stable storage."""
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


def publish(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Put the finished file ``tmp`` at ``path`` in one step; ``tmp`` is gone afterwards.

    Parameters
    ----------
    tmp : Path
        A complete file in the same folder.
    path : Path
        The target.
    overwrite : bool
        Replace an existing ``path`` (``os.replace``). Otherwise the step is exclusive: when
        ``path`` exists (also when another process creates it at the same moment) nothing is
        replaced and :class:`~cellseek.errors.StoreExistsError` is raised. It uses ``link(2)``,
        which fails on an existing target, or ``O_CREAT | O_EXCL`` where links are unsupported.

    Raises
    ------
    StoreExistsError
        ``path`` exists and ``overwrite`` is false.
    OSError
        Anything else the file system reports.
    """
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise StoreExistsError(f"{path}: a file already exists here") from None
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        _publish_without_link(tmp, path)
        return
    remove_quietly(tmp)


def _publish_without_link(tmp: Path, path: Path) -> None:
    """Claim ``path`` with ``O_EXCL`` (only one process can), then move ``tmp`` over the claim."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        raise StoreExistsError(f"{path}: a file already exists here") from None
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(path)
        raise


def copy_database(conn: sqlite3.Connection, path: Path, *, overwrite: bool) -> Path:
    """Copy the database on ``conn`` to ``path`` with SQLite's online backup, atomically.

    The copy is built in a new file created exclusively under a fresh temporary name next to
    ``path`` (``O_CREAT | O_EXCL``: never an existing file, never through a symbolic link),
    made self-contained (``journal_mode=DELETE``) and published with :func:`publish`: with
    ``overwrite`` the name is replaced (``rename(2)`` replaces a symbolic link, it does not
    write through it), otherwise an existing ``path`` raises
    :class:`~cellseek.errors.StoreExistsError`.

    Raises
    ------
    sqlite3.Error, OSError
        Untranslated (the caller names the store and what it was doing).
    """
    remove_stale_temps(path)
    tmp = temp_next_to(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb"):  # created with the user's umask; an OSError names the cause
            pass
        dest = sqlite3.connect(tmp)
        try:
            conn.backup(dest)
            dest.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        finally:
            dest.close()
        if overwrite:
            remove_quietly(*sidecars(path))
        publish(tmp, path, overwrite=overwrite)
        fsync_dir(path.parent)
    except BaseException:
        remove_quietly(tmp, tmp.with_name(tmp.name + "-journal"))
        raise
    return path


def backup_beside(conn: sqlite3.Connection, path: Path, tag: str) -> Path:
    """A safety copy of the store ``path`` (open on ``conn``) under a name nobody holds yet.

    ``<name>.<tag>.bak``, or ``<name>.<tag>.2.bak``, ``.3.bak`` ... when that exists: a file
    already there (an earlier backup, or a symbolic link a received folder planted to make
    cellseek overwrite another file) is never replaced nor written through.
    """
    for n in range(1, 10_000):
        name = f"{path.name}.{tag}.bak" if n == 1 else f"{path.name}.{tag}.{n}.bak"
        target = path.with_name(name)
        if os.path.lexists(target):
            continue
        try:
            return copy_database(conn, target, overwrite=False)
        except StoreExistsError:
            continue  # created by someone else a moment ago
    raise StoreExistsError(f"{path}: no free name for a {tag} backup beside it")
