"""BioTek Lionheart / Cytation (Gen5) one-file-per-plane exports."""

from __future__ import annotations

import numpy as np
import pytest
from io_helpers import bti_xml, write_lionheart

from cellseek.io import image_to_layer_data, read_all, read_image
from cellseek.io.lionheart import LIONHEART_A, LIONHEART_B, parse_name


@pytest.mark.parametrize(
    ("name", "regex"),
    [
        ("A1_01_1_1_Phase Contrast_001.tif", LIONHEART_A),
        ("AB12_02_2_3_GFP_010.TIF", LIONHEART_A),
        ("B2_1_Bright Field_1_001_02.tif", LIONHEART_B),
        ("B2_1_Bright Field_1_001.tiff", LIONHEART_B),
        ("C3_2Z4_DAPI_1_005.tif", LIONHEART_B),
    ],
)
def test_name_variants(name, regex):
    assert regex.match(name)


def test_parse_name_fields(tmp_path):
    a = parse_name(tmp_path / "A1_01_1_2_Phase Contrast_010.tif")
    assert a.group[4:] == ("A1", "Phase Contrast") and a.group[2] == 2 and a.t == (1, 10, 0)
    b = parse_name(tmp_path / "B2_1Z3_Bright Field_1_001_02.tif")
    assert b.group[4:] == ("B2", "Bright Field") and b.z == (3,) and b.t == (1, 1, 2)
    assert parse_name(tmp_path / "image_001.tif") is None


def test_folder_variant_a_sorted_numerically_with_pixel_size(tmp_path):
    for t in (10, 2, 1):  # written out of order; 2 must come before 10
        write_lionheart(
            tmp_path / f"A1_01_1_1_Phase Contrast_{t:03d}.tif", t * 100, time=f"10:{t:02d}:00"
        )
    img = read_image(tmp_path)
    assert img.device == "lionheart" and img.axes == "TYX" and img.shape == (3, 48, 64)
    assert [int(img.data[i].min()) for i in range(3)] == [100, 200, 1000]
    assert img.pixel_size_um == pytest.approx(130.0 / 64)
    assert img.metadata["channel"] == "Phase Contrast" and img.metadata["well"] == "A1"
    assert img.time_interval_s == pytest.approx((60 + 480) / 2)  # median of 1 and 8 minutes
    assert img.metadata["warnings"] == []


def test_variant_b_with_z_and_single_file_opens_its_group(tmp_path):
    for z in (1, 2, 10):
        for t in (1, 2):
            write_lionheart(tmp_path / f"B2_1Z{z}_Bright Field_1_{t:03d}_02.tif", 10 * z + t)
    write_lionheart(tmp_path / "B2_2Z1_Bright Field_1_001_02.tif", 0)  # another site
    img = read_image(tmp_path / "B2_1Z2_Bright Field_1_001_02.tif")
    assert img.axes == "TZYX" and img.shape == (2, 3, 48, 64)
    assert int(img.data[1, 2].min()) == 102  # t=2, z=10
    assert len(read_all(tmp_path)) == 2


def test_folder_of_wells_and_channels_read_all(tmp_path):
    for well in ("A1", "A2", "B1"):
        for channel in ("GFP", "Bright Field"):
            for t in (1, 2):
                write_lionheart(
                    tmp_path / f"{well}_01_1_1_{channel}_{t:03d}.tif",
                    t,
                    channel=channel,
                    emission=525 if channel == "GFP" else None,
                )
    images = read_all(tmp_path)
    assert len(images) == 6
    assert [(im.metadata["well"], im.metadata["channel"]) for im in images] == [
        ("A1", "Bright Field"),
        ("A1", "GFP"),
        ("A2", "Bright Field"),
        ("A2", "GFP"),
        ("B1", "Bright Field"),
        ("B1", "GFP"),
    ]
    assert read_image(tmp_path).metadata["well"] == "A1"
    layers = image_to_layer_data(images[1])
    assert layers[0][1]["colormap"] == "green" and "GFP" in layers[0][1]["name"]
    assert image_to_layer_data(images[0])[0][1]["colormap"] == "gray"


