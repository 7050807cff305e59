"""Screenshots for docs/user-guide.md, taken from the real, threaded napari window.

Runs the loop on the bundled sample (classical segmentation, offline preset) as a user would,
every step in the plugin's worker threads (no ``CELLSEEK_SYNC``), waiting for the jobs between
shots, and saves PNGs into ``docs/images/``; the selected cell carries its yellow ring. Then the
outlines on a brightfield, a phase-contrast and a quantitative-phase image from ../shared/data,
and a synthetic Gen5 plate (a time well and a z well) opened through the reader. napari's
pop-up notifications are turned off for the shots (their text is in the widget's status line).
Needs a display; on a headless machine:
``xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/napari_screenshots.py``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "images"
SHARED = REPO.parent / "shared" / "data"


def _settle(app, widget=None, seconds: float = 0.3) -> None:
    """Process events until the widget's jobs are done, then a little longer."""
    while widget is not None and widget.controller.runner.busy:
        app.processEvents()
        time.sleep(0.01)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def _viewer(napari):
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    return viewer


def _dock(viewer):
    from cellseek._napari.widget import CellseekWidget

    widget = CellseekWidget(viewer)
    viewer.window.add_dock_widget(widget, name="cellseek", area="right")
    return widget


def _register_manifest():
    from npe2 import PluginManager, PluginManifest

    import cellseek

    pm = PluginManager.instance()
    if "cellseek" not in pm:
        pm.register(PluginManifest.from_file(Path(cellseek.__file__).parent / "napari.yaml"))


def main() -> None:
    from napari.settings import get_settings
    from qtpy.QtWidgets import QApplication

    import napari
    from cellseek._napari.hooks.sample import sample_smear

    OUT.mkdir(parents=True, exist_ok=True)
    get_settings().application.gui_notification_level = "error"  # no pop-ups over shots
    _register_manifest()

    def shot(viewer, widget, name: str, *, whole=True) -> None:
        _settle(app, widget)
        path = OUT / name
        if whole:
            viewer.screenshot(str(path), canvas_only=False, flash=False)
        else:
            widget.grab().save(str(path))
        print("saved", path)

    viewer = _viewer(napari)
    app = QApplication.instance()  # napari made it
    (data, kwargs, _), = sample_smear()
    viewer.add_image(data, **kwargs)
    widget = _dock(viewer)
    app.processEvents()
    c = widget.controller
    widget.segment.method.setCurrentText("classical")
    widget.segment.stack_button.click()
    _settle(app, widget)
    viewer.dims.set_point(0, 5)
    viewer.reset_view()
    shot(viewer, widget, "01_segment.png")
    tmp = Path(tempfile.mkdtemp())
    widget.tabs.setCurrentWidget(widget.reference)
    widget.reference.new_store(tmp / "smear.cellseek")
    widget.reference.add_bundled_crops()
    shot(viewer, widget, "02_reference_set.png")
    item = c.current
    first = item.table.ids_in_plane((0, 0))[0]
    c.select(first, jump=True)
    _settle(app, widget)
    widget.assign_class(next(i.key for i in c.classes if i.name == "neutrophil"))
    widget.tabs.setCurrentWidget(widget.suggest)
    widget.suggest.slider.setValue(99)  # a strict threshold: a few cells go to the review queue
    widget.suggest.run("stack")
    _settle(app, widget)
    viewer.dims.set_point(0, 2)
    cid = item.table.ids_in_plane((2, 0))[0]
    c.select(cid, jump=True)  # the yellow ring marks the selected cell
    viewer.scene.camera.zoom = 1.4
    shot(viewer, widget, "03_suggest_neighbours.png")
    widget.step(1)  # the next uncertain cell: its image plane shown, the ring on it
    _settle(app, widget)
    viewer.scene.camera.zoom = 1.4
    shot(viewer, widget, "04_review_queue.png")
    widget.tabs.setCurrentWidget(widget.plots)
    widget.plots.update_plots()
    shot(viewer, widget, "05_plots.png", whole=False)
    widget.cleanup()
    viewer.close()

    outlines(napari, app, shot)
    plate(napari, app, shot)


def outlines(napari, app, shot) -> None:
    """Unlabelled outlines on three kinds of label-free image (skipped without the data)."""
    images = [
        ("06_outlines_brightfield.png",
         SHARED / "labelfree" / "jurkat_ifc_cellcycle" / "fields" / "montage_Exp1_G1_BF.png"),
        ("06_outlines_phase.png", SHARED / "fixtures" / "livecell_A172_Phase_A7_1_00d00h00m_1.tif"),
        ("06_outlines_qpi.png", SHARED / "fixtures" / "skimage_cell_qpi.png"),
    ]
    for name, path in images:
        if not path.exists():
            print("skipped", name, "(", path, "is missing )")
            continue
        viewer = _viewer(napari)
        viewer.open(str(path), plugin="cellseek")
        widget = _dock(viewer)
        widget.segment.method.setCurrentText("classical")
        widget.segment.plane_button.click()
        _settle(app, widget)
        viewer.reset_view()
        if "brightfield" in name:  # a montage of 900 tiles: zoom on a few
            viewer.scene.camera.zoom *= 4
        _settle(app, widget)
        path_out = OUT / name
        viewer.screenshot(str(path_out), canvas_only=True, flash=False)
        print("saved", path_out)
        widget.cleanup()
        viewer.close()


def plate(napari, app, shot) -> None:
    """A synthetic Gen5 plate through the reader: a time well and a z well, own sliders."""
    sys.path.insert(0, str(REPO / "tests" / "napari"))
    from _gen5_plate import write_plate

    folder = write_plate(Path(tempfile.mkdtemp()) / "plate")
    viewer = _viewer(napari)
    viewer.open(str(folder), plugin="cellseek")
    widget = _dock(viewer)
    widget.segment.method.setCurrentText("classical")
    for layer in list(viewer.layers):
        widget.segment.select_layer(layer)
        widget.segment.stack_button.click()
        _settle(app, widget)
    viewer.dims.set_point(0, 1080.0)
    viewer.canvas.grid.enabled = True  # the two wells side by side, each with its cells layer
    viewer.canvas.grid.stride = 2
    viewer.reset_view()
    shot(viewer, widget, "07_gen5_plate.png")
    widget.cleanup()
    viewer.close()


if __name__ == "__main__":
    sys.exit(main())
