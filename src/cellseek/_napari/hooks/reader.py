"""npe2 reader contribution: open microscope images with :mod:`cellseek.io`.

Pure functions; napari is not imported (napari calls :func:`get_reader` and adds the layers).
"""

from __future__ import annotations

from pathlib import Path


def get_reader(path):
    """Return a reader function for ``path`` (str or list of str), or None when unsupported.

    Parameters
    ----------
    path : str or list of str
        Files with a supported ending (``.tif``, ``.tiff``, ``.png``, ``.jpg``, ``.jpeg``,
        ``.bmp``) or folders.

    Returns
    -------
    callable or None
        ``reader(path) -> list of (data, kwargs, "image")``.
    """
    from cellseek.io import is_supported

    paths = [path] if isinstance(path, str | Path) else list(path)
    if not paths or not all(_acceptable(Path(p), is_supported) for p in paths):
        return None
    return read_layers


def _acceptable(path: Path, is_supported) -> bool:
    """A supported file, or a folder holding at least one supported file."""
    if path.is_dir():
        return any(child.is_file() and is_supported(child) for child in path.iterdir())
    return is_supported(path)


def read_layers(path) -> list[tuple]:
    """Read every stack of every path (:func:`cellseek.io.read_all`) as napari layer data."""
    from cellseek.io import image_to_layer_data, read_all

    paths = [path] if isinstance(path, str | Path) else list(path)
    layers: list[tuple] = []
    for one in paths:
        for image in read_all(one):
            layers.extend(image_to_layer_data(image))
    return layers
