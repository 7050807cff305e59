"""Issue 22, as a user meets it in the real window (the dock from the Plugins menu, the sample
from File > Open Sample, buttons, mouse and keys, worker threads): cells show again after a
Cancel or a failed segmentation (item 1), the selected cell is marked (item 3), the Segment
tab's image is the one shown and active (item 9)."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

pytestmark = pytest.mark.napari

LEFT = Qt.MouseButton.LeftButton


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


def _cells_in_layer(item, key) -> set[int]:
    plane = np.asarray(item.cells_layer.data[item.index_of(key)])
    return set(np.unique(plane).tolist()) - {0}


def test_cells_show_again_after_cancel_and_a_failed_segmentation(no_weights, plugin_widget, wait,
                                                                 qtbot, tmp_path, notes):
    w = plugin_widget
    viewer, c = w.viewer, w.controller
    w.reference.new_store(tmp_path / "ref.cellseek")
    wait(w)
    # Segment stack, Cancel while it runs
    w.segment.method.setCurrentText("classical")
    qtbot.mouseClick(w.segment.stack_button, LEFT)
    qtbot.waitUntil(lambda: not w.cancel_button.isHidden(), timeout=30_000)
    qtbot.mouseClick(w.cancel_button, LEFT)
    wait(w)
    assert "cancelled" in w.status.text()
    # Method = sam without weights: one line, nothing left behind
    w.segment.method.setCurrentText("sam")
    qtbot.mouseClick(w.segment.plane_button, LEFT)
    wait(w)
    assert len(notes.errors) == 1 and "SAM" in notes.errors[0], notes.errors
    notes.clear()
    # then classical: the cells of the plane are in a cells layer of the viewer
    w.segment.method.setCurrentText("classical")
    qtbot.mouseClick(w.segment.plane_button, LEFT)
    wait(w)
    item = c.current
    layer = item.cells_layer
    assert layer is not None and layer in viewer.layers and layer.visible
    key = c.segmenting.current_plane()
    values = {item.table.cell(i)["label_value"] for i in item.table.ids_in_plane(key)}
    assert values and _cells_in_layer(item, key) == values
    # Suggest, click a cell, give it a class with a key: it is labelled and drawn
    w.reference.add_bundled_crops()
    qtbot.mouseClick(w.suggest.run_button, LEFT)
    wait(w)
    target = item.table.cell(item.table.ids_in_plane(key)[0])
    _click_cell(viewer, item, target, qtbot)
    wait(w)
    assert c.selected == target["id"]
    qtbot.keyClick(_canvas(viewer), Qt.Key.Key_1)
    wait(w)
    assert c.session.cell(target["id"])["label"] == c.classes[0].name
    rgba = item.cells_layer.colormap.map(np.array([target["label_value"]]))[0]
    np.testing.assert_allclose(rgba[:3], c.colours[c.classes[0].name], atol=1e-3)


def _ring_vertices(layer):
    data = layer.data
    assert len(data) == 2  # the dark under-stroke and the bright ring, the same polygon
    np.testing.assert_array_equal(data[0], data[1])
    return np.asarray(data[0])


def _inside(vertices: np.ndarray, point) -> bool:
    from matplotlib.path import Path

    return bool(Path(vertices).contains_point(point))


def test_the_selected_cell_is_marked_and_the_mark_follows(plugin_widget, wait, qtbot, tmp_path):
    w = plugin_widget
    viewer, c = w.viewer, w.controller
    w.segment.method.setCurrentText("classical")
    qtbot.mouseClick(w.segment.stack_button, LEFT)
    w.reference.new_store(tmp_path / "ref.cellseek")
    w.reference.add_bundled_crops()
    w.suggest.slider.setValue(99)  # most cells go to the review queue
    w.suggest.run("stack")
    wait(w)
    item = c.current
    assert len(c.queue.order) >= 2
    first = item.table.cell(c.queue.order[0])
    _click_cell(viewer, item, first, qtbot)
    wait(w)
    assert c.selected == first["id"]
    from napari.layers import Shapes

    marks = [ly for ly in viewer.layers if isinstance(ly, Shapes)]
    assert len(marks) == 1 and marks[0].visible
    mark = marks[0]
    ring = _ring_vertices(mark)
    lead = item.index_of((first["t"], first["z"]))
    assert (ring[:, : len(lead)] == lead).all()  # drawn on the cell's own plane
    assert _inside(ring[:, -2:], first["centroid"])
    r0, c0, r1, c1 = first["bbox"]
    assert ring[:, -2].min() < r0 and ring[:, -2].max() > r1 - 1  # around the cell, outside
    assert ring[:, -1].min() < c0 and ring[:, -1].max() > c1 - 1
    # on screen: the ring's yellow is drawn
    shot = viewer.screenshot(canvas_only=True, flash=False)
    yellow = (shot[..., 0] > 200) & (shot[..., 1] > 200) & (shot[..., 2] < 90)
    assert yellow.sum() > 30
    # the mark is not the active layer: the user's layer stays active
    assert viewer.layers.selection.active is None or \
        viewer.layers.selection.active.name != mark.name
    # A accepts and goes to the next uncertain cell: the mark follows it, on its plane
    qtbot.keyClick(_canvas(viewer), Qt.Key.Key_A)
    wait(w)
    second = item.table.cell(c.selected)
    assert second["id"] != first["id"]
    ring = _ring_vertices(mark)
    assert (ring[:, : len(lead)] == item.index_of((second["t"], second["z"]))).all()
    assert _inside(ring[:, -2:], second["centroid"])
    # N too
    qtbot.keyClick(_canvas(viewer), Qt.Key.Key_N)
    wait(w)
    third = item.table.cell(c.selected)
    assert _inside(_ring_vertices(mark)[:, -2:], third["centroid"])
    # closing the widget takes the mark away (the cells layer stays)
    w.cleanup()
    assert mark not in viewer.layers and item.cells_layer in viewer.layers


def test_the_segment_tab_image_is_shown_and_active(make_napari_viewer, wait, qtbot, tmp_path):
    """Two wells overlap in the viewer; after the review queue hid one, choosing it in the
    Segment tab shows it (the other one hidden) and makes it the active layer."""
    from _gen5_plate import write_plate, write_reference_csv
    from _plugin import register_manifest
    from napari.layers import Image

    register_manifest()
    viewer = make_napari_viewer(show=True)
    viewer.open(str(write_plate(tmp_path / "plate")), plugin="cellseek")
    _, w = viewer.window.add_plugin_dock_widget("cellseek", "cellseek annotator")
    c = w.controller
    a1, b2 = [ly for ly in viewer.layers if isinstance(ly, Image)]
    w.segment.method.setCurrentText("classical")
    for layer in (a1, b2):
        w.segment.select_layer(layer)
        w.segment.run(whole_stack=True)
    w.reference.new_store(tmp_path / "plate.cellseek")
    w.reference.import_crops(write_reference_csv(tmp_path / "reference"))
    w.suggest.run("store")
    wait(w)
    c.labelling.set_threshold(1.01)
    # walk the queue until a cell of A1 shows: B2 is then hidden
    for _ in range(len(c.queue.order)):
        w.step(1)
        wait(w)
        if c.current.image_layer.name == a1.name:
            break
    assert c.current.image_layer.name == a1.name and not b2.visible
    viewer.layers.selection.active = a1
    # the user picks B2 in the Segment tab (keyboard on the image list)
    combo = w.segment.image_combo
    combo.setFocus()
    assert combo.currentText() == a1.name
    qtbot.keyClick(combo, Qt.Key.Key_Down)
    wait(w)
    assert combo.currentText() == b2.name and c.current.image_layer.name == b2.name
    item = c.current
    assert b2.visible and item.cells_layer.visible
    assert not a1.visible  # it lies under B2: hidden, so nothing covers the chosen image
    assert viewer.layers.selection.active.name in (b2.name, item.cells_layer.name)
    w.cleanup()


def test_every_class_with_a_key_is_in_sight(plugin_widget, wait, qtbot, tmp_path):
    """Eight classes at 1600 x 1000: the class table shows keys 1 to 8 without scrolling."""
    w = plugin_widget
    w.reference.new_store(tmp_path / "ref.cellseek")
    wait(w)
    for name in ("HT1080", "293A", "A549", "HeLa", "MCF7", "Jurkat", "K562", "U2OS"):
        w.reference.name_edit.setText(name)
        w.reference._add()
        wait(w)
    w.tabs.setCurrentWidget(w.reference)
    qtbot.wait(100)
    table = w.reference.table
    assert table.rowCount() == 8
    shown = table.viewport().rect()
    for row in range(8):
        assert shown.contains(table.visualItemRect(table.item(row, 2))), row
    assert [table.item(r, 0).text() for r in range(8)] == [str(k) for k in range(1, 9)]
    assert table.item(0, 2).text() == "HT1080"  # names keep their case
