"""npe2 reader contribution: open microscope images with :mod:`cellseek.io`.

Pure functions; napari is not imported (napari calls :func:`get_reader` and adds the layers).
"""

from __future__ import annotations

import warnings
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
    """Read every stack of every path (:func:`cellseek.io.read_all`) as napari layer data.

    What the reader had to leave out or doubts (a damaged file of a folder, a constant image)
    is said in one warning per path, which napari shows as a notification: nothing is skipped
    without a word.
    """
    from cellseek.io import image_to_layer_data, read_all

    paths = [path] if isinstance(path, str | Path) else list(path)
    layers: list[tuple] = []
    for one in paths:
        images = read_all(one)
        said = list(dict.fromkeys(w for image in images
                                  for w in image.metadata.get("warnings", ())))
        if said:
            warnings.warn(f"{Path(one).name}: {'; '.join(said)}", UserWarning, stacklevel=2)
        for image in images:
            layers.extend(image_to_layer_data(image))
    return layers
