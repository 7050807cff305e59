"""Nanolive refractive-index exports: multi-page files and one file per plane."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cellseek.io import iter_planes, read_all, read_image
from cellseek.io.nanolive import parse_name, ri_scale_of


def _ri_stack(shape=(5, 24, 24)):
    rng = np.random.default_rng(0)
    return (13300 + rng.integers(0, 1200, shape)).astype(np.uint16)  # RI 1.33 - 1.45 x 10000


def test_multipage_scaled_ri(tmp_path):
    raw = _ri_stack()
    tifffile.imwrite(tmp_path / "cells_RI_stack.tif", raw, metadata=None)
    img = read_image(tmp_path / "cells_RI_stack.tif")
    assert img.device == "nanolive" and img.axes == "TZCYX" and img.shape == (1, 5, 1, 24, 24)
    assert img.channel_names == ("RI",)
    assert img.data.dtype == np.float32 and img.metadata["ri_scale"] == 10000
    np.testing.assert_allclose(img.data[0, :, 0], raw / 10000, rtol=1e-6)
    assert 1.33 <= float(img.data.min()) and float(img.data.max()) < 1.46


def test_multipage_float_ri_and_imagej_voxel_size(tmp_path):
    raw = (_ri_stack((2, 3, 16, 16)) / 10000).astype(np.float32)
    tifffile.imwrite(
        tmp_path / "tl_RI.tif",
        raw,
        imagej=True,
        resolution=(1 / 0.19, 1 / 0.19),
        metadata={"axes": "TZYX", "spacing": 0.94, "unit": "micron", "finterval": 60},
    )
    img = read_image(tmp_path / "tl_RI.tif")
    assert img.axes == "TZCYX" and img.shape == (2, 3, 1, 16, 16)
    assert img.metadata["ri_scale"] == 1.0 and img.data.dtype == np.float32
    assert img.pixel_size_um == pytest.approx(0.19) and img.z_step_um == pytest.approx(0.94)
    assert img.time_interval_s == pytest.approx(60)


def test_detected_by_software_tag(tmp_path):
    tifffile.imwrite(
        tmp_path / "export.tif",
        _ri_stack((3, 8, 8)),
        software="Nanolive STEVE",
        photometric="minisblack",
        metadata=None,
    )
    img = read_image(tmp_path / "export.tif")
    assert img.device == "nanolive" and img.shape == (1, 3, 1, 8, 8)


def test_lazy_multipage_ri(tmp_path):
    raw = _ri_stack()
    tifffile.imwrite(tmp_path / "c_RI.tif", raw, metadata=None)
    img = read_image(tmp_path / "c_RI.tif", lazy=True)
    assert type(img.data).__module__.startswith("dask")
    np.testing.assert_allclose(np.asarray(img.data)[0, :, 0], raw / 10000, rtol=1e-6)


def test_parse_plane_names(tmp_path):
    p = parse_name(tmp_path / "sample_RI_t002_z010.tif")
    assert (p.t, p.z, p.channel, p.group[1]) == ((2,), (10,), "RI", "sample")
    p = parse_name(tmp_path / "sample-FL1-t2z3.tiff")
    assert (p.t, p.z, p.channel) == ((2,), (3,), "FL1")
    assert parse_name(tmp_path / "sample_t002.tif") is None  # no channel token
    assert parse_name(tmp_path / "sample_RI.tif") is None  # no index: a multi-page file


def test_one_file_per_plane_with_fluorescence(tmp_path):
    raw = _ri_stack((2, 3, 16, 16))
    for t in range(2):
        for z in range(3):
            tifffile.imwrite(tmp_path / f"hela_RI_t{t + 1:03d}_z{z + 1:03d}.tif", raw[t, z])
            tifffile.imwrite(
                tmp_path / f"hela_FL1_t{t + 1:03d}_z{z + 1:03d}.tif",
                np.full((16, 16), 10 * t + z, np.uint16),
            )
    img = read_image(tmp_path)
    assert img.device == "nanolive" and img.axes == "TZCYX" and img.shape == (2, 3, 2, 16, 16)
    assert img.channel_names == ("RI", "FL1")
    np.testing.assert_allclose(img.data[:, :, 0], raw / 10000, rtol=1e-6)
    assert float(img.data[1, 2, 1].max()) == 12  # fluorescence not rescaled
    planes = list(iter_planes(img, channel="FL1", z_mode="max"))
    assert [(t, z) for t, z, _ in planes] == [(0, 0), (1, 0)]
    assert len(read_all(tmp_path / "hela_RI_t001_z001.tif")) == 1


def test_numeric_z_order(tmp_path):
    for z in (1, 2, 10):
        tifffile.imwrite(tmp_path / f"s_RI_z{z}.tif", np.full((8, 8), 13300 + z, np.uint16))
    img = read_image(tmp_path)
    assert img.shape == (1, 3, 1, 8, 8)
    np.testing.assert_allclose(img.data[0, :, 0, 0, 0], [1.3301, 1.3302, 1.3310], rtol=1e-6)


def test_ri_scale_detection():
    assert ri_scale_of(np.full((4, 4), 13500, np.uint16)) == 10000
    assert ri_scale_of(np.full((4, 4), 1.35, np.float32)) == 1.0
    assert ri_scale_of(np.full((4, 4), 300, np.uint16)) is None
