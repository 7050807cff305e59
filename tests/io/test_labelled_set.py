"""Tests of cellseek.io.labelled_set: CSV loading and single-cell cropping."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cellseek.errors import CellseekError
from cellseek.io.labelled_set import (
    DEFAULT_SOURCE,
    crop_around_mask,
    load_labelled_set,
    simple_central_cell_mask,
    single_cell_crop,
)


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


def _synthetic_smear(h=200, w=220, cy=100, cx=110):
    """Cream background, pink red cells, a WBC (lilac cytoplasm + purple nucleus) near centre."""
    img = np.ones((h, w, 3), np.float32) * np.array([0.97, 0.93, 0.85], np.float32)
    yy, xx = np.mgrid[:h, :w]
    for ry, rx in [(30, 30), (170, 40), (40, 190)]:
        img[(yy - ry) ** 2 + (xx - rx) ** 2 < 20**2] = (0.85, 0.6, 0.65)
    cell = (yy - cy) ** 2 + (xx - cx) ** 2 < 40**2
    img[cell] = (0.78, 0.72, 0.85)
    img[(yy - cy) ** 2 + (xx - cx - 5) ** 2 < 22**2] = (0.35, 0.2, 0.5)
    return img, cell


def test_simple_central_mask_finds_cell():
    img, cell = _synthetic_smear()
    m = simple_central_cell_mask(img)
    iou = (m & cell).sum() / (m | cell).sum()
    assert iou > 0.8


def test_single_cell_crop_shapes_and_range():
    img, _ = _synthetic_smear()
    for method in ("simple", "auto"):
        crop, mask = single_cell_crop(img, size=64, method=method)
        assert crop.shape == (64, 64, 3) and crop.dtype == np.float32
        assert mask.shape == (64, 64) and mask.dtype == bool
        assert 0.0 <= crop.min() and crop.max() <= 1.0
        # cell fills the crop minus the margin: bbox side / crop side = 1 / 1.5
        assert 0.2 < mask.mean() < 0.5
    grey = (img.mean(-1) * 255).astype(np.uint8)
    crop, mask = single_cell_crop(grey, size=32, method="simple")
    assert crop.shape == (32, 32, 3) and mask.any()


def test_crop_around_mask_pads_with_border_median():
    img = np.full((50, 50, 3), 0.8, np.float32)
    mask = np.zeros((50, 50), bool)
    mask[0:10, 0:10] = True  # corner: the square crop runs off the image
    crop, m = crop_around_mask(img, mask, size=40, margin=0.5)
    assert np.allclose(crop, 0.8, atol=1e-5)
    assert m.sum() > 0
    crop, m = crop_around_mask(img, np.zeros((50, 50), bool), size=16)
    assert crop.shape == (16, 16, 3) and not m.any()
