"""Per-image shard files: what one worker computed for one image, ready to merge.

A shard is an ``.npz`` file (``numpy.savez_compressed``, no pickles) at
``<shard_dir>/<signature>/<hash[:2]>/<content_hash>.npz`` holding

- ``meta``: a JSON string (format version, content hash, signature, image path, device, source,
  pixel size, shape, plane keys, cell count, model dims and a SHA-256 checksum of every array);
- ``cell_label``, ``cell_t``, ``cell_z``, ``cell_area`` (int64), ``cell_bbox`` (int64 ``(n, 4)``),
  ``cell_centroid`` (float64 ``(n, 2)``), ``cell_border`` (bool): the cells table, ordered by
  ``(t, z, label)``;
- ``emb__<model>``: float16 ``(n, dim)`` embeddings per model;
- ``thumb_data`` (uint8) and ``thumb_offsets`` (int64 ``(n + 1,)``): PNG thumbnails, concatenated;
- ``labels_<i>``: the instance label image of plane ``i`` of ``meta["planes"]`` (smallest unsigned
  dtype; the file is compressed).

The *signature* names everything that changes the result: the cellseek version, the model set,
the crop, segmentation and plane settings. Shards are written under a temporary name and renamed
into place, so a shard that exists is complete; :func:`read_shard` still checks its checksum.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cellseek.config import Config
from cellseek.errors import CellseekError
from cellseek.text import cells_text, count_text
from cellseek.types import Cell

logger = logging.getLogger(__name__)

#: Version of the shard layout; part of the signature.
SHARD_FORMAT = 1


class ShardError(CellseekError):
    """A shard file is missing, damaged or was made with other settings."""


def signature(config: Config, models: Sequence[str], plane_kw: Mapping | None = None) -> str:
    """Short hex digest of everything that changes a shard's content.

    Parameters
    ----------
    config : Config
        Its ``segment`` and ``crop`` settings enter (the segmentation method should already be
        resolved, ``"auto"`` is ambiguous across machines).
    models : sequence of str
        The model set, in store order.
    plane_kw : mapping, optional
        Options of :func:`cellseek.io.iter_planes` (``z_mode`` ...).

    Returns
    -------
    str
        16 hexadecimal digits.
    """
    from cellseek import __version__
    from cellseek.zoo import MODELS, model_versions

    doc = {
        "format": SHARD_FORMAT,
        "cellseek": __version__,
        "models": list(models),
        "model_versions": model_versions(m for m in models if m in MODELS),
        "crop": asdict(config.crop),
        "segment": asdict(config.segment),
        "planes": dict(sorted((plane_kw or {}).items())),
    }
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shard_path(shard_dir, content_hash: str, sig: str) -> Path:
    """Where the shard of one image lives."""
    return Path(shard_dir) / sig / content_hash[:2] / f"{content_hash}.npz"


@dataclass
class Shard:
    """The content of one shard.

    Parameters
    ----------
    meta : dict
        ``content_hash``, ``signature``, ``path``, ``device``, ``source``, ``pixel_size_um``,
        ``shape``, ``planes`` (list of ``[t, z]``), ``n_cells``, ``models`` (name -> dim).
    cells : list of Cell
        Ordered by ``(t, z, label)``.
    embeddings : dict of str to ndarray
        float16 ``(n, dim)`` per model.
    thumbnails : list of bytes or None
        One PNG per cell.
    planes : dict
        ``(t, z) -> int32 label image``, in processing order.
    """

    meta: dict
    cells: list[Cell]
    embeddings: dict[str, np.ndarray]
    thumbnails: list[bytes | None] = field(default_factory=list)
    planes: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """The image's content hash."""
        return self.meta["content_hash"]


def _smallest_uint(labels: np.ndarray) -> np.ndarray:
    top = int(labels.max()) if labels.size else 0
    dtype = np.uint16 if top < 2**16 else np.uint32 if top < 2**32 else np.int64
    return np.ascontiguousarray(labels, dtype=dtype)


