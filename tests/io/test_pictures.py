"""PNG / JPEG / BMP through Pillow."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cellseek.io import read_image


def _smear(shape=(24, 32)):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (*shape, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".jpg", ".jpeg"])
def test_rgb_pictures(tmp_path, suffix):
    data = _smear()
    Image.fromarray(data).save(tmp_path / f"smear{suffix}")
    img = read_image(tmp_path / f"smear{suffix}")
    assert img.axes == "YXS" and img.shape == (24, 32, 3) and img.device == "rgb"
    assert img.data.dtype == np.uint8
    if suffix in (".png", ".bmp"):
        np.testing.assert_array_equal(img.data, data)


def test_rgba_png_drops_alpha(tmp_path):
    data = np.dstack([_smear(), np.full((24, 32), 128, np.uint8)])
    Image.fromarray(data, "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.shape == (24, 32, 3)
    np.testing.assert_array_equal(img.data, data[..., :3])


def test_palette_png_becomes_rgb(tmp_path):
    im = Image.fromarray(_smear()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    im.save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    assert img.axes == "YXS" and img.shape == (24, 32, 3)
    np.testing.assert_array_equal(img.data, np.asarray(im.convert("RGB")))


def test_16bit_grey_png_stays_grey(tmp_path):
    data = (np.arange(24 * 32).reshape(24, 32) * 50).astype(np.uint16)
    Image.fromarray(data).save(tmp_path / "g16.png")
    img = read_image(tmp_path / "g16.png")
    assert img.axes == "YX" and img.data.dtype == np.uint16
    np.testing.assert_array_equal(img.data, data)


def test_8bit_grey_jpeg(tmp_path):
    Image.fromarray(_smear()[..., 0]).save(tmp_path / "g.jpg")
    img = read_image(tmp_path / "g.jpg")
    assert img.axes == "YX" and img.device == "image"
