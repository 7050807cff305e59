"""The saved search state of a store (issue 14): one header row and named typed arrays.

A fitted suggester (index, alignment, PCA, learned head; :mod:`cellseek.search.saved`) is saved
inside the store, so the store, its export and a colleague's copy open with it and need no
rebuild. It is a cache: :mod:`cellseek.search.saved` keys it by what it was built from, and a
state whose key differs, or that fails any check here or there, is never used.

Arrays are stored as raw little-endian values split into parts of at most
:data:`MAX_PART_BYTES`; reading checks each dtype against a short list, the shape against the
byte count, and bounds every size, so a crafted store cannot make cellseek allocate more than
the array declares nor read an object. The header also holds each array's xxh3-128 digest
(:data:`DIGESTS`): an array edited in place, even at the same size, is refused (hashing runs at
about 10 GB/s, 0.07 s for the 635 MB index of a million cells).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import datetime, timezone

import numpy as np

from cellseek.errors import StoreError
from cellseek.store import untrusted_json

#: dtypes a saved array may have.
ARRAY_DTYPES = ("float16", "float32", "float64", "int32", "int64", "uint8", "uint64", "bool")
#: Largest part of an array (SQLite's own limit on a value is 1 GB).
MAX_PART_BYTES = 256 * 1024 * 1024
#: Largest JSON header.
MAX_HEADER_BYTES = 16 * 1024 * 1024
#: Largest array (all its parts).
MAX_ARRAY_BYTES = 64 * 1024**3
#: Header entry holding ``{array name: xxh3-128 hex digest of its little-endian bytes}``.
DIGESTS = "array_xxh3_128"


def _digest(parts) -> str:
    import xxhash

    h = xxhash.xxh3_128()
    for part in parts:
        h.update(part)
    return h.hexdigest()


def save(conn: sqlite3.Connection, key: str, header: Mapping,
         arrays: Mapping[str, np.ndarray]) -> int:
    """Replace the saved state (inside the caller's transaction); returns the bytes written."""
    if DIGESTS in header:
        raise ValueError(f"{DIGESTS!r} is reserved in a search state header")
    conn.execute("DELETE FROM search_arrays")
    conn.execute("DELETE FROM search_state")
    total, digests = 0, {}
    for name, value in arrays.items():
        a = np.asarray(value)  # (not ascontiguousarray: it turns a 0-d array into 1-d)
        if a.dtype.name not in ARRAY_DTYPES:
            raise ValueError(f"search array {name!r} has dtype {a.dtype}, not one of "
                             f"{ARRAY_DTYPES}")
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        shape = json.dumps([int(s) for s in a.shape])
        for part, start in enumerate(range(0, max(len(raw), 1), MAX_PART_BYTES)):
            conn.execute("INSERT INTO search_arrays (name, part, dtype, shape, data) "
                         "VALUES (?, ?, ?, ?, ?)",
                         (name, part, a.dtype.name, shape, raw[start:start + MAX_PART_BYTES]))
        digests[name] = _digest([raw])
        total += len(raw)
    text = _header_text(header, digests)
    conn.execute("INSERT INTO search_state (id, key, header, saved_at) VALUES (1, ?, ?, ?)",
                 (key, text, datetime.now(timezone.utc).isoformat(timespec="seconds")))
    return total + len(text)


def _header_text(header: Mapping, digests) -> str:
    text = json.dumps({**header, DIGESTS: digests})
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError(f"the search state header is {len(text)} bytes, more than "
                         f"{MAX_HEADER_BYTES}")
    return text


def update_header(conn: sqlite3.Connection, key: str, header: Mapping) -> bool:
    """Replace the header of the saved state built with ``key`` (inside the caller's
    transaction); whether there was one. The arrays' digests are kept."""
    if not _has_tables(conn):
        return False
    row = conn.execute("SELECT header FROM search_state WHERE id = 1 AND key = ?",
                       (key,)).fetchone()
    if row is None:
        return False
    try:
        digests = untrusted_json.loads(row[0]).get(DIGESTS)
    except (ValueError, TypeError, AttributeError):
        return False  # a malformed state: the next load refuses it
    return conn.execute("UPDATE search_state SET header = ? WHERE id = 1 AND key = ?",
                        (_header_text({k: v for k, v in header.items() if k != DIGESTS},
                                      digests), key)).rowcount > 0


def drop(conn: sqlite3.Connection) -> bool:
    """Delete the saved state (inside the caller's transaction); whether there was one."""
    had = conn.execute("SELECT COUNT(*) FROM search_state").fetchone()[0] > 0
    conn.execute("DELETE FROM search_arrays")
    conn.execute("DELETE FROM search_state")
    return had


def info(conn: sqlite3.Connection) -> dict | None:
    """Key, time, sizes of the saved state, or None (read without loading the arrays)."""
    if not _has_tables(conn):
        return None
    row = conn.execute("SELECT key, saved_at, length(header) FROM search_state").fetchone()
    if row is None:
        return None
    size, n = conn.execute("SELECT COALESCE(SUM(length(data)), 0), COUNT(DISTINCT name) "
                           "FROM search_arrays").fetchone()
    return {"key": row[0], "saved_at": row[1], "bytes": int(size) + int(row[2]),
            "arrays": int(n)}


def _has_tables(conn) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                        "name = 'search_state'").fetchone() is not None


