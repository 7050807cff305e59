"""Fuzzing the store's decoders: random and mutated blobs, each within a bounded memory budget.

A store from another lab can hold any bytes where cellseek expects a label image, a vector or a
thumbnail. Every decoder must either return a value within the limits or raise its one error
type, and never allocate more than the header it checked allows (measured with tracemalloc,
which sees NumPy's and zlib's allocations).
"""

from __future__ import annotations

import io
import tracemalloc
import zlib

import numpy as np
import pytest

from cellseek.config import Limits
from cellseek.store.blobs import (
    BlobError,
    bad_vector_rows,
    check_labels_blob,
    decode_labels,
    encode_labels,
    thumbnail_problem,
    vectors_from_blobs,
)

LIMITS = Limits(max_plane_pixels=1 << 16)  # 65,536 pixels: the budget below follows from it
#: What one decode may allocate: the int32 result (4 bytes a pixel) plus the bounded pieces.
BUDGET = 4 * LIMITS.max_plane_pixels + (1 << 20)


def _npy(shape, dtype: str, payload: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize if payload is None else 0
    return buf.getvalue() + (payload if payload is not None else bytes(n))


def _mutations(rng: np.random.Generator, n: int) -> list[bytes]:
    """Random, truncated, bit-flipped and re-headed variants of valid label-image blobs."""
    valid = [encode_labels(rng.integers(0, 300, size=(40, 50)).astype(np.int32)),
             encode_labels(np.arange(256 * 256, dtype=np.int32).reshape(256, 256) % 70_000),
             encode_labels(np.zeros((0, 7), np.int32))]
    raw = [zlib.decompress(b) for b in valid]
    headers = [((256, 256), "<u4"), ((256, 257), "<u2"), ((1 << 20, 1), "<u1"),
               ((128, 128), "<i8"), ((128, 128), "<u8"), ((128, 128), "<f4"),
               ((128, 128), "|b1"), ((64, 64, 2), "<u2"), ((64,), "<u2"), ((128, 128), ">u4"),
               ((256, 256), "<i4"), ((256, 256), "|O")]
    out: list[bytes] = []
    for i in range(n):
        kind = i % 8
        if kind == 0:  # random bytes
            out.append(rng.bytes(int(rng.integers(0, 4000))))
        elif kind == 1:  # zlib of random bytes
            out.append(zlib.compress(rng.bytes(int(rng.integers(0, 4000)))))
        elif kind == 2:  # a valid blob, truncated
            b = valid[i % len(valid)]
            out.append(b[: int(rng.integers(0, len(b)))])
        elif kind == 3:  # a valid blob with flipped bits
            b = bytearray(valid[i % len(valid)])
            for _ in range(int(rng.integers(1, 6))):
                b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
            out.append(bytes(b))
        elif kind == 4:  # the inflated bytes with flipped bits, compressed again
            b = bytearray(raw[i % len(raw)])
            for _ in range(int(rng.integers(1, 6))):
                b[int(rng.integers(0, min(len(b), 200)))] ^= 1 << int(rng.integers(0, 8))
            out.append(zlib.compress(bytes(b)))
        elif kind == 5:  # another header (bombs: large, 8-byte, object, n-d) over zeros
            shape, dtype = headers[i % len(headers)]
            try:
                out.append(zlib.compress(_npy(shape, dtype), 9))
            except (ValueError, TypeError):
                out.append(zlib.compress(_npy(shape, "<u2")))
        elif kind == 6:  # a header that lies: more or less data than declared
            extra = int(rng.integers(-500, 5_000_000))
            body = bytes(max(0, 256 * 256 * 2 + extra))
            out.append(zlib.compress(_npy((256, 256), "<u2", body), 9))
        else:  # values out of range for a label
            vals = rng.integers(-(2**31), 2**31, size=(30, 30)).astype("<i4")
            vals.flat[0] = -1
            out.append(zlib.compress(_npy((30, 30), "<i4", vals.tobytes())))
    return out


def _decode_within_budget(blob: bytes):
    tracemalloc.start()
    try:
        try:
            result = decode_labels(blob, LIMITS)
        except BlobError as exc:
            result = exc
        try:
            shape = check_labels_blob(blob, LIMITS)
        except BlobError as exc:
            shape = exc
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, shape, peak


def test_random_and_mutated_label_blobs_decode_or_fail_cleanly_within_the_budget():
    rng = np.random.default_rng(24)
    blobs = _mutations(rng, 400)
    decoded = refused = 0
    worst = 0
    for i, blob in enumerate(blobs):
        result, shape, peak = _decode_within_budget(blob)
        worst = max(worst, peak)
        assert peak <= BUDGET, f"blob {i}: {peak} bytes allocated, budget {BUDGET}"
        if isinstance(result, BlobError):
            refused += 1
            assert isinstance(shape, BlobError), f"blob {i}: the check and the decoder disagree"
            continue
        decoded += 1
        assert result.dtype == np.int32 and result.ndim == 2
        assert result.size <= LIMITS.max_plane_pixels
        assert shape == result.shape
        assert result.size == 0 or (result.min() >= 0 and result.max() <= 2**31 - 1)
    assert decoded >= 10 and refused >= 200  # both paths were exercised
    assert worst > 4 * 256 * 256  # the largest accepted plane really was decoded


def test_vector_and_thumbnail_decoders_never_raise_other_errors():
    from PIL import Image

    rng = np.random.default_rng(7)
    good = np.ones(8, "<f2").tobytes()
    for _ in range(200):
        blob = rng.bytes(int(rng.integers(0, 40)))
        try:
            vectors_from_blobs([good, blob], 8)
        except BlobError as exc:
            assert exc.row in (0, 1)
        assert set(bad_vector_rows([good, blob], 8)) <= {1}
    png = io.BytesIO()
    Image.new("RGB", (20, 20), "red").save(png, format="PNG")
    png = png.getvalue()
    for _ in range(200):
        b = bytearray(png)
        for _ in range(int(rng.integers(1, 8))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        tracemalloc.start()
        problem = thumbnail_problem(bytes(b))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert problem is None or isinstance(problem, str)
        assert peak < 2 * (1 << 20)  # only the header is read


@pytest.mark.parametrize("dtype", ["<i8", "<u8"])
def test_eight_byte_label_images_are_refused_from_their_header(dtype):
    blob = zlib.compress(_npy((128, 128), dtype), 9)
    with pytest.raises(BlobError, match="at most 4 bytes"):
        decode_labels(blob)
    with pytest.raises(BlobError, match="at most 4 bytes"):
        check_labels_blob(blob)


def test_decoding_allocates_one_int32_plane_and_bounded_pieces():
    """A uint32 plane of 16 MB decodes with one 16 MB allocation (the result), not four."""
    side = 2048
    values = (np.arange(side * side, dtype=np.uint32) % 1000).reshape(side, side)
    blob = zlib.compress(_npy((side, side), "<u4", values.tobytes()), 1)
    tracemalloc.start()
    labels = decode_labels(blob, Limits(max_plane_pixels=side * side))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert labels.dtype == np.int32 and np.array_equal(labels, values)
    assert peak <= 4 * side * side + (1 << 20), peak


def test_labels_outside_the_int32_range_are_refused_when_written():
    with pytest.raises(ValueError, match=r"outside 0 \.\. 2\*\*31 - 1"):
        encode_labels(np.array([[0, 2**31]], np.int64))
    with pytest.raises(ValueError, match="outside"):
        encode_labels(np.array([[0, -1]], np.int32))
