"""Labelled CSV -> reference cells: checked before writing, resumable after a kill (issue 12)."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cellseek.cli.main import main
from cellseek.config import Config, EmbedConfig
from cellseek.errors import CellseekError
from cellseek.reference import add_labelled_csv, check_labelled_csv
from cellseek.session import Session
from cellseek.store import ReferenceStore
from cellseek.types import run_work

SRC = Path(__file__).resolve().parents[1] / "src"


def _cell_image(rng, purple: bool) -> np.ndarray:
    img = np.full((64, 64, 3), (230, 200, 210), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    r = rng.uniform(10, 18)
    img[(yy - 32) ** 2 + (xx - 32) ** 2 < r * r] = (120, 60, 150) if purple else (160, 80, 90)
    return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)


def _labelled_set(folder: Path, n: int, seed: int = 0) -> tuple[Path, dict[str, str]]:
    """``n`` single-cell PNGs and their CSV; returns (csv, file name -> label)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = {}
    for i in range(n):
        name = f"cell{i:04d}.png"
        Image.fromarray(_cell_image(rng, i % 2 == 1)).save(folder / name)
        labels[name] = "purple" if i % 2 else "red"
    csv = folder / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"{k},{v}\n" for k, v in labels.items()))
    return csv, labels


def _config() -> Config:
    return Config(embed=EmbedConfig(preset="offline", device="cpu"))


def _stored_labels(store_path: Path) -> dict[str, str]:
    """File name -> confirmed label of every labelled reference image in a store."""
    with ReferenceStore.open(store_path, readonly=True) as s:
        paths = {im["id"]: Path(im["path"]).name for im in s.images()}
        return {paths[c["image_id"]]: c["label"] for c in s.cells(labelled=True)}


# ------------------------------------------------------------------------ checked before writing


def test_duplicated_row_is_refused_before_anything_is_written(tmp_path, capsys):
    csv, _ = _labelled_set(tmp_path / "set", 6)
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines + [lines[3]]) + "\n")  # row 4 again, as row 8
    store = tmp_path / "ref.cellseek"
    assert main(["reference", str(csv), "--store", str(store), "-q"]) == 1
    err = capsys.readouterr().err
    assert "rows 4 and 8" in err and "nothing was saved" in err
    assert not store.exists()  # not even an empty store
    # into an existing store: nothing changes
    with Session.create(store, _config()):
        pass
    assert main(["reference", str(csv), "--store", str(store), "-q"]) == 1
    with ReferenceStore.open(store, readonly=True) as s:
        assert s.images() == [] and s.n_cells() == 0
    # the fixed CSV adds everything
    csv.write_text("\n".join(lines) + "\n")
    assert main(["reference", str(csv), "--store", str(store), "-q"]) == 0
    assert "added 6 confirmed cells" in capsys.readouterr().out


def test_unreadable_image_and_contradicting_copies_are_refused(tmp_path):
    csv, _ = _labelled_set(tmp_path / "set", 4)
    (tmp_path / "set" / "cell0002.png").write_bytes(b"not an image at all" * 20)
    with pytest.raises(CellseekError, match=r"row 4: .*cell0002.png.*nothing was saved"):
        run_work(check_labelled_csv(csv))
    csv, _ = _labelled_set(tmp_path / "set2", 4)
    same = (tmp_path / "set2" / "cell0000.png").read_bytes()
    (tmp_path / "set2" / "copy.png").write_bytes(same)
    csv.write_text(csv.read_text() + "copy.png,purple\n")  # cell0000 is "red"
    with pytest.raises(CellseekError, match="rows 2 and 6: .*same pixels.*'red' and 'purple'"):
        run_work(check_labelled_csv(csv))
    csv.write_text(csv.read_text().replace("copy.png,purple", "copy.png,red"))
    checked = run_work(check_labelled_csv(csv))
    assert checked.repeats == 1 and len(checked.rows) == 4
    with Session.create(tmp_path / "ref.cellseek", _config()) as session:
        assert run_work(add_labelled_csv(session, csv, checked=checked)) == 4
        assert session.store.n_cells() == 4


@pytest.mark.parametrize("value", [0, 255])
def test_an_empty_crop_is_refused_not_stored_as_a_cell(tmp_path, value):
    csv, _ = _labelled_set(tmp_path / "set", 4)
    Image.fromarray(np.full((64, 64, 3), value, np.uint8)).save(tmp_path / "set" / "cell0001.png")
    with pytest.raises(CellseekError, match=r"row 3: cell0001.png: image is constant.*no cell"):
        run_work(check_labelled_csv(csv))
    from cellseek.pipeline import single_cell_labels

    with pytest.raises(CellseekError, match="constant"):
        single_cell_labels(np.full((64, 64, 3), value, np.uint8))


