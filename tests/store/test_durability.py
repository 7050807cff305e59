"""Durability of the reference store: kills mid-write, a full disk, read-only places, locks.

Design principle 3: a crash, a kill or a full disk never loses or corrupts a confirmed label.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cellseek.errors import StoreError
from cellseek.store import ReferenceStore
from cellseek.store import connection as store_connection
from cellseek.store import labels as store_labels
from cellseek.types import Cell

SRC = Path(__file__).resolve().parents[2] / "src"
MODELS = {"alpha": 64, "beta": 32}
N_CONFIRMED = 25

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and permissions")


def _cells(n: int, t: int = 0) -> list[Cell]:
    return [
        Cell(label=i + 1, t=t, bbox=(0, 0, 4, 4), centroid=(2.0, 2.0), area=16) for i in range(n)
    ]


def _embeddings(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {m: rng.normal(size=(n, d)).astype(np.float32) for m, d in MODELS.items()}


def _make_store(path: Path, n_cells: int) -> None:
    with ReferenceStore.create(path, MODELS) as s:
        image_id = s.add_image("a.tif", "hash-a")
        s.add_cells(image_id, _cells(n_cells), _embeddings(n_cells))


# The child confirms N_CONFIRMED labels one transaction each, says READY, then writes until killed.
CHILD_LABELS = """
import sys
from cellseek.store import ReferenceStore
path, n_confirmed = sys.argv[1], int(sys.argv[2])
store = ReferenceStore.open(path)
ids = [c["id"] for c in store.cells()]
confirmed, rest = ids[:n_confirmed], ids[n_confirmed:]
for cid in confirmed:
    store.set_label(cid, "confirmed")
print("READY", flush=True)
k = 0
while True:
    store.set_labels(rest, "batch%d" % k)
    k += 1
"""

CHILD_CELLS = """
import sys
import numpy as np
from cellseek.store import ReferenceStore
from cellseek.types import Cell
path, n_confirmed, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = ReferenceStore.open(path)
ids = [c["id"] for c in store.cells(1)]
for cid in ids[:n_confirmed]:
    store.set_label(cid, "confirmed")
image_id = store.add_image("big.tif", "hash-big")
t = 1 + max([c["t"] for c in store.cells(image_id)] or [0])
rng = np.random.default_rng(t)
print("READY", flush=True)
while True:
    cells = [Cell(label=i + 1, t=t, bbox=(0, 0, 4, 4), centroid=(2.0, 2.0), area=16)
             for i in range(batch)]
    emb = {m: rng.normal(size=(batch, d)).astype(np.float32) for m, d in store.models.items()}
    store.add_cells(image_id, cells, emb)
    t += 1
"""


def _run_and_kill(code: str, *args, delay: float) -> None:
    """Start a child writing to the store, wait for READY, let it write ``delay`` s, SIGKILL it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    watchdog = threading.Timer(120, proc.kill)  # never hang the test run
    watchdog.start()
    try:
        line = proc.stdout.readline()
        if line.strip() != "READY":
            proc.kill()
            raise AssertionError(f"child failed before READY: {line!r} {proc.stderr.read()}")
        time.sleep(delay)  # let it get well into the write loop; not a timed assertion
        assert proc.poll() is None, proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        watchdog.cancel()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def _integrity_ok(store: ReferenceStore) -> None:
    assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert store._conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_kill_during_label_batches(tmp_path):
    path = tmp_path / "refs.cellseek"
    n_cells = 1500
    _make_store(path, n_cells)
    for delay in (0.15, 0.4, 0.25):
        _run_and_kill(CHILD_LABELS, path, N_CONFIRMED, delay=delay)
        with ReferenceStore.open(path, models=MODELS) as s:
            _integrity_ok(s)
            cells = s.cells()
            assert len(cells) == n_cells
            # every label confirmed before READY survived
            assert [c["label"] for c in cells[:N_CONFIRMED]] == ["confirmed"] * N_CONFIRMED
            # no partial batch: the other cells all carry the label of one committed batch
            rest = {c["label"] for c in cells[N_CONFIRMED:]}
            assert len(rest) == 1, f"partial batch visible: {sorted(map(str, rest))[:5]}"
            # the audit log agrees: every label batch is complete
            per_batch: dict[int, int] = {}
            for row in s.audit_log():
                if row["action"] == "label" and row["new_label"] != "confirmed":
                    per_batch[row["batch_id"]] = per_batch.get(row["batch_id"], 0) + 1
            assert set(per_batch.values()) <= {n_cells - N_CONFIRMED}


def test_kill_during_large_add_cells(tmp_path):
    path = tmp_path / "refs.cellseek"
    _make_store(path, 40)
    batch = 2500
    for delay in (0.3, 0.1):
        _run_and_kill(CHILD_CELLS, path, N_CONFIRMED, batch, delay=delay)
        with ReferenceStore.open(path, models=MODELS) as s:
            _integrity_ok(s)
            assert s.cells(1, labelled=True)[-1]["label"] == "confirmed"
            assert s.n_cells(labelled=True) == N_CONFIRMED
            big = s.image_by_hash("hash-big")
            per_plane: dict[int, int] = {}
            for c in s.cells(big["id"]):
                per_plane[c["t"]] = per_plane.get(c["t"], 0) + 1
            assert set(per_plane.values()) <= {batch}  # whole transactions only
            n = s.n_cells()
            for model, dim in MODELS.items():
                assert s.embeddings(model).shape == (n, dim)  # no cell without embeddings


