"""Helpers of the widget tests that take the user's path into napari."""

from __future__ import annotations


def register_manifest():
    """Register cellseek's npe2 manifest (an editable install may not have it registered)."""
    from pathlib import Path

    from npe2 import PluginManager, PluginManifest

    pm = PluginManager.instance()
    if "cellseek" not in pm:
        import cellseek

        pm.register(PluginManifest.from_file(Path(cellseek.__file__).parent / "napari.yaml"))
