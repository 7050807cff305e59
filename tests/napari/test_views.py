"""Keys (real key events), plots, gallery layout and a rendered screenshot of the widget."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

pytestmark = pytest.mark.napari


def _grab(widget) -> np.ndarray:
    from qtpy.QtGui import QImage

    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())  # PyQt (sip.voidptr); PySide gives a memoryview
    data = np.frombuffer(ptr, np.uint8)[: image.height() * image.bytesPerLine()]
    data = data.reshape(image.height(), image.bytesPerLine() // 4, 4)[:, : image.width()]
    return data[..., :3].copy()


def canvas_of(viewer):
    """The Qt widget of napari's canvas (where napari handles its own key bindings)."""
    return viewer.window._qt_viewer.canvas.native


@pytest.fixture
def suggested(widget, wait, tmp_path):
    """The sample stack segmented, embedded, the bundled crops imported, suggestions made."""
    widget.segment.method.setCurrentText("classical")
    widget.segment.run(whole_stack=True)
    widget.reference.new_store(tmp_path / "ref.cellseek")
    widget.reference.add_bundled_crops()
    widget.suggest.run("stack")
    wait(widget)
    return widget


def test_keys_work_whichever_layer_is_selected(suggested, wait, qtbot):
    widget = suggested
    c, viewer = widget.controller, widget.viewer
    item = c.current
    canvas = canvas_of(viewer)
    # no cell selected: a status message, not an error
    c.select(None)
    qtbot.keyClick(canvas, Qt.Key.Key_1)
    assert "click a cell first" in widget.status.text()
    # the image layer selected: key 2 labels the cell and napari's transform mode stays off
    image_layer = item.image_layer
    viewer.layers.selection.active = image_layer
    mode = image_layer.mode
    cid = item.table.ids()[0]
    c.select(cid)
    wait(widget)
    qtbot.keyClick(canvas, Qt.Key.Key_2)
    wait(widget)
    assert c.session.cell(cid)["label"] == c.classes[1].name
    assert image_layer.mode == mode
    # the cells layer selected: key 1 labels, napari's label-tool keys do not fire
    viewer.layers.selection.active = item.cells_layer
    tool = item.cells_layer.mode
    qtbot.keyClick(canvas, Qt.Key.Key_1)
    wait(widget)
    assert c.session.cell(cid)["label"] == c.classes[0].name
    assert item.cells_layer.mode == tool
    # U undoes, with the focus anywhere in the window (here the class table)
    qtbot.keyClick(widget.reference.table, Qt.Key.Key_U)
    wait(widget)
    assert c.session.cell(cid)["label"] == c.classes[1].name
    # a key with no class behind it says so
    qtbot.keyClick(canvas, Qt.Key.Key_9)
    assert "no class 9" in widget.status.text()
    # typing in a text field types (A does not accept anything)
    widget.reference.name_edit.setFocus()
    qtbot.keyClicks(widget.reference.name_edit, "NA")
    assert widget.reference.name_edit.text() == "NA"
    wait(widget)
    assert c.session.cell(cid)["label"] == c.classes[1].name
    # after the widget closes, napari has its keys back
    widget.cleanup()
    viewer.layers.selection.active = image_layer
    qtbot.keyClick(canvas, Qt.Key.Key_2)
    assert image_layer.mode == "transform"


def test_plots_follow_the_search_space_and_screenshot(suggested, wait, qtbot):
    widget = suggested
    c = widget.controller
    item = c.current
    cid = item.table.ids()[0]
    widget.tabs.setCurrentWidget(widget.plots)
    widget.plots.update_plots()
    wait(widget)
    comp = widget.plots.comp
    assert comp.frames == tuple(range(6)) and comp.counts.sum() == len(item.table)
    ids = list(widget.plots.map_ids)
    assert len(ids) == c.session.store.n_cells() and cid in ids
    # the map is drawn from the session's fused, aligned vectors (the suggestions' space)
    from cellseek.annotation.embedding_map import embedding_map

    expected = embedding_map(c.session.fused_vectors(np.asarray(ids)), "pca")
    offsets = widget.plots.ax_map.collections[-1].get_offsets()
    np.testing.assert_allclose(np.asarray(offsets), expected, atol=1e-5)
    widget.plots.select_point(ids.index(cid))
    wait(widget)
    assert c.selected == cid and widget.neighbours.gallery.cell["id"] == cid
    # the rendered widget shows something (not a blank grey panel)
    widget.viewer.window.show()
    qtbot.waitExposed(widget)
    pixels = _grab(widget)
    assert pixels.shape[0] > 300 and pixels.std() > 20
    shot = widget.viewer.screenshot(canvas_only=True, flash=False)
    assert shot.std() > 10


def test_class_keys_and_gallery_layout(suggested, wait, qtbot):
    widget = suggested
    c = widget.controller
    # the class table shows each class's key; adding a class renumbers nothing
    table = widget.reference.table
    before = {table.item(r, 2).text(): table.item(r, 0).text() for r in range(table.rowCount())}
    assert list(before.values())[:5] == ["1", "2", "3", "4", "5"]
    widget.reference.name_edit.setText("aaa first by name")
    widget.reference._add()
    wait(widget)
    after = {table.item(r, 2).text(): table.item(r, 0).text() for r in range(table.rowCount())}
    assert after["aaa first by name"] == "6"
    assert {k: after[k] for k in before} == before
    assert c.sets.class_of_key(6) == "aaa first by name"
    # the gallery: tiles with class and similarity, reflowing when they grow
    item = c.current
    widget.viewer.window.show()
    widget.neighbours.resize(700, 600)
    c.select(item.table.ids()[1])
    wait(widget)
    panel = widget.neighbours
    assert len(panel.tiles) > 3
    assert all("\n0." in b.text() or "\n1." in b.text() for b in panel.tiles)
    wide = panel.columns()
    panel.size_slider.setValue(200)
    assert panel.columns() < wide and panel.tiles[0].iconSize().width() == 200
    rows = {panel.grid.getItemPosition(panel.grid.indexOf(b))[0] for b in panel.tiles}
    assert len(rows) >= len(panel.tiles) / panel.columns()
    # the tabs take the height of the page on show, the gallery the rest
    heights = {}
    for page in (widget.suggest, widget.reference):
        widget.tabs.setCurrentWidget(page)
        heights[page] = widget.split.sizes()[0]
    assert heights[widget.suggest] < heights[widget.reference]
