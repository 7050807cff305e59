"""Pixel bombs: a file declaring a huge plane is refused with one clear error, before decoding."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellseek.config import MAX_PLANE_PIXELS_ENV, current_limits
from cellseek.errors import CellseekError, ConfigError, ImageReadError
from cellseek.io import read_image, read_labels


def _patch_tiff_size(path, width: int, height: int) -> None:
    """Rewrite ImageWidth / ImageLength of the first IFD of a little-endian classic TIFF."""
    raw = bytearray(path.read_bytes())
    assert raw[:4] == b"II*\x00"
    ifd = struct.unpack_from("<I", raw, 4)[0]
    for k in range(struct.unpack_from("<H", raw, ifd)[0]):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack_from("<HH", raw, entry)
        if tag in (256, 257):
            value = width if tag == 256 else height
            if kind == 3:  # SHORT: the value must fit; use LONG instead
                struct.pack_into("<HHII", raw, entry, tag, 4, 1, value)
            else:
                struct.pack_into("<I", raw, entry + 8, value)
    path.write_bytes(bytes(raw))


def _png_declaring(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    png = bytearray(buf.getvalue())
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


def test_tiff_declaring_a_huge_plane_is_refused(tmp_path):
    path = tmp_path / "bomb.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    _patch_tiff_size(path, 40_000, 40_000)
    with pytest.raises(ImageReadError, match=r"bomb.tif: an image plane of 40000 x 40000 "
                       r"pixels \(1,600.0 megapixels\) is larger than the limit"):
        read_image(path)
    with pytest.raises(ImageReadError, match="larger than the limit"):
        read_labels(path)


def test_png_bombs_give_an_image_read_error_not_a_traceback(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_declaring(100_000, 100_000))  # past Pillow's own bomb limit
    with pytest.raises(ImageReadError, match="bomb.png: .*(bomb|larger than the limit)"):
        read_image(path)
    from cellseek.config import Config
    from cellseek.pipeline import Pipeline
    from cellseek.types import run_work

    with pytest.raises(CellseekError, match="bomb.png"):  # the single-cell path too
        run_work(Pipeline(Config(), ()).single_cells([path]))


def test_the_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "plane.tif"
    tifffile.imwrite(path, np.zeros((200, 300), np.uint16))
    png = tmp_path / "plane.png"
    Image.fromarray(np.zeros((200, 300), np.uint8)).save(png)
    monkeypatch.setenv(MAX_PLANE_PIXELS_ENV, "50000")
    assert current_limits().max_plane_pixels == 50_000
    for p in (path, png):
        with pytest.raises(ImageReadError, match="300 x 200 pixels .*CELLSEEK_MAX_PLANE_PIXELS"):
            read_image(p)
    monkeypatch.setenv(MAX_PLANE_PIXELS_ENV, "60000")
    assert read_image(path).data.shape == (200, 300)
    assert read_image(png).data.shape == (200, 300)
    monkeypatch.setenv(MAX_PLANE_PIXELS_ENV, "-3")
    with pytest.raises(ConfigError, match="positive whole number"):
        current_limits()


@pytest.mark.parametrize("value", ["abc", "-3", "0", "1e9", "2.5"])
def test_a_malformed_limit_names_the_variable_not_the_image(tmp_path, monkeypatch, capsys, value):
    """'abc' was a ValueError traceback; '-3' said the image was truncated or damaged."""
    from cellseek.cli.main import main

    png = tmp_path / "plane.png"
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(png)
    monkeypatch.setenv(MAX_PLANE_PIXELS_ENV, value)
    expected = f"${MAX_PLANE_PIXELS_ENV}={value!r}: a positive whole number of pixels"
    with pytest.raises(ConfigError) as info:
        read_image(png)
    assert str(info.value).startswith(expected) and "damaged" not in str(info.value)
    for argv in (["segment", str(png), "-o", str(tmp_path / "out"), "-q"],
                 ["embed", str(png), "--store", str(tmp_path / "x.cellseek"), "-q"]):
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert err.startswith(f"cellseek: error: {expected}")
        assert err.count("\n") == 1 and "plane.png" not in err and "Traceback" not in err
    assert not (tmp_path / "x.cellseek").exists() and not (tmp_path / "out").exists()
    monkeypatch.setenv(MAX_PLANE_PIXELS_ENV, " 600 ")  # white space around a number is fine
    assert current_limits().max_plane_pixels == 600


def test_a_path_variable_naming_the_wrong_kind_of_thing_is_one_line(tmp_path, monkeypatch):
    from cellseek.config import CACHE_DIR_ENV, WEIGHTS_DIR_ENV, check_environment
    from cellseek.zoo.pins import PINS_ENV, pins_path

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for name in (CACHE_DIR_ENV, WEIGHTS_DIR_ENV):
        monkeypatch.setenv(name, str(a_file))
        with pytest.raises(ConfigError, match=f"^\\${name}='.*a_file': this is not a folder"):
            check_environment()
        monkeypatch.setenv(name, str(tmp_path / "not yet made"))  # made when first needed
        check_environment()
        monkeypatch.setenv(name, "  ")  # blank: the default
        check_environment()
    monkeypatch.setenv(PINS_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match="this is a folder; a file path is expected"):
        pins_path()


@pytest.mark.slow
def test_small_tiff_that_inflates_to_gigabytes_is_refused(tmp_path):
    """A genuine 1.7 MB zlib TIFF of 40960 x 40960 zeros (1.7 GB decoded)."""
    path = tmp_path / "zeros.tif"
    tile = np.zeros((1024, 1024), np.uint8)
    tifffile.imwrite(path, (tile for _ in range(40 * 40)), shape=(40960, 40960), dtype=np.uint8,
                     tile=(1024, 1024), compression="zlib")
    assert path.stat().st_size < 3_000_000
    with pytest.raises(ImageReadError, match="zeros.tif: an image plane of 40960 x 40960"):
        read_image(path)
