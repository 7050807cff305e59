"""Small helpers shared by the store modules: time stamps, chunked queries, value checks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

from cellseek.store.rules import MAX_NAME_BYTES, check_text

#: Bound parameters per ``IN (...)`` query, below SQLite's historic limit of 999.
CHUNK = 900


def now() -> str:
    """The current time in UTC, ISO 8601 with milliseconds (the store's time format)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def chunks(values: Sequence, size: int = CHUNK) -> Iterator[Sequence]:
    """Consecutive slices of at most ``size`` values."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def marks(n: int) -> str:
    """``?,?,...`` with ``n`` placeholders."""
    return ",".join("?" * n)


def format_models(models: dict[str, int]) -> str:
    """``{a: 384, b: 64}`` (sorted by name), for messages."""
    return "{" + ", ".join(f"{name}: {dim}" for name, dim in sorted(models.items())) + "}"


def check_models(models: dict[str, int]) -> dict[str, int]:
    """A validated copy of a model set (name -> positive dim); ``ValueError`` otherwise."""
    if not models:
        raise ValueError("a reference store needs at least one model (name -> embedding dim)")
    out = {}
    for name, dim in models.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"model names must be non-empty strings, got {name!r}")
        check_text(name, "the model name", MAX_NAME_BYTES)
        if int(dim) <= 0:
            raise ValueError(f"model {name!r}: embedding dim must be positive, got {dim}")
        out[name] = int(dim)
    return out
