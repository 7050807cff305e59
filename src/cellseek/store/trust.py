"""A store file made elsewhere is untrusted input: recognise it, check its schema and its values.

Checked on every open (read-only too) and therefore before every merge:

- the file is an SQLite database that is a cellseek store (else: one line saying so);
- its schema holds exactly the tables and indexes cellseek creates: a trigger or a view would
  run the sender's SQL on the user's own writes (e.g. rewrite every confirmed label), so any
  object cellseek does not create is refused, or dropped by an explicit repair;
- every value has the type and range the code relies on: plane indices ``t``/``z`` and cell
  coordinates are integers in range (they become file names and array indices), texts are
  bounded, model dims and embedding blob lengths agree, meta values are small valid JSON.

Blob contents (label images, embedding values, thumbnails) are checked where they are decoded
(:mod:`cellseek.store.blobs`) and by :mod:`cellseek.store.integrity`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cellseek.config import Limits, current_limits
from cellseek.errors import StoreError
from cellseek.store import untrusted_json
from cellseek.store.rules import (
    MAX_NAME_BYTES,
    MAX_WEIGHT,
    label_problem,
    sql_bad_label,
    sql_bad_text,
)
from cellseek.store.schema import (
    APPLICATION_ID,
    FORMAT_NAME,
    LABEL_SOURCES,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    SQLITE_INTERNAL_TABLES,
    expected_columns,
    expected_for,
)

#: The first 16 bytes of every SQLite 3 database file.
SQLITE_MAGIC = b"SQLite format 3\x00"
#: Largest time point or z index a plane or cell may have.
MAX_PLANE_INDEX = 1_000_000
#: Largest crop pixel size (``meta.target_pixel_size_um``) a store may state, in micrometres.
MAX_CROP_PIXEL_SIZE_UM = 1000.0
_MAX_INT32 = 2**31 - 1
_SIGNATURES = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"%PDF", "a PDF document"),
)


def sniff(path: Path) -> None:
    """Raise :class:`StoreError` unless ``path`` starts like an SQLite database.

    The message says what the file looks like instead (a CSV, a JPEG ...), so giving an image
    or a table as ``--store`` reads as that mistake, not as a damaged store.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    if head == SQLITE_MAGIC:
        return
    if not head:
        what = "it is empty (0 bytes)"
    else:
        kind = next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)
        if kind is None:
            try:
                head.decode("utf-8")
                kind = "a text file" + (" (a CSV table)" if path.suffix.lower() == ".csv" else "")
            except UnicodeDecodeError:
                kind = "another kind of file"
        what = f"it is {kind}, not an SQLite database"
    raise StoreError(
        f"{path}: this file is not a cellseek reference store ({what}); give the path of a "
        "store (a .cellseek file made by cellseek)"
    )


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
    return row is not None and isinstance(row[0], str) and FORMAT_NAME in row[0]


# ---------------------------------------------------------------------------- schema


def _fully_checked(version: int) -> bool:
    return version == SCHEMA_VERSION or version in READABLE_VERSIONS


def unexpected_objects(conn: sqlite3.Connection, version: int) -> list[tuple[str, str]]:
    """``(type, name)`` of every schema object cellseek does not create, in a stable order.

    Triggers and views are never expected. For the current (and read-only readable) schema any
    other table or index is unexpected too; older schemas are checked fully after migration.
    """
    expected = expected_for(version)
    out = []
    for kind, name in conn.execute("SELECT type, name FROM sqlite_master ORDER BY type, name"):
        if kind in ("trigger", "view"):
            out.append((kind, name))
        elif kind == "table" and name in SQLITE_INTERNAL_TABLES:
            continue
        elif _fully_checked(version) and (kind, name) not in expected:
            out.append((kind, name))
    return out


def schema_problems(conn: sqlite3.Connection, version: int) -> list[str]:
    """What differs from the schema cellseek creates (empty when the schema is as expected)."""
    problems = [f"{kind} {name!r} is not part of a cellseek store"
                for kind, name in unexpected_objects(conn, version)]
    if not _fully_checked(version):
        return problems
    present = {(k, n) for k, n in conn.execute("SELECT type, name FROM sqlite_master")}
    for (kind, name), _ in expected_for(version).items():
        if (kind, name) not in present:
            problems.append(f"{kind} {name!r} is missing")
        elif kind == "table":
            want = expected_columns(name, version)
            have = tuple(sorted(r[1] for r in conn.execute(f'PRAGMA table_xinfo("{name}")')))
            hidden = [r[1] for r in conn.execute(f'PRAGMA table_xinfo("{name}")') if r[6]]
            if have != want or hidden:
                problems.append(f"table {name!r} has columns {list(have)}, expected {list(want)}")
    return problems


