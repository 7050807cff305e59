"""Confirmed labels, their audit log and undo, and suggestions, on an open store connection.

Every label change goes through :func:`change_labels`: it writes the new labels and one audit
row per changed cell under one *batch* (an undo step), inside the caller's transaction.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence

import numpy as np

from cellseek.errors import StoreError
from cellseek.store.common import chunks, marks, now
from cellseek.store.rules import ValueRuleError, clip_text, label_problem
from cellseek.store.schema import LABEL_SOURCES, UNDOABLE_ACTIONS

Change = tuple[int, "str | None", "str | None"]  # (cell id, new label, new label source)


def new_batch(conn: sqlite3.Connection, action: str, *, undoable: bool, note: str = "") -> int:
    """A new ``batches`` row (one undo step); returns its id."""
    cur = conn.execute(
        "INSERT INTO batches (action, time, note, undoable) VALUES (?, ?, ?, ?)",
        (action, now(), clip_text(note), int(undoable)),
    )
    return cur.lastrowid


def change_labels(
    conn: sqlite3.Connection,
    action: str,
    changes: Iterable[Change],
    where,
    *,
    batch_id: int | None = None,
    undoable: bool = True,
    note: str = "",
    skip_missing: bool = False,
) -> int | None:
    """Apply ``(cell_id, new_label, new_source)`` changes in order, with one audit row each.

    A batch is created on the first real change (unless ``batch_id`` is given); a change that
    changes nothing is skipped. Several changes of one cell are applied one after the other
    (each audited). The work is linear: current labels are read in chunks and written with
    ``executemany``.

    Returns
    -------
    int or None
        The batch id, or None when nothing changed.

    Raises
    ------
    StoreError
        A cell does not exist (unless ``skip_missing``); nothing is changed then.
    """
    changes = [(int(c), lab, src) for c, lab, src in changes]
    note = clip_text(note)
    state: dict[int, tuple[str | None, str | None]] = {}
    unique = list(dict.fromkeys(c for c, _, _ in changes))
    for chunk in chunks(unique):
        for cid, label, source in conn.execute(
            f"SELECT id, label, label_source FROM cells WHERE id IN ({marks(len(chunk))})",
            tuple(chunk),
        ):
            state[cid] = (label, source)
    stamp = now()
    audit = []
    final: dict[int, tuple[str | None, str | None]] = {}
    for cell_id, new_label, new_source in changes:
        if cell_id not in state:
            if skip_missing:
                continue
            raise StoreError(f"{where}: there is no cell with id {cell_id} in this store")
        old_label, old_source = state[cell_id]
        if old_label == new_label and old_source == new_source:
            continue
        if batch_id is None:
            batch_id = new_batch(conn, action, undoable=undoable, note=note)
        audit.append((batch_id, cell_id, action, old_label, new_label, old_source, new_source,
                      note, stamp))
        state[cell_id] = final[cell_id] = (new_label, new_source)
    conn.executemany(
        "UPDATE cells SET label = ?, label_source = ?, labelled_at = ? WHERE id = ?",
        [(lab, src, stamp if lab is not None else None, cid) for cid, (lab, src) in final.items()],
    )
    conn.executemany(
        "INSERT INTO audit (batch_id, cell_id, action, old_label, new_label, old_source, "
        "new_source, note, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        audit,
    )
    return batch_id


def undo_last(conn: sqlite3.Connection, where) -> list[tuple[int, str | None]] | None:
    """Revert the newest undoable batch not undone yet; see :meth:`ReferenceStore.undo`."""
    row = conn.execute(
        f"SELECT id, action FROM batches WHERE undoable = 1 AND undone_by IS NULL AND "
        f"action IN ({marks(len(UNDOABLE_ACTIONS))}) ORDER BY id DESC LIMIT 1",
        UNDOABLE_ACTIONS,
    ).fetchone()
    if row is None:
        return None
    target = row[0]
    first: dict[int, tuple[str | None, str | None]] = {}
    for cid, old_label, old_source in conn.execute(
        "SELECT cell_id, old_label, old_source FROM audit WHERE batch_id = ? ORDER BY id",
        (target,),
    ):
        first.setdefault(cid, (old_label, old_source))
    alive = {
        r[0]
        for chunk in chunks(list(first))
        for r in conn.execute(f"SELECT id FROM cells WHERE id IN ({marks(len(chunk))})",
                              tuple(chunk))
    }
    changes = [(cid, lab, src) for cid, (lab, src) in first.items() if cid in alive]
    for cid, lab, src in changes:  # the audit log of a received store is untrusted input
        problem = None if lab is None else label_problem(lab)
        if problem or (lab is None) != (src is None) or src not in (*LABEL_SOURCES, None):
            raise StoreError(f"{where}: the audit log holds a label cellseek never writes for "
                             f"cell {cid} ({problem or 'its source'}); the store is damaged or "
                             "was crafted. Nothing was undone.")
    undo_batch = new_batch(conn, "undo", undoable=False, note=f"undo of batch {target} ({row[1]})")
    change_labels(conn, "undo", changes, where, batch_id=undo_batch,
                  note=f"undo of batch {target}")
    conn.execute("UPDATE batches SET undone_by = ? WHERE id = ?", (undo_batch, target))
    return [(cid, lab) for cid, lab, _ in changes]


def labelled_cells(conn: sqlite3.Connection) -> tuple[np.ndarray, list[str]]:
    """``(cell ids as int64, labels)`` of all confirmed cells, ordered by id."""
    rows = conn.execute(
        "SELECT id, label FROM cells WHERE label IS NOT NULL ORDER BY id"
    ).fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]


def _finite_or_none(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def save_suggestions(
    conn: sqlite3.Connection,
    ids: Sequence[int],
    labels: Sequence[str | None],
    confidences: Sequence[float | None],
    best_labels: Sequence[str | None],
    where,
) -> None:
    """Store suggestions, their confidence and the vote's winning class (not audited)."""
    rows = [
        (None if lab is None else str(lab), _finite_or_none(c),
         None if best is None else str(best), int(cid))
        for cid, lab, c, best in zip(ids, labels, confidences, best_labels)
    ]
    for value in {r[0] for r in rows} | {r[2] for r in rows}:
        problem = None if value is None else label_problem(value)
        if problem:
            raise ValueRuleError(f"{where}: the suggested class {value[:60]!r} cannot be "
                                 f"stored: {problem}; no suggestion was saved")
    unique = list(dict.fromkeys(r[3] for r in rows))
    known = set()
    for chunk in chunks(unique):
        known.update(r[0] for r in conn.execute(
            f"SELECT id FROM cells WHERE id IN ({marks(len(chunk))})", tuple(chunk)))
    missing = [i for i in unique if i not in known]
    if missing:
        raise StoreError(f"{where}: no cell with id(s) {missing[:10]}; no suggestion was saved")
    conn.executemany(
        "UPDATE cells SET suggestion = ?, confidence = ?, best_label = ? WHERE id = ?", rows
    )


def audit_rows(conn: sqlite3.Connection, cell_id: int | None = None) -> list[dict]:
    """Every label change (of one cell, or of all), oldest first; see
    :meth:`ReferenceStore.audit_log`."""
    sql = (
        "SELECT a.id, a.batch_id, a.time, a.action, a.cell_id, a.old_label, a.new_label, "
        "a.old_source, a.new_source, a.note, b.undone_by FROM audit a "
        "JOIN batches b ON b.id = a.batch_id"
    )
    params: tuple = ()
    if cell_id is not None:
        sql += " WHERE a.cell_id = ?"
        params = (int(cell_id),)
    return [
        {
            "id": r[0],
            "batch_id": r[1],
            "time": r[2],
            "action": r[3],
            "cell_id": r[4],
            "old_label": r[5],
            "new_label": r[6],
            "old_source": r[7],
            "source": r[8],
            "note": r[9],
            "undone": r[10] is not None,
        }
        for r in conn.execute(sql + " ORDER BY a.id", params)
    ]


def label_stamp(conn: sqlite3.Connection) -> int:
    """The id of the newest label batch: it changes whenever any confirmed label changes."""
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM batches").fetchone()[0])