def test_rerun_completes_an_import_an_old_version_left_half_done(tmp_path):
    """An older cellseek stored images and cells, then was killed before their labels."""
    from cellseek.io import content_hash, read_image

    csv, labels = _labelled_set(tmp_path / "set", 8)
    session = Session.create(tmp_path / "ref.cellseek", _config())
    # Simulate it with the new code, then remove the labels of 3 images and the cells of 1.
    assert run_work(add_labelled_csv(session, csv)) == 8
    by_name = {Path(im["path"]).name: im["id"] for im in session.store.images()}
    unlabelled = [c["id"] for name in ("cell0001.png", "cell0004.png", "cell0006.png")
                  for c in session.store.cells(by_name[name])]
    conn = session.store._conn
    conn.execute(f"UPDATE cells SET label = NULL, label_source = NULL WHERE id IN "
                 f"({','.join(map(str, unlabelled))})")
    conn.execute("DELETE FROM cells WHERE image_id = ?", (by_name["cell0007.png"],))
    assert session.store.n_cells(labelled=True) == 4
    assert session.store.cell_counts_by_hash(
        [content_hash(read_image(tmp_path / "set" / "cell0007.png"))]) == {
        content_hash(read_image(tmp_path / "set" / "cell0007.png")): 0}
    session.refresh()
    # The rerun labels the 3 unlabelled cells and embeds the image without cells: 4 labels.
    assert run_work(add_labelled_csv(session, csv)) == 4
    assert session.store.n_cells() == 8 and len(session.store.images()) == 8
    session.close()
    assert _stored_labels(tmp_path / "ref.cellseek") == labels
    # A corrected label in the store is never overwritten by a rerun (counted as a conflict).
    with Session.open(tmp_path / "ref.cellseek", _config()) as again:
        cid = again.store.cells(by_name["cell0001.png"])[0]["id"]
        again.label([cid], ["corrected"])
        assert run_work(add_labelled_csv(again, csv)) == 0
        assert again.store.cell(cid)["label"] == "corrected"


# ------------------------------------------------------------------------ kill and rerun


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cellseek.cli.main", *args]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _kill_and_rerun(csv: Path, labels: dict[str, str], store: Path, delay: float) -> None:
    proc = subprocess.Popen(_cli("reference", str(csv), "--store", str(store), "-q"),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(delay)  # a random point of the run; not a timed assertion
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=120)
    before = len(_stored_labels(store)) if store.exists() else 0
    done = subprocess.run(_cli("reference", str(csv), "--store", str(store), "-q"),
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    added = int(re.search(r"added (\d+) confirmed cells? ", done.stdout).group(1))
    assert added == len(labels) - before  # the rerun's count is honest
    assert _stored_labels(store) == labels  # every label of the CSV, none lost
    with ReferenceStore.open(store, readonly=True) as s:
        assert s.n_cells() == len(labels)  # no cell twice, no cell without a label
        assert s.check() == []


def test_kill_during_reference_and_rerun_loses_no_label(tmp_path):
    csv, labels = _labelled_set(tmp_path / "set", 150)
    rng = random.Random(12)
    for trial in range(2):
        _kill_and_rerun(csv, labels, tmp_path / f"ref{trial}.cellseek", rng.uniform(1.5, 5.0))


@pytest.mark.slow
def test_kill_during_reference_many_trials(tmp_path):
    csv, labels = _labelled_set(tmp_path / "set", 300)
    rng = random.Random(7)
    for trial in range(8):
        _kill_and_rerun(csv, labels, tmp_path / f"ref{trial}.cellseek", rng.uniform(0.3, 9.0))


def test_an_image_too_small_to_hold_a_cell_is_refused_before_anything_is_saved(tmp_path,
                                                                                 capsys):
    """Issue 24 item 11: such a row passed the check and stopped the import mid-way."""
    rng = np.random.default_rng(3)
    rows = ["path,label"]
    for i in range(70):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(tmp_path / f"c{i}.png")
        rows.append(f"c{i}.png,{'ab'[i % 2]}")
    Image.fromarray(rng.integers(0, 255, (1, 50, 3), np.uint8)).save(tmp_path / "line.png")
    rows.insert(68, "line.png,a")  # after the first batch of 64
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    store = tmp_path / "ref.cellseek"
    assert main(["reference", str(tmp_path / "labels.csv"), "--store", str(store), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert "row 69" in err and "line.png is 50 x 1 pixels" in err and "nothing was saved" in err
    assert len(err.splitlines()) == 1
    assert not store.exists()


def test_an_import_that_stops_names_the_row_and_what_was_saved(tmp_path, monkeypatch):
    import cellseek.pipeline as pipeline

    rng = np.random.default_rng(4)
    rows = ["path,label"]
    for i in range(70):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(tmp_path / f"c{i}.png")
        rows.append(f"c{i}.png,{'ab'[i % 2]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    real = pipeline.single_cell_labels

    def fails_on_c66(plane):
        if np.array_equal(np.asarray(plane), c66):
            raise CellseekError("no cell found near the image centre")
        return real(plane)

    c66 = np.asarray(Image.open(tmp_path / "c66.png"))
    monkeypatch.setattr(pipeline, "single_cell_labels", fails_on_c66)
    session = Session.create(tmp_path / "ref.cellseek", _config())
    with pytest.raises(CellseekError) as info:
        run_work(add_labelled_csv(session, tmp_path / "labels.csv"))
    message = str(info.value)
    assert "row 68" in message and "c66.png" in message
    assert "64 of 70 images were saved" in message
    assert session.store.n_cells(labelled=True) == 64
    session.close()
