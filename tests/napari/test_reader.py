"""The npe2 reader contribution: a pure function, and one real viewer."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import tifffile

from cellseek._napari.hooks.reader import get_reader


def _lionheart_folder(folder):
    xml = (
        "<BTIImageMetaData><ImageAcquisition><ImageWidthMicrons>64</ImageWidthMicrons>"
        "</ImageAcquisition></BTIImageMetaData>"
    )
    for channel in ("Bright Field", "GFP"):
        for t in (1, 2, 10):
            data = np.full((16, 32), t, np.uint16) + np.eye(16, 32, dtype=np.uint16)
            tifffile.imwrite(
                folder / f"A1_01_1_1_{channel}_{t:03d}.tif", data, description=xml, metadata=None
            )
    return folder


def test_reader_is_pure_and_does_not_import_napari(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.eye(8, dtype=np.uint8))
    had_napari = "napari" in sys.modules
    reader = get_reader(str(tmp_path / "a.tif"))
    assert callable(reader)
    ((data, kwargs, kind),) = reader(str(tmp_path / "a.tif"))
    assert kind == "image" and data.shape == (8, 8) and kwargs["name"] == "a"
    assert ("napari" in sys.modules) == had_napari


def test_unsupported_paths_give_none(tmp_path):
    (tmp_path / "x.czi").write_bytes(b"1")
    assert get_reader(str(tmp_path / "x.czi")) is None
    assert get_reader([str(tmp_path / "x.czi")]) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert get_reader(str(empty)) is None


def test_list_of_paths(tmp_path):
    from PIL import Image

    tifffile.imwrite(tmp_path / "a.tif", np.eye(8, dtype=np.uint8))

    Image.fromarray(np.zeros((6, 6, 3), np.uint8) + 3).save(tmp_path / "b.png")
    paths = [str(tmp_path / "a.tif"), str(tmp_path / "b.png")]
    layers = get_reader(paths)(paths)
    assert [k["name"] for _, k, _ in layers] == ["a", "b"]
    assert layers[1][1]["rgb"] is True


def test_folder_gives_one_layer_per_group(tmp_path):
    from cellseek.io.layers import SINGLE_PLANE_SCALE

    folder = _lionheart_folder(tmp_path)
    layers = get_reader(str(folder))(str(folder))
    assert len(layers) == 2
    # no time stamps: frames are steps of 1; the stack has no z: a single plane along z
    assert [k["scale"] for _, k, _ in layers] == [(1.0, SINGLE_PLANE_SCALE, 2.0, 2.0)] * 2
    assert layers[0][0].shape == (3, 1, 16, 32)
    assert layers[0][1]["axis_labels"] == ("t", "z", "y", "x")
    assert layers[0][1]["units"] == ("pixel", "um", "um", "um")


def _register_manifest():
    """Make the plugin known to npe2 when cellseek is not pip-installed (e.g. PYTHONPATH=src)."""
    from pathlib import Path

    from npe2 import PluginManager, PluginManifest

    pm = PluginManager.instance()
    if "cellseek" not in pm:
        import cellseek

        pm.register(PluginManifest.from_file(Path(cellseek.__file__).parent / "napari.yaml"))


@pytest.mark.napari
def test_open_folder_in_viewer(make_napari_viewer, tmp_path):
    _register_manifest()
    (tmp_path / "plate").mkdir()
    folder = _lionheart_folder(tmp_path / "plate")
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="cellseek")
    names = [layer.name for layer in viewer.layers]
    assert len(names) == 2
    assert names == ["plate_A1_site1_Bright Field", "plate_A1_site1_GFP"]
    assert tuple(viewer.layers[0].scale)[2:] == (2.0, 2.0)
    assert viewer.layers[1].colormap.name == "green"
    assert viewer.layers[0].data.shape == (3, 1, 16, 32)
    assert viewer.dims.nsteps[:2] == (3, 1)


@pytest.mark.napari
def test_time_well_and_z_well_get_their_own_sliders(make_napari_viewer, tmp_path):
    """Issue 11 item 8: t/z/y/x labels and s/µm units on the layers; well and site in the
    names; a 3-read time well (18 min apart) beside a 4-slice z well gives sliders of 3 and 4
    steps (they shared one axis before, with 1,081 steps); the layer's image hashes as the
    command line's does, so a store made by either recognises it."""
    from _gen5_plate import write_plate

    from cellseek._napari.controller.images import image_data_from_layer
    from cellseek.io import content_hash, read_all

    _register_manifest()
    folder = write_plate(tmp_path / "plate")
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="cellseek")
    time_well, z_well = viewer.layers
    assert time_well.name == "plate_A1_site1_Bright Field"
    assert z_well.name == "plate_B2_site1_Bright Field"
    for layer in viewer.layers:
        assert tuple(layer.axis_labels) == ("t", "z", "y", "x")
        assert [str(u) for u in layer.units][2:] == ["micrometer", "micrometer"]
    assert str(time_well.units[0]) == "second" and time_well.scale[0] == 1080
    assert str(z_well.units[1]) == "micrometer" and z_well.scale[1] == 2
    assert viewer.dims.nsteps[:2] == (3, 4)
    assert tuple(viewer.dims.axis_labels) == ("t", "z", "y", "x")
    for layer, image in zip(viewer.layers, read_all(folder)):
        view = image_data_from_layer(layer)
        assert view.axes == image.axes and view.shape == image.shape
        assert content_hash(view) == content_hash(image)
