"""Screenshots for docs/user-guide.md, taken from a real napari window.

Runs the whole loop on the bundled sample (classical segmentation, offline preset) with
``CELLSEEK_SYNC=1`` and saves PNGs into ``docs/images/``. Needs a display; on a headless
machine: ``xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/napari_screenshots.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ["CELLSEEK_SYNC"] = "1"
OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def main() -> None:
    from qtpy.QtWidgets import QApplication

    import napari
    from cellseek._napari._sample import sample_smear
    from cellseek._napari.widget import CellseekWidget

    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    (data, kwargs, _), = sample_smear()
    viewer.add_image(data, **kwargs)
    widget = CellseekWidget(viewer)
    viewer.window.add_dock_widget(widget, name="cellseek", area="right")
    app = QApplication.instance()

    def shot(name: str, *, whole=True) -> None:
        for _ in range(5):
            app.processEvents()
        path = OUT / name
        if whole:
            viewer.screenshot(str(path), canvas_only=False, flash=False)
        else:
            widget.grab().save(str(path))
        print("saved", path)

    c = widget.controller
    widget.segment.method.setCurrentText("classical")
    widget.segment.run(whole_stack=True)
    viewer.dims.set_point(0, 5)
    viewer.reset_view()
    shot("01_segment.png")
    tmp = Path(tempfile.mkdtemp())
    widget.tabs.setCurrentWidget(widget.reference)
    widget.reference.new_store(tmp / "smear.cellseek")
    widget.reference.add_bundled_crops()
    shot("02_reference_set.png")
    item = c.current
    first = item.table.ids_in_planes([(0, 0)])[0]
    c.select(first, jump=True)
    widget.assign_class(c.class_names().index("neutrophil") + 1)
    widget.tabs.setCurrentWidget(widget.suggest)
    widget.suggest.slider.setValue(99)  # a strict threshold: a few cells go to the review queue
    widget.suggest.run("stack")
    viewer.dims.set_point(0, 2)
    cid = item.table.ids_in_planes([(2, 0)])[0]
    c.select(cid, jump=True)
    viewer.scene.camera.zoom = 0.9
    shot("03_suggest_neighbours.png")
    widget.step(1)
    shot("04_review_queue.png", whole=False)
    widget.tabs.setCurrentWidget(widget.plots)
    widget.plots.update_plots()
    shot("05_plots.png", whole=False)
    widget.cleanup()
    viewer.close()


if __name__ == "__main__":
    sys.exit(main())
