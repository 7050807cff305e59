"""The main user story, end to end, in the normal threaded napari window (issue 11, item 2).

Open a Gen5 (Lionheart) plate folder through the reader -> open the dock widget from the
plugin -> New reference set -> import a small reference CSV -> Segment stack, Cancel ->
Segment stack -> Suggest -> click a cell (a real mouse event on the canvas) -> the gallery
shows neighbours with labels and similarity -> A, a number key, U, N (real key events) ->
export -> close -> reopen the store in a fresh viewer and find the confirmed labels. Buttons
are clicked; file dialogs answer with paths.

Run alone: ``pytest tests/napari/test_user_story.py``.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from _gen5_plate import write_plate, write_reference_csv
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

pytestmark = pytest.mark.napari

LEFT = Qt.MouseButton.LeftButton


def _register_manifest():
    from pathlib import Path

    from npe2 import PluginManager, PluginManifest

    pm = PluginManager.instance()
    if "cellseek" not in pm:
        import cellseek

        pm.register(PluginManifest.from_file(Path(cellseek.__file__).parent / "napari.yaml"))


def _open(make_napari_viewer, folder, qtbot):
    """A shown viewer with the plate opened by the reader and the dock widget of the plugin."""
    _register_manifest()
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1500, 950)
    viewer.open(str(folder), plugin="cellseek")
    _, widget = viewer.window.add_plugin_dock_widget("cellseek", "cellseek annotator")
    qtbot.waitExposed(viewer.window._qt_window)
    return viewer, widget


def _answer(monkeypatch, name, value):
    """Make a QFileDialog static function answer ``value``."""
    monkeypatch.setattr(QFileDialog, name, staticmethod(lambda *a, **k: value))


def _button(panel, text):
    from qtpy.QtWidgets import QPushButton

    return next(b for b in panel.findChildren(QPushButton) if b.text() == text)


def _canvas(viewer):
    return viewer.window._qt_viewer.canvas.native


def _click_cell(viewer, item, cell, qtbot):
    """Centre the view on a cell, then click the middle of the canvas with the mouse."""
    layer = item.cells_layer
    world = layer.data_to_world([*item.index_of((cell["t"], cell["z"])), *cell["centroid"]])
    for axis, value in enumerate(world[:-2]):
        viewer.dims.set_point(axis, float(value))
    viewer.scene.camera.zoom = 2.0
    viewer.scene.camera.center = tuple(float(v) for v in world[-2:])
    qtbot.wait(50)
    canvas = _canvas(viewer)
    qtbot.mouseClick(canvas, LEFT, pos=canvas.rect().center())


def test_user_story(make_napari_viewer, wait, qtbot, tmp_path, monkeypatch):
    plate = write_plate(tmp_path / "plate")
    reference_csv = write_reference_csv(tmp_path / "reference", mislabelled=1)
    store = tmp_path / "plate.cellseek"
    viewer, w = _open(make_napari_viewer, plate, qtbot)
    c = w.controller
    assert [ly.name for ly in viewer.layers] == ["plate_A1_site1_Bright Field",
                                                 "plate_B2_site1_Bright Field"]
    w.segment.select_layer(viewer.layers[0])

    # New reference set (offline preset), then import the labelled crops
    _answer(monkeypatch, "getSaveFileName", (str(store), ""))
    qtbot.mouseClick(_button(w.reference, "New…"), LEFT)
    _answer(monkeypatch, "getOpenFileName", (str(reference_csv), ""))
    qtbot.mouseClick(_button(w.reference, "Import crops…"), LEFT)
    # Segment stack, then Cancel while it runs: nothing is left behind (issue 22, item 1)
    w.segment.method.setCurrentText("classical")
    qtbot.mouseClick(w.segment.stack_button, LEFT)
    qtbot.waitUntil(lambda: c.runner.what == "Segmentation", timeout=120_000)
    qtbot.waitUntil(lambda: not w.cancel_button.isHidden(), timeout=10_000)
    qtbot.mouseClick(w.cancel_button, LEFT)
    wait(w)
    assert "cancelled" in w.status.text()
    # Segment stack again, Suggest for the whole stack (queued behind the segmentation and its
    # embedding)
    qtbot.mouseClick(w.segment.stack_button, LEFT)
    w.suggest.scope.setCurrentIndex(w.suggest.scope.findData("stack"))
    qtbot.mouseClick(w.suggest.run_button, LEFT)
    wait(w)
    item = c.current
    assert item.cells_layer in viewer.layers and item.cells_layer.visible  # the one drawn
    assert store.exists() and c.session.models == ("classical",)
    # classes in the order the CSV brought them in (its first row is a round cell)
    assert c.class_names() == ["round", "elongated"] and [k.key for k in c.classes] == [1, 2]
    n_cells = len(np.unique(item.cells_layer.data)) - 1
    assert n_cells >= 18 and len(item.table) == n_cells  # 3 frames, ~8 cells each, embedded
    assert len(c.suggestions) == n_cells and len(c.queue) > 0  # some are uncertain

    # click a cell on the canvas: the gallery shows its neighbours, labels and similarities
    target = item.table.cell(item.table.ids_in_plane((1, 0))[0])
    _click_cell(viewer, item, target, qtbot)
    wait(w)
    assert c.selected == target["id"]
    gallery = w.neighbours.gallery
    assert gallery.cell["id"] == target["id"] and len(gallery.tiles) >= 3
    for tile, button in zip(gallery.tiles, w.neighbours.tiles):
        label, similarity = button.text().split("\n")
        assert label == tile.label in ("round", "elongated")
        assert float(similarity) == pytest.approx(tile.similarity, abs=1e-3)
    best = gallery.suggestion.best_label

    # A accepts the best guess (and moves to the next uncertain cell)
    canvas = _canvas(viewer)
    qtbot.keyClick(canvas, Qt.Key.Key_A)
    wait(w)
    assert c.session.cell(target["id"])["label"] == best
    assert c.session.cell(target["id"])["label_source"] == "accepted"
    assert c.selected != target["id"]  # on to the next uncertain cell
    # a number key labels the cell now selected; U undoes it
    second = c.selected
    qtbot.keyClick(canvas, Qt.Key.Key_2)
    wait(w)
    assert c.session.cell(second)["label"] == "elongated"
    qtbot.keyClick(canvas, Qt.Key.Key_U)
    wait(w)
    assert c.session.cell(second)["label"] is None
    qtbot.keyClick(canvas, Qt.Key.Key_1)
    wait(w)
    assert c.session.cell(second)["label"] == "round"
    # N goes to the next uncertain cell and shows its plane
    qtbot.keyClick(canvas, Qt.Key.Key_N)
    wait(w)
    third = c.selected
    assert third not in (second, target["id"]) and third in c.queue.order
    cell = item.table.cell(third)
    assert item.current_key(viewer) == (cell["t"], cell["z"])
    assert w.neighbours.gallery.cell["id"] == third
    confirmed = {target["id"]: best, second: "round"}
    # the colours: confirmed cells opaque in their class colour, suggested ones faded
    viewer.dims.set_point(0, float(item.cells_layer.data_to_world(
        [target["t"], 0, 0, 0])[0]))
    qtbot.wait(300)  # the colours follow the slider once it pauses
    cmap = item.cells_layer.colormap  # the colours of the cells of the plane on screen
    rgba = cmap.map(np.array([target["label_value"]]))[0]
    assert rgba[3] == pytest.approx(1.0)
    np.testing.assert_allclose(rgba[:3], c.colours[best], atol=1e-3)
    suggested = next(i for i in item.table.ids_in_plane((target["t"], 0))
                     if not item.table.cell(i)["label"] and c.suggestions[i].confidence >= 0.6)
    faded = cmap.map(np.array([item.table.cell(suggested)["label_value"]]))[0]
    assert faded[3] < 0.6
    np.testing.assert_allclose(faded[:3], c.colours[c.suggestions[suggested].best_label],
                               atol=1e-3)

    # export
    export = tmp_path / "export"
    export.mkdir()
    _answer(monkeypatch, "getExistingDirectory", str(export))
    qtbot.mouseClick(_button(w.reference, "Export…"), LEFT)
    wait(w)
    with open(export / "cells.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n_cells + 9  # the plate's cells and the 9 reference crops
    assert (export / store.name).exists() and list(export.glob("*.tif"))

    # close napari; the store is closed with it (and the layers go)
    saved = np.array(item.cells_layer.data)
    viewer.close()
    qtbot.waitUntil(lambda: not store.with_name(store.name + "-wal").exists(), timeout=10_000)

    # a fresh viewer: open the plate, the widget, the store -> the confirmed labels are there
    viewer2, w2 = _open(make_napari_viewer, plate, qtbot)
    _answer(monkeypatch, "getOpenFileName", (str(store), ""))
    qtbot.mouseClick(_button(w2.reference, "Open…"), LEFT)
    wait(w2)
    again = w2.controller.registry.for_image_layer(viewer2.layers[0])
    assert again.image_id == item.image_id and len(again.table) == n_cells
    for cid, label in confirmed.items():
        assert again.table.cell(cid)["label"] == label
    features = again.cells_layer.features
    states = dict(zip(features["cell_id"], features["state"]))
    assert all(states[cid] == "confirmed" for cid in confirmed)
    np.testing.assert_array_equal(np.asarray(again.cells_layer.data), saved)