def load(conn: sqlite3.Connection, where) -> tuple[str, dict, dict[str, np.ndarray]] | None:
    """The saved ``(key, header, arrays)``, or None when there is none.

    Raises
    ------
    StoreError
        The saved state is malformed (bad JSON, unknown dtype, a shape that does not match the
        data, missing or repeated parts, sizes over the bounds).
    """
    if not _has_tables(conn):
        return None
    row = conn.execute("SELECT key, header FROM search_state WHERE id = 1").fetchone()
    if row is None:
        return None
    key, text = row
    if not isinstance(text, str) or len(text) > MAX_HEADER_BYTES:
        raise StoreError(f"{where}: the saved search index header is malformed")
    try:
        header = untrusted_json.loads(text)
    except ValueError:
        raise StoreError(f"{where}: the saved search index header is not JSON") from None
    digests = header.pop(DIGESTS, None) if isinstance(header, dict) else None
    if not isinstance(digests, dict):
        raise StoreError(f"{where}: the saved search index has no checksums (saved by an "
                         "earlier cellseek)")
    arrays: dict[str, np.ndarray] = {}
    parts: dict[str, list] = {}
    for name, part, dtype, shape, data in conn.execute(
            "SELECT name, part, dtype, shape, data FROM search_arrays ORDER BY name, part"):
        parts.setdefault(name, []).append((part, dtype, shape, data))
    if set(parts) != set(digests):
        raise StoreError(f"{where}: the saved search index's arrays do not match its list")
    for name, rows in parts.items():
        parts_ok = all(isinstance(r[3], bytes) for r in rows)
        if not parts_ok or _digest(r[3] for r in rows) != digests[name]:
            raise StoreError(f"{where}: the saved search array {name!r} does not match its "
                             "checksum (edited or damaged)")
        arrays[name] = _array(name, rows, where)
    return str(key), header, arrays


def _array(name: str, rows: list, where) -> np.ndarray:
    dtypes, shapes = {r[1] for r in rows}, {r[2] for r in rows}
    if [r[0] for r in rows] != list(range(len(rows))) or len(dtypes) != 1 or len(shapes) != 1:
        raise StoreError(f"{where}: the saved search array {name!r} has missing or mixed parts")
    dtype = dtypes.pop()
    if dtype not in ARRAY_DTYPES:
        raise StoreError(f"{where}: the saved search array {name!r} has dtype {dtype!r}")
    try:
        shape = untrusted_json.loads(shapes.pop())
    except ValueError:
        shape = None
    if not isinstance(shape, list) or len(shape) > 8 or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**40 for s in shape):
        raise StoreError(f"{where}: the saved search array {name!r} has a malformed shape")
    itemsize = np.dtype(dtype).itemsize
    nbytes = int(np.prod(shape, dtype=object)) * itemsize
    if nbytes > MAX_ARRAY_BYTES or sum(len(r[3]) for r in rows) != nbytes:
        raise StoreError(f"{where}: the saved search array {name!r} holds "
                         f"{sum(len(r[3]) for r in rows)} bytes, its shape {shape} needs {nbytes}")
    raw = b"".join(r[3] for r in rows) if len(rows) > 1 else rows[0][3]
    little = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
    if little.dtype.isnative:
        return little  # read-only, over the bytes read: no copy of a large index
    return little.astype(np.dtype(dtype))  # in the machine's byte order
