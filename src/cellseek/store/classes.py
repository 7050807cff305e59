"""Classes of confirmed labels: counts, renaming and merging, on an open store connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from cellseek.errors import StoreError
from cellseek.store.common import marks
from cellseek.store.labels import change_labels


def class_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Confirmed class -> number of cells, ordered by class name."""
    rows = conn.execute(
        "SELECT label, COUNT(*) FROM cells WHERE label IS NOT NULL GROUP BY label ORDER BY label"
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def rename(conn: sqlite3.Connection, old: str, new: str, where) -> None:
    """Rename class ``old`` to ``new`` (not an existing class) on every confirmed cell."""
    names = {r[0] for r in conn.execute(
        "SELECT DISTINCT label FROM cells WHERE label IN (?, ?)", (old, new))}
    if old not in names:
        raise StoreError(f"{where}: there is no class {old!r} to rename")
    if new in names:
        raise StoreError(
            f"{where}: class {new!r} already exists; use merge_classes to join {old!r} into it"
        )
    rows = conn.execute(
        "SELECT id, label_source FROM cells WHERE label = ? ORDER BY id", (old,)
    ).fetchall()
    change_labels(conn, "rename", [(r[0], new, r[1]) for r in rows], where,
                  note=f"rename {old!r} -> {new!r}")


def merge(conn: sqlite3.Connection, sources: Sequence[str], into: str, where) -> None:
    """Relabel every cell of the ``sources`` classes (all existing) as ``into``."""
    sources = list(sources)
    present = {r[0] for r in conn.execute(
        f"SELECT DISTINCT label FROM cells WHERE label IN ({marks(len(sources))})", sources)}
    unknown = [s for s in sources if s not in present]
    if unknown:
        raise StoreError(f"{where}: there is no class {unknown[0]!r} to merge")
    rows = conn.execute(
        f"SELECT id, label_source FROM cells WHERE label IN ({marks(len(sources))}) ORDER BY id",
        sources,
    ).fetchall()
    change_labels(conn, "merge_classes", [(r[0], into, r[1]) for r in rows], where,
                  note=f"merge {sources} -> {into!r}")
