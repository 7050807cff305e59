"""Stain handling for RGB planes: float conversion, stain detection and stain channels.

Romanowsky stains (Giemsa, May-Grünwald-Giemsa, Wright) colour nuclear chromatin blue-purple,
red blood cells pink-red and the background white-grey. In RGB, chromatin is the only material whose
blue channel clearly exceeds both red and green, so ``B - max(R, G)`` is a cheap nucleus channel
that is negative on pink material (red blood cells, eosinophil granules, eosin). At a plain Otsu
threshold on 30 BCCD fields it keeps 96 % of the ground-truth nucleus pixels and 2.6 % of the
others (``B - G``: 97 % / 0.3 %; ``rgb2hed`` haematoxylin: 92 % / 0.3 %); the segmenter's floor on
the threshold, smoothing and opening remove most of those specks. :func:`hed_channels` gives the
Ruifrok-Johnston deconvolution (``skimage.color.rgb2hed``) for H&E.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "background_colour",
    "hed_channels",
    "is_stained",
    "nucleus_channel",
    "pinkness_channel",
    "to_float_rgb",
]


def to_float_rgb(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convert an RGB(A) plane to float32 ``(Y, X, 3)`` in [0, 1] plus a validity mask.

    Parameters
    ----------
    plane : ndarray
        ``(Y, X, 3)`` or ``(Y, X, 4)``, scaled by :func:`cellseek.io.planes.rgb_range`, the rule
        crops use too (integer planes by their dtype maximum, or 255 for wider integers holding
        8-bit values; float planes in [0, 1] kept, others scaled by their finite range). Not
        modified.

    Returns
    -------
    rgb : ndarray
        float32 ``(Y, X, 3)``; non-finite pixels are set to the median colour.
    valid : ndarray
        bool ``(Y, X)``, False where any channel was NaN or infinite.
    """
    arr = np.asarray(plane)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"an RGB plane must be (Y, X, 3), got shape {arr.shape}")
    from cellseek.io.planes import rgb_range

    arr = arr[..., :3]
    if arr.dtype.kind != "f":
        lo, scale = rgb_range(arr)
        rgb = (arr.astype(np.float32) - np.float32(lo)) / np.float32(scale)
        return np.clip(rgb, 0, 1), np.ones(arr.shape[:2], bool)
    rgb = arr.astype(np.float32)
    valid = np.isfinite(rgb).all(axis=-1)
    lo, scale = rgb_range(rgb, valid)
    if not valid.all():
        fill = np.median(rgb[valid], axis=0) if valid.any() else np.zeros(3, np.float32)
        rgb = np.where(valid[..., None], rgb, fill[None, None, :]).astype(np.float32)
    rgb = (rgb - np.float32(lo)) / np.float32(scale)
    return np.clip(rgb, 0, 1).astype(np.float32), valid


def background_colour(rgb: np.ndarray) -> np.ndarray:
    """Colour of the bright background: the median of the brightest quarter of the pixels.

    Parameters
    ----------
    rgb : ndarray
        float ``(Y, X, 3)`` in [0, 1].

    Returns
    -------
    ndarray
        float32 ``(3,)``.
    """
    grey = rgb.mean(axis=-1)
    sel = grey >= np.quantile(grey, 0.75)
    return np.median(rgb[sel], axis=0).astype(np.float32)


def is_stained(rgb: np.ndarray, *, chroma: float = 0.06) -> bool:
    """Whether an RGB plane looks stained (coloured), rather than grey or grey-tinted.

    The colour of each pixel relative to the background colour is projected off the grey axis; the
    plane counts as stained when the 99th percentile of that chroma exceeds ``chroma``. A uniform
    tint (white balance) does not count; grey images replicated into three channels give 0.

    Parameters
    ----------
    rgb : ndarray
        float ``(Y, X, 3)`` in [0, 1].
    chroma : float, optional
        Threshold on the 99th-percentile chroma. Default 0.06.

    Returns
    -------
    bool
    """
    diff = rgb - background_colour(rgb)[None, None, :]
    off_grey = diff - diff.mean(axis=-1, keepdims=True)
    c = np.sqrt((off_grey**2).sum(axis=-1))
    step = max(1, int(np.sqrt(c.size / 65536)))
    value = float(np.quantile(c[::step, ::step], 0.99))
    logger.debug("is_stained: p99 chroma %.3f (threshold %.3f)", value, chroma)
    return value > chroma


def nucleus_channel(rgb: np.ndarray) -> np.ndarray:
    """Romanowsky/haematoxylin nucleus channel ``B - max(R, G)``.

    Parameters
    ----------
    rgb : ndarray
        float ``(Y, X, 3)`` in [0, 1].

    Returns
    -------
    ndarray
        float32 ``(Y, X)`` in [-1, 1]; high on chromatin (blue-purple), about 0 on the white
        background, negative on pink-red material (red blood cells, eosin).
    """
    rgb = np.asarray(rgb, np.float32)
    return rgb[..., 2] - np.maximum(rgb[..., 0], rgb[..., 1])


def pinkness_channel(rgb: np.ndarray) -> np.ndarray:
    """Red-blood-cell channel ``R - B``: high on pink-red haemoglobin, low on purple cytoplasm.

    Parameters
    ----------
    rgb : ndarray
        float ``(Y, X, 3)`` in [0, 1].

    Returns
    -------
    ndarray
        float32 ``(Y, X)`` in [-1, 1].
    """
    rgb = np.asarray(rgb, np.float32)
    return rgb[..., 0] - rgb[..., 2]


def hed_channels(rgb: np.ndarray) -> np.ndarray:
    """Haematoxylin-eosin-DAB colour deconvolution (Ruifrok & Johnston 2001).

    Parameters
    ----------
    rgb : ndarray
        float ``(Y, X, 3)`` in [0, 1].

    Returns
    -------
    ndarray
        float32 ``(Y, X, 3)`` stain concentrations (H, E, DAB).
    """
    from skimage.color import rgb2hed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return rgb2hed(np.clip(rgb, 0, 1)).astype(np.float32)
