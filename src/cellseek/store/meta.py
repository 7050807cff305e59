"""The model set, its fusion weights and free JSON metadata, on an open store connection."""

from __future__ import annotations

import json
import math
import sqlite3

from cellseek.config import current_limits
from cellseek.errors import StoreError
from cellseek.store.common import format_models


def read_models(conn: sqlite3.Connection) -> dict[str, int]:
    """Model name -> embedding dim, ordered by name."""
    return {r[0]: r[1] for r in conn.execute("SELECT name, dim FROM models ORDER BY name")}


def save_weights(conn: sqlite3.Connection, models: dict[str, int], weights: dict[str, float],
                 where) -> None:
    """Store one finite weight >= 0 per model of the store."""
    if set(weights) != set(models):
        raise StoreError(
            f"{where}: weights given for {sorted(weights)}, but this store holds "
            f"{format_models(models)}; give one weight per model"
        )
    values = {}
    for name, w in weights.items():
        w = float(w)
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"weight of model {name!r} must be finite and >= 0, got {w}")
        values[name] = w
    conn.executemany("UPDATE models SET weight = ? WHERE name = ?",
                     [(w, name) for name, w in values.items()])


def read_weights(conn: sqlite3.Connection) -> dict[str, float] | None:
    """Model -> weight, or None while no weights were stored."""
    rows = conn.execute("SELECT name, weight FROM models ORDER BY name").fetchall()
    if any(r[1] is None for r in rows):
        return None
    return {r[0]: r[1] for r in rows}


def encode_value(key: str, value) -> str:
    """The JSON text of a meta value; refuses the reserved ``format`` key and huge values."""
    if key == "format":
        raise ValueError("the 'format' meta key is reserved")
    text = json.dumps(value)
    limit = current_limits().max_meta_bytes
    if len(text) > limit:
        raise ValueError(f"meta value {key!r} is {len(text)} bytes of JSON, more than {limit}")
    return text


def save_value(conn: sqlite3.Connection, key: str, text: str) -> None:
    """Insert or replace the JSON text under ``key``."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, text),
    )


def read_value(conn: sqlite3.Connection, key: str, default, where):
    """The value under ``key`` (decoded JSON, size bounded), or ``default``."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row is None:
        return default
    text = row[0]
    limit = current_limits().max_meta_bytes
    if not isinstance(text, str) or len(text) > limit:
        raise StoreError(f"{where}: the saved setting {key!r} is not JSON text of at most "
                         f"{limit} bytes; the store is damaged or was crafted")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise StoreError(f"{where}: the saved setting {key!r} is malformed ({exc}); the store "
                         "is damaged or was crafted") from None
