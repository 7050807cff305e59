"""Bad input: every error names the file and says what is wrong."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellseek.errors import ImageReadError
from cellseek.io import read_all, read_image


def _raises(path, match):
    with pytest.raises(ImageReadError, match=match) as info:
        read_image(path)
    assert path.name in str(info.value)
    return info.value


def test_missing_file(tmp_path):
    _raises(tmp_path / "nope.tif", "does not exist")


def test_unsupported_extension(tmp_path):
    (tmp_path / "cells.czi").write_bytes(b"12345")
    _raises(tmp_path / "cells.czi", "unsupported file type '.czi'")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.tif").write_bytes(b"")
    _raises(tmp_path / "empty.tif", "empty")


@pytest.mark.parametrize("name", ["corrupt.tif", "corrupt.png", "corrupt.jpg"])
def test_corrupt_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"this is not an image at all" * 10)
    _raises(tmp_path / name, "not a valid")


def test_truncated_tiff(tmp_path):
    tifffile.imwrite(
        tmp_path / "full.tif", np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)
    )
    raw = (tmp_path / "full.tif").read_bytes()
    # tifffile puts the header first: cut into the pixel data
    (tmp_path / "cut.tif").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageReadError, match="cut.tif: .*(truncated|damaged|not a valid)"):
        read_image(tmp_path / "cut.tif")


def test_truncated_png(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        tmp_path / "f.png"
    )
    raw = (tmp_path / "f.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[: len(raw) // 2])
    _raises(tmp_path / "cut.png", "truncated|damaged")


def test_empty_image(tmp_path):
    with pytest.warns(UserWarning):
        tifffile.imwrite(tmp_path / "zero.tif", np.zeros((0, 10), np.uint8))
    with pytest.raises(ImageReadError, match="zero.tif"):
        read_image(tmp_path / "zero.tif")


def test_all_nan(tmp_path):
    tifffile.imwrite(tmp_path / "nan.tif", np.full((8, 8), np.nan, np.float32))
    _raises(tmp_path / "nan.tif", "only NaN")


def test_some_nan_is_fine(tmp_path):
    data = np.ones((8, 8), np.float32)
    data[0, 0] = np.nan
    tifffile.imwrite(tmp_path / "somenan.tif", data)
    assert read_image(tmp_path / "somenan.tif").shape == (8, 8)


def test_constant_image_warns_only(tmp_path, caplog):
    tifffile.imwrite(tmp_path / "flat.tif", np.full((8, 8), 5, np.uint8))
    with caplog.at_level(logging.WARNING, logger="cellseek.io"):
        img = read_image(tmp_path / "flat.tif")
    assert any("constant" in w for w in img.metadata["warnings"])
    assert "flat.tif" in caplog.text


def test_wrong_number_of_dimensions(tmp_path):
    data = np.ones((2, 2, 2, 2, 8, 8), np.uint8)  # four stack axes: T, Z, C and one too many
    tifffile.imwrite(tmp_path / "deep.tif", data, metadata={"axes": "TZCQYX"})
    _raises(tmp_path / "deep.tif", "too many dimensions")


def test_folder_with_nothing_readable(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    _raises(tmp_path, "no image files")
    (tmp_path / "bad.tif").write_bytes(b"garbage" * 10)
    with pytest.raises(ImageReadError, match="no readable image.*bad.tif"):
        read_image(tmp_path)


def test_unreadable_file_among_many(tmp_path, caplog):
    for i in range(3):
        tifffile.imwrite(
            tmp_path / f"img{i}.tif", np.full((8, 8), i, np.uint8) + np.eye(8, dtype=np.uint8)
        )
    (tmp_path / "img1b.tif").write_bytes(b"garbage" * 10)
    with caplog.at_level(logging.WARNING, logger="cellseek.io"):
        images = read_all(tmp_path)
    assert len(images) == 3
    assert any(w.startswith("img1b.tif: ") for w in images[0].metadata["warnings"])
    assert "img1b.tif" in caplog.text


def test_mixed_sizes_in_folder_open_separately(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.eye(8, dtype=np.uint8))
    tifffile.imwrite(tmp_path / "b.tif", np.eye(12, dtype=np.uint8))
    assert [im.shape for im in read_all(tmp_path)] == [(8, 8), (12, 12)]
