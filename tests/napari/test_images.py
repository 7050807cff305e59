"""Several open images: clicks, the review queue across images, restoring every image
(issue 11, item 4). Two wells of a synthetic Gen5 plate lie on top of each other in the viewer."""

from __future__ import annotations

import numpy as np
import pytest
from _gen5_plate import write_plate, write_reference_csv

pytestmark = pytest.mark.napari


def _register_manifest():
    from pathlib import Path

    from npe2 import PluginManager, PluginManifest

    pm = PluginManager.instance()
    if "cellseek" not in pm:
        import cellseek

        pm.register(PluginManifest.from_file(Path(cellseek.__file__).parent / "napari.yaml"))


def _open_plate(make_napari_viewer, folder):
    _register_manifest()
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="cellseek")
    assert len(viewer.layers) == 2
    return viewer


def _docked(viewer):
    from cellseek._napari.widget import CellseekWidget

    w = CellseekWidget(viewer)
    viewer.window.add_dock_widget(w, name="cellseek", area="right")
    return w


def _images(viewer):
    from napari.layers import Image

    return [ly for ly in viewer.layers if isinstance(ly, Image)]


def _world(item, cell):
    lead = item.index_of((cell["t"], cell["z"]))
    return tuple(item.cells_layer.data_to_world([*lead, *cell["centroid"]]))


@pytest.fixture
def plate_session(make_napari_viewer, wait, tmp_path):
    folder = write_plate(tmp_path / "plate")
    csv = write_reference_csv(tmp_path / "reference")
    viewer = _open_plate(make_napari_viewer, folder)
    w = _docked(viewer)
    w.segment.method.setCurrentText("classical")
    for layer in _images(viewer):
        w.segment.select_layer(layer)
        w.segment.run(whole_stack=True)
    w.reference.new_store(tmp_path / "plate.cellseek")
    w.reference.import_crops(csv)
    wait(w)
    return viewer, w, tmp_path


def test_clicks_and_review_queue_across_images(plate_session, wait):
    viewer, w, _ = plate_session
    c = w.controller
    a1, b2 = (c.registry.for_image_layer(ly) for ly in _images(viewer))
    assert a1.image_id is not None and b2.image_id is not None and a1.image_id != b2.image_id
    assert len(a1.table) > 0 and len(b2.table) > 0
    # both images' cells are in the store (issue 11: only the first was embedded)
    assert c.session.store.n_cells() == len(a1.table) + len(b2.table) + 8
    # each cells layer lies right above its image; a click hits the top visible image (B2)
    order = list(viewer.layers)
    assert order.index(b2.cells_layer) == order.index(b2.image_layer) + 1
    assert order.index(a1.cells_layer) == order.index(a1.image_layer) + 1
    assert order.index(b2.cells_layer) > order.index(a1.cells_layer)
    cell_b2 = b2.table.cell(b2.table.ids_in_plane((0, 1))[0])
    viewer.dims.set_point(1, float(b2.cells_layer.data_to_world([0, 1, 0, 0])[1]))
    assert w.handle_click(_world(b2, cell_b2)) == cell_b2["id"] and c.current is b2
    # hide B2: the same kind of click now lands on A1
    for layer in (b2.image_layer, b2.cells_layer):
        layer.visible = False
    cell_a1 = a1.table.cell(a1.table.ids_in_plane((0, 0))[0])
    assert w.handle_click(_world(a1, cell_a1)) == cell_a1["id"] and c.current is a1
    # suggestions for every cell, all of them to review: N walks across both images,
    # showing the image of each cell (the other one hidden, so no mask over the wrong image)
    w.suggest.run("store")
    wait(w)
    c.labelling.set_threshold(1.01)
    seen = set()
    for _ in range(len(c.queue.order)):
        cid = w.step(1)
        wait(w)
        item = next(i for i in (a1, b2) if cid in i.table)
        other = b2 if item is a1 else a1
        assert c.current is item and item.image_layer.visible and item.cells_layer.visible
        assert not other.image_layer.visible and not other.cells_layer.visible
        cell = item.table.cell(cid)
        assert item.current_key(viewer) == (cell["t"], cell["z"])
        assert w.segment.image_layer() is item.image_layer
        seen.add(item.image_layer.name)
    assert len(seen) == 2
    # the composition plot follows the image on screen
    w.tabs.setCurrentWidget(w.plots)
    w.plots.update_plots()
    wait(w)
    assert c.current.image_layer.name in w.plots.ax_comp.get_title()
    assert w.plots.comp.counts.sum() == len(c.current.table)
    # the user shows the other image from the layer list: the plot and the Segment tab follow
    viewer.window.show()
    shown = b2 if c.current is a1 else a1
    hidden = a1 if shown is b2 else b2
    for layer in (hidden.image_layer, hidden.cells_layer):
        layer.visible = False
    shown.image_layer.visible = True
    wait(w)
    assert c.current is shown and w.segment.image_layer() is shown.image_layer
    assert shown.image_layer.name in w.plots.ax_comp.get_title()
    assert w.plots.comp.counts.sum() == len(shown.table)


def test_reopening_restores_every_open_image(plate_session, make_napari_viewer, wait):
    from napari.layers import Labels

    viewer, w, tmp_path = plate_session
    saved = {ly.name: np.array(ly.data) for ly in viewer.layers if isinstance(ly, Labels)}
    assert len(saved) == 2
    w.cleanup()
    fresh = _open_plate(make_napari_viewer, tmp_path / "plate")
    w2 = _docked(fresh)
    assert w2.segment.image_layer() is _images(fresh)[0]  # the Segment tab shows only A1
    w2.reference.open_store(tmp_path / "plate.cellseek")
    wait(w2)
    restored = {ly.name: np.asarray(ly.data) for ly in fresh.layers if isinstance(ly, Labels)}
    assert restored.keys() == saved.keys()
    for name, data in saved.items():
        np.testing.assert_array_equal(restored[name], data)
    assert all(i.image_id is not None for i in w2.controller.registry.images)
    w2.cleanup()