def _checksum(arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        digest.update(arr.view(np.uint8).reshape(-1).data if arr.size else b"")
    return digest.hexdigest()


def _arrays(shard: Shard) -> dict[str, np.ndarray]:
    cells = shard.cells
    n = len(cells)
    arrays: dict[str, np.ndarray] = {
        "cell_label": np.array([c.label for c in cells], np.int64),
        "cell_t": np.array([c.t for c in cells], np.int64),
        "cell_z": np.array([c.z for c in cells], np.int64),
        "cell_area": np.array([c.area for c in cells], np.int64),
        "cell_bbox": np.array([c.bbox for c in cells], np.int64).reshape(n, 4),
        "cell_centroid": np.array([c.centroid for c in cells], np.float64).reshape(n, 2),
        "cell_border": np.array([c.touches_border for c in cells], bool),
    }
    for model, emb in shard.embeddings.items():
        emb = np.asarray(emb)
        if emb.shape[0] != n:
            raise ValueError(f"embeddings of {model!r} have {emb.shape[0]} rows for "
                             f"{cells_text(n)}")
        arrays[f"emb__{model}"] = np.ascontiguousarray(emb, dtype="<f2")
    thumbs = shard.thumbnails or [None] * n
    if len(thumbs) != n:
        raise ValueError(f"{count_text(len(thumbs), 'thumbnail')} for {cells_text(n)}")
    sizes = np.array([-1 if t is None else len(t) for t in thumbs], np.int64)
    offsets = np.concatenate([[0], np.cumsum(np.maximum(sizes, 0))]).astype(np.int64)
    arrays["thumb_offsets"] = offsets
    arrays["thumb_missing"] = sizes < 0
    arrays["thumb_data"] = np.frombuffer(b"".join(t for t in thumbs if t is not None), np.uint8)
    for i, labels in enumerate(shard.planes.values()):
        arrays[f"labels_{i}"] = _smallest_uint(np.asarray(labels))
    return arrays


def write_shard(path, shard: Shard) -> Path:
    """Write a shard atomically (temporary file in the same folder, fsync, rename).

    Parameters
    ----------
    path : path-like
        Final location (see :func:`shard_path`); folders are created.
    shard : Shard

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = _arrays(shard)
    meta = dict(shard.meta)
    meta["format"] = SHARD_FORMAT
    meta["n_cells"] = len(shard.cells)
    meta["planes"] = [[int(t), int(z)] for t, z in shard.planes]
    meta["checksum"] = _checksum(arrays)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, meta=np.array(json.dumps(meta)), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return path


def read_shard(path, *, sig: str | None = None, verify: bool = True) -> Shard:
    """Read and check a shard.

    Parameters
    ----------
    path : path-like
    sig : str, optional
        The expected signature.
    verify : bool
        Check the checksum of every array.

    Returns
    -------
    Shard

    Raises
    ------
    ShardError
        Missing, unreadable, damaged, or made with another signature.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            arrays = {name: npz[name] for name in npz.files if name != "meta"}
    except FileNotFoundError as exc:
        raise ShardError(f"{path}: shard does not exist") from exc
    except Exception as exc:  # noqa: BLE001 - any decoding problem means a damaged file
        raise ShardError(f"{path}: shard is damaged ({exc})") from exc
    if meta.get("format") != SHARD_FORMAT:
        raise ShardError(f"{path}: shard format {meta.get('format')} != {SHARD_FORMAT}")
    if sig is not None and meta.get("signature") != sig:
        raise ShardError(f"{path}: shard made with other settings ({meta.get('signature')})")
    if verify and _checksum(arrays) != meta.get("checksum"):
        raise ShardError(f"{path}: shard checksum does not match its content")
    n = int(meta["n_cells"])
    cells = [
        Cell(
            label=int(arrays["cell_label"][i]),
            t=int(arrays["cell_t"][i]),
            z=int(arrays["cell_z"][i]),
            bbox=tuple(int(b) for b in arrays["cell_bbox"][i]),
            centroid=tuple(float(c) for c in arrays["cell_centroid"][i]),
            area=int(arrays["cell_area"][i]),
            touches_border=bool(arrays["cell_border"][i]),
        )
        for i in range(n)
    ]
    embeddings = {
        name[len("emb__"):]: arrays[name] for name in sorted(arrays) if name.startswith("emb__")
    }
    offsets, data, missing = arrays["thumb_offsets"], arrays["thumb_data"], arrays["thumb_missing"]
    thumbs = [
        None if missing[i] else data[offsets[i] : offsets[i + 1]].tobytes() for i in range(n)
    ]
    planes = {
        (int(t), int(z)): arrays[f"labels_{i}"].astype(np.int32)
        for i, (t, z) in enumerate(meta["planes"])
    }
    return Shard(meta=meta, cells=cells, embeddings=embeddings, thumbnails=thumbs, planes=planes)


def is_valid(path, sig: str) -> bool:
    """Whether a complete, undamaged shard with this signature exists at ``path``."""
    try:
        read_shard(path, sig=sig)
    except ShardError as exc:
        if Path(path).exists():
            logger.warning("%s; it will be recomputed", exc)
        return False
    return True
