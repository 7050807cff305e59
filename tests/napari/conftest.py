"""Fixtures for the widget tests: a viewer with the sample stack and a cellseek widget.

Every widget test runs the real worker threads (no ``CELLSEEK_SYNC``) and waits for the work
with ``qtbot.waitUntil``.
"""

from __future__ import annotations

import os

import pytest

#: Longest wait for a chain of jobs (segmentation, embedding, suggestion) on a busy CI machine.
JOB_TIMEOUT_MS = 120_000


@pytest.fixture(autouse=True)
def _threaded():
    """Widget tests must exercise the threads users run."""
    assert not os.environ.get("CELLSEEK_SYNC"), "unset CELLSEEK_SYNC: widget tests run threaded"


@pytest.fixture(autouse=True)
def notes():
    """The napari notifications a test raised; an error one fails the test unless the test
    empties ``notes.errors`` after checking it (every failure must be visible and expected)."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    class Notes:
        def __init__(self):
            self.start = len(notification_manager.records)

        @property
        def all(self):
            return [n.message for n in notification_manager.records[self.start:]]

        @property
        def errors(self):
            return [n.message for n in notification_manager.records[self.start:]
                    if n.severity >= NotificationSeverity.ERROR]

        def clear(self):
            self.start = len(notification_manager.records)

    found = Notes()
    yield found
    assert not found.errors, f"unexpected error notifications: {found.errors}"


@pytest.fixture
def wait(qtbot):
    """``wait(widget)``: wait until the widget's jobs (and the jobs they queued) are done."""

    def _wait(widget, timeout=JOB_TIMEOUT_MS):
        runner = widget.controller.runner
        qtbot.waitUntil(lambda: not runner.busy, timeout=timeout)
        qtbot.wait(10)  # let the last signals land

    return _wait


@pytest.fixture
def sample_viewer(make_napari_viewer):
    """A viewer holding the bundled smear fields (one stack, 6 planes)."""
    from cellseek._napari.hooks.sample import sample_smear

    viewer = make_napari_viewer()
    (data, kwargs, _), = sample_smear()
    viewer.add_image(data, **kwargs)
    return viewer


@pytest.fixture
def widget(sample_viewer, qtbot):
    """The widget docked in the sample viewer (keys are caught in its window)."""
    from cellseek._napari.widget import CellseekWidget

    w = CellseekWidget(sample_viewer)
    sample_viewer.window.add_dock_widget(w, name="cellseek", area="right")
    yield w
    w.cleanup()


@pytest.fixture
def plugin_widget(make_napari_viewer, qtbot):
    """The widget as a user gets it: a shown window, the sample opened from File > Open Sample
    and the dock from the Plugins menu (napari then hands the widget proxies of its viewer
    and layers, a new proxy on every access)."""
    from _plugin import register_manifest

    register_manifest()
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1600, 1000)
    viewer.open_sample("cellseek", "smear")
    _, w = viewer.window.add_plugin_dock_widget("cellseek", "cellseek annotator")
    qtbot.waitExposed(viewer.window._qt_window)
    yield w
    w.cleanup()


@pytest.fixture
def no_weights(tmp_path, monkeypatch, no_packaged_weights):
    """An empty weights folder and empty caches: no model's weights are on this machine."""
    empty = tmp_path / "no-weights"
    for var in ("CELLSEEK_WEIGHTS_DIR", "CELLSEEK_CACHE_DIR", "TORCH_HOME", "MICROSAM_CACHEDIR",
                "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(empty / var.lower()))
    return empty
