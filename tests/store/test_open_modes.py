"""Opening stores: read-only media, no leftover files, exclusive creation, wrong files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cellseek.cli.main import main
from cellseek.errors import StoreError, StoreExistsError
from cellseek.store import ReferenceStore
from cellseek.store.files import publish
from cellseek.types import Cell

SRC = Path(__file__).resolve().parents[2] / "src"
MODELS = {"alpha": 8}

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions and mounts")


def _store(path: Path, labels=("x", "y")) -> Path:
    with ReferenceStore.create(path, MODELS) as s:
        image_id = s.add_image("a.tif", "hash-a")
        cells = [Cell(label=i + 1, bbox=(0, 0, 4, 4), centroid=(2.0, 2.0), area=16)
                 for i in range(len(labels))]
        ids = s.add_cells(image_id, cells, {"alpha": np.ones((len(cells), 8), np.float32)})
        s.set_plane_labels(image_id, 0, 0, np.ones((4, 4), np.int32))
        s.set_labels(ids, list(labels))
    return path


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _run_with_read_only_folder(folder: Path, code: str) -> subprocess.CompletedProcess:
    """Run Python ``code`` while ``folder`` is read-only (chmod; a read-only mount for root)."""
    command = [sys.executable, "-c", textwrap.dedent(code)]
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=120)
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
    if shutil.which("unshare") is None:
        pytest.skip("root ignores permissions and `unshare` is missing: no read-only folder")
    mount = f"mount --bind '{folder}' '{folder}' && mount -o remount,ro,bind '{folder}' '{folder}'"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", mount], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("root ignores permissions and cannot mount a read-only folder here")
    return subprocess.run(["unshare", "-m", "sh", "-c", mount + ' && exec "$@"', "sh", *command],
                          env=_env(), capture_output=True, text=True, timeout=120)


def test_wal_store_on_read_only_folder_opens_read_only_and_exports(tmp_path):
    folder = tmp_path / "medium"
    folder.mkdir()
    store = _store(folder / "ref.cellseek")
    out = tmp_path / "out"
    done = _run_with_read_only_folder(folder, f"""
        import os
        from cellseek.cli.main import main
        from cellseek.store import ReferenceStore
        try:
            open({str(folder / 'probe')!r}, "w")
            raise SystemExit("the folder is writable")
        except OSError:
            pass
        with ReferenceStore.open({str(store)!r}, readonly=True) as s:
            assert s.classes() == {{"x": 1, "y": 1}}, s.classes()
            assert s.check() == [], s.check()
        assert main(["export", "--store", {str(store)!r}, "-o", {str(out)!r}]) == 0
        print(sorted(os.listdir({str(folder)!r})))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['ref.cellseek']"
    assert sorted(p.name for p in out.iterdir()) == ["a_t0_z0_labels.tif", "cells.csv",
                                                     "ref.cellseek"]
    with ReferenceStore.open(out / "ref.cellseek", readonly=True) as copy:
        assert copy.classes() == {"x": 1, "y": 1}


def test_read_only_open_leaves_no_wal_or_shm_files(tmp_path):
    store = _store(tmp_path / "ref.cellseek")
    stat = store.stat()
    with ReferenceStore.open(store, readonly=True) as s:
        assert s.classes() == {"x": 1, "y": 1}
        with pytest.raises(StoreError, match="read-only"):
            s.set_label(1, "z")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.cellseek"]
    assert main(["export", "--store", str(store), "-o", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "ref.cellseek"]
    assert (store.stat().st_mtime_ns, store.stat().st_size) == (stat.st_mtime_ns, stat.st_size)


def test_read_only_open_beside_a_writer_sees_its_labels(tmp_path):
    store = _store(tmp_path / "ref.cellseek")
    with ReferenceStore.open(store) as writer:
        writer.set_label(1, "changed")
        with ReferenceStore.open(store, readonly=True) as reader:
            assert reader.classes() == {"changed": 1, "y": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.cellseek"]


# ------------------------------------------------------------------------ exclusive creation


def test_publish_is_exclusive(tmp_path):
    a, b, target = tmp_path / "a", tmp_path / "b", tmp_path / "target"
    a.write_text("first")
    b.write_text("second")
    publish(a, target, overwrite=False)
    with pytest.raises(StoreExistsError, match="already exists"):
        publish(b, target, overwrite=False)
    assert target.read_text() == "first" and not a.exists() and b.exists()


def test_publish_without_hard_links_is_exclusive_too(tmp_path, monkeypatch):
    import errno

    def no_link(*args):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    a, b, target = tmp_path / "a", tmp_path / "b", tmp_path / "target"
    a.write_text("first")
    b.write_text("second")
    publish(a, target, overwrite=False)
    with pytest.raises(StoreExistsError):
        publish(b, target, overwrite=False)
    assert target.read_text() == "first"


RACE = """
import sys, time
from pathlib import Path
from cellseek.errors import StoreExistsError
from cellseek.store import ReferenceStore
path, go, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
while not go.exists():
    time.sleep(0.001)
try:
    store = ReferenceStore.create(path, {"alpha": 8})
    created = True
except StoreExistsError:
    store = ReferenceStore.open(path)
    created = False
image_id = store.add_image(name + ".tif", "hash-" + name)
print("created" if created else "opened", flush=True)
"""


def test_concurrent_creation_never_drops_the_other_writers_data(tmp_path):
    for trial in range(3):
        path, go = tmp_path / f"race{trial}.cellseek", tmp_path / f"go{trial}"
        procs = [subprocess.Popen([sys.executable, "-c", RACE, str(path), str(go), f"w{k}"],
                                  env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for k in range(4)]
        go.write_text("go")
        results = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err for _, err in results]
        outcomes = sorted(out.strip() for out, _ in results)
        assert outcomes == ["created", "opened", "opened", "opened"]
        with ReferenceStore.open(path) as s:  # nobody's image was lost to a replaced file
            assert sorted(im["path"] for im in s.images()) == [f"w{k}.tif" for k in range(4)]


def test_backup_can_refuse_to_replace(tmp_path):
    store = _store(tmp_path / "ref.cellseek")
    other = _store(tmp_path / "other.cellseek", labels=("q",))
    with ReferenceStore.open(store) as s:
        with pytest.raises(StoreExistsError):
            s.backup(other, overwrite=False)
        s.backup(tmp_path / "copy.cellseek", overwrite=False)
    with ReferenceStore.open(other, readonly=True) as o:
        assert o.classes() == {"q": 1}


# ------------------------------------------------------------------------ wrong files


@pytest.mark.parametrize(("name", "content", "kind"), [
    ("cells.csv", b"path,label\na.png,x\n", "a text file (a CSV table)"),
    ("cell.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 100, "a JPEG image"),
    ("empty.cellseek", b"", "it is empty"),
])
def test_a_file_that_is_not_a_store_says_so(tmp_path, capsys, name, content, kind):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(StoreError) as info:
        ReferenceStore.open(path)
    message = str(info.value)
    assert name in message and "not a cellseek reference store" in message and kind in message
    assert "damaged" not in message and "backup" not in message
    assert main(["suggest", "--store", str(path), "-q"]) == 1
    err = capsys.readouterr().err
    assert "not a cellseek reference store" in err and len(err.strip().splitlines()) == 1
