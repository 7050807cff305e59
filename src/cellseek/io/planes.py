"""The 2-D planes of an image: the one plane loop and the one plane -> RGB convention.

:func:`iter_planes` yields the planes of an image one at a time (also for lazy stacks);
:func:`plane_to_float_rgb` / :func:`plane_to_uint8_rgb` turn any plane into the RGB image that
crops, embedders, SAM and thumbnails are made from (as scikit-image's ``img_as_float`` does for
dtypes, with a percentile stretch for grey and float data, whose range says nothing).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cellseek.types import ImageData

Z_MODES = ("all", "index", "best_focus", "max", "mean")


def channel_index(img: ImageData, channel) -> int | None:
    """Resolve a channel given by index or name to an index of the C axis.

    Parameters
    ----------
    img : ImageData
    channel : int, str or None
        None selects the first channel.

    Returns
    -------
    int or None
        None when the image has no C axis (then ``channel`` must be None, 0 or the only name).
    """
    if "C" not in img.axes:
        if channel in (None, 0) or (
            isinstance(channel, str) and channel == img.metadata.get("channel")
        ):
            return None
        raise ValueError(f"{img.path or 'image'}: has no channel axis; cannot select {channel!r}")
    n = img.shape[img.axes.index("C")]
    if channel is None:
        return 0
    if isinstance(channel, str):
        names = [name.lower() for name in img.channel_names]
        if channel.lower() in names:
            return names.index(channel.lower())
        raise ValueError(
            f"{img.path or 'image'}: no channel named {channel!r}; channels: "
            + ", ".join(img.channel_names)
        )
    index = int(channel)
    if not -n <= index < n:
        raise ValueError(f"{img.path or 'image'}: channel {index} out of range (0-{n - 1})")
    return index % n


def get_plane(img: ImageData, t: int = 0, z: int = 0, c: int | None = None) -> np.ndarray:
    """One plane ``(Y, X)`` or ``(Y, X, 3)`` as a new NumPy array (lazy data: only this plane)."""
    index = []
    for axis in img.axes:
        if axis == "T":
            index.append(t)
        elif axis == "Z":
            index.append(z)
        elif axis == "C":
            index.append(0 if c is None else c)
        else:
            index.append(slice(None))
    plane = img.data[tuple(index)]
    return np.array(plane)  # a copy for NumPy, computes a Dask plane


def focus_score(plane: np.ndarray) -> float:
    """Variance of the Laplacian (higher = sharper); RGB planes are averaged over colour first."""
    from scipy import ndimage

    plane = np.asarray(plane, dtype=np.float32)
    if plane.ndim == 3:
        plane = plane.mean(axis=-1)
    return float(ndimage.laplace(plane).var())


def iter_planes(
    img: ImageData, *, z_mode: str = "all", z_index: int | None = None, channel=None
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(t, z, plane)`` for every time point (and z, depending on ``z_mode``).

    Parameters
    ----------
    img : ImageData
    z_mode : {"all", "index", "best_focus", "max", "mean"}
        ``"all"``: every z plane. ``"index"``: plane ``z_index`` (default: the middle one).
        ``"best_focus"``: the plane with the highest variance of the Laplacian; the reported z
        is that plane's index. ``"max"`` / ``"mean"``: projection over z, reported as ``z=0``;
        the mean is float32, the max keeps the data type.
    z_index : int, optional
        For ``z_mode="index"``.
    channel : int or str, optional
        Channel of a C axis, by index or name (case-insensitive); default the first. An RGB
        image is yielded whole as ``(Y, X, 3)``.

    Yields
    ------
    t : int
    z : int
    plane : ndarray
        ``(Y, X)`` or ``(Y, X, 3)``; a fresh array the caller may modify. Only one or two
        planes are in memory at a time, also for lazy (Dask) images.
    """
    if z_mode not in Z_MODES:
        raise ValueError(f"z_mode must be one of {Z_MODES}, not {z_mode!r}")
    c = channel_index(img, channel)
    n_t = img.shape[img.axes.index("T")] if "T" in img.axes else 1
    n_z = img.shape[img.axes.index("Z")] if "Z" in img.axes else 1
    if z_mode == "index":
        z_index = n_z // 2 if z_index is None else int(z_index)
        if not -n_z <= z_index < n_z:
            raise ValueError(f"{img.path or 'image'}: z_index {z_index} out of range (0-{n_z - 1})")
        z_index %= n_z
    for t in range(n_t):
        if z_mode == "all":
            for z in range(n_z):
                yield t, z, get_plane(img, t, z, c)
        elif z_mode == "index":
            yield t, z_index, get_plane(img, t, z_index, c)
        elif z_mode == "best_focus":
            best, best_score, best_plane = 0, -np.inf, None
            for z in range(n_z):
                plane = get_plane(img, t, z, c)
                score = focus_score(plane) if n_z > 1 else 0.0
                if score > best_score:
                    best, best_score, best_plane = z, score, plane
            yield t, best, best_plane
        else:
            yield t, 0, _project(img, t, n_z, c, z_mode)


