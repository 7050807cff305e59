"""The model set, its fusion weights and free JSON metadata, on an open store connection."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping

from cellseek.config import current_limits
from cellseek.errors import IncompatibleStoreError, StoreError
from cellseek.store import untrusted_json
from cellseek.store.common import format_models
from cellseek.store.rules import MAX_NAME_BYTES, check_text, check_weight


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
    values = {name: check_weight(name, w) for name, w in weights.items()}
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
    check_text(key, "the metadata key", MAX_NAME_BYTES)
    text = json.dumps(value)  # ASCII (ensure_ascii): characters are bytes
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
        return untrusted_json.loads(text)
    except ValueError as exc:
        raise StoreError(f"{where}: the saved setting {key!r} is malformed ({exc}); the store "
                         "is damaged or was crafted") from None


def check_versions(versions: Mapping[str, int], models: Mapping[str, int]) -> dict[str, int]:
    """One integer version per model of a new store (models not named: version 1)."""
    unknown = sorted(set(versions) - set(models))
    if unknown:
        raise ValueError(f"versions given for models the store does not hold: {unknown}")
    return {m: int(versions.get(m, 1)) for m in sorted(models)}


def read_versions(conn: sqlite3.Connection, models: Mapping[str, int],
                  where="the store") -> dict[str, int]:
    """Model -> embedding-space version saved with the store (1 where none was saved)."""
    saved = read_value(conn, "model_versions", {}, where) or {}
    out = {}
    for m in models:
        value = saved.get(m, 1) if isinstance(saved, dict) else 1
        out[m] = int(value) if isinstance(value, int) and not isinstance(value, bool) else 1
    return out


def check_same_versions(have: Mapping[str, int], want: Mapping[str, int], where,
                        who: str = "this cellseek") -> None:
    """Refuse embeddings of another model version: the feature spaces cannot be mixed.

    Parameters
    ----------
    have : mapping
        Model -> version in the store.
    want : mapping
        Model -> version the caller computes (models not named are not checked).
    where
        The store, for the message.
    who : str
        Who computes ``want``.
    """
    bad = {m: (have[m], int(v)) for m, v in want.items() if m in have and have[m] != int(v)}
    if bad:
        parts = ", ".join(f"{m} version {old} in the store, version {new} in {who}"
                          for m, (old, new) in sorted(bad.items()))
        raise IncompatibleStoreError(
            f"{where}: the store's embeddings were computed by another version of the model "
            f"({parts}); the two feature spaces cannot be mixed. Nothing was changed. Open it "
            "with the cellseek that made it, or add its images to a new store."
        )
