"""Jobs run in worker threads, one at a time, in order; follow-ups are never lost; Cancel and
closing stop them."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from cellseek.types import Progress

pytestmark = pytest.mark.napari


def _slow(steps, n=200, dt=0.01, result=1):
    for i in range(n):
        steps.append(i)
        yield Progress(i, n, "slow")
        time.sleep(dt)
    return result


def test_work_runs_off_the_gui_thread(widget, qtbot):
    seen = {}

    def work():
        seen["thread"] = threading.current_thread()
        yield Progress(0, 1, "test")
        return 42

    got = []
    runner = widget.controller.runner
    with qtbot.waitSignal(runner.idle, timeout=10_000):
        job = runner.run("Test", work(), on_returned=got.append)
    assert job is not None and job.state == "done" and job.result == 42
    assert seen["thread"] is not threading.main_thread()
    assert got == [42] and not runner.busy


def test_follow_ups_and_user_actions_queue_in_order(widget, wait):
    """A job started from another job's result callback runs right after it (the bug of issue
    11: it was refused because the first job still counted as busy), before a job the user
    asked for meanwhile; that one waits, and being a factory it reads its input when its turn
    comes (so it sees what the follow-up made)."""
    runner = widget.controller.runner
    order, steps = [], []
    state = {"cells": 0}

    def follow_done(value):
        order.append(("follow", value))
        state["cells"] = 7

    def first_done(value):
        order.append(("first", value))
        runner.run("Follow-up", _slow(steps, n=3, result="follow"), on_returned=follow_done)

    def user_job():
        n = state["cells"]
        yield Progress(0, 1, "user")
        return n

    first = runner.run("First", _slow(steps, n=20, result="first"), on_returned=first_done)
    user = runner.run("User", user_job, on_returned=lambda v: order.append(("user", v)))
    assert first.state == "running" and user.state == "queued" and runner.busy
    assert "waits until first" in widget.status.text()
    wait(widget)
    assert order == [("first", "first"), ("follow", "follow"), ("user", 7)]
    assert user.state == "done" and not runner.busy


def test_segmentation_queues_its_embedding(widget, wait, tmp_path):
    """Segment with a reference set open: the cells are embedded by default (issue 11)."""
    widget.segment.method.setCurrentText("classical")
    widget.reference.new_store(tmp_path / "ref.cellseek")
    job = widget.segment.run(whole_stack=False)
    assert job is not None and job.state == "queued"  # behind the store creation
    wait(widget)
    c = widget.controller
    item = c.current
    assert c.runner.last_thread is not threading.main_thread()
    n_cells = len(np.unique(item.labels_of(c.segmenting.current_plane()))) - 1
    assert n_cells >= 1 and len(item.table) == n_cells == c.session.store.n_cells()
    # a second Segment of the same plane replaces the unlabelled cells (no duplicates)
    widget.segment.run(whole_stack=False)
    wait(widget)
    assert c.session.store.n_cells() == n_cells == len(item.table)


def test_a_new_reference_set_while_cells_are_embedded_gets_the_cells(widget, wait, qtbot,
                                                                     tmp_path):
    """New... while the embedding of a segmentation runs: the finished job belongs to the closed
    set; the image is embedded into the new one, and a label lands on the field's own cell."""
    c = widget.controller
    widget.segment.method.setCurrentText("classical")
    widget.reference.new_store(tmp_path / "a.cellseek")
    wait(widget)
    widget.segment.run(whole_stack=True)
    qtbot.waitUntil(lambda: c.runner.what == "Embedding cells", timeout=120_000)
    widget.reference.new_store(tmp_path / "b.cellseek")
    wait(widget)
    item = c.current
    n_layer = len(np.unique(np.asarray(item.cells_layer.data))) - 1
    assert n_layer >= 1
    assert c.session.store.n_cells() == len(item.table) == n_layer
    widget.reference.add_bundled_crops()  # cells of other images join the new set
    wait(widget)
    cid = item.table.ids()[0]
    assert c.session.image_path(int(c.session.cell(cid)["image_id"])) == \
        c.session.image_path(item.image_id)
    c.labelling.label_cells([cid], c.classes[0].name)
    wait(widget)
    assert c.session.cell(cid)["label"] == c.classes[0].name


def test_progress_and_cancel_for_a_long_job(widget, qtbot):
    runner = widget.controller.runner
    steps, got, cancelled = [], [], []
    runner.run("Slow", _slow(steps, n=300), on_returned=got.append,
               on_cancel=lambda: cancelled.append(1))
    waiting = runner.run("Waiting", _slow([], n=2), on_returned=got.append,
                         on_cancel=lambda: cancelled.append(2))
    shown = lambda: not widget.progress.isHidden() and not widget.cancel_button.isHidden()  # noqa: E731
    qtbot.waitUntil(shown, timeout=5_000)
    assert len(steps) < 300
    qtbot.mouseClick(widget.cancel_button, __import__("qtpy").QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not runner.busy, timeout=5_000)
    n = len(steps)
    qtbot.wait(100)
    assert len(steps) == n < 300 and got == [] and sorted(cancelled) == [1, 2]
    assert waiting.state == "cancelled"
    assert "cancelled" in widget.status.text().lower()
    assert widget.progress.isHidden() and widget.cancel_button.isHidden()


