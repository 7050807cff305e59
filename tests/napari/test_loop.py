"""The whole annotation loop through the widget's handlers, threaded (classical segmenter,
offline preset)."""

from __future__ import annotations

import numpy as np
import pytest

from cellseek.data import sample_field_types, sample_fields
from cellseek.session import Session

pytestmark = pytest.mark.napari


def _classical(widget):
    widget.segment.method.setCurrentText("classical")


def _pos(item, cell_id):
    cell = item.table.cell(cell_id)
    lead = item.index_of((cell["t"], cell["z"]))
    return tuple(item.cells_layer.data_to_world([*lead, *cell["centroid"]]))


def test_full_loop(widget, wait, tmp_path):
    c = widget.controller
    assert c.current is not None and c.current.image.axes == "TYXS"
    _classical(widget)
    widget.segment.run(whole_stack=True)
    wait(widget)
    item = c.current
    assert item.cells_layer is not None
    values = np.unique(item.cells_layer.data)
    assert len(values) - 1 >= 6  # one white blood cell per field at least; values stack-unique
    # a reference set with the offline preset (classical features), then the bundled crops
    widget.reference.new_store(tmp_path / "ref.cellseek")
    wait(widget)
    assert c.session is not None and c.session.models == ("classical",)
    assert item.image_id is not None and len(item.table) == len(values) - 1
    widget.reference.add_bundled_crops()
    wait(widget)
    assert sum(c.class_counts().values()) == 30
    # label a field cell through the key handler (keys follow the class table)
    names = c.class_names()
    types = sample_field_types()
    by_t = {item.table.cell(i)["t"]: i for i in item.table.ids()}
    fields = [p.name for p in sample_fields()]
    first = by_t[0]
    assert widget.handle_click(_pos(item, first)) == first
    widget.assign_class(names.index(types[fields[0]]) + 1)
    wait(widget)
    assert c.session.store.cell(first)["label"] == types[fields[0]]
    # suggest for the stack; hover table and colours follow
    widget.suggest.run("stack")
    wait(widget)
    assert c.suggestions and first not in c.suggestions
    feats = item.cells_layer.features
    assert set(feats["state"]) >= {"confirmed"}
    # click another cell -> neighbour gallery (looked up in a job)
    other = by_t[2]
    assert widget.handle_click(_pos(item, other)) == other
    wait(widget)
    gallery = widget.neighbours.gallery
    assert gallery is not None and gallery.cell["id"] == other
    assert len(widget.neighbours.tiles) == len(gallery.tiles) > 0
    sims = [t.similarity for t in gallery.tiles]
    assert sims == sorted(sims, reverse=True)
    assert all(t.label in names for t in gallery.tiles)
    # clicking a neighbour that lies in the open image jumps there
    c.labelling.label_cells([by_t[1]], types[fields[1]])
    wait(widget)
    widget.handle_click(_pos(item, other))
    wait(widget)
    tiles = widget.neighbours.gallery.tiles
    in_image = [t for t in tiles if t.image_id == item.image_id]
    if in_image:
        widget.neighbours.tiles[tiles.index(in_image[0])].click()
        assert widget.viewer.dims.current_step[0] == in_image[0].t
    # accept the suggestion of the selected cell (its best guess, whatever the threshold)
    widget.handle_click(_pos(item, other))
    wait(widget)
    shown = widget.neighbours.gallery.suggestion.best_label
    widget.accept()
    wait(widget)
    stored = c.session.store.cell(other)
    assert stored["label"] == shown and stored["label_source"] == "accepted"
    # undo puts it back
    widget.undo()
    wait(widget)
    assert c.session.store.cell(other)["label"] is None
    # accept all above a threshold
    c.labelling.set_threshold(0.0)
    c.labelling.accept_all_above()
    wait(widget)
    assert c.session.store.cell(other)["label"] == c.suggestions[other].best_label
    # export, then re-open the store
    widget.reference.export(tmp_path / "export")
    wait(widget)
    exported = tmp_path / "export" / "ref.cellseek"
    assert exported.exists() and (tmp_path / "export" / "cells.csv").exists()
    n_lab = c.session.store.n_cells(labelled=True)
    with Session.open(exported) as again:
        assert again.store.n_cells(labelled=True) == n_lab
        assert again.store.cell(first)["label"] == types[fields[0]]


def test_reopened_store_restores_the_cells_layer(widget, wait, tmp_path, make_napari_viewer,
                                                  qtbot):
    from napari.layers import Labels

    from cellseek._napari.hooks.sample import sample_smear
    from cellseek._napari.widget import CellseekWidget

    _classical(widget)
    widget.segment.run(whole_stack=True)
    widget.reference.new_store(tmp_path / "ref.cellseek")  # queued behind the segmentation
    wait(widget)
    saved = np.array(widget.controller.current.cells_layer.data)
    n_cells = widget.controller.session.store.n_cells()
    assert n_cells == len(np.unique(saved)) - 1
    widget.cleanup()
    # A fresh napari session: open the same sample, open the store -> cells come back.
    viewer = make_napari_viewer()
    (data, kwargs, _), = sample_smear()
    viewer.add_image(data, **kwargs)
    w2 = CellseekWidget(viewer)
    qtbot.addWidget(w2)
    try:
        w2.controller.sets.open(tmp_path / "ref.cellseek")
        wait(w2)
        item = w2.controller.current
        assert item.cells_layer is not None and item.image_id is not None
        np.testing.assert_array_equal(np.asarray(item.cells_layer.data), saved)
        assert len(item.table) == n_cells
        assert sum(isinstance(ly, Labels) for ly in viewer.layers) == 1
    finally:
        w2.cleanup()
