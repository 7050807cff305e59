"""The whole annotation loop through the widget's handlers (classical segmenter, offline preset)."""

from __future__ import annotations

import numpy as np
import pytest

from cellseek.data import sample_field_types, sample_fields
from cellseek.session import Session

pytestmark = pytest.mark.napari


def _classical(widget):
    widget.segment.method.setCurrentText("classical")


def _click_cell(widget, item, cell_id):
    """World position of a stored cell's centroid, clicked through the widget handler."""
    cell = item.table.cell(cell_id)
    lead = item.index_of((cell["t"], cell["z"]))
    pos = item.cells_layer.data_to_world([*lead, *cell["centroid"]])
    return widget.handle_click(tuple(pos))


def test_full_loop(widget, sync, tmp_path):
    c = widget.controller
    assert c.current is not None and c.current.image.axes == "TYXS"
    _classical(widget)
    widget.segment.run(whole_stack=True)
    item = c.current
    assert item.cells_layer is not None
    values = np.unique(item.cells_layer.data)
    assert len(values) - 1 >= 6  # one white blood cell per field at least; values stack-unique
    # a reference set with the offline preset (classical features), then the bundled crops
    widget.reference.new_store(tmp_path / "ref.cellseek")
    assert c.session is not None and c.session.models == ("classical",)
    assert item.image_id is not None and len(item.table) == len(values) - 1
    widget.reference.add_bundled_crops()
    assert sum(c.class_counts().values()) == 30
    # label two field cells through the key handlers (1-9 follow the class list)
    names = c.class_names()
    types = sample_field_types()
    by_t = {item.table.cell(i)["t"]: i for i in item.table.ids()}
    fields = [p.name for p in sample_fields()]
    first = by_t[0]
    assert _click_cell(widget, item, first) == first
    widget.assign_class(names.index(types[fields[0]]) + 1)
    assert c.session.store.cell(first)["label"] == types[fields[0]]
    # suggest for the stack; hover table and colours follow
    widget.suggest.run("stack")
    assert c.suggestions and first not in c.suggestions
    feats = item.cells_layer.features
    assert set(feats["state"]) >= {"confirmed"}
    # click another cell -> neighbour gallery
    other = by_t[2]
    assert _click_cell(widget, item, other) == other
    gallery = widget.neighbours.gallery
    assert gallery is not None and gallery.cell["id"] == other
    assert len(widget.neighbours.tiles) == len(gallery.tiles) > 0
    sims = [t.similarity for t in gallery.tiles]
    assert sims == sorted(sims, reverse=True)
    assert all(t.label in names for t in gallery.tiles)
    # clicking a neighbour that lies in the open image jumps there
    c.label_cells([by_t[1]], types[fields[1]])
    widget.handle_click(_pos(item, other))
    tiles = widget.neighbours.gallery.tiles
    in_image = [t for t in tiles if t.image_id == item.image_id]
    if in_image:
        widget.neighbours.tiles[tiles.index(in_image[0])].click()
        assert widget.viewer.dims.current_step[0] == in_image[0].t
    # accept the suggestion of the selected cell
    widget.handle_click(_pos(item, other))
    c.set_threshold(0.0)
    assert widget.accept() == 1
    stored = c.session.store.cell(other)
    assert stored["label"] == c.suggestions[other].best_label
    assert stored["label_source"] == "accepted"
    # undo puts it back
    widget.undo()
    assert c.session.store.cell(other)["label"] is None
    # accept all above a threshold
    n = c.accept_all_above()
    assert n >= 1
    # export, then re-open the store
    widget.reference.export(tmp_path / "export")
    exported = tmp_path / "export" / "ref.cellseek"
    assert exported.exists() and (tmp_path / "export" / "cells.csv").exists()
    n_lab = c.session.store.n_cells(labelled=True)
    with Session.open(exported) as again:
        assert again.store.n_cells(labelled=True) == n_lab
        assert again.store.cell(first)["label"] == types[fields[0]]


def _pos(item, cell_id):
    cell = item.table.cell(cell_id)
    lead = item.index_of((cell["t"], cell["z"]))
    return tuple(item.cells_layer.data_to_world([*lead, *cell["centroid"]]))


def test_reopened_store_restores_the_cells_layer(widget, sync, tmp_path, make_napari_viewer,
                                                  qtbot):
    from cellseek._napari._sample import sample_smear
    from cellseek._napari.widget import CellseekWidget

    _classical(widget)
    widget.segment.run(whole_stack=True)
    widget.reference.new_store(tmp_path / "ref.cellseek")
    saved = np.array(widget.controller.current.cells_layer.data)
    n_cells = widget.controller.session.store.n_cells()
    widget.cleanup()
    # A fresh napari session: open the same sample, open the store -> cells come back.
    viewer = make_napari_viewer()
    (data, kwargs, _), = sample_smear()
    viewer.add_image(data, **kwargs)
    w2 = CellseekWidget(viewer)
    qtbot.addWidget(w2)
    try:
        w2.controller.open_store(tmp_path / "ref.cellseek")
        item = w2.controller.current
        assert item.cells_layer is not None and item.image_id is not None
        np.testing.assert_array_equal(np.asarray(item.cells_layer.data), saved)
        assert len(item.table) == n_cells
    finally:
        w2.cleanup()
