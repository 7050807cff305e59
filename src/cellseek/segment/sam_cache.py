"""A disk + memory cache of SAM image embeddings, keyed by a signature checked on reuse.

Encoding an image is the expensive part of SAM (seconds on a CPU); the prompts after it are
cheap. An embedding is therefore computed once per image (or tile) and kept:

* in memory, for the last few images (an LRU), so repeated clicks on one plane never touch disk;
* on disk, as ``<cache_dir>/<key>.npz`` (default ``~/.cache/cellseek/sam_embeddings``), so it
  survives restarts.

The *signature* says what the embedding was computed from: the SHA-256 of the exact uint8 image
the encoder saw (and its shape), the SAM variant, a fingerprint of the weights file (name, size,
mtime, hash of its first MiB), the encoder's input size and the cellseek version. The file name is
a hash of the signature, and the signature is also stored inside the file and compared on reuse
(as micro-sam does), so a stale, foreign or corrupt file is ignored and recomputed, never used.
Files are written atomically (a temporary file in the same folder, then :func:`os.replace`); a
cache that cannot be written only logs a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["CACHE_FORMAT", "EmbeddingCache", "SamEmbedding", "embedding_signature"]

#: Bumped whenever the file layout or the meaning of the stored arrays changes.
CACHE_FORMAT = 1


@dataclass(frozen=True)
class SamEmbedding:
    """One image's SAM embedding and what SamPredictor needs to prompt it.

    Parameters
    ----------
    features : ndarray
        float32 ``(1, 256, g, g)``, the image encoder's output.
    original_size : tuple of int
        ``(rows, cols)`` of the image.
    input_size : tuple of int
        ``(rows, cols)`` of the image after SAM's longest-side resize (before padding).
    signature : dict
        See :func:`embedding_signature`.
    """

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    signature: dict


def embedding_signature(
    image: np.ndarray, *, model_type: str, weights: str, input_size: int,
    scale: float | None = None,
) -> dict:
    """What an embedding depends on.

    Parameters
    ----------
    image : ndarray
        The uint8 ``(rows, cols, 3)`` image handed to the encoder.
    model_type : str
        SAM variant.
    weights : str
        Fingerprint of the weights file (:func:`cellseek.zoo.sam_backend.weights_fingerprint`).
    input_size : int
        Encoder input side in pixels.
    scale : float, optional
        The image was resized by this factor (box-prompted models encode each tile at the scale
        its cells need) instead of SAM's longest-side resize to ``input_size``.

    Returns
    -------
    dict
        JSON-serialisable.
    """
    from cellseek import __version__

    image = np.ascontiguousarray(image)
    signature = {
        "format": CACHE_FORMAT,
        "image_sha256": hashlib.sha256(image.tobytes()).hexdigest(),
        "image_shape": list(image.shape),
        "image_dtype": str(image.dtype),
        "model_type": str(model_type),
        "weights": str(weights),
        "input_size": int(input_size),
        "cellseek": __version__,
    }
    if scale is not None:
        signature["scale"] = round(float(scale), 6)
    return signature


def signature_key(signature: dict) -> str:
    """A file-name-safe key for a signature (hash of its canonical JSON)."""
    text = json.dumps(signature, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class EmbeddingCache:
    """Memory LRU in front of a folder of ``.npz`` embedding files.

    Parameters
    ----------
    directory : path-like or None
        Folder of the disk cache (created on first write); None keeps embeddings in memory only.
    memory_items : int
        Embeddings kept in memory (0 disables the memory cache).
    """

    def __init__(self, directory=None, memory_items: int = 4) -> None:
        self.directory = None if directory is None else Path(directory).expanduser()
        self.memory_items = max(int(memory_items), 0)
        self._memory: OrderedDict[str, SamEmbedding] = OrderedDict()

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.directory)!r}, memory_items={self.memory_items})"

    def path(self, signature: dict) -> Path | None:
        """The disk file for ``signature`` (None without a disk cache)."""
        if self.directory is None:
            return None
        return self.directory / f"{signature_key(signature)}.npz"

    def get(self, signature: dict) -> SamEmbedding | None:
        """The cached embedding for ``signature``, or None (bad files are ignored, logged)."""
        key = signature_key(signature)
        hit = self._memory.get(key)
        if hit is not None and hit.signature == signature:
            self._memory.move_to_end(key)
            return hit
        path = self.path(signature)
        if path is None or not path.is_file():
            return None
        emb = self._read(path, signature)
        if emb is not None:
            self._remember(key, emb)
        return emb

    def put(self, embedding: SamEmbedding) -> None:
        """Keep ``embedding`` in memory and write it to disk atomically."""
        key = signature_key(embedding.signature)
        self._remember(key, embedding)
        path = self.path(embedding.signature)
        if path is not None:
            self._write(path, embedding)

    def clear_memory(self) -> None:
        """Forget the in-memory embeddings (the disk cache stays)."""
        self._memory.clear()

    # -- internals ---------------------------------------------------------------------------
    def _remember(self, key: str, emb: SamEmbedding) -> None:
        if self.memory_items == 0:
            return
        self._memory[key] = emb
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)

    @staticmethod
    def _read(path: Path, signature: dict) -> SamEmbedding | None:
        try:
            with np.load(path, allow_pickle=False) as z:
                stored = json.loads(str(z["signature"]))
                if stored != signature:
                    logger.warning("SAM embedding cache %s has another signature; recomputing",
                                   path)
                    return None
                features = np.ascontiguousarray(z["features"], dtype=np.float32)
                original = tuple(int(v) for v in z["original_size"])
                input_size = tuple(int(v) for v in z["input_size"])
        except Exception as exc:  # noqa: BLE001 - any unreadable file means "not cached"
            logger.warning("ignoring unreadable SAM embedding cache %s (%s); recomputing",
                           path, exc)
            return None
        if features.ndim != 4 or len(original) != 2 or len(input_size) != 2:
            logger.warning("ignoring malformed SAM embedding cache %s; recomputing", path)
            return None
        logger.debug("SAM embedding from %s", path)
        return SamEmbedding(features, original, input_size, signature)

    @staticmethod
    def _write(path: Path, emb: SamEmbedding) -> None:
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    features=np.ascontiguousarray(emb.features, dtype=np.float32),
                    original_size=np.asarray(emb.original_size, np.int64),
                    input_size=np.asarray(emb.input_size, np.int64),
                    signature=np.asarray(json.dumps(emb.signature, sort_keys=True)),
                )
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            tmp = None
        except Exception as exc:  # noqa: BLE001 - a cache that cannot be written is not fatal
            logger.warning("could not write the SAM embedding cache %s (%s)", path, exc)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
