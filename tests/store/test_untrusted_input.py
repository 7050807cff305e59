"""Issue 24, second hardening pass: what a received store (or folder) can no longer do.

Each test crafts the input the way an attacker would, with plain SQL or plain files on a real
store, and checks what cellseek does with it.
"""

from __future__ import annotations

import io
import sqlite3
import zlib
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest

from cellseek.cli.main import main
from cellseek.errors import StoreError
from cellseek.store import ReferenceStore
from cellseek.types import Cell

MODELS = {"alpha": 8, "beta": 4}


def _cells(n: int) -> list[Cell]:
    return [Cell(label=i + 1, bbox=(i, i, i + 4, i + 4), centroid=(i + 2.0, i + 2.0), area=16)
            for i in range(n)]


def make_store(path: Path, *, image_hash: str = "hash-a", labels=("x", "y", None)) -> Path:
    """A small valid store: one image, one plane label image, cells with two labels."""
    rng = np.random.default_rng(0)
    with ReferenceStore.create(path, MODELS) as s:
        image_id = s.add_image("a.tif", image_hash)
        ids = s.add_cells(image_id, _cells(len(labels)),
                          {m: rng.normal(size=(len(labels), d)).astype(np.float32)
                           for m, d in MODELS.items()})
        s.set_plane_labels(image_id, 0, 0, np.arange(1, 17, dtype=np.int32).reshape(4, 4) % 4)
        for cid, lab in zip(ids, labels):
            if lab is not None:
                s.set_label(int(cid), lab)
    return path


def sql(path: Path, *statements, params=()) -> None:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement, params)
    conn.commit()
    conn.close()


def _npy_zeros(shape, dtype: str) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + bytes(int(np.prod(shape)) * np.dtype(dtype).itemsize)


# ------------------------------------------------------------------ 1. label-image bombs


