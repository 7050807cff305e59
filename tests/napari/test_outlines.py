"""Cells are outlines that stand out on brightfield, phase-contrast and RI images (issue 11,
item 7): rendered on the real canvas, compared with the canvas without the cells layer."""

from __future__ import annotations

import numpy as np
import pytest

from _shared import shared_data

pytestmark = [pytest.mark.napari, pytest.mark.realdata]

IMAGES = {
    "brightfield": ("labelfree", "jurkat_ifc_cellcycle", "fields", "montage_Exp1_G1_BF.png"),
    "phase contrast": ("fixtures", "livecell_A172_Phase_A7_1_00d00h00m_1.tif"),
    "refractive index (QPI)": ("fixtures", "skimage_cell_qpi.png"),
}


def _luminance(rgba):
    return rgba[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("kind", list(IMAGES))
def test_outlines_stand_out(kind, make_napari_viewer, wait, qtbot):
    from cellseek._napari.widget import CellseekWidget

    path = shared_data(*IMAGES[kind])
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1400, 900)
    viewer.open(str(path), plugin="cellseek")
    widget = CellseekWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    widget.segment.method.setCurrentText("classical")
    widget.segment.run()
    wait(widget)
    layer = widget.controller.current.cells_layer
    assert layer.data.max() >= 1, "the classical segmenter found no cell"
    viewer.reset_view()

    def shot():
        qtbot.wait(50)
        return viewer.screenshot(canvas_only=True, flash=False)

    with_cells = shot()
    layer.visible = False
    without = shot()
    layer.visible = True
    drawn = np.abs(_luminance(with_cells) - _luminance(without)) > 8
    assert drawn.sum() > 50, "no outline visible"
    contrast = np.abs(_luminance(with_cells) - _luminance(without))[drawn]
    # the outlines differ from the image under them by a clearly visible amount
    assert np.median(contrast) > 60, (kind, np.median(contrast))
    # outlines leave the cell (its morphology) visible: far fewer pixels than filled cells
    widget.segment.outline.setValue(0)
    filled = np.abs(_luminance(shot()) - _luminance(without)) > 8
    assert drawn.sum() < 0.6 * filled.sum(), (drawn.sum(), filled.sum())
    # the opacity control fades them
    widget.segment.opacity.setValue(30)
    widget.segment.outline.setValue(2)
    assert layer.opacity == pytest.approx(0.3) and layer.contour == 2
    faded = np.abs(_luminance(shot()) - _luminance(without))[drawn]
    assert np.median(faded) < 0.6 * np.median(contrast)
    widget.cleanup()
