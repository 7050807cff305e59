"""Plots, keyboard shortcuts and a rendered screenshot of the widget with real data."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.napari


def _grab(widget) -> np.ndarray:
    from qtpy.QtGui import QImage

    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())  # PyQt (sip.voidptr); PySide gives a memoryview
    data = np.frombuffer(ptr, np.uint8)[: image.height() * image.bytesPerLine()]
    data = data.reshape(image.height(), image.bytesPerLine() // 4, 4)[:, : image.width()]
    return data[..., :3].copy()


def test_plots_keys_and_screenshot(widget, sync, tmp_path, qtbot):
    c = widget.controller
    widget.segment.method.setCurrentText("classical")
    widget.segment.run(whole_stack=True)
    widget.reference.new_store(tmp_path / "ref.cellseek")
    widget.reference.add_bundled_crops()
    widget.suggest.run("stack")
    item = c.current
    # keyboard: the shortcuts are bound on the viewer and on the cells layer, with overwrite
    viewer = widget.viewer
    for provider in (viewer, item.cells_layer):
        assert {"A", "N", "U", "1", "9"} <= {str(k) for k in provider.keymap}
    cid = item.table.ids()[0]
    c.select(cid)
    key_1 = next(f for k, f in item.cells_layer.keymap.items() if str(k) == "1")
    key_1(item.cells_layer)
    assert c.session.store.cell(cid)["label"] == c.class_names()[0]
    key_u = next(f for k, f in viewer.keymap.items() if str(k) == "U")
    key_u(viewer)
    assert c.session.store.cell(cid)["label"] is None
    # plots: composition of the stack and an embedding map whose points select cells
    widget.tabs.setCurrentWidget(widget.plots)
    widget.plots.update_plots()
    comp = widget.plots.comp
    assert comp.frames == tuple(range(6)) and comp.counts.sum() == len(item.table)
    ids = list(widget.plots.map_ids)
    assert len(ids) == c.session.store.n_cells() and cid in ids
    widget.plots.select_point(ids.index(cid))
    assert c.selected == cid and widget.neighbours.gallery.cell["id"] == cid
    # the rendered widget shows something (not a blank grey panel)
    widget.resize(460, 900)
    widget.show()
    qtbot.waitExposed(widget)
    pixels = _grab(widget)
    assert pixels.shape[0] > 300 and pixels.std() > 20
    # the canvas shows the cells layer coloured by class
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.std() > 10
    widget.cleanup()
    assert not {"A", "N", "U"} & {str(k) for k in item.cells_layer.keymap}
