"""Reading microscope images: TIFF, OME-TIFF, ImageJ, Lionheart/Gen5, Nanolive, PNG/JPEG/BMP.

Public API
----------
read_image(path, lazy="auto") -> ImageData
    A file or a folder (its first stack).
read_all(path, lazy="auto") -> list[ImageData]
    Every stack of a file or folder.
iter_planes(img, z_mode="all", z_index=None, channel=None) -> (t, z, plane)
write_labels(path, labels), read_labels(path)
image_to_layer_data(img) -> napari LayerData tuples (napari is not imported)
content_hash(img_or_array) -> sha256 hex digest of the pixel data

See ``docs/formats.md`` for the exact conventions.
"""

from __future__ import annotations

from cellseek.io._stack import LAZY_THRESHOLD_BYTES
from cellseek.io.hashing import content_hash
from cellseek.io.labels import read_labels, write_labels
from cellseek.io.layers import colormap_for, image_to_layer_data
from cellseek.io.planes import (
    Z_MODES,
    channel_index,
    focus_score,
    get_plane,
    iter_planes,
    plane_to_float_rgb,
    plane_to_uint8_rgb,
)
from cellseek.io.reader import SUPPORTED_SUFFIXES, is_supported, read_all, read_image

__all__ = [
    "LAZY_THRESHOLD_BYTES",
    "SUPPORTED_SUFFIXES",
    "Z_MODES",
    "channel_index",
    "colormap_for",
    "content_hash",
    "focus_score",
    "get_plane",
    "image_to_layer_data",
    "is_supported",
    "iter_planes",
    "plane_to_float_rgb",
    "plane_to_uint8_rgb",
    "read_all",
    "read_image",
    "read_labels",
    "write_labels",
]
