"""Click-to-segment through the widget: a SAM point prompt adds the clicked cell.

A small SAM at random initialisation (SAM's real architecture, narrow and shallow) is saved
under the official ViT-B file name, so the widget's real path runs: weights lookup, image
embedding (cached), the fast point decoder, and the new cell in the cells layer. Its masks are
meaningless; the test checks that the click's plane position reaches SAM and that the mask SAM
returned is what lands in the layer.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.napari
pytest.importorskip("segment_anything")


@pytest.fixture
def small_sam(tmp_path, monkeypatch, no_packaged_weights):
    import torch

    import cellseek.segment.sam as sam_module
    from cellseek.zoo.sam_backend import build_sam_model

    torch.manual_seed(0)
    model = build_sam_model("vit_b", img_size=128, depth=2, embed_dim=128, num_heads=2,
                            global_attn_indexes=(1,))
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "sam_vit_b_01ec64.pth")
    monkeypatch.setenv("CELLSEEK_WEIGHTS_DIR", str(folder))
    monkeypatch.setenv("CELLSEEK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("cellseek.segment.sam._SEGMENTERS", type(sam_module._SEGMENTERS)())
    return folder


def test_click_on_background_runs_sam_and_adds_its_mask(widget, wait, small_sam, monkeypatch):
    from cellseek.segment.sam import SamSegmenter

    c = widget.controller
    # pre-computation is tested below
    monkeypatch.setattr(type(c.segmenting), "precompute_sam", lambda self, config=None: None)
    widget.segment.method.setCurrentText("classical")
    widget.segment.run()
    wait(widget)
    item = c.current
    layer = item.cells_layer
    before = np.asarray(layer.data).copy()
    widget.segment.click_mode.setChecked(True)
    assert widget.segment.click_mode.isChecked()  # the weights were found

    calls = []
    original = SamSegmenter.segment_point

    def spy(self, plane, point, **kwargs):
        mask = original(self, plane, point, **kwargs)
        calls.append((np.asarray(plane).shape, tuple(point), mask))
        return mask

    monkeypatch.setattr(SamSegmenter, "segment_point", spy)
    plane_index = item.index_of((0, 0))
    free_rows, free_cols = np.nonzero(before[plane_index] == 0)
    row, col = int(free_rows[len(free_rows) // 2]), int(free_cols[len(free_cols) // 2])
    world = layer.data_to_world([*plane_index, row, col])
    widget.handle_click(tuple(world))
    wait(widget, timeout=300_000)  # the first click encodes the plane (a small random SAM)

    assert len(calls) == 1
    shape, point, mask = calls[0]
    assert shape[:2] == before.shape[-2:] and point == (pytest.approx(row), pytest.approx(col))
    assert mask.shape == before.shape[-2:] and mask.dtype == bool
    after = np.asarray(layer.data)
    free = mask & (before[plane_index] == 0)
    if free.sum() >= 10:  # SAM found something: exactly those free pixels got one new value
        new = after[plane_index] != before[plane_index]
        np.testing.assert_array_equal(new, free)
        assert len(np.unique(after[plane_index][new])) == 1
        assert after[plane_index][new][0] == before.max() + 1
    else:  # nothing usable: the layer is unchanged
        np.testing.assert_array_equal(after, before)
    # a second click on the same plane reuses the cached image embedding: no encoder run
    encoder = c.segmenting.sam.model.image_encoder
    runs = []
    monkeypatch.setattr(encoder, "forward", lambda x: runs.append(x) or None)
    rows, cols = np.nonzero(after[plane_index] == 0)
    widget.handle_click(tuple(layer.data_to_world([*plane_index, rows[0], cols[0]])))
    wait(widget)
    assert len(calls) == 2 and runs == []



def test_the_next_planes_are_encoded_in_the_background(widget, wait, small_sam, qtbot):
    """After the first click, the other planes of the stack are embedded for SAM in the
    background; a click on one of them then runs no encoder; moving restarts from there."""
    c = widget.controller
    widget.segment.method.setCurrentText("classical")
    widget.segment.run()
    wait(widget)
    item = c.current
    layer = item.cells_layer
    widget.segment.click_mode.setChecked(True)
    assert "sam_vit_b" in widget.segment.sam_model.text()  # which model, and why
    plane_index = item.index_of((0, 0))
    free_rows, free_cols = np.nonzero(np.asarray(layer.data)[plane_index] == 0)
    widget.handle_click(tuple(layer.data_to_world([*plane_index, free_rows[0], free_cols[0]])))
    wait(widget, timeout=300_000)
    keys = item.planes()
    assert len(keys) > 1
    sam = c.segmenting.sam
    qtbot.waitUntil(lambda: c.segmenting.precompute_job is None
                    or c.segmenting.precompute_job.state != "running",
                    timeout=300_000)
    # every plane is now in the segmenter's cache: a click on the last one encodes nothing
    runs = []
    original = sam.model.image_encoder.forward
    sam.model.image_encoder.forward = lambda x: runs.append(x) or original(x)
    try:
        last = keys[-1]
        index = item.index_of(last)
        rows, cols = np.nonzero(np.asarray(layer.data)[index] == 0)
        c.segmenting.segment_at(item, last, (int(rows[0]), int(cols[0])), widget.segment.config())
        wait(widget)
    finally:
        sam.model.image_encoder.forward = original
    assert runs == []


def test_switching_clicks_on_encodes_the_stack_before_the_first_click(widget, wait, small_sam,
                                                                      qtbot):
    """Click-to-segment on: SAM is loaded and the planes are encoded in the background, the
    plane on screen first, so even the first click runs no encoder (issue 15)."""
    c = widget.controller
    widget.segment.method.setCurrentText("classical")
    widget.segment.run()
    wait(widget)
    item = c.current
    assert c.segmenting.sam is None  # no click yet: nothing loaded
    widget.segment.click_mode.setChecked(True)
    qtbot.waitUntil(lambda: c.segmenting.sam is not None
                    and c.segmenting.precompute_job is not None, timeout=60_000)
    qtbot.waitUntil(lambda: c.segmenting.precompute_job is None
                    or c.segmenting.precompute_job.state != "running",
                    timeout=300_000)
    sam = c.segmenting.sam
    assert all(sam.is_embedded(item.plane(k)) for k in item.planes())
    runs = []
    original = sam.model.image_encoder.forward
    sam.model.image_encoder.forward = lambda x: runs.append(x) or original(x)
    try:
        key = c.segmenting.current_plane()
        rows, cols = np.nonzero(np.asarray(item.cells_layer.data)[item.index_of(key)] == 0)
        c.segmenting.segment_at(item, key, (int(rows[0]), int(cols[0])), widget.segment.config())
        wait(widget)
    finally:
        sam.model.image_encoder.forward = original
    assert runs == []


def test_automatic_sam_segmentation_says_which_model_and_why(widget, wait, small_sam):
    widget.segment.method.setCurrentText("sam")
    assert widget.segment.sam_model.isHidden()
    widget.segment.run()
    wait(widget, timeout=300_000)
    label = widget.segment.sam_model
    assert not label.isHidden() and "vit_b" in label.text() and " on the " in label.text()
