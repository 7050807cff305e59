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
_CHUNK = 1 << 18  # bytes decompressed at a time
_INPUT = 1 << 16  # compressed bytes fed at a time


class BlobError(ValueError):
    """A stored value is malformed or too large; the message says which bound it breaks.

    ``row`` is the offending position when a sequence of blobs was checked.
    """

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.row = row


# ---------------------------------------------------------------------------- label images

#: dtypes a stored label image may have: unsigned, at most 4 bytes (what :func:`encode_labels`
#: writes, plus uint8 and int32). An 8-byte dtype is refused: it only doubles what a blob
#: inflates to, and no label value above 2**31 - 1 is valid anyway.
LABEL_DTYPES = ("u1", "u2", "u4", "i1", "i2", "i4")


def label_value_problem(labels: np.ndarray) -> str | None:
    """Why a label image cannot be stored (values outside 0 .. 2**31 - 1), or None.

    The one rule for label values, applied when cellseek writes a plane label image and when
    it decodes one from a store.
    """
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) > np.iinfo(np.int32).max):
        return "a label image holds values outside 0 .. 2**31 - 1"
    return None


def encode_labels(labels: np.ndarray) -> bytes:
    """zlib-compressed ``.npy`` bytes of a label image (uint16, or uint32 when needed).

    Raises
    ------
    ValueError
        A value lies outside 0 .. 2**31 - 1 (the rule :func:`decode_labels` applies).
    """
    problem = label_value_problem(labels)
    if problem:
        raise ValueError(problem)
    top = int(labels.max()) if labels.size else 0
    dtype = np.uint16 if top < 2**16 else np.uint32
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(labels, dtype=dtype), allow_pickle=False)
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
    if dtype.hasobject or dtype.kind not in "iu" or dtype.str[1:] not in LABEL_DTYPES:
        raise BlobError(f"a label image must hold integers of at most 4 bytes, not {dtype}")
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


def _inflate(blob: bytes, limits: Limits, *, shape_only: bool = False):
    """Decode a label-image blob piece by piece; returns ``(shape, int32 array or None)``.

    Memory is bounded by what the header declares, checked before anything else is
    decompressed: the result is ONE preallocated int32 array (4 bytes a pixel, at most
    ``Limits.max_plane_pixels`` pixels); the compressed input is fed in slices of
    :data:`_INPUT` bytes and every piece decompressed is at most :data:`_CHUNK` bytes,
    converted into the result and dropped. Decompression never goes more than one byte past
    the declared size (to notice a blob that holds more than it says). With ``shape_only``
    the pixels are checked and dropped (nothing the size of the image is allocated).
    """
    view = memoryview(blob)
    d = zlib.decompressobj()
    top = np.iinfo(np.int32).max
    try:
        head = d.decompress(view[:_INPUT], _NPY_HEADER_MAX)
        offset, shape, dtype = _header(head, limits)
        n = shape[0] * shape[1]
        expected = n * dtype.itemsize  # pixel bytes the header declares
        out = None if shape_only else np.empty(n, np.int32)
        pending = head[offset:]  # pixel bytes not converted yet
        size = len(pending)  # pixel bytes decompressed so far
        done = 0  # pixels converted so far
        tail, consumed = d.unconsumed_tail, min(len(view), _INPUT)
        while True:
            usable = min(len(pending) - len(pending) % dtype.itemsize,
                         (n - done) * dtype.itemsize)
            if usable:
                values = np.frombuffer(pending, dtype, usable // dtype.itemsize)
                if int(values.min()) < 0 or int(values.max()) > top:
                    raise BlobError("a label image holds values outside 0 .. 2**31 - 1")
                if out is not None:
                    out[done:done + len(values)] = values
                done += len(values)
                pending = pending[usable:]
            if d.eof or size > expected:
                break
            if not tail:
                if consumed >= len(view):
                    break
                tail, consumed = view[consumed:consumed + _INPUT], consumed + _INPUT
            piece = d.decompress(tail, min(_CHUNK, expected - size + 1))
            tail = d.unconsumed_tail
            size += len(piece)
            pending = pending + piece if pending else piece
    except zlib.error as exc:
        raise BlobError(f"the label image is not valid zlib data ({exc})") from None
    if size != expected or not d.eof or done != n:
        what = "more" if size > expected else "less"
        raise BlobError(f"the label image holds {what} data than its header declares "
                        f"({shape[0]} x {shape[1]} {dtype}) or is truncated")
    return shape, (None if out is None else out.reshape(shape))


def decode_labels(blob: bytes, limits: Limits | None = None) -> np.ndarray:
    """Inverse of :func:`encode_labels` (as int32), bounded by ``limits``.

    The only allocation the size of the image is the int32 result (see :func:`_inflate`).

    Raises
    ------
    BlobError
        The blob is not a 2-D integer ``.npy`` label image within the limits (an 8-byte dtype,
        a value outside 0 .. 2**31 - 1, more pixels than ``Limits.max_plane_pixels``, more or
        less data than its header declares).
    """
    _, labels = _inflate(blob, limits or current_limits())
    return labels


def check_labels_blob(blob: bytes, limits: Limits | None = None) -> tuple[int, int]:
    """Validate a label-image blob without keeping its pixels; returns its ``(rows, cols)``."""
    shape, _ = _inflate(blob, limits or current_limits(), shape_only=True)
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