def test_an_eight_byte_label_image_is_refused_by_export_and_merge(tmp_path, capsys):
    store = make_store(tmp_path / "received.cellseek")
    sql(store, "UPDATE planes SET labels = ?", params=(zlib.compress(_npy_zeros((512, 512),
                                                                                "<i8"), 9),))
    out = tmp_path / "out"
    assert main(["export", "--store", str(store), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "at most 4 bytes" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # all or nothing
    mine = make_store(tmp_path / "mine.cellseek", image_hash="hash-b")
    with ReferenceStore.open(mine) as s, pytest.raises(StoreError, match="nothing was merged"):
        s.merge_from(store)
    with ReferenceStore.open(mine, readonly=True) as s:
        assert len(s.images()) == 1


# ------------------------------------------------------------------ 2. symlinked side files


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


TRIGGER = ("CREATE TRIGGER hijack AFTER UPDATE OF label ON cells BEGIN "
           "UPDATE cells SET label = 'hacked'; END")


def test_repair_never_writes_through_a_symlinked_backup_name(tmp_path, capsys):
    victim = make_store(tmp_path / "victim.cellseek", image_hash="hash-v", labels=("v",) * 3)
    before = _digest(victim)
    received = tmp_path / "received"
    received.mkdir()
    store = make_store(received / "X.cellseek")
    sql(store, TRIGGER)
    (received / "X.cellseek.repair.bak").symlink_to(victim)
    assert main(["check", "--repair", str(store)]) == 0
    capsys.readouterr()
    assert _digest(victim) == before  # the other store was not replaced
    assert (received / "X.cellseek.repair.bak").is_symlink()
    backup = received / "X.cellseek.repair.2.bak"  # a fresh name instead
    conn = sqlite3.connect(backup)  # the copy made before the repair: trigger included
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
    conn.close()
    with ReferenceStore.open(victim, readonly=True) as s:
        assert s.classes() == {"v": 3}


def test_an_upgrade_never_writes_through_a_symlinked_backup_name(tmp_path):
    victim = make_store(tmp_path / "victim.cellseek", image_hash="hash-v", labels=("v",) * 3)
    before = _digest(victim)
    received = tmp_path / "received"
    received.mkdir()
    store = make_store(received / "X.cellseek")
    sql(store, "DROP TABLE search_arrays", "DROP TABLE search_state", "PRAGMA user_version = 4")
    (received / "X.cellseek.schema4.bak").symlink_to(victim)
    with ReferenceStore.open(store) as s:  # a writable open upgrades schema 4 -> 5
        assert s.schema_version == 5
    assert _digest(victim) == before
    assert (received / "X.cellseek.schema4.2.bak").is_file()


@pytest.mark.parametrize("side", ["-wal", "-shm", "-journal"])
def test_a_symlinked_sqlite_side_file_is_refused_in_one_line(tmp_path, side):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n" * 100)
    store = make_store(tmp_path / "X.cellseek")
    (tmp_path / f"X.cellseek{side}").symlink_to(victim)
    for readonly in (False, True):
        with pytest.raises(StoreError, match=f"X.cellseek{side} beside it is a symbolic link"):
            ReferenceStore.open(store, readonly=readonly)
    assert victim.read_text() == "precious\n" * 100


# ------------------------------------------------------------------ 4, 5, 9. one value rule


@pytest.mark.parametrize("label", ["x" * 4097, "é" * 2049, "ok\x00hidden", "", "   ", " pad"],
                         ids=["4097-bytes", "4098-utf8-bytes", "nul", "empty", "blank", "padded"])
def test_a_label_a_store_would_refuse_is_refused_when_written(tmp_path, label):
    from cellseek.store.rules import ValueRuleError

    store = make_store(tmp_path / "mine.cellseek")
    with ReferenceStore.open(store) as s:
        with pytest.raises(ValueRuleError) if label != " pad" else nullcontext():
            s.set_label(3, label)
        with pytest.raises(ValueRuleError):
            s.set_suggestions([3], [label + " "], [0.9])
    with ReferenceStore.open(store) as s:  # the store never refuses itself
        assert s.check() == []


def test_a_csv_label_or_source_over_the_limit_is_refused_before_anything_is_saved(tmp_path,
                                                                                   capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(
            tmp_path / f"c{i}.png")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(f"path,label,source\nc0.png,ok,lab\nc1.png,{'L' * 5000},lab\n")
    store = tmp_path / "ref.cellseek"
    assert main(["reference", str(csv_path), "--store", str(store), "-q"]) == 1
    err = capsys.readouterr().err
    assert "row 3" in err and "5000 bytes" in err and len(err.strip().splitlines()) == 1
    assert not store.exists()
    csv_path.write_text(f"path,label,source\nc0.png,ok,{'s' * 4097}\n")
    assert main(["reference", str(csv_path), "--store", str(store), "-q"]) == 1
    assert "the source of c0.png" in capsys.readouterr().err
    assert not store.exists()


@pytest.mark.parametrize(("statement", "expected"), [
    ("UPDATE cells SET label = 'big' || char(0) || ? WHERE id = 1", "label is not a class name"),
    ("UPDATE images SET path = 'a.tif' || char(0) || ?", "path is not a text"),
    ("UPDATE images SET source = ?", "source is not a short text"),
    ("UPDATE cells SET suggestion = 'q' || char(0) || ? WHERE id = 3",
     "suggestion is not a class name"),
])
def test_texts_are_measured_in_bytes_and_nul_is_refused_on_open(tmp_path, statement, expected):
    store = make_store(tmp_path / "received.cellseek")
    sql(store, statement, params=("y" * 10_000_000,) if "?" in statement else ())
    with pytest.raises(StoreError, match=expected):
        ReferenceStore.open(store, readonly=True)
    mine = make_store(tmp_path / "mine.cellseek", image_hash="hash-b")
    with ReferenceStore.open(mine) as s, pytest.raises(StoreError, match="refused"):
        s.merge_from(store)
    with ReferenceStore.open(mine, readonly=True) as s:
        assert s.classes() == {"x": 1, "y": 1}


def test_a_multibyte_text_is_measured_in_bytes(tmp_path):
    store = make_store(tmp_path / "received.cellseek")
    sql(store, "UPDATE images SET path = ?", params=("é" * 3000,))  # 3,000 characters, 6,000 bytes
    with pytest.raises(StoreError, match="path is not a text of at most 4096 bytes"):
        ReferenceStore.open(store, readonly=True)


@pytest.mark.parametrize("label", ["", "   ", "\t", " x", "x\n", "\u3000"])
def test_empty_and_blank_labels_of_a_received_store_are_refused(tmp_path, label):
    store = make_store(tmp_path / "received.cellseek")
    sql(store, "UPDATE cells SET label = ? WHERE id = 1", params=(label,))
    with pytest.raises(StoreError, match="label"):
        ReferenceStore.open(store, readonly=True)
    mine = make_store(tmp_path / "mine.cellseek", image_hash="hash-b")
    with ReferenceStore.open(mine) as s, pytest.raises(StoreError):
        s.merge_from(store)
    with ReferenceStore.open(mine, readonly=True) as s:
        assert "" not in s.classes() and s.classes() == {"x": 1, "y": 1}


def test_a_huge_model_weight_is_refused_in_one_line(tmp_path, capsys):
    store = make_store(tmp_path / "received.cellseek")
    sql(store, "UPDATE models SET weight = 1e300")
    with pytest.raises(StoreError, match="weight is not a number from 0 to 1e\\+06"):
        ReferenceStore.open(store, readonly=True)
    assert main(["index", "status", "--store", str(store)]) == 1
    err = capsys.readouterr().err
    assert "weight" in err and len(err.strip().splitlines()) == 1
    from cellseek.store.rules import ValueRuleError

    with ReferenceStore.open(make_store(tmp_path / "mine.cellseek")) as s, \
            pytest.raises(ValueRuleError, match="finite number from 0 to"):
        s.set_model_weights({"alpha": 1e300, "beta": 1.0})


def test_undo_refuses_a_crafted_audit_label_instead_of_writing_it(tmp_path):
    store = make_store(tmp_path / "received.cellseek")
    sql(store, "UPDATE audit SET old_label = '', old_source = 'user' WHERE cell_id = 2")
    with ReferenceStore.open(store) as s:
        assert any("old_label is not a class name" in p for p in s.check())
        with pytest.raises(StoreError, match="Nothing was undone"):
            s.undo()
        assert s.classes() == {"x": 1, "y": 1}
    with ReferenceStore.open(store, readonly=True):
        pass  # still opens


# ------------------------------------------------------------------ 8. read-only means unchanged


def test_a_read_only_open_never_rewrites_a_store_with_a_leftover_wal(tmp_path, capsys):
    import os
    import shutil

    source = make_store(tmp_path / "live.cellseek")
    writer = ReferenceStore.open(source)
    writer._conn.execute("PRAGMA wal_autocheckpoint=0")
    writer.set_label(3, "in-the-wal")
    copy = tmp_path / "copy"
    copy.mkdir()
    for side in ("", "-wal"):  # what a killed program leaves behind
        shutil.copy2(f"{source}{side}", copy / f"X.cellseek{side}")
    writer.close()
    store = copy / "X.cellseek"
    before = (_digest(store), store.stat().st_mtime_ns, _digest(copy / "X.cellseek-wal"))
    with ReferenceStore.open(store, readonly=True) as s:
        assert s.classes() == {"in-the-wal": 1, "x": 1, "y": 1}  # the -wal is read
    assert main(["export", "--store", str(store), "-o", str(tmp_path / "out")]) == 0
    assert main(["check", str(store)]) == 0
    assert main(["index", "status", "--store", str(store)]) == 0
    capsys.readouterr()
    after = (_digest(store), store.stat().st_mtime_ns, _digest(copy / "X.cellseek-wal"))
    assert after == before
    assert os.path.getsize(copy / "X.cellseek-wal") > 0
    with ReferenceStore.open(store) as s:  # a writable open then merges it, as always
        assert s.classes()["in-the-wal"] == 1


# ------------------------------------------------------------------ 6. leftovers of killed runs


def test_the_temporary_store_a_killed_create_leaves_is_removed_by_the_next(tmp_path):
    import os
    import subprocess
    import sys
    import textwrap

    target = tmp_path / "ref.cellseek"
    code = textwrap.dedent(f"""
        import os, signal
        from cellseek.store import lifecycle, ReferenceStore
        real = lifecycle._build
        def build(*args):
            real(*args)
            os.kill(os.getpid(), signal.SIGKILL)  # built, not yet published
        lifecycle._build = build
        ReferenceStore.create({str(target)!r}, {{"alpha": 8}})
    """)
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
    assert done.returncode == -9, done.stderr
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".ref.cellseek.") and left[0].endswith(".tmp")
    mine = tmp_path / ".ref.cellseek.000000-1.0badc0de.tmp"  # another machine's: kept
    mine.write_text("")
    host = left[0].split(".")[3].split("-")[0]
    live = tmp_path / f".ref.cellseek.{host}-{os.getpid()}.1234abcd.tmp"  # a running process's
    live.write_text("")
    with ReferenceStore.create(target, MODELS):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ref.cellseek", mine.name, live.name])


# ------------------------------------------------------------------ 9. CSV cells a spreadsheet runs


@pytest.mark.parametrize("text", [" =1+1", "\n=cmd", "\uff1dSUM(A1)", "|calc", "\u3000@x",
                                  "\uff0b1", "\t-2"])
def test_cells_a_spreadsheet_would_run_are_escaped_in_the_csv(tmp_path, text):
    import csv

    store = make_store(tmp_path / "mine.cellseek")
    with ReferenceStore.open(store) as s:
        s._conn.execute("UPDATE images SET path = ?", (text,))
        s.set_label(3, text.strip() or "z")
        out = tmp_path / "cells.csv"
        s.export_cells_csv(out)
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["image"] == "'" + text
    assert rows[2]["class"] == "'" + text.strip()
    assert rows[0]["centroid_row"] == "2.0"  # numbers are never changed
