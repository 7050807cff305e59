"""Content hash of pixel data: the key of an image in the store and in caches."""

from __future__ import annotations

import hashlib
import math

import numpy as np

from cellseek.types import ImageData

#: Bytes hashed per step; Dask data are computed one block of about this size at a time.
_BLOCK_BYTES = 64 << 20


def content_hash(img_or_array) -> str:
    """SHA-256 of the pixel data, streamed plane by plane.

    The digest covers the data type, the shape and the bytes in C order, so it is the same
    for an :class:`~cellseek.types.ImageData`, its ``data``, a NumPy copy or a lazy Dask
    version, whatever the chunking. Metadata (path, pixel size) do not enter it.

    Parameters
    ----------
    img_or_array : ImageData or array-like

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    data = img_or_array.data if isinstance(img_or_array, ImageData) else img_or_array
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        data = np.asarray(data)
    shape = tuple(int(n) for n in data.shape)
    dtype = np.dtype(data.dtype)
    digest = hashlib.sha256()
    digest.update(f"{dtype.str}|{shape}|".encode())
    # number of leading axes to iterate over so that one block stays small
    lead = 0
    while lead < len(shape) and math.prod(shape[lead:]) * dtype.itemsize > _BLOCK_BYTES:
        lead += 1
    if not isinstance(data, np.ndarray) and len(shape) > 2:
        # lazy data: one plane ((Y, X) or (Y, X, RGB)) at a time
        plane_dims = 3 if shape[-1] <= 4 else 2
        lead = max(lead, len(shape) - plane_dims)
    for index in np.ndindex(*shape[:lead]):
        block = np.ascontiguousarray(np.asarray(data[index] if index else data[...]))
        digest.update(block.view(np.uint8).reshape(-1).data if block.size else b"")
    return digest.hexdigest()