def check_schema(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """Raise one clear :class:`StoreError` when the schema is not the one cellseek creates."""
    extra = unexpected_objects(conn, version)
    if extra:
        names = ", ".join(f"{kind} {name!r}" for kind, name in extra)
        raise StoreError(
            f"{path}: refused: the store holds SQL objects cellseek never creates ({names}); "
            "triggers and views would run on your changes. Remove them with `cellseek check "
            f"--repair {path}` (a backup is made first), or ask the sender for a clean copy"
        )
    problems = schema_problems(conn, version)
    if problems:
        raise StoreError(
            f"{path}: this store is damaged or was not made by cellseek: {problems[0]}"
            + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else "")
        )


def drop_objects(conn: sqlite3.Connection, objects: list[tuple[str, str]]) -> None:
    """Drop schema objects (inside the caller's transaction); triggers and views first."""
    order = {"trigger": 0, "view": 1, "index": 2, "table": 3}
    for kind, name in sorted(objects, key=lambda o: order.get(o[0], 4)):
        quoted = name.replace('"', '""')
        if kind in order:
            conn.execute(f'DROP {kind.upper()} IF EXISTS "{quoted}"')


# ---------------------------------------------------------------------------- values


def _text(col: str, limit: int | None = None, *, nullable: bool = False) -> str:
    return sql_bad_text(col, limit, nullable=nullable)


def _integer(col: str, low: int, high: int) -> str:
    return f"(typeof({col}) != 'integer' OR {col} < {low} OR {col} > {high})"


def _number(col: str, low: float, high: float, *, nullable: bool = False) -> str:
    bad = f"(typeof({col}) NOT IN ('integer', 'real') OR NOT ({col} >= {low} AND {col} <= {high}))"
    return f"({col} IS NOT NULL AND {bad})" if nullable else bad


