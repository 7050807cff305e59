"""The npe2 manifest is valid and every python_name imports; sample and writer hooks work."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

MANIFEST = Path(__file__).resolve().parents[2] / "napari.yaml"


def _python_names():
    import yaml

    data = yaml.safe_load(MANIFEST.read_text())
    return [c["python_name"] for c in data["contributions"]["commands"]]


def test_manifest_is_valid():
    import npe2

    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "cellseek"
    assert {w.command for w in manifest.contributions.widgets} == {"cellseek.annotator"}


@pytest.mark.parametrize("python_name", _python_names())
def test_every_python_name_imports(python_name):
    module, _, attr = python_name.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_sample_data_is_the_bundled_fields():
    from cellseek._napari.hooks.sample import sample_smear

    (data, kwargs, kind), = sample_smear()
    assert kind == "image" and kwargs["rgb"] and data.shape == (6, 480, 640, 3)
    assert kwargs["metadata"]["cellseek"]["layer_axes"] == "TYXS"


def test_writer_writes_labels_and_cells_table(tmp_path):
    from cellseek._napari.hooks.writer import write_labels
    from cellseek.io import read_labels

    labels = np.zeros((2, 40, 50), np.int32)
    labels[0, 5:15, 5:15] = 1
    labels[1, 20:30, 10:30] = 2
    features = {"index": [0, 1, 2], "class": ["", "neutrophil", "lymphocyte"]}
    paths = write_labels(str(tmp_path / "cells.tif"), labels, {"features": features})
    assert np.array_equal(read_labels(paths[0]), labels)
    rows = Path(paths[1]).read_text().splitlines()
    assert rows[0].startswith("label_value,t,z") and "class" in rows[0]
    assert rows[1].split(",")[0:3] == ["1", "0", "0"] and rows[1].endswith("neutrophil")
    assert rows[2].split(",")[1] == "1" and rows[2].endswith("lymphocyte")


def test_writer_cells_table_never_holds_a_formula(tmp_path):
    """Class names went into the CSV raw: a spreadsheet ran '=HYPERLINK(...)' as a formula."""
    import csv

    from cellseek._napari.hooks.writer import write_labels

    labels = np.zeros((30, 30), np.int32)
    labels[2:8, 2:8], labels[12:18, 12:18], labels[22:28, 2:8] = 1, 2, 3
    evil = '=HYPERLINK("http://x")'
    features = {"index": [0, 1, 2, 3], "class": ["", evil, "@SUM(A1)", "CD4+"],
                "confidence": [0.0, -0.5, 0.9, 0.25], "=cmd": ["", "", "", "x"]}
    paths = write_labels(str(tmp_path / "cells.tif"), labels, {"features": features})
    with open(paths[1], newline="", encoding="utf-8") as fh:
        header, *rows = list(csv.reader(fh))
    assert header[-3:] == ["class", "confidence", "'=cmd"]
    assert [r[header.index("class")] for r in rows] == ["'" + evil, "'@SUM(A1)", "CD4+"]
    assert [r[header.index("confidence")] for r in rows] == ["-0.5", "0.9", "0.25"]  # numbers stay


@pytest.mark.napari
def test_opening_the_widget_imports_no_torch_or_faiss():
    code = (
        "import sys, napari\n"
        "from qtpy.QtWidgets import QApplication\n"
        "app = QApplication.instance() or QApplication([])\n"
        "from cellseek._napari.widget import CellseekWidget\n"
        "viewer = napari.components.ViewerModel()\n"
        "w = CellseekWidget(viewer)\n"
        "print(sorted(m for m in ('torch', 'faiss', 'timm', 'transformers', 'segment_anything')"
        " if m in sys.modules))\n"
        "w.cleanup()\n"
    )
    env = {**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_writer_does_not_double_the_cells_suffix(tmp_path):
    from cellseek._napari.hooks.writer import cells_table_path, write_labels

    assert cells_table_path(tmp_path / "A1_cells.tif").name == "A1_cells.csv"
    assert cells_table_path(tmp_path / "A1 cells.tif").name == "A1 cells.csv"
    assert cells_table_path(tmp_path / "labels.tif").name == "labels_cells.csv"
    labels = np.zeros((2, 1, 20, 20), np.int32)  # a cells layer with t and z axes
    labels[1, 0, 5:10, 5:10] = 3
    meta = {"metadata": {"cellseek": {"layer_axes": "TZYX"}}}
    paths = write_labels(str(tmp_path / "plate_A1 cells.tif"), labels, meta)
    assert Path(paths[1]).name == "plate_A1 cells.csv"
    row = Path(paths[1]).read_text().splitlines()[1].split(",")
    assert row[:3] == ["3", "1", "0"]  # label value, t, z
