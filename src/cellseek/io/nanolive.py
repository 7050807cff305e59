"""Nanolive (3D Cell Explorer, CX-A; STEVE / Eve software) refractive-index exports as TIFF.

Two layouts are read:

* one multi-page TIFF per stack (pages = z slices unless ImageJ/OME metadata says otherwise);
* one TIFF per plane, the indices in the file name: tokens ``t<n>`` / ``z<n>`` (or ``t<n>z<n>``)
  and a channel token (``RI``, ``FL<n>``, ``fluo<n>``, a dye name), separated by ``_``, ``-``,
  ``.`` or spaces, e.g. ``cells_RI_t001_z012.tif``, ``cells_FL1_t001_z012.tif``.

Axes are always ``TZCYX`` (T and Z kept even with one entry; C lists ``RI`` first).
Refractive index stored as scaled integers (values 10000-20000, i.e. RI x 10000) is converted
to float32 RI; the scale is recorded in ``metadata["ri_scale"]``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from cellseek.io.fileseries import PlaneFile, natural_key

logger = logging.getLogger(__name__)

#: Scale of RI stored as integers: RI = value / RI_SCALE.
RI_SCALE = 10000.0
#: Integer values in this range are RI x 10000 (RI 1.0 to 2.0).
RI_INT_RANGE = (10000, 20000)
#: Float values in this range are RI already.
RI_FLOAT_RANGE = (1.0, 2.0)

_SPLIT = re.compile(r"[_\-. ]+")
_T = re.compile(r"^t(\d+)$", re.IGNORECASE)
_Z = re.compile(r"^z(\d+)$", re.IGNORECASE)
_TZ = re.compile(r"^t(\d+)z(\d+)$", re.IGNORECASE)
_RI = re.compile(r"^ri$", re.IGNORECASE)
_FL = re.compile(
    r"^(fl\d*|fluo\d*|fluorescence\d*|dapi|hoechst|gfp|egfp|yfp|rfp|mcherry|tritc|fitc|cy3|cy5)$",
    re.IGNORECASE,
)
#: Words in a TIFF's ImageDescription/Software that identify a Nanolive file.
SOFTWARE_MARKERS = ("nanolive", "3d cell explorer", "cx-a")


def tokens(path: Path) -> list[str]:
    """Name tokens of a file (its name without the extension, split at ``_ - . space``)."""
    stem = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return [t for t in _SPLIT.split(stem) if t]


def has_ri_token(path: Path) -> bool:
    """True when the file name carries an ``RI`` token (e.g. ``cells_RI_stack.tif``)."""
    return any(_RI.match(t) for t in tokens(path))


def mentions_nanolive(text: str) -> bool:
    """True when a TIFF's description/software text names Nanolive."""
    lowered = text.lower()
    return any(marker in lowered for marker in SOFTWARE_MARKERS)


def parse_name(path: Path) -> PlaneFile | None:
    """Parse a one-file-per-plane Nanolive name; None when it is not one.

    A name qualifies when it has a channel token (``RI``, ``FL1`` ...) and a ``t<n>`` or
    ``z<n>`` token. The remaining tokens name the stack.
    """
    t: tuple = (0,)
    z: tuple = (0,)
    channel = None
    rest = []
    indexed = False
    for token in tokens(path):
        if m := _TZ.match(token):
            t, z, indexed = (int(m.group(1)),), (int(m.group(2)),), True
        elif m := _T.match(token):
            t, indexed = (int(m.group(1)),), True
        elif m := _Z.match(token):
            z, indexed = (int(m.group(1)),), True
        elif channel is None and (_RI.match(token) or _FL.match(token)):
            channel = "RI" if _RI.match(token) else token.upper()
        else:
            rest.append(token)
    if channel is None or not indexed:
        return None
    stem = "_".join(rest) or "nanolive"
    return PlaneFile(path=path, group=(natural_key(stem), stem), t=t, z=z, channel=channel)


def channel_order(name: str) -> tuple:
    """RI first, then the other channels in natural order."""
    return (0,) if name == "RI" else (1, *natural_key(name))


def ri_scale_of(plane: np.ndarray) -> float | None:
    """Detect how RI is stored in a plane.

    Returns
    -------
    float or None
        :data:`RI_SCALE` for integers in :data:`RI_INT_RANGE`, 1.0 for floats in
        :data:`RI_FLOAT_RANGE` (1st-99th percentile of the non-zero pixels), None otherwise.
    """
    values = np.asarray(plane)
    values = values[values != 0]
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    low, high = np.percentile(values[:: max(1, values.size // 100_000)], [1, 99])
    if values.dtype.kind in "ui" and RI_INT_RANGE[0] <= low and high <= RI_INT_RANGE[1]:
        return RI_SCALE
    if values.dtype.kind == "f" and RI_FLOAT_RANGE[0] <= low and high <= RI_FLOAT_RANGE[1]:
        return 1.0
    return None


def scale_ri(plane, scale: float):
    """RI as float32 from stored values (NumPy or Dask)."""
    return (plane / scale).astype(np.float32) if scale != 1.0 else plane.astype(np.float32)
