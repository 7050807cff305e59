"""Verify downloaded weights against the digest their authors publish.

Digests are written ``"<algorithm>:<hex>"``: ``sha256`` (Segment Anything, MobileSAM) or
``xxh128`` (micro-sam publishes xxHash-128 digests of its models; the ``xxhash`` package computes
them).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cellseek.errors import CellseekError

__all__ = ["ChecksumMismatchError", "file_digest", "verify_checksum"]

_CHUNK = 1 << 20


class ChecksumMismatchError(CellseekError):
    """A downloaded file is not the published one (corrupt, truncated or replaced)."""


def _hasher(algorithm: str):
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "xxh128":
        try:
            import xxhash
        except ImportError as exc:  # pragma: no cover - declared dependency
            raise CellseekError("verifying this download needs the xxhash package "
                                "(pip install xxhash)") from exc
        return xxhash.xxh128()
    raise CellseekError(f"unknown checksum algorithm {algorithm!r}")


def file_digest(path, algorithm: str = "sha256") -> str:
    """``"<algorithm>:<hex>"`` of a file, read in 1 MiB chunks."""
    h = _hasher(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return f"{algorithm}:{h.hexdigest()}"


def verify_checksum(path, checksum: str, *, model: str = "") -> None:
    """Raise :class:`ChecksumMismatchError` unless ``path`` has the digest ``checksum``.

    An empty ``checksum`` (none published) passes.
    """
    if not checksum:
        return
    algorithm, _, want = checksum.partition(":")
    got = file_digest(path, algorithm).partition(":")[2]
    if got.lower() != want.lower():
        label = f"{model}: " if model else ""
        raise ChecksumMismatchError(
            f"{label}{Path(path).name} has {algorithm} {got}, but the published file has {want}; "
            "the download is corrupt or not the published file"
        )
