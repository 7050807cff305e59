"""Binary values of the store, encoded and decoded with bounds: label images, vectors, thumbnails.

A store may come from another lab, so nothing read from it is trusted: a label image is
decompressed only up to the size its own header declares (and only when that size is within
:class:`cellseek.config.Limits`), an embedding must have exactly ``dim`` finite float16 values,
and a thumbnail must be small and declare small dimensions.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence

import numpy as np

from cellseek.config import Limits, current_limits

#: Stored embeddings: little-endian float16.
VECTOR_DTYPE = np.dtype("<f2")
_NPY_HEADER_MAX = 65536 + 16  # npy format 1.0/2.0 header bound for the shapes we accept
_CHUNK = 1 << 20


class BlobError(ValueError):
    """A stored value is malformed or too large; the message says which bound it breaks.

    ``row`` is the offending position when a sequence of blobs was checked.
    """

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.row = row


# ---------------------------------------------------------------------------- label images


def encode_labels(labels: np.ndarray) -> bytes:
    """zlib-compressed ``.npy`` bytes of a label image (the smallest fitting unsigned dtype)."""
    top = int(labels.max()) if labels.size else 0
    dtype = np.uint16 if top < 2**16 else np.uint32 if top < 2**32 else np.int64
    buf = io.BytesIO()
    np.save(buf, labels.astype(dtype), allow_pickle=False)
    return zlib.compress(buf.getvalue(), 6)


def _header(head: bytes, limits: Limits) -> tuple[int, tuple[int, ...], np.dtype]:
    """``(header bytes, shape, dtype)`` of an ``.npy`` prefix, checked against the limits."""
    buf = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise BlobError(f"unsupported .npy version {version}")
    except BlobError:
        raise
    except Exception as exc:  # numpy raises ValueError / SyntaxError on a malformed header
        raise BlobError(f"the label image header is malformed ({exc})") from None
    if dtype.kind not in "iu" or dtype.itemsize > 8 or dtype.hasobject:
        raise BlobError(f"a label image must hold integers, not {dtype}")
    if len(shape) != 2 or any(not isinstance(n, int) or n < 0 for n in shape):
        raise BlobError(f"a label image must be 2-D, not of shape {shape}")
    if fortran:
        raise BlobError("a label image must be stored in C order")
    if shape[0] * shape[1] > limits.max_plane_pixels:
        raise BlobError(
            f"a label image of {shape[0]} x {shape[1]} pixels is larger than the limit of "
            f"{limits.max_plane_pixels} pixels (cellseek.config.Limits.max_plane_pixels)"
        )
    return buf.tell(), tuple(shape), dtype


def _inflate(blob: bytes, limits: Limits, *, keep: bool):
    """``(shape, dtype, pixel bytes or None)`` of a label-image blob.

    The output is never allowed to grow beyond the size the ``.npy`` header declares (one byte
    more is asked for, to notice a blob that holds more than it says).
    """
    d = zlib.decompressobj()
    try:
        head = d.decompress(blob, _NPY_HEADER_MAX)
        offset, shape, dtype = _header(head, limits)
        expected = offset + shape[0] * shape[1] * dtype.itemsize
        parts = [head] if keep else []
        size = len(head)
        while not d.eof and size <= expected:
            piece = d.decompress(d.unconsumed_tail, min(_CHUNK, expected - size + 1))
            if not piece:
                break
            size += len(piece)
            if keep:
                parts.append(piece)
    except zlib.error as exc:
        raise BlobError(f"the label image is not valid zlib data ({exc})") from None
    if size != expected or not d.eof:
        what = "more" if size > expected else "less"
        raise BlobError(f"the label image holds {what} data than its header declares "
                        f"({shape[0]} x {shape[1]} {dtype}) or is truncated")
    data = b"".join(parts)[offset:] if keep else None
    return shape, dtype, data


def decode_labels(blob: bytes, limits: Limits | None = None) -> np.ndarray:
    """Inverse of :func:`encode_labels` (as int32), bounded by ``limits``.

    Raises
    ------
    BlobError
        The blob is not a 2-D integer ``.npy`` label image within the limits.
    """
    shape, dtype, data = _inflate(bytes(blob), limits or current_limits(), keep=True)
    arr = np.frombuffer(data, dtype=dtype).reshape(shape)
    if arr.size and (int(arr.max()) > np.iinfo(np.int32).max or int(arr.min()) < 0):
        raise BlobError("a label image holds values outside 0 .. 2**31 - 1")
    return arr.astype(np.int32)


def check_labels_blob(blob: bytes, limits: Limits | None = None) -> tuple[int, int]:
    """Validate a label-image blob without keeping its pixels; returns its ``(rows, cols)``."""
    shape, _, _ = _inflate(bytes(blob), limits or current_limits(), keep=False)
    return shape[0], shape[1]


# ---------------------------------------------------------------------------- embeddings


def vectors_from_blobs(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """Stack float16 vector blobs into float32 ``(n, dim)``, refusing malformed ones.

    Raises
    ------
    BlobError
        A blob has the wrong length or a value that is not finite; the message gives the row.
    """
    size = dim * VECTOR_DTYPE.itemsize
    for row, blob in enumerate(blobs):
        if len(blob) != size:
            raise BlobError(f"{len(blob)} bytes, expected {size} ({dim} float16)", row)
    if not blobs:
        return np.zeros((0, dim), np.float32)
    out = np.frombuffer(b"".join(blobs), dtype=VECTOR_DTYPE).reshape(len(blobs), dim)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        raise BlobError("values that are not finite", int(np.flatnonzero(~finite)[0]))
    return out.astype(np.float32)


def bad_vector_rows(blobs: Sequence[bytes], dim: int) -> list[int]:
    """Rows of ``blobs`` that are not exactly ``dim`` finite float16 values."""
    size = dim * VECTOR_DTYPE.itemsize
    bad = {i for i, b in enumerate(blobs) if not isinstance(b, bytes) or len(b) != size}
    good = [i for i in range(len(blobs)) if i not in bad]
    if good:
        arr = np.frombuffer(b"".join(blobs[i] for i in good), VECTOR_DTYPE).reshape(len(good), dim)
        bad.update(good[int(i)] for i in np.flatnonzero(~np.isfinite(arr).all(axis=1)))
    return sorted(bad)


# ---------------------------------------------------------------------------- thumbnails


def thumbnail_problem(blob: bytes, limits: Limits | None = None) -> str | None:
    """Why a stored thumbnail must not be decoded, or None when it is small enough.

    Only the image header is read (Pillow opens lazily), so a crafted thumbnail declaring a
    huge size is refused before anything is decompressed. Bytes Pillow does not recognise as
    an image are passed on (a viewer shows nothing for them).
    """
    from PIL import Image, UnidentifiedImageError

    limits = limits or current_limits()
    if len(blob) > limits.max_thumbnail_bytes:
        return f"{len(blob)} bytes, more than {limits.max_thumbnail_bytes}"
    try:
        with Image.open(io.BytesIO(blob)) as im:
            width, height = im.size
    except UnidentifiedImageError:
        return None
    except Image.DecompressionBombError as exc:
        return f"a decompression bomb ({exc})"
    except Exception as exc:  # Pillow raises many types (and its bomb error) on bad headers
        return f"a malformed image header ({type(exc).__name__})"
    if max(width, height) > limits.max_thumbnail_side:
        return f"{width} x {height} pixels, more than {limits.max_thumbnail_side} on a side"
    return None
