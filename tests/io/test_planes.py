"""iter_planes: z modes, channels, lazy data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cellseek.io import iter_planes, plane_to_float_rgb
from cellseek.types import ImageData


def _stack():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (32, 32)).astype(np.float32)
    data = np.stack([ndimage.gaussian_filter(sharp, s) for s in (4, 2, 0, 3)])  # z=2 sharpest
    data = np.stack([data, data + 1])  # T=2
    return np.stack([data, data * 2], axis=2).astype(np.float32)  # C=2 -> TZCYX


def test_all_planes_first_channel_by_default():
    img = ImageData(_stack(), "TZCYX", channel_names=("RI", "GFP"))
    planes = list(iter_planes(img))
    assert [(t, z) for t, z, _ in planes] == [(t, z) for t in range(2) for z in range(4)]
    np.testing.assert_array_equal(planes[5][2], img.data[1, 1, 0])


def test_channel_by_name_and_index():
    img = ImageData(_stack(), "TZCYX", channel_names=("RI", "GFP"))
    by_name = next(iter_planes(img, channel="gfp"))[2]
    by_index = next(iter_planes(img, channel=1))[2]
    np.testing.assert_array_equal(by_name, img.data[0, 0, 1])
    np.testing.assert_array_equal(by_index, by_name)
    with pytest.raises(ValueError, match="no channel named"):
        next(iter_planes(img, channel="DAPI"))


def test_best_focus_reports_its_z():
    img = ImageData(_stack(), "TZCYX", channel_names=("a", "b"))
    assert [(t, z) for t, z, _ in iter_planes(img, z_mode="best_focus")] == [(0, 2), (1, 2)]


def test_projections_report_z0():
    data = _stack()
    img = ImageData(data, "TZCYX", channel_names=("a", "b"))
    (t, z, mx), _ = list(iter_planes(img, z_mode="max"))
    assert (t, z) == (0, 0)
    np.testing.assert_array_equal(mx, data[0, :, 0].max(axis=0))
    mean = next(iter_planes(img, z_mode="mean"))[2]
    np.testing.assert_allclose(mean, data[0, :, 0].mean(axis=0), rtol=1e-5)
    assert mean.dtype == np.float32


def test_index_mode_default_middle_and_range():
    img = ImageData(np.zeros((5, 8, 8)), "ZYX")
    assert [z for _, z, _ in iter_planes(img, z_mode="index")] == [2]
    assert [z for _, z, _ in iter_planes(img, z_mode="index", z_index=4)] == [4]
    with pytest.raises(ValueError, match="out of range"):
        list(iter_planes(img, z_mode="index", z_index=5))
    with pytest.raises(ValueError, match="z_mode"):
        list(iter_planes(img, z_mode="median"))


def test_rgb_plane_whole_and_copy():
    data = np.zeros((2, 8, 8, 3), np.uint8)
    img = ImageData(data, "TYXS")
    planes = list(iter_planes(img))
    assert [p.shape for _, _, p in planes] == [(8, 8, 3)] * 2
    planes[0][2][:] = 9
    assert data.max() == 0  # yielded planes are copies


def test_lazy_planes_computed_one_at_a_time():
    da = pytest.importorskip("dask.array")
    data = _stack()
    img = ImageData(
        da.from_array(data, chunks=(1, 1, 1, 32, 32)), "TZCYX", channel_names=("a", "b")
    )
    out = [(t, z, p) for t, z, p in iter_planes(img, z_mode="best_focus", channel=1)]
    assert [(t, z) for t, z, _ in out] == [(0, 2), (1, 2)]
    assert isinstance(out[0][2], np.ndarray)


def test_plane_to_float_rgb_handles_grey_nan_and_rgba():
    grey = np.arange(100, dtype=np.float32).reshape(10, 10)
    grey[0, 0] = np.nan
    out = plane_to_float_rgb(grey)
    assert out.shape == (10, 10, 3) and np.isfinite(out).all()
    rgba = np.full((4, 4, 4), 255, np.uint8)
    assert plane_to_float_rgb(rgba).shape == (4, 4, 3)
    assert plane_to_float_rgb(np.full((3, 3), np.nan)).max() == 0
    with pytest.raises(ValueError, match="plane"):
        plane_to_float_rgb(np.zeros((2, 2, 2, 2)))


def test_plane_to_uint8_rgb_follows_the_float_convention():
    """uint8 RGB is kept; every other plane is the float convention scaled to 0..255."""
    from cellseek.io.planes import plane_to_float_rgb, plane_to_uint8_rgb

    rgb = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert plane_to_uint8_rgb(rgb) is not rgb and np.array_equal(plane_to_uint8_rgb(rgb), rgb)
    grey16 = np.linspace(100, 4000, 64).reshape(8, 8).astype(np.uint16)
    expect = np.rint(plane_to_float_rgb(grey16) * 255).astype(np.uint8)
    out = plane_to_uint8_rgb(grey16)
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3) and np.array_equal(out, expect)
    assert out.min() == 0 and out.max() == 255  # grey is stretched, not divided by 65535


@pytest.mark.parametrize("make", [
    lambda rgb: rgb,                                   # uint8
    lambda rgb: rgb.astype(np.uint16),                 # uint16 holding 8-bit values
    lambda rgb: rgb.astype(np.uint16) * 257,           # true 16-bit
    lambda rgb: rgb.astype(np.float32) / 255,          # float in [0, 1]
    lambda rgb: rgb.astype(np.float64) * 4.0 + 10,     # float in other units
])
def test_segmentation_and_crops_see_the_same_rgb(make):
    """One plane -> RGB rule: what the classical segmenter thresholds and what crops and
    embedders see (issue 10)."""
    from cellseek.segment.stain import to_float_rgb

    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    plane = make(rgb)
    crops = plane_to_float_rgb(plane)
    segmentation, valid = to_float_rgb(plane)
    assert valid.all()
    np.testing.assert_allclose(crops, segmentation, atol=1e-6)
    if plane.dtype.kind in "ui":  # integer RGB: the 8-bit values come back
        np.testing.assert_allclose(crops * 255, rgb, atol=1e-3)
