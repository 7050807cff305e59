"""Fixtures shared by the whole suite (helpers live in ``_shared.py``), and test selection.

- Slow tests (``@pytest.mark.slow``) run only when ``-m`` names them (``pytest -m slow``);
  any other selection, ``-m "not napari"`` included, leaves them out.
- Widget tests need a display (Xvfb, started by pytest-xvfb); without one they are skipped with
  the reason, instead of Qt aborting the whole run.
"""

import os
from pathlib import Path

import pytest

from _shared import synthetic_field

NAPARI_TESTS = Path(__file__).parent / "napari"
QT_FIXTURES = {"qtbot", "make_napari_viewer"}


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def pytest_collection_modifyitems(config, items):
    if "slow" not in (config.getoption("-m") or ""):
        slow = [item for item in items if "slow" in item.keywords]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if "slow" not in item.keywords]
    if not _has_display():
        skip = pytest.mark.skip(reason="no display: the napari widget tests need an X server "
                                "(install Xvfb: apt-get install xvfb; pytest-xvfb starts it)")
        for item in items:
            if ("napari" in item.keywords or NAPARI_TESTS in Path(item.fspath).parents
                    or QT_FIXTURES & set(getattr(item, "fixturenames", ()))):
                item.add_marker(skip)


@pytest.fixture
def no_packaged_weights(monkeypatch):
    """As if no package carrying weights were installed (effnet_lite0, dinov2s_imgfocus,
    LiteMedSAM ...): ``cellseek.zoo.weights.package_dir`` finds none of them."""
    monkeypatch.setattr("cellseek.zoo.weights.package_dir", lambda package: None)


def pytest_configure(config):
    """New reference sets use the ``light`` preset (classical features only) in this suite,
    module- and session-scoped fixtures included: most tests check machinery, not models, and
    the default preset runs three models per crop. Tests marked ``default_preset`` (what a user
    runs as written: the README's commands, ``cellseek demo``, the napari user story) run the
    real default (see ``_real_default_preset``)."""
    os.environ["CELLSEEK_PRESET"] = "light"


@pytest.fixture(autouse=True)
def _real_default_preset(request, monkeypatch):
    """Tests marked ``default_preset`` see no ``CELLSEEK_PRESET``: the real default."""
    if request.node.get_closest_marker("default_preset") is not None:
        monkeypatch.delenv("CELLSEEK_PRESET", raising=False)


@pytest.fixture
def field():
    """A synthetic RGB field with 4 red round and 4 blue elongated cells."""
    return synthetic_field()
