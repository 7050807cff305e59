"""Fixtures for the widget tests: a viewer with the sample stack and a cellseek widget."""

from __future__ import annotations

import pytest


@pytest.fixture
def sync(monkeypatch):
    """Run cellseek work synchronously (CELLSEEK_SYNC=1), like stardist-napari's debug switch."""
    monkeypatch.setenv("CELLSEEK_SYNC", "1")


@pytest.fixture
def sample_viewer(make_napari_viewer):
    """A viewer holding the bundled smear fields (one stack, 6 planes)."""
    from cellseek._napari._sample import sample_smear

    viewer = make_napari_viewer()
    (data, kwargs, _), = sample_smear()
    viewer.add_image(data, **kwargs)
    return viewer


@pytest.fixture
def widget(sample_viewer, qtbot):
    from cellseek._napari.widget import CellseekWidget

    w = CellseekWidget(sample_viewer)
    qtbot.addWidget(w)
    yield w
    w.cleanup()
