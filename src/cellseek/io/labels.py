"""Write and read instance label images as compressed TIFF."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import numpy as np

from cellseek.errors import CellseekError, ImageReadError

logger = logging.getLogger(__name__)


def _storage_dtype(labels: np.ndarray) -> np.dtype:
    """Smallest widely readable type: uint16, uint32 or the signed input type."""
    if labels.dtype == bool:
        return np.dtype(np.uint8)
    if labels.size == 0:
        return np.dtype(np.uint16)
    low, high = int(labels.min()), int(labels.max())
    if low >= 0 and high < 2**16:
        return np.dtype(np.uint16)
    if low >= 0 and high < 2**32:
        return np.dtype(np.uint32)
    return np.dtype(np.int64) if high >= 2**31 or low < -(2**31) else np.dtype(np.int32)


def write_labels(path, labels) -> Path:
    """Write an instance label image to a compressed TIFF, atomically.

    The data go to a temporary file in the same folder, which then replaces ``path``
    (``os.replace``), so a crash never leaves a half-written file behind.

    Parameters
    ----------
    path : str or Path
        Target ``.tif`` / ``.tiff`` file.
    labels : array-like of int or bool
        2-D ``(Y, X)`` or a stack of them; 0 is background. Not modified.

    Returns
    -------
    Path
        The written file.
    """
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"{path}: labels are written as TIFF; use a .tif or .tiff name")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "uib":
        raise ValueError(f"{path}: labels must be integers, not {labels.dtype}")
    if labels.ndim < 2:
        raise ValueError(f"{path}: labels must have at least 2 dimensions, not {labels.shape}")
    data = labels.astype(_storage_dtype(labels), copy=False)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # open(..., "xb") creates the file with the user's umask (mkstemp would make it 0600)
        with open(tmp, "xb"):
            pass
        tifffile.imwrite(
            tmp,
            data,
            compression="zlib",
            photometric="minisblack",
            metadata={"axes": _axes(data.ndim)},
        )
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise CellseekError(f"{path}: cannot write the label image "
                            f"({err.strerror or err}); nothing was written there") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.debug("wrote labels %s to %s", data.shape, path)
    return path


def _axes(ndim: int) -> str:
    return "TZYX"[-ndim:] if ndim <= 4 else "Q" * (ndim - 2) + "YX"


def read_labels(path) -> np.ndarray:
    """Read a label image written by :func:`write_labels` (or any integer TIFF).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    numpy.ndarray
        int32 (int64 when the values do not fit).

    Raises
    ------
    cellseek.errors.ImageReadError
        Missing, corrupt or non-integer file.
    """
    from cellseek.io.tiff import open_tiff

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "label file does not exist")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    with open_tiff(path) as tif:
        try:
            data = tif.asarray()
        except Exception as exc:  # tifffile raises many types on damaged data
            raise ImageReadError(path, f"file is truncated or damaged: {exc}") from exc
    if data.dtype.kind not in "uib":
        raise ImageReadError(path, f"not a label image: pixel type {data.dtype} is not integer")
    if data.size and (int(data.max()) >= 2**31 or int(data.min()) < -(2**31)):
        return data.astype(np.int64)
    return data.astype(np.int32)
