"""Tests of cellseek.io.labelled_set: loading labelled CSVs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cellseek.errors import CellseekError
from cellseek.io.labelled_set import DEFAULT_SOURCE, load_labelled_set


def _write_png(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 20, 3), value, np.uint8)).save(path)


def test_load_with_and_without_source(tmp_path):
    _write_png(tmp_path / "img" / "a.png")
    _write_png(tmp_path / "img" / "b.png")
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label,source,width\nimg/a.png,x,dev1,20\nimg/b.png,y,,20\n")
    ls = load_labelled_set(csv)
    assert len(ls) == 2
    assert all(p.is_absolute() and p.is_file() for p in ls.paths)
    assert ls.labels == ("x", "y")
    assert ls.sources == ("dev1", DEFAULT_SOURCE)
    assert ls.classes == ("x", "y")
    assert ls.subset([1]).labels == ("y",)
    csv2 = tmp_path / "nosrc.csv"
    csv2.write_text("label,path\nx,img/a.png\n")
    assert load_labelled_set(csv2).sources == (DEFAULT_SOURCE,)


def test_the_class_column_is_read_as_the_label_column_was(tmp_path):
    _write_png(tmp_path / "img" / "a.png")
    csv = tmp_path / "classes.csv"
    csv.write_text("path,class,source\nimg/a.png,HT1080,dev\n")
    ls = load_labelled_set(csv)
    assert ls.labels == ("HT1080",) and ls.sources == ("dev",)
    csv.write_text("path,class\nimg/a.png,\n")
    with pytest.raises(CellseekError, match="row 2.*empty 'class'"):
        load_labelled_set(csv)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("path,klass\nimg/a.png,x\n", "missing column"),
        ("path,label\nimg/a.png,x\nimg/missing.png,y\n", "row 3.*not found"),
        ("path,label\nimg/a.png,\n", "row 2.*empty 'label'"),
        ("path,label\n", "no rows"),
    ],
)
def test_load_errors(tmp_path, content, match):
    _write_png(tmp_path / "img" / "a.png")
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    with pytest.raises(CellseekError, match=match) as info:
        load_labelled_set(csv)
    assert "bad.csv" in str(info.value)


def test_missing_csv(tmp_path):
    with pytest.raises(CellseekError, match="not found"):
        load_labelled_set(tmp_path / "nope.csv")