def _fill_store(tmp_path):
    s = ReferenceStore.create(tmp_path / "refs.cellseek", MODELS)
    image_id = s.add_image("a.tif", "hash-a")
    ids = s.add_cells(image_id, _cells(20), _embeddings(20))
    s.set_labels(ids[:10], "keep")
    return s, image_id, ids


def test_full_disk_rolls_back_and_keeps_labels(tmp_path):
    s, image_id, ids = _fill_store(tmp_path)
    conn = s._conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite now reports SQLITE_FULL
    with pytest.raises(StoreError) as info:
        s.add_cells(image_id, _cells(400, t=1), _embeddings(400))
    message = str(info.value)
    assert str(s.path) in message and "disk is full" in message
    assert "Free some disk space" in message and "intact" in message
    assert not conn.in_transaction
    assert s.n_cells() == 20 and s.classes() == {"keep": 10}
    with pytest.raises(StoreError, match="disk is full"):
        s.set_labels(ids[10:], ["x" * 3000] * 10)  # labels that need new pages
    assert s.classes() == {"keep": 10}
    conn.execute("PRAGMA max_page_count = 1073741823")  # space is back: the store works again
    s.add_cells(image_id, _cells(400, t=1), _embeddings(400))
    s.close()
    with ReferenceStore.open(s.path) as again:
        _integrity_ok(again)
        assert again.n_cells() == 420 and again.classes() == {"keep": 10}


def test_full_disk_on_create_and_export_leaves_nothing(tmp_path, monkeypatch):
    s, _, _ = _fill_store(tmp_path)
    out = tmp_path / "cells.csv"
    s.export_cells_csv(out)
    before = out.read_bytes()

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    monkeypatch.setattr(os, "link", no_space)  # a new store is published with link(2)
    with pytest.raises(StoreError, match="cells.csv.*disk is full"):
        s.export_cells_csv(out)
    assert out.read_bytes() == before  # the old export is untouched
    with pytest.raises(StoreError, match="new.cellseek.*disk is full"):
        ReferenceStore.create(tmp_path / "new.cellseek", MODELS)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("refs")) == [
        "cells.csv"
    ]
    s.close()


def _read_only_dir(tmp_path) -> Path:
    """A folder this process cannot write: chmod for normal users, /sys for root."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    probe = d / "probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return d
    probe.unlink()  # root ignores permissions; use a read-only file system instead
    d.chmod(0o755)
    for candidate in (Path("/sys/kernel"), Path("/sys"), Path("/proc/sys")):
        try:
            (candidate / "cellseek-probe").write_bytes(b"")
        except OSError:
            if candidate.is_dir():
                return candidate
    pytest.skip("no read-only folder available")


def test_create_in_read_only_folder(tmp_path):
    folder = _read_only_dir(tmp_path)
    try:
        for path in (folder / "refs.cellseek", folder / "sub" / "refs.cellseek"):
            with pytest.raises(StoreError) as info:
                ReferenceStore.create(path, MODELS)
            assert str(path) in str(info.value) and "read-only" in str(info.value)
            assert not path.exists()
        if folder.is_relative_to(tmp_path):
            assert list(folder.iterdir()) == []
    finally:
        if folder.is_relative_to(tmp_path):
            folder.chmod(0o755)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores chmod")
def test_write_to_read_only_file(tmp_path):
    s, _, ids = _fill_store(tmp_path)
    s.close()
    s.path.chmod(0o444)
    try:
        with pytest.raises(StoreError, match="read-only"):
            with ReferenceStore.open(s.path) as again:
                again.set_label(int(ids[15]), "x")
    finally:
        s.path.chmod(0o644)


def test_write_through_read_only_connection(tmp_path, monkeypatch):
    """What a store on a read-only medium looks like to SQLite, also when running as root."""
    s, _, ids = _fill_store(tmp_path)
    s.close()
    real_connect = store_connection.connect
    monkeypatch.setattr(store_connection, "connect",
                        lambda path, readonly: real_connect(path, True))
    with ReferenceStore.open(s.path) as ro:
        with pytest.raises(StoreError) as info:
            ro.set_labels(ids[10:], "x")
        assert str(s.path) in str(info.value) and "read-only" in str(info.value)
        assert ro.classes() == {"keep": 10}


def test_locked_store_gives_clear_error(tmp_path):
    s, _, ids = _fill_store(tmp_path)
    s._conn.execute("PRAGMA busy_timeout = 0")
    other = sqlite3.connect(s.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program is writing
    try:
        with pytest.raises(StoreError) as info:
            s.set_label(int(ids[15]), "x")
        assert str(s.path) in str(info.value) and "locked by another program" in str(info.value)
        assert s.classes() == {"keep": 10}  # reading still works
    finally:
        other.execute("ROLLBACK")
        other.close()
    s.set_label(int(ids[15]), "x")
    assert s.classes() == {"keep": 10, "x": 1}
    s.close()


def test_interrupted_write_rolls_back(tmp_path, monkeypatch):
    """An exception half way through a transaction (e.g. Ctrl-C) leaves no trace."""
    s, image_id, _ = _fill_store(tmp_path)
    calls = {"n": 0}
    real = store_labels.change_labels

    def boom(conn, action, changes, where, **kwargs):
        changes = list(changes)
        real(conn, action, changes[:3], where, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(store_labels, "change_labels", boom)
    with pytest.raises(KeyboardInterrupt):
        s.set_labels(list(range(11, 21)), "half")
    monkeypatch.undo()
    assert s.classes() == {"keep": 10} and calls["n"] == 0
    assert [r for r in s.audit_log() if r["new_label"] == "half"] == []
    s.set_label(11, "after")
    assert s.classes() == {"after": 1, "keep": 10}
    s.close()
