"""image_to_layer_data, content_hash, write_labels / read_labels."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from cellseek.errors import ImageReadError
from cellseek.io import content_hash, image_to_layer_data, read_labels, write_labels
from cellseek.io.layers import colormap_for
from cellseek.types import ImageData


def test_layers_per_channel_with_scale_and_colormaps():
    img = ImageData(
        np.zeros((3, 4, 2, 8, 8), np.uint16),
        "TZCYX",
        path="/x/cells.ome.tif",
        pixel_size_um=0.5,
        z_step_um=2.0,
        time_interval_s=60.0,
        channel_names=("Bright Field", "GFP"),
        device="ome-tiff",
    )
    layers = image_to_layer_data(img)
    assert [layer[2] for layer in layers] == ["image", "image"]
    (d0, k0, _), (d1, k1, _) = layers
    assert d0.shape == (3, 4, 8, 8)
    assert k0["name"] == "cells [Bright Field]" and k1["name"] == "cells [GFP]"
    assert k0["scale"] == (60.0, 2.0, 0.5, 0.5)
    assert (k0["colormap"], k1["colormap"]) == ("gray", "green")
    assert k0["rgb"] is False and k1["blending"] == "additive"
    meta = k1["metadata"]["cellseek"]
    assert (
        meta["pixel_size_um"] == 0.5 and meta["channel"] == "GFP" and meta["device"] == "ome-tiff"
    )


def test_rgb_layer():
    img = ImageData(np.zeros((8, 8, 3), np.uint8), "YXS", path="smear.png", device="rgb")
    ((data, kwargs, kind),) = image_to_layer_data(img)
    assert kwargs["rgb"] is True and kwargs["scale"] == (1.0, 1.0) and "colormap" not in kwargs
    assert kwargs["name"] == "smear"


@pytest.mark.parametrize(
    ("name", "wavelength", "colour"),
    [
        ("DAPI", None, "blue"),
        ("mCherry", None, "magenta"),
        ("RI", None, "gray"),
        ("Phase Contrast", None, "gray"),
        ("Cy5", None, "red"),
        ("ch", 520, "green"),
        ("ch", 450, "blue"),
        ("C0", None, "gray"),
    ],
)
def test_colormaps(name, wavelength, colour):
    assert colormap_for(name, 0, wavelength) == colour


def test_content_hash_stable_and_sensitive():
    data = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    img = ImageData(data, "ZYX", path="a.tif")
    h = content_hash(img)
    assert len(h) == 64 and h == content_hash(data) == content_hash(data.copy())
    assert h == content_hash(ImageData(data, "ZYX", path="elsewhere.tif", pixel_size_um=3))
    changed = data.copy()
    changed[1, 7, 7] += 1
    assert content_hash(changed) != h
    assert content_hash(data.astype(np.uint32)) != h
    assert content_hash(data.reshape(2, 4, 16)) != h


def test_content_hash_same_for_dask():
    da = pytest.importorskip("dask.array")
    data = np.random.default_rng(0).random((3, 4, 16, 16)).astype(np.float32)
    assert content_hash(da.from_array(data, chunks=(1, 2, 16, 16))) == content_hash(data)


def test_labels_round_trip_and_atomic(tmp_path):
    labels = np.zeros((20, 30), np.int32)
    labels[2:6, 3:9] = 1
    labels[10:15, 10:20] = 70000
    path = write_labels(tmp_path / "sub" / "labels.tif", labels)
    back = read_labels(path)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, labels)
    assert os.listdir(tmp_path / "sub") == ["labels.tif"]  # no temp file left
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression != 1  # compressed
    small = labels.clip(0, 5)
    write_labels(path, small)  # overwrite
    np.testing.assert_array_equal(read_labels(path), small)


def test_labels_stack_and_bad_input(tmp_path):
    stack = np.zeros((3, 8, 8), np.uint16)
    stack[1, 2:4, 2:4] = 3
    np.testing.assert_array_equal(read_labels(write_labels(tmp_path / "s.tiff", stack)), stack)
    with pytest.raises(ValueError, match="integers"):
        write_labels(tmp_path / "f.tif", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match=r"\.tif"):
        write_labels(tmp_path / "f.png", stack)
    tifffile.imwrite(tmp_path / "float.tif", np.zeros((4, 4), np.float32))
    with pytest.raises(ImageReadError, match="float.tif: not a label image"):
        read_labels(tmp_path / "float.tif")
    with pytest.raises(ImageReadError, match="does not exist"):
        read_labels(tmp_path / "missing.tif")
