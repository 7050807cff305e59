"""Plain, multi-page, LZW, RGB, OME and ImageJ TIFF files."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cellseek.io import read_all, read_image


def test_plain_2d_keeps_dtype_and_values(tmp_path):
    data = np.arange(40 * 50, dtype=np.uint16).reshape(40, 50)
    tifffile.imwrite(tmp_path / "a.tif", data)
    img = read_image(tmp_path / "a.tif")
    assert img.axes == "YX" and img.device == "tiff"
    np.testing.assert_array_equal(img.data, data)
    assert img.pixel_size_um is None and img.metadata["warnings"] == []


def test_multipage_unknown_axis_becomes_time(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (5, 20, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "m.tif", data, metadata=None)  # tifffile axes "IYX"
    img = read_image(tmp_path / "m.tif")
    assert img.axes == "TYX" and img.shape == (5, 20, 30)
    np.testing.assert_array_equal(img.data, data)


def test_lzw_compressed(tmp_path):
    data = np.random.default_rng(1).integers(0, 4000, (32, 40), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "lzw.tif", data, compression="lzw")
    np.testing.assert_array_equal(read_image(tmp_path / "lzw.tif").data, data)


def test_resolution_tag_in_centimetres(tmp_path):
    # 0.5 µm pixels = 20000 pixels per cm
    tifffile.imwrite(
        tmp_path / "r.tif",
        np.ones((8, 8), np.uint8),
        resolution=(20000, 20000),
        resolutionunit="CENTIMETER",
    )
    assert read_image(tmp_path / "r.tif").pixel_size_um == pytest.approx(0.5)


def test_inch_resolution_is_ignored(tmp_path):
    tifffile.imwrite(
        tmp_path / "dpi.tif", np.ones((8, 8), np.uint8), resolution=(72, 72), resolutionunit="INCH"
    )
    assert read_image(tmp_path / "dpi.tif").pixel_size_um is None


def test_rgb_and_rgba_tiff(tmp_path):
    rgba = np.random.default_rng(2).integers(0, 255, (10, 12, 4), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    img = read_image(tmp_path / "rgba.tif")
    assert img.axes == "YXS" and img.shape == (10, 12, 3) and img.device == "rgb"
    np.testing.assert_array_equal(img.data, rgba[..., :3])


def test_palette_tiff_becomes_rgb(tmp_path):
    index = np.array([[0, 1], [1, 0]], np.uint8)
    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, 1] = [65535, 0, 0]  # index 1 = red
    tifffile.imwrite(tmp_path / "p.tif", index, photometric="palette", colormap=colormap)
    img = read_image(tmp_path / "p.tif")
    assert img.axes == "YXS"
    assert tuple(img.data[0, 1]) == (255, 0, 0) and tuple(img.data[0, 0]) == (0, 0, 0)


def test_ome_tiff_axes_units_and_channels(tmp_path):
    data = np.zeros((3, 4, 2, 16, 20), np.uint16)
    data[..., 0, 0] = np.arange(3)[:, None, None]
    tifffile.imwrite(
        tmp_path / "x.ome.tif",
        data,
        ome=True,
        metadata={
            "axes": "TZCYX",
            "PhysicalSizeX": 325,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 325,
            "PhysicalSizeYUnit": "nm",
            "PhysicalSizeZ": 1.5,
            "TimeIncrement": 2,
            "TimeIncrementUnit": "min",
            "Channel": {"Name": ["DAPI", "GFP"]},
        },
    )
    img = read_image(tmp_path / "x.ome.tif")
    assert img.device == "ome-tiff" and img.axes == "TZCYX" and img.shape == data.shape
    assert img.pixel_size_um == pytest.approx(0.325)
    assert img.z_step_um == pytest.approx(1.5)
    assert img.time_interval_s == pytest.approx(120)
    assert img.channel_names == ("DAPI", "GFP")
    np.testing.assert_array_equal(img.data, data)


def test_imagej_hyperstack(tmp_path):
    data = np.random.default_rng(3).integers(0, 255, (2, 3, 2, 16, 16), dtype=np.uint8)
    labels = ["BF", "GFP"] * 6  # constant per channel -> channel names
    tifffile.imwrite(
        tmp_path / "ij.tif",
        data,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.2),
        metadata={
            "axes": "TZCYX",
            "spacing": 0.8,
            "unit": "micron",
            "finterval": 30,
            "Labels": labels,
        },
    )
    img = read_image(tmp_path / "ij.tif")
    assert img.device == "imagej" and img.axes == "TZCYX"
    assert img.pixel_size_um == pytest.approx(0.2)
    assert img.z_step_um == pytest.approx(0.8)
    assert img.time_interval_s == pytest.approx(30)
    assert img.channel_names == ("BF", "GFP")
    np.testing.assert_array_equal(img.data, data)


def test_imagej_nanometre_unit(tmp_path):
    tifffile.imwrite(
        tmp_path / "nm.tif",
        np.zeros((3, 8, 8), np.uint8) + 1,
        imagej=True,
        resolution=(1 / 100, 1 / 100),
        metadata={"axes": "ZYX", "unit": "nm", "spacing": 250},
    )
    img = read_image(tmp_path / "nm.tif")
    assert img.axes == "ZYX"
    assert img.pixel_size_um == pytest.approx(0.1) and img.z_step_um == pytest.approx(0.25)


def test_lazy_is_dask_and_equal(tmp_path):
    data = np.random.default_rng(4).integers(0, 999, (4, 3, 16, 16), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "l.ome.tif", data, ome=True, metadata={"axes": "TZYX"})
    lazy = read_image(tmp_path / "l.ome.tif", lazy=True)
    assert type(lazy.data).__module__.startswith("dask")
    assert lazy.data.chunks[-2:] == ((16,), (16,)) and lazy.data.numblocks[:2] == (4, 3)
    np.testing.assert_array_equal(lazy.data.compute(), data)
    assert not type(read_image(tmp_path / "l.ome.tif").data).__module__.startswith("dask")


def test_several_series_give_several_images(tmp_path):
    with tifffile.TiffWriter(tmp_path / "two.tif") as tw:
        tw.write(np.ones((8, 8), np.uint8))
        tw.write(np.full((6, 5), 2, np.uint16))
    images = read_all(tmp_path / "two.tif")
    assert [im.shape for im in images] == [(8, 8), (6, 5)]
    assert read_image(tmp_path / "two.tif").shape == (8, 8)


def test_input_file_is_not_modified(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.ones((8, 8), np.uint8))
    before = (tmp_path / "a.tif").read_bytes()
    read_image(tmp_path / "a.tif").data[:] = 7
    assert (tmp_path / "a.tif").read_bytes() == before