def _value_rules(version: int, limits: Limits) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Table -> (row key SQL, [(condition that is true for a bad row, what is wrong)])."""
    text = limits.max_text_bytes
    sources = ", ".join(f"'{s}'" for s in LABEL_SOURCES)
    cells = [
        (_integer("image_id", 1, 2**63 - 1), "image_id is not an integer id"),
        (_integer("label_value", 1, _MAX_INT32), f"label_value is not an integer from 1 to "
                                                 f"{_MAX_INT32}"),
        (_integer("t", 0, MAX_PLANE_INDEX), f"t is not an integer from 0 to {MAX_PLANE_INDEX}"),
        (_integer("z", 0, MAX_PLANE_INDEX), f"z is not an integer from 0 to {MAX_PLANE_INDEX}"),
        *[(_integer(c, 0, _MAX_INT32), f"{c} is not an integer from 0 to {_MAX_INT32}")
          for c in ("bbox_row_min", "bbox_col_min", "bbox_row_max", "bbox_col_max", "area")],
        (_integer("touches_border", 0, 1), "touches_border is not 0 or 1"),
        (_number("centroid_row", 0, _MAX_INT32), "centroid_row is not a coordinate"),
        (_number("centroid_col", 0, _MAX_INT32), "centroid_col is not a coordinate"),
        # the text rule here; the class-name rule (not blank ...) on the distinct values in
        # _python_rows: a trim() of every row cost 40 ms per column at 100,000 cells
        (_text("label", nullable=True), f"label is not a class name (a text of at most "
                                        f"{text} bytes without NUL)"),
        (f"(label_source IS NOT NULL AND label_source NOT IN ({sources}))",
         f"label_source is not one of {LABEL_SOURCES}"),
        ("((label IS NULL) != (label_source IS NULL))", "label and label_source disagree"),
        (_text("suggestion", nullable=True), "suggestion is not a class name"),
        (_number("confidence", -1e-6, 1 + 1e-6, nullable=True),
         "confidence is not a number from 0 to 1"),
        (_text("labelled_at", 64, nullable=True), "labelled_at is not a time"),
    ]
    if version >= 4:
        cells.append((_text("best_label", nullable=True), "best_label is not a class name"))
    search = {}
    if version >= 5:
        from cellseek.store.search_state import ARRAY_DTYPES, MAX_HEADER_BYTES, MAX_PART_BYTES

        dtypes = ", ".join(f"'{d}'" for d in ARRAY_DTYPES)
        search = {
            "search_state": ("id", [
                (_text("key", MAX_NAME_BYTES), "the key is not a short text"),
                (_text("header", MAX_HEADER_BYTES), f"the header is not a text of at most "
                                                    f"{MAX_HEADER_BYTES} bytes"),
                (_text("saved_at", 64), "saved_at is not a time"),
            ]),
            "search_arrays": ("name", [
                (_text("name", MAX_NAME_BYTES), "the array name is not a short text"),
                (_integer("part", 0, 1 << 20), "the part is not a small integer"),
                (f"(dtype NOT IN ({dtypes}))", "the dtype is not one cellseek writes"),
                (_text("shape", 200), "the shape is not a short text"),
                (f"(typeof(data) != 'blob' OR length(data) > {MAX_PART_BYTES})",
                 f"the data is not binary of at most {MAX_PART_BYTES} bytes"),
            ]),
        }
    return {**search,
        "models": ("name", [
            (f"({_text('name', MAX_NAME_BYTES)} OR length(name) = 0)",
             "the model name is not a short text"),
            (_integer("dim", 1, limits.max_embedding_dim),
             f"dim is not an integer from 1 to {limits.max_embedding_dim}"),
            (_number("weight", 0, MAX_WEIGHT, nullable=True),
             f"weight is not a number from 0 to {MAX_WEIGHT:g}"),
        ]),
        "images": ("id", [
            (_text("path", text), f"path is not a text of at most {text} bytes without NUL"),
            (f"({_text('content_hash', text)} OR length(content_hash) = 0)",
             "content_hash is not a short text"),
            (_text("device", text), "device is not a short text"),
            (_text("source", text), "source is not a short text"),
            (_number("pixel_size_um", 1e-9, 1e9, nullable=True),
             "pixel_size_um is not a positive number"),
            (_text("shape", 1000), "shape is not a short text"),
            (_text("added_at", 64), "added_at is not a time"),
        ]),
        "planes": ("image_id", [
            (_integer("t", 0, MAX_PLANE_INDEX), f"t is not an integer from 0 to {MAX_PLANE_INDEX}"),
            (_integer("z", 0, MAX_PLANE_INDEX), f"z is not an integer from 0 to {MAX_PLANE_INDEX}"),
            ("typeof(labels) != 'blob'", "the label image is not binary data"),
        ]),
        "cells": ("id", cells),
        "thumbnails": ("cell_id", [
            (f"(typeof(data) != 'blob' OR length(data) > {limits.max_thumbnail_bytes})",
             f"the thumbnail is not an image of at most {limits.max_thumbnail_bytes} bytes"),
        ]),
        "meta": ("key", [
            (f"({_text('key', MAX_NAME_BYTES)} OR {_text('value', limits.max_meta_bytes)})",
             f"the value is not a text of at most {limits.max_meta_bytes} bytes"),
        ]),
    }


def _first_bad_rows(conn, table: str, key: str, rules, limit: int) -> list[str]:
    cases = " ".join(f"WHEN {cond} THEN ?" for cond, _ in rules)
    bad = " OR ".join(cond for cond, _ in rules)  # the CASE runs only on rows that break one
    sql = f"SELECT {key}, CASE {cases} END FROM {table} WHERE {bad} LIMIT {int(limit)}"
    rows = conn.execute(sql, [what for _, what in rules]).fetchall()
    return [f"{table} row {k!r}: {problem}" for k, problem in rows]


def _embedding_rows(conn, limit: int) -> list[str]:
    out = []
    models = {r[0] for r in conn.execute("SELECT name FROM models")}
    # The distinct models of the table, by seeks on its (model, cell_id) key: no full scan.
    model = conn.execute("SELECT min(model) FROM embeddings").fetchone()[0]
    while model is not None and len(out) < limit:
        if model not in models:
            out.append(f"embeddings: model {model!r} is not a model of the store")
        model = conn.execute("SELECT min(model) FROM embeddings WHERE model > ?",
                             (model,)).fetchone()[0]
    # The vectors themselves (length, finite values) are checked where they are read: every
    # read (cells.read_embeddings, merge, check) refuses a malformed blob naming its cell. A scan
    # here read the whole table at every open: 1.5-2.9 s at a million cells.
    return out


def _python_rows(conn, version: int, limits: Limits, limit: int, texts_ok: bool) -> list[str]:
    out = []
    # The distinct class names (the labels by their index) against the very rule cellseek
    # writes by. Only once every text passed the SQL text rule (no huge value is read here).
    queries = [] if not texts_ok else [
        ("label", "SELECT DISTINCT label FROM cells WHERE label IS NOT NULL"),
        ("suggestion or best_label", "SELECT DISTINCT suggestion, best_label FROM cells")
        if version >= 4 else ("suggestion", "SELECT DISTINCT suggestion FROM cells")]
    for what, sql in queries:
        for row in conn.execute(sql):
            for value in row:
                problem = None if value is None else label_problem(value)
                if problem:
                    out.append(f"cells: the {what} {value[:40]!r} is not a class name "
                               f"({problem})")
                    if len(out) >= limit:
                        return out
    for image_id, shape in conn.execute("SELECT id, shape FROM images WHERE typeof(shape) = "
                                        "'text'"):
        try:
            value = untrusted_json.loads(shape)
        except ValueError:
            value = None
        if not (isinstance(value, list) and len(value) <= 8 and all(
                isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 2**40
                for n in value)):
            out.append(f"images row {image_id!r}: shape is not a list of at most 8 sizes")
        if len(out) >= limit:
            return out
    for key, value in conn.execute("SELECT key, value FROM meta WHERE typeof(value) = 'text' "
                                   f"AND length(CAST(value AS BLOB)) <= {limits.max_meta_bytes}"):
        try:
            decoded = untrusted_json.loads(value)
        except ValueError:
            out.append(f"meta row {key!r}: the value is not valid JSON")
            continue
        if key == "target_pixel_size_um" and not (
                isinstance(decoded, int | float) and not isinstance(decoded, bool)
                and 0 < decoded <= MAX_CROP_PIXEL_SIZE_UM):
            out.append(f"meta row {key!r}: the crop pixel size is not a number from 0 to "
                       f"{MAX_CROP_PIXEL_SIZE_UM} um")
        if len(out) >= limit:
            break
    return out


def _history_rules(limits: Limits) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Rules of the label history (checked by the full check; undo checks what it restores)."""
    text = limits.max_text_bytes
    sources = ", ".join(f"'{s}'" for s in LABEL_SOURCES)
    return {
        "batches": ("id", [
            (_text("action", 64), "action is not a short text"),
            (_text("note", text), f"note is not a text of at most {text} bytes"),
            (_integer("undoable", 0, 1), "undoable is not 0 or 1"),
        ]),
        "audit": ("id", [
            (sql_bad_label("old_label", nullable=True), "old_label is not a class name"),
            (sql_bad_label("new_label", nullable=True), "new_label is not a class name"),
            (f"(old_source IS NOT NULL AND old_source NOT IN ({sources}))",
             "old_source is not a label source"),
            (f"(new_source IS NOT NULL AND new_source NOT IN ({sources}))",
             "new_source is not a label source"),
            (_text("note", text), f"note is not a text of at most {text} bytes"),
        ]),
    }


def value_problems(conn: sqlite3.Connection, version: int, limits: Limits | None = None, *,
                   limit: int = 1, history: bool = False) -> list[str]:
    """Rows whose values break a type or range rule (at most ``limit`` per table); with
    ``history`` the label history (batches, audit) too."""
    limits = limits or current_limits()
    problems: list[str] = []
    rules_by_table = _value_rules(version, limits)
    if history:
        rules_by_table.update(_history_rules(limits))
    for table, (key, rules) in rules_by_table.items():
        problems.extend(_first_bad_rows(conn, table, key, rules, limit))
    problems.extend(_embedding_rows(conn, limit))
    cells_ok = not any(p.startswith("cells ") for p in problems)
    problems.extend(_python_rows(conn, version, limits, limit, cells_ok))
    return problems


def check_values(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """Raise one clear :class:`StoreError` naming the first value that breaks a rule."""
    problems = value_problems(conn, version)
    if problems:
        raise StoreError(
            f"{path}: refused: this store holds values cellseek never writes ({problems[0]}"
            + (f"; and {len(problems) - 1} more" if len(problems) > 1 else "")
            + "): it is damaged or was crafted. Nothing was read from it."
        )
