"""Write and read instance label images as compressed TIFF."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path

import numpy as np

from cellseek.errors import CellseekError, ImageReadError
from cellseek.io.tiff import LABELS_KEY

logger = logging.getLogger(__name__)


def _storage_dtype(labels: np.ndarray) -> np.dtype:
    """uint32 (int32 / int64 where values need it): napari opens 32- and 64-bit integer
    images as Labels, also with its builtin reader."""
    if labels.dtype == bool or labels.size == 0:
        return np.dtype(np.uint32)
    low, high = int(labels.min()), int(labels.max())
    if low >= 0 and high < 2**32:
        return np.dtype(np.uint32)
    return np.dtype(np.int64) if high >= 2**31 or low < -(2**31) else np.dtype(np.int32)


def write_labels(path, labels, *, pixel_size_um: float | None = None) -> Path:
    """Write an instance label image to a compressed TIFF, atomically.

    The data go to a temporary file in the same folder, which then replaces ``path``
    (``os.replace``), so a crash never leaves a half-written file behind. The file opens as a
    Labels layer in napari: 32-bit integers (napari's builtin reader takes those for labels)
    and a description marking it a cellseek label image (cellseek's reader), with the pixel
    size as the TIFF resolution (pixels per centimetre) when it is known.

    Parameters
    ----------
    path : str or Path
        Target ``.tif`` / ``.tiff`` file.
    labels : array-like of int or bool
        2-D ``(Y, X)`` or a stack of them; 0 is background. Not modified.
    pixel_size_um : float, optional
        Micrometres per pixel of the image the labels belong to.

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
    extra = {}
    if pixel_size_um is not None and np.isfinite(pixel_size_um) and pixel_size_um > 0:
        per_cm = 1e4 / float(pixel_size_um)
        extra = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
    # a short temporary name: a long target name must fail as itself, not as its temp file
    tmp = path.with_name(f".cellseek-{uuid.uuid4().hex[:12]}.tmp")
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
            metadata={"axes": _axes(data.ndim), LABELS_KEY: "labels"},
            **extra,
        )
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)
        raise CellseekError(f"{path}: cannot write the label image "
                            f"({err.strerror or err}); nothing was written there") from err
    except BaseException:
        with contextlib.suppress(OSError):
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
