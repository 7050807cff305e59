"""The export folder: a cells table you can use, label images that join to it, safe writing."""

from __future__ import annotations

import csv
import os
import stat
from dataclasses import replace

import numpy as np
import pytest

from _shared import synthetic_field
from cellseek.cli.main import main
from cellseek.config import Config, SuggestConfig
from cellseek.errors import CellseekError
from cellseek.io import read_labels
from cellseek.session import Session
from cellseek.types import ImageData, run_work


def _session(tmp_path, threshold: float) -> Session:
    config = replace(Config(), suggest=SuggestConfig(threshold=threshold))
    session = Session.create(tmp_path / "ref.cellseek", config)
    for seed in (0, 1):
        rgb, labels, classes = synthetic_field(seed)
        image = ImageData(rgb, "YXS", path=f"synthetic{seed}.png", device="test")
        image_id = run_work(session.add_image(image, labels={(0, 0): labels}))
        if seed == 0:
            cells = session.store.cells(image_id)
            names = [classes[c["label_value"]] for c in cells]
            names[:3] = ["blue" if n == "red" else "red" for n in names[:3]]  # mixed votes
            session.label([c["id"] for c in cells], names)
    return session


def _rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_cells_csv_has_the_best_suggestion_of_every_cell_and_joins_label_images(tmp_path):
    session = _session(tmp_path, threshold=0.9)  # mixed votes abstain
    suggestions = run_work(session.suggest())
    assert any(s.uncertain for s in suggestions.values())
    paths = session.export(tmp_path / "out")
    rows = _rows(paths["cells"])
    assert len(rows) == session.store.n_cells() == 16
    states = {r["state"] for r in rows}
    assert states <= {"confirmed", "suggested", "uncertain"} and "uncertain" in states
    for row in rows:
        cid = int(row["cell_id"])
        if row["state"] == "confirmed":
            assert row["class"] in ("red", "blue")
            continue
        s = suggestions[cid]
        assert row["best_guess"] == s.best_label and row["best_guess"] in ("red", "blue")
        assert abs(float(row["confidence"]) - s.confidence) < 1e-9
        assert row["suggestion"] == (s.label or "")
        assert row["state"] == ("uncertain" if s.uncertain else "suggested")
    # The join rule: label_image names the file, label_value the cell's pixels in it.
    for row in rows:
        assert row["label_image"] == (f"synthetic{int(row['image_id']) - 1}_t{row['t']}_"
                                      f"z{row['z']}_labels.tif")
        labels = read_labels(tmp_path / "out" / row["label_image"])
        assert int((labels == int(row["label_value"])).sum()) == int(row["area"])
    session.close()


def test_export_refuses_a_non_empty_folder_unless_overwrite(tmp_path, capsys):
    session = _session(tmp_path, threshold=0.6)
    session.close()
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    store = str(tmp_path / "ref.cellseek")
    assert main(["export", "--store", store, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main(["export", "--store", store, "-o", str(out), "--overwrite"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cells.csv", "notes.txt", "ref.cellseek", "synthetic0_t0_z0_labels.tif",
                     "synthetic1_t0_z0_labels.tif"]
    assert (out / "notes.txt").read_text() == "mine"


def test_exported_files_follow_the_umask(tmp_path):
    session = _session(tmp_path, threshold=0.6)
    old = os.umask(0o022)
    try:
        paths = session.export(tmp_path / "out")
    finally:
        os.umask(old)
    session.close()
    for path in paths.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert np.all([p.name.startswith(".") is False for p in (tmp_path / "out").iterdir()])


# ------------------------------------------------------ issue 22 item 8, issue 24 item 6


def test_label_images_are_named_after_their_image_and_open_as_labels_with_pixel_size(tmp_path):
    from napari.layers.image._image_utils import guess_labels
    from napari_builtins.io._read import magic_imread

    from cellseek.io import image_to_layer_data, read_image

    session = Session.create(tmp_path / "ref.cellseek", Config())
    rgb, labels, _ = synthetic_field(0)
    for folder in ("day1", "day2"):  # the same file name in two folders
        image = ImageData(rgb + (folder == "day2"), "YXS", path=f"/data/{folder}/smear 01.png",
                          pixel_size_um=0.35)
        run_work(session.add_image(image, labels={(0, 0): labels}))
    paths = session.export(tmp_path / "out")
    session.close()
    names = sorted(p.name for p in (tmp_path / "out").glob("*.tif"))
    assert names == ["smear_01_image1_t0_z0_labels.tif", "smear_01_image2_t0_z0_labels.tif"]
    rows = _rows(paths["cells"])
    assert {r["label_image"] for r in rows} == set(names)
    for name in names:
        path = tmp_path / "out" / name
        assert guess_labels(magic_imread(str(path))) == "labels"  # napari's builtin reader
        image = read_image(path)  # cellseek's reader (its napari reader hook)
        assert image.pixel_size_um == pytest.approx(0.35)
        (data, kwargs, kind), = image_to_layer_data(image)
        assert kind == "labels" and kwargs["scale"] == pytest.approx((0.35, 0.35))
        assert np.array_equal(np.asarray(data), labels)


def _kill_during_export(tmp_path, store, out, after: int) -> int:
    """Run ``cellseek export`` in a child that SIGKILLs itself after ``after`` label images."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import os, signal
        import cellseek.io as io
        real, count = io.write_labels, [0]
        def write(*args, **kwargs):
            if count[0] == {after}:
                os.kill(os.getpid(), signal.SIGKILL)
            count[0] += 1
            return real(*args, **kwargs)
        io.write_labels = write
        from cellseek.cli.main import main
        main(["export", "--store", {str(store)!r}, "-o", {str(out)!r}])
    """)
    return subprocess.run([sys.executable, "-c", code], env={**os.environ}, check=False,
                          capture_output=True).returncode


def test_a_killed_export_leaves_no_folder_and_the_next_one_cleans_up(tmp_path):
    session = _session(tmp_path, threshold=0.6)
    session.close()
    store, out = tmp_path / "ref.cellseek", tmp_path / "out"
    assert _kill_during_export(tmp_path, store, out, after=1) == -9
    assert not out.exists()  # no partial folder
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert len(leftovers) == 1  # the killed run's temporary folder, beside the target
    assert main(["export", "--store", str(store), "-o", str(out)]) == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert sorted(p.name for p in out.iterdir()) == [
        "cells.csv", "ref.cellseek", "synthetic0_t0_z0_labels.tif", "synthetic1_t0_z0_labels.tif"]
    out.rename(tmp_path / "first")
    out.mkdir()  # an empty folder the user made: also all or nothing
    assert _kill_during_export(tmp_path, store, out, after=1) == -9
    assert list(out.iterdir()) == []


def test_an_export_that_fails_leaves_nothing_behind(tmp_path, monkeypatch):
    import cellseek.io

    session = _session(tmp_path, threshold=0.6)
    real = cellseek.io.write_labels
    calls = []

    def fail_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise CellseekError("disk full (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(cellseek.io, "write_labels", fail_second)
    with pytest.raises(CellseekError, match="simulated"):
        session.export(tmp_path / "out")
    session.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.cellseek"]
