"""The real single-image fixtures in ../shared/data/fixtures (skipped when absent)."""

from __future__ import annotations

import numpy as np

from cellseek.io import content_hash, iter_planes, read_image


def test_lzw_livecell_phase(shared_data):
    img = read_image(shared_data / "fixtures" / "livecell_A172_Phase_A7_1_00d00h00m_1.tif")
    assert img.axes == "YX" and img.shape == (520, 704) and img.data.dtype == np.uint8
    assert img.data.std() > 0


def test_png_qpi_cell(shared_data):
    img = read_image(shared_data / "fixtures" / "skimage_cell_qpi.png")
    assert img.axes == "YX" and img.shape == (660, 550)
    ((t, z, plane),) = iter_planes(img)
    assert (t, z) == (0, 0) and plane.shape == (660, 550)


def test_uint16_nuclei(shared_data):
    img = read_image(shared_data / "fixtures" / "stardist_dsb2018_nuclei_img2d.tif")
    assert img.shape == (512, 512) and img.data.dtype == np.uint16
    assert len(content_hash(img)) == 64
