"""Closing the dock or the viewer releases everything; reopening never duplicates; New… over
leftover -wal/-shm files starts a clean reference set (issue 11, item 5)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.napari


def _dock(viewer):
    from cellseek._napari.widget import CellseekWidget

    w = CellseekWidget(viewer)
    viewer.window.add_dock_widget(w, name="cellseek", area="right")
    return w


def _segmented_with_store(viewer, wait, path):
    w = _dock(viewer)
    w.segment.method.setCurrentText("classical")
    w.segment.run(whole_stack=False)
    w.reference.new_store(path)
    wait(w)
    assert w.controller.session.store.n_cells() > 0
    return w


def _ours(viewer):
    return [cb for cb in viewer.mouse_drag_callbacks
            if getattr(cb, "__func__", None) is not None and cb.__func__.__name__ == "_on_mouse"]


def test_closing_the_dock_releases_and_reopening_adopts(sample_viewer, wait, tmp_path, qtbot):
    from napari.layers import Labels

    path = tmp_path / "ref.cellseek"
    w = _segmented_with_store(sample_viewer, wait, path)
    assert len(_ours(sample_viewer)) == 1 and w.keys.installed
    assert path.with_name(path.name + "-wal").exists()  # the store is open
    w.parentWidget().destroyOnClose()  # what napari's dock close button (x) does
    qtbot.waitUntil(lambda: not path.with_name(path.name + "-wal").exists(), timeout=10_000)
    assert _ours(sample_viewer) == [] and not w.keys.installed
    assert w.controller.session is None
    cells_layers = [ly for ly in sample_viewer.layers if isinstance(ly, Labels)]
    assert len(cells_layers) == 1  # the user keeps the layer
    # reopen: the new widget adopts the cells layer; the store brings its cells back
    w2 = _dock(sample_viewer)
    w2.reference.open_store(path)
    wait(w2)
    assert [ly for ly in sample_viewer.layers if isinstance(ly, Labels)] == cells_layers
    item = w2.controller.current
    assert item.cells_layer is cells_layers[0] and item.image_id is not None
    assert len(_ours(sample_viewer)) == 1  # one click handler: a click is handled once
    calls = []
    original = w2.handle_click
    w2.handle_click = lambda pos: calls.append(pos) or original(pos)
    canvas = sample_viewer.window._qt_viewer.canvas.native
    sample_viewer.window.show()
    qtbot.waitExposed(canvas)
    from qtpy.QtCore import Qt

    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=canvas.rect().center())
    qtbot.waitUntil(lambda: len(calls) >= 1, timeout=5_000)
    qtbot.wait(100)
    assert len(calls) == 1
    wait(w2)
    w2.cleanup()


def test_closing_the_viewer_closes_the_store(make_napari_viewer, wait, tmp_path, qtbot):
    from cellseek._napari.hooks.sample import sample_smear

    viewer = make_napari_viewer()
    (data, kwargs, _), = sample_smear()
    viewer.add_image(data, **kwargs)
    path = tmp_path / "ref.cellseek"
    w = _segmented_with_store(viewer, wait, path)
    keys = w.keys
    viewer.close()
    qtbot.waitUntil(lambda: not path.with_name(path.name + "-wal").exists(), timeout=10_000)
    assert not keys.installed or not _alive(keys)
    assert w._closed


def _alive(qobject) -> bool:
    try:
        qobject.objectName()
    except RuntimeError:
        return False
    return True


def test_new_over_leftover_wal_files_starts_clean(sample_viewer, wait, tmp_path, qtbot):
    path = tmp_path / "ref.cellseek"
    w = _segmented_with_store(sample_viewer, wait, path)
    n_old = w.controller.session.store.n_cells()
    # keep the sidecars of the open store, as a crash would leave them
    for suffix in ("-wal", "-shm"):
        shutil.copy(f"{path}{suffix}", tmp_path / f"kept{suffix}")
    # New… over the set that is open: the old one is closed first, the new one is clean
    w.reference.new_store(path)
    wait(w)
    c = w.controller
    assert c.session.store.n_cells() == n_old  # the segmented image was embedded again
    assert c.session.store.n_cells(labelled=True) == 0
    w.cleanup()
    qtbot.waitUntil(lambda: not path.with_name(path.name + "-wal").exists(), timeout=10_000)
    # the file deleted by hand, its stale -wal/-shm left behind: New… must not read them
    path.unlink()
    for suffix in ("-wal", "-shm"):
        shutil.copy(tmp_path / f"kept{suffix}", f"{path}{suffix}")
    sample_viewer.layers.remove(c.current.cells_layer)
    w2 = _dock(sample_viewer)
    w2.reference.new_store(path)
    wait(w2)
    session = w2.controller.session
    assert session.store.n_cells() == 0 and session.classes() == []
    w2.segment.method.setCurrentText("classical")
    w2.segment.run(whole_stack=False)
    wait(w2)
    assert session.store.n_cells() == len(np.unique(w2.controller.current.cells_layer.data)) - 1
    w2.cleanup()