def _project(img: ImageData, t: int, n_z: int, c, mode: str) -> np.ndarray:
    acc = None
    for z in range(n_z):
        plane = get_plane(img, t, z, c)
        if mode == "max":
            acc = plane if acc is None else np.maximum(acc, plane)
        else:
            acc = plane.astype(np.float64) if acc is None else acc + plane
    if mode == "mean":
        acc = (acc / n_z).astype(np.float32)
    return acc


#: Percentiles of a grey (or float) plane mapped to 0 and 1 by :func:`plane_to_float_rgb`.
STRETCH_PERCENTILES = (0.5, 99.5)


def rgb_range(rgb: np.ndarray, finite: np.ndarray | None = None) -> tuple[float, float]:
    """``(offset, scale)`` that map an RGB plane's values to [0, 1]: ``(rgb - offset) / scale``.

    Integer RGB: its dtype's maximum, or 255 when a wider integer type holds only 8-bit values
    (uint16 files written from 8-bit RGB); float RGB already within [0, 1] is kept, other float
    RGB is scaled by the range of its finite values (``finite``: where they are). Colours keep
    their balance: one offset and one scale for the three channels. The rule segmentation
    (:func:`cellseek.segment.stain.to_float_rgb`) and crops (:func:`plane_to_float_rgb`) share.
    """
    if rgb.dtype == bool:
        return 0.0, 1.0
    if np.issubdtype(rgb.dtype, np.integer):
        vmax = float(rgb.max()) if rgb.size else 1.0
        wide = rgb.dtype != np.uint8 and vmax <= 255
        return 0.0, 255.0 if wide else float(np.iinfo(rgb.dtype).max)
    values = rgb[finite] if finite is not None else rgb[np.isfinite(rgb)]
    if not values.size:
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0 and hi <= 1:
        return 0.0, 1.0
    lo = min(lo, 0.0)
    return lo, max(hi - lo, 1e-12)


def plane_to_float_rgb(plane: np.ndarray) -> np.ndarray:
    """Any plane as float32 ``(Y, X, 3)`` RGB in [0, 1] (the input is not modified).

    The one convention of cellseek: RGB(A) is scaled by :func:`rgb_range` (integer RGB by its
    dtype's maximum, float RGB kept in [0, 1]; alpha dropped; NaN and infinities set to 0);
    bool becomes 0/1; grey planes are stretched linearly between their 0.5th and 99.5th
    percentiles (NaN and infinities ignored, then set to 0) and repeated to three channels.

    Parameters
    ----------
    plane : ndarray
        ``(Y, X)``, ``(Y, X, 1)``, ``(Y, X, 3)`` or ``(Y, X, 4)``.

    Returns
    -------
    ndarray
        float32 ``(Y, X, 3)``.

    Raises
    ------
    ValueError
        Any other shape.
    """
    arr = np.asarray(plane)
    if arr.ndim == 3 and arr.shape[-1] in (1, 4):
        arr = arr[..., 0] if arr.shape[-1] == 1 else arr[..., :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3) or 0 in arr.shape:
        raise ValueError(f"a plane must be (Y, X) or (Y, X, 3), got shape {np.shape(plane)}")
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
        return arr if arr.ndim == 3 else np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim == 3:
        finite = np.isfinite(arr).all(axis=-1) if arr.dtype.kind == "f" else None
        lo, scale = rgb_range(arr, finite)
        out = (arr.astype(np.float32) - np.float32(lo)) / np.float32(scale)
        if finite is not None:
            out = np.where(finite[..., None], out, 0.0)
        return out.clip(0, 1).astype(np.float32)
    arr = arr.astype(np.float32)
    finite = np.isfinite(arr)
    if not finite.any():
        return np.zeros((*arr.shape[:2], 3), np.float32)
    lo, hi = np.percentile(arr[finite], STRETCH_PERCENTILES)
    scale = np.float32(hi - lo) if hi > lo else np.float32(1.0)
    out = np.where(finite, (arr - lo) / scale, 0.0).clip(0, 1).astype(np.float32)
    return out if out.ndim == 3 else np.repeat(out[..., None], 3, axis=-1)


def plane_to_uint8_rgb(plane: np.ndarray) -> np.ndarray:
    """:func:`plane_to_float_rgb` as C-contiguous uint8 ``(Y, X, 3)`` (uint8 RGB is kept as is)."""
    arr = np.asarray(plane)
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return np.ascontiguousarray(arr[..., :3])
    return np.ascontiguousarray(np.rint(plane_to_float_rgb(arr) * 255).astype(np.uint8))
