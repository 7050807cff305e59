"""The export folder: a cells table you can use, label images that join to it, safe writing."""

from __future__ import annotations

import csv
import os
import stat
from dataclasses import replace

import numpy as np

from _shared import synthetic_field
from cellseek.cli.main import main
from cellseek.config import Config, SuggestConfig
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
        assert row["label_image"] == (f"labels_image{row['image_id']}_t{row['t']}_z{row['z']}"
                                      ".tif")
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
    assert names == ["cells.csv", "labels_image1_t0_z0.tif", "labels_image2_t0_z0.tif",
                     "notes.txt", "ref.cellseek"]
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
