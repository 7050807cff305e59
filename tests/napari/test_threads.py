"""Heavy work runs in napari workers off the GUI thread; closing during a run is safe."""

from __future__ import annotations

import threading
import time

import pytest

from cellseek.types import Progress

pytestmark = pytest.mark.napari


def test_work_runs_off_the_gui_thread(widget, qtbot, monkeypatch):
    monkeypatch.delenv("CELLSEEK_SYNC", raising=False)
    seen = {}

    def work():
        seen["thread"] = threading.current_thread()
        yield Progress(0, 1, "test")
        return 42

    got = []
    runner = widget.controller.runner
    with qtbot.waitSignal(runner.finished, timeout=10_000):
        worker = runner.run("Test", work(), on_returned=got.append)
    assert worker is not None
    assert seen["thread"] is not threading.main_thread()
    qtbot.waitUntil(lambda: got == [42], timeout=5_000)
    assert not runner.busy


def test_segmentation_runs_in_a_worker(widget, qtbot, monkeypatch):
    monkeypatch.delenv("CELLSEEK_SYNC", raising=False)
    widget.segment.method.setCurrentText("classical")
    runner = widget.controller.runner
    with qtbot.waitSignal(runner.finished, timeout=60_000):
        worker = widget.segment.run(whole_stack=False)
    assert worker is not None and runner.last_thread is not threading.main_thread()
    qtbot.waitUntil(lambda: widget.controller.current.cells_layer is not None, timeout=5_000)
    assert widget.controller.current.cells_layer.data.max() >= 1


def test_sync_switch_runs_on_the_calling_thread(widget, sync):
    widget.segment.method.setCurrentText("classical")
    assert widget.segment.run(whole_stack=False) is None  # no worker in sync mode
    assert widget.controller.runner.last_thread is threading.main_thread()


def test_closing_during_a_run_is_safe(sample_viewer, qtbot, monkeypatch):
    from cellseek._napari.widget import CellseekWidget

    monkeypatch.delenv("CELLSEEK_SYNC", raising=False)
    w = CellseekWidget(sample_viewer)
    sample_viewer.window.add_dock_widget(w)
    steps = []

    def slow():
        for i in range(200):
            steps.append(i)
            yield Progress(i, 200, "slow")
            time.sleep(0.01)
        return 1

    got = []
    w.controller.runner.run("Slow", slow(), on_returned=got.append)
    qtbot.waitUntil(lambda: len(steps) > 3, timeout=5_000)
    w.close()  # the widget goes away mid-run
    qtbot.wait(200)
    n = len(steps)
    qtbot.wait(200)
    assert len(steps) == n < 200  # the worker stopped at a progress step
    assert got == []  # nothing delivered into the closed widget
    assert w._on_mouse not in sample_viewer.mouse_drag_callbacks