@pytest.mark.parametrize("tag", ["ImageWidthMicrons", "imagewidthmicrons", "FieldWidthMicrons"])
def test_width_tag_found_case_insensitively(tmp_path, tag):
    write_lionheart(tmp_path / "A1_01_1_1_GFP_001.tif", 5, xml=bti_xml(640.0, tag=tag))
    assert read_image(tmp_path / "A1_01_1_1_GFP_001.tif").pixel_size_um == pytest.approx(10.0)


def test_xml_in_private_tag(tmp_path):
    import tifffile

    tifffile.imwrite(
        tmp_path / "A1_01_1_1_GFP_001.tif",
        np.ones((8, 16), np.uint16) * 3,
        extratags=[(65000, "s", 0, bti_xml(32.0), True)],
        metadata=None,
    )
    assert read_image(tmp_path / "A1_01_1_1_GFP_001.tif").pixel_size_um == pytest.approx(2.0)


def test_missing_width_tag_warns(tmp_path):
    for t in (1, 2):
        write_lionheart(tmp_path / f"A1_01_1_1_GFP_{t:03d}.tif", t, width_um=None)
    img = read_image(tmp_path)
    assert img.pixel_size_um is None and img.shape[0] == 2
    assert any("A1_01_1_1_GFP_001.tif" in w and "width" in w for w in img.metadata["warnings"])


def test_broken_xml_warns(tmp_path):
    write_lionheart(
        tmp_path / "A1_01_1_1_GFP_001.tif", 1, xml="<BTIImageMetaData><ImageAcquisition><ImageWidth"
    )
    img = read_image(tmp_path / "A1_01_1_1_GFP_001.tif")
    assert img.pixel_size_um is None
    assert any("could not be parsed" in w for w in img.metadata["warnings"])


def test_entity_xml_refused(tmp_path):
    xml = (
        '<!DOCTYPE r [<!ENTITY e "x">]><BTIImageMetaData>'
        "<ImageWidthMicrons>&e;</ImageWidthMicrons></BTIImageMetaData>"
    )
    write_lionheart(tmp_path / "A1_01_1_1_GFP_001.tif", 1, xml=xml)
    img = read_image(tmp_path / "A1_01_1_1_GFP_001.tif")
    assert img.pixel_size_um is None and img.metadata["warnings"]


def test_missing_plane_and_mixed_size_and_unreadable(tmp_path):
    for t in (1, 2, 4):  # t=3 missing
        write_lionheart(tmp_path / f"A1_01_1_1_GFP_{t:03d}.tif", t, time=f"10:0{t}:00")
    write_lionheart(tmp_path / "A1_01_1_1_GFP_005.tif", 5, shape=(30, 30))  # other size
    (tmp_path / "A1_01_1_1_GFP_006.tif").write_bytes(b"II*\x00garbage")  # unreadable
    img = read_image(tmp_path)
    warnings = "\n".join(img.metadata["warnings"])
    assert img.shape == (3, 48, 64)
    assert "A1_01_1_1_GFP_005.tif: image size" in warnings
    assert "A1_01_1_1_GFP_006.tif: could not be read" in warnings


def test_hole_in_grid_filled_with_zeros(tmp_path):
    for z in (1, 2):
        for t in (1, 2):
            if (z, t) != (2, 2):
                write_lionheart(tmp_path / f"A1_1Z{z}_GFP_1_{t:03d}.tif", 7)
    img = read_image(tmp_path)
    assert img.shape == (2, 2, 48, 64)
    assert int(img.data[1, 1].max()) == 0 and int(img.data[0, 1].min()) == 7
    assert any("missing plane" in w for w in img.metadata["warnings"])


def test_lazy_group(tmp_path):
    for t in (1, 2):
        write_lionheart(tmp_path / f"A1_01_1_1_GFP_{t:03d}.tif", t)
    img = read_image(tmp_path, lazy=True)
    assert type(img.data).__module__.startswith("dask")
    np.testing.assert_array_equal(img.data.compute(), read_image(tmp_path, lazy=False).data)