def test_a_failing_job_is_reported_and_the_queue_goes_on(widget, wait, notes):
    from cellseek.errors import CellseekError

    runner = widget.controller.runner
    got = []

    def broken():
        yield Progress(0, 1, "x")
        raise CellseekError("the file is damaged")

    runner.run("Broken", broken())
    runner.run("Next", _slow([], n=2, result="ok"), on_returned=got.append)
    wait(widget)
    assert notes.errors == ["Broken failed: the file is damaged"]
    notes.clear()
    assert got == ["ok"]


def test_closing_during_a_run_is_safe(sample_viewer, qtbot):
    from cellseek._napari.widget import CellseekWidget

    w = CellseekWidget(sample_viewer)
    sample_viewer.window.add_dock_widget(w)
    steps, got = [], []
    w.controller.runner.run("Slow", _slow(steps), on_returned=got.append)
    w.controller.runner.run("Queued", _slow([], n=2), on_returned=got.append)
    qtbot.waitUntil(lambda: len(steps) > 3, timeout=5_000)
    w.close()  # the widget goes away mid-run
    qtbot.wait(200)
    n = len(steps)
    qtbot.wait(200)
    assert len(steps) == n < 200  # the worker stopped at a progress step
    assert got == []  # nothing delivered into the closed widget, the queued job never ran
    assert w._on_mouse not in sample_viewer.mouse_drag_callbacks


def test_debug_switch_runs_the_same_queue_on_the_calling_thread(widget, monkeypatch):
    """``CELLSEEK_SYNC=1`` (debugging) runs the same generators in the same order on the
    calling thread; tested through the runner's switch, not the environment, so that every
    widget test still runs threaded."""
    from cellseek._napari import runner as runner_module

    monkeypatch.setattr(runner_module, "sync_mode", lambda: True)
    runner = widget.controller.runner
    order = []

    def first_done(value):
        order.append(value)
        runner.run("Follow-up", _slow([], n=1, result="follow"), on_returned=order.append)
        runner.run("Later", _slow([], n=1, result="later"), on_returned=order.append)

    runner.run("First", _slow([], n=2, result="first"), on_returned=first_done)
    assert order == ["first", "follow", "later"] and not runner.busy
    assert runner.last_thread is threading.main_thread()


def test_cancel_during_a_single_step_job_keeps_its_result(widget, qtbot):
    """A merge or an export is one step: Cancel cannot stop it, and what it did is reported,
    not called "cancelled"."""
    import threading as _threading

    from cellseek._napari.runner import call_work

    runner = widget.controller.runner
    started, release, got = _threading.Event(), _threading.Event(), []

    def one_step():
        started.set()
        release.wait(10)
        return "written"

    job = runner.run("Export", call_work(one_step), on_returned=got.append)
    qtbot.waitUntil(started.is_set, timeout=5_000)
    widget.cancel()
    release.set()
    qtbot.waitUntil(lambda: not runner.busy, timeout=5_000)
    assert got == ["written"] and job.state == "done"


def test_index_build_progress_reaches_the_widget_on_the_gui_thread(sample_viewer, qtbot, wait,
                                                                    tmp_path, monkeypatch):
    """The index build is one blocking call; it reports through the runner's signal, which
    must reach the widget on the GUI thread (Qt widgets are not thread-safe)."""
    from cellseek._napari.status import StatusBar
    from cellseek._napari.widget import CellseekWidget

    seen = []
    original = StatusBar._on_progress

    def record(self, p):
        seen.append((p.stage, threading.current_thread() is threading.main_thread()))
        original(self, p)

    monkeypatch.setattr(StatusBar, "_on_progress", record)
    w = CellseekWidget(sample_viewer)
    sample_viewer.window.add_dock_widget(w, name="cellseek", area="right")
    try:
        w.reference.new_store(tmp_path / "ref.cellseek")
        wait(w)
        w.reference.add_bundled_crops()  # labelled cells: the index is built after the import
        wait(w)
        index_reports = [on_gui for stage, on_gui in seen if stage == "index"]
        assert len(index_reports) >= 2  # the job's own step and the build's reports
        assert all(on_gui for _, on_gui in seen)
    finally:
        w.cleanup()


def test_a_running_worker_shortens_the_thread_switch_interval(widget, qtbot):
    """A worker computing in Python holds the GIL up to the switch interval whenever the GUI
    thread asks for it: the interval is short while a worker runs, Python's own after."""
    import sys

    from cellseek._napari.runner import SWITCH_S

    runner = widget.controller.runner
    qtbot.waitUntil(lambda: runner._workers == 0, timeout=30_000)  # the widget's warm-up
    before = sys.getswitchinterval()
    assert before > SWITCH_S
    seen = []

    def work():
        for i in range(5):
            seen.append(sys.getswitchinterval())
            yield Progress(i, 5, "x")
            time.sleep(0.01)
        return 1

    with qtbot.waitSignal(runner.idle, timeout=10_000):
        runner.run("Test", work())
    assert seen and max(seen) <= SWITCH_S
    qtbot.waitUntil(lambda: sys.getswitchinterval() == before, timeout=5_000)
