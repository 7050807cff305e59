"""Appearance normalisation of cell crops: stain, colour balance, intensity and scale.

Every function takes arrays and returns new arrays (inputs are never modified). Targets are fixed
constants stated here, so nothing is fitted on query data. Which normalisation helps is measured
in ``docs/classical.md``; the classical embedder's own features are built to be colour- and
scale-robust, so ``"none"`` is a sound default.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

#: Reinhard target: mean and std of CIE L*a*b* over the *cell* pixels of a typical
#: May-Grünwald-Giemsa blood smear (medians over every 8th pbc_subset crop, CellaVision DM96).
REINHARD_TARGET = {"mean": (43.8, 31.1, -27.1), "std": (15.9, 12.2, 17.6)}

#: Macenko reference stain vectors for May-Grünwald-Giemsa blood smears (columns: the
#: nucleus-like azure / methylene-blue stain, the eosin-like stain, as unit optical-density RGB
#: vectors) and their 99th-percentile concentrations: medians over every 8th pbc_subset crop.
MACENKO_STAINS_MGG = np.array([[0.7254, 0.4304], [0.6364, 0.8962], [0.2623, 0.1073]], np.float32)
MACENKO_MAX_CONC_MGG = np.array([1.1033, 2.6154], np.float32)
#: The canonical H&E reference of Macenko et al. 2009 (histology), for tissue sections.
MACENKO_STAINS_HE = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]], np.float32)
MACENKO_MAX_CONC_HE = np.array([1.9705, 1.0308], np.float32)
#: Defaults used by :func:`macenko`.
MACENKO_STAINS = MACENKO_STAINS_MGG
MACENKO_MAX_CONC = MACENKO_MAX_CONC_MGG

METHODS = ("none", "grey_world", "white_balance", "reinhard", "macenko", "intensity")

_EPS = 1e-6


def _as_float(rgb) -> np.ndarray:
    return np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0)


def _select(n_pixels: int, mask) -> np.ndarray:
    if mask is None:
        return np.ones(n_pixels, bool)
    m = np.asarray(mask, bool).ravel()
    return m if m.sum() >= 16 else np.ones(n_pixels, bool)


def grey_world(rgb, mask=None) -> np.ndarray:
    """Scale each channel so that its mean equals the mean over channels (grey-world balance).

    Parameters
    ----------
    rgb : ndarray
        float ``(H, W, 3)`` in [0, 1].
    mask : ndarray, optional
        Pixels used for the statistics (default all).

    Returns
    -------
    ndarray
        float32 ``(H, W, 3)`` in [0, 1].
    """
    rgb = _as_float(rgb)
    flat = rgb.reshape(-1, 3)[_select(rgb.shape[0] * rgb.shape[1], mask)]
    mean = flat.mean(axis=0)
    gain = mean.mean() / np.maximum(mean, _EPS)
    return np.clip(rgb * gain, 0.0, 1.0).astype(np.float32)


def white_balance(rgb, percentile: float = 99.0) -> np.ndarray:
    """Divide each channel by its ``percentile`` value so the brightest background is white.

    Parameters
    ----------
    rgb : ndarray
        float ``(H, W, 3)`` in [0, 1].
    percentile : float
        White point per channel.

    Returns
    -------
    ndarray
        float32 ``(H, W, 3)`` in [0, 1].
    """
    rgb = _as_float(rgb)
    white = np.percentile(rgb.reshape(-1, 3), percentile, axis=0)
    return np.clip(rgb / np.maximum(white, 0.05), 0.0, 1.0).astype(np.float32)


def reinhard(rgb, target=None, mask=None) -> np.ndarray:
    """Reinhard colour transfer: match L*a*b* mean and std to a fixed target.

    Parameters
    ----------
    rgb : ndarray
        float ``(H, W, 3)`` in [0, 1].
    target : dict, optional
        ``{"mean": (L, a, b), "std": (L, a, b)}``; default :data:`REINHARD_TARGET`.
    mask : ndarray, optional
        Pixels whose statistics are matched (default all).

    Returns
    -------
    ndarray
        float32 ``(H, W, 3)`` in [0, 1].
    """
    from skimage.color import lab2rgb, rgb2lab

    target = REINHARD_TARGET if target is None else target
    rgb = _as_float(rgb)
    lab = rgb2lab(rgb)
    flat = lab.reshape(-1, 3)[_select(rgb.shape[0] * rgb.shape[1], mask)]
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    t_mean = np.asarray(target["mean"], float)
    t_std = np.asarray(target["std"], float)
    out = (lab - mean) / np.maximum(std, 1e-3) * t_std + t_mean
    out[..., 0] = np.clip(out[..., 0], 0, 100)
    return np.clip(lab2rgb(out), 0.0, 1.0).astype(np.float32)


def macenko(
    rgb,
    *,
    stains=None,
    max_conc=None,
    beta: float = 0.15,
    alpha: float = 1.0,
    io: float = 1.0,
) -> np.ndarray:
    """Macenko stain normalisation onto fixed reference stain vectors.

    Parameters
    ----------
    rgb : ndarray
        float ``(H, W, 3)`` in [0, 1].
    stains : ndarray, optional
        ``(3, 2)`` reference stain OD vectors; default :data:`MACENKO_STAINS`.
    max_conc : ndarray, optional
        ``(2,)`` reference 99th-percentile concentrations; default :data:`MACENKO_MAX_CONC`.
    beta : float
        Optical-density threshold below which pixels count as background.
    alpha : float
        Percentile of the angle distribution giving the extreme stain directions.
    io : float
        Background intensity (white).

    Returns
    -------
    ndarray
        float32 ``(H, W, 3)`` in [0, 1]; the input unchanged (as float32) when too few stained
        pixels are present to estimate stain vectors.
    """
    stains = MACENKO_STAINS if stains is None else np.asarray(stains, np.float32)
    max_conc = MACENKO_MAX_CONC if max_conc is None else np.asarray(max_conc, np.float32)
    rgb = _as_float(rgb)
    h, w = rgb.shape[:2]
    od = -np.log(np.clip(rgb.reshape(-1, 3), 1.0 / 255, 1.0) / io)
    tissue = od[(od > beta).all(axis=1)]
    if tissue.shape[0] < 32:
        return rgb.astype(np.float32)
    cov = np.cov(tissue.T)
    _, vecs = np.linalg.eigh(cov)
    plane = vecs[:, 1:3]
    proj = tissue @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [alpha, 100 - alpha])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    # the nucleus-like stain (haematoxylin / azure) is the one absorbing red most
    he = np.stack([v1, v2], axis=1) if v1[0] > v2[0] else np.stack([v2, v1], axis=1)
    he = he * np.sign(he.sum(axis=0, keepdims=True) + _EPS)
    conc, *_ = np.linalg.lstsq(he, od.T, rcond=None)
    max_c = np.percentile(conc, 99, axis=1)
    conc = conc * (max_conc / np.maximum(max_c, _EPS))[:, None]
    out = io * np.exp(-(stains @ conc))
    return np.clip(out.T.reshape(h, w, 3), 0.0, 1.0).astype(np.float32)


def normalise_intensity(grey, low: float = 1.0, high: float = 99.5, mask=None) -> np.ndarray:
    """Percentile stretch of a label-free (grey) image to [0, 1].

    Parameters
    ----------
    grey : ndarray
        Any real array (2-D grey, or ``(H, W, 3)``; then each channel is stretched jointly).
    low, high : float
        Percentiles mapped to 0 and 1.
    mask : ndarray, optional
        Pixels used for the percentiles.

    Returns
    -------
    ndarray
        float32, same shape, in [0, 1].
    """
    arr = np.asarray(grey, dtype=np.float32)
    sel = arr if mask is None or not np.any(mask) else arr[np.asarray(mask, bool)]
    lo, hi = np.percentile(sel, [low, high])
    if hi - lo < 1e-6:
        return np.zeros_like(arr) if hi <= 0 else np.clip(arr / max(hi, 1e-6), 0, 1)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def rescale_to_pixel_size(crop, from_um: float, to_um: float, *, order: int = 1) -> np.ndarray:
    """Resample an image from one pixel size to another (physical size preserved).

    Parameters
    ----------
    crop : ndarray
        ``(H, W)`` or ``(H, W, C)``; bool arrays are resampled with nearest neighbour.
    from_um, to_um : float
        Pixel sizes in micrometres.
    order : int
        Spline order for non-bool input.

    Returns
    -------
    ndarray
        The resampled array, shape scaled by ``from_um / to_um``.
    """
    from skimage.transform import resize

    if from_um <= 0 or to_um <= 0:
        raise ValueError(f"pixel sizes must be positive, got {from_um} and {to_um}")
    arr = np.asarray(crop)
    factor = from_um / to_um
    shape = tuple(max(1, int(round(s * factor))) for s in arr.shape[:2]) + arr.shape[2:]
    if arr.dtype == bool:
        return resize(arr.astype(np.float32), shape, order=0) >= 0.5
    out = resize(arr, shape, order=order, anti_aliasing=factor < 1, preserve_range=True)
    return out.astype(arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float32)


def rescale_to_cell_size(
    crop, mask, target_diameter_px: float, *, out_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Zoom a crop about its centre so the cell's equivalent diameter becomes a fixed size.

    Parameters
    ----------
    crop : ndarray
        ``(H, W, 3)`` float crop.
    mask : ndarray
        bool ``(H, W)``.
    target_diameter_px : float
        Wanted equivalent diameter of the mask.
    out_size : int, optional
        Output side (default: the input side). Regions outside the input are filled with the
        crop's border median.

    Returns
    -------
    crop, mask : ndarray
        The zoomed crop (float32) and mask (bool).
    """
    from scipy import ndimage as ndi

    crop = np.asarray(crop, np.float32)
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    out = out_size or h
    area = mask.sum()
    if area == 0:
        return crop.copy(), mask.copy()
    diam = 2.0 * np.sqrt(area / np.pi)
    zoom = target_diameter_px / diam
    cy, cx = np.argwhere(mask).mean(axis=0)
    oy, ox = (out - 1) / 2.0, (out - 1) / 2.0
    # output pixel p maps to input (p - o) / zoom + c
    matrix = np.eye(2) / zoom
    offset = np.array([cy, cx]) - matrix @ np.array([oy, ox])
    border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]], axis=0)
    fill = np.median(border, axis=0)
    chans = [
        ndi.affine_transform(
            crop[..., c], matrix, offset, (out, out), order=1, mode="constant", cval=fill[c]
        )
        for c in range(crop.shape[-1])
    ]
    m = ndi.affine_transform(mask.astype(np.float32), matrix, offset, (out, out), order=1) >= 0.5
    return np.clip(np.stack(chans, axis=-1), 0, 1).astype(np.float32), m


def normalise_crops(crops, masks=None, method: str = "none") -> np.ndarray:
    """Apply one appearance normalisation to every crop of a batch.

    Parameters
    ----------
    crops : ndarray
        float ``(N, H, W, 3)`` in [0, 1].
    masks : ndarray, optional
        bool ``(N, H, W)``; used by ``"grey_world"`` and ``"reinhard"`` for cell statistics.
    method : {"none", "grey_world", "white_balance", "reinhard", "macenko", "intensity"}

    Returns
    -------
    ndarray
        float32 ``(N, H, W, 3)``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown normalisation {method!r}; choose from {', '.join(METHODS)}")
    crops = np.asarray(crops, np.float32)
    if method == "none":
        return crops.copy()
    out = np.empty_like(crops)
    for i in range(crops.shape[0]):
        m = None if masks is None else masks[i]
        if method == "grey_world":
            out[i] = grey_world(crops[i])
        elif method == "white_balance":
            out[i] = white_balance(crops[i])
        elif method == "reinhard":
            out[i] = reinhard(crops[i], mask=m)
        elif method == "macenko":
            out[i] = macenko(crops[i])
        else:
            out[i] = normalise_intensity(crops[i])
    return out
