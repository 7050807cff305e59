"""Shape and size of cell masks, for :mod:`cellseek.zoo.classical`.

The reference is CellProfiler's MeasureObjectSizeShape: area fraction, eccentricity, solidity,
extent, form factor, axis ratio and Hu moments (scale-free), convexity and boundary roughness,
Zernike moment magnitudes of the mask (rotation invariant), and, when the size of a crop pixel is
known, the cell's size in physical units (or image pixels): the only feature that is not relative
to the cell's own size, because every crop is cut around its cell.
"""

from __future__ import annotations

from math import factorial

import numpy as np
from scipy import ndimage as ndi

#: Highest Zernike order (CellProfiler uses 9). Orders 2..8 give 23 moments (Z00 is the area,
#: Z11 is 0 about the centroid).
ZERNIKE_ORDER = 8
#: Side at which Zernike moments are computed (masks are block-averaged to it).
ZERNIKE_SIZE = 64

SHAPE_NAMES = [
    "area_frac", "ecc", "solidity", "extent", "circularity", "minor_major",
    *(f"hu{i}" for i in range(7)),
]  # fmt: skip
CONTOUR_NAMES = ["convexity", "roughness"]
ZERNIKE_INDICES = [(n, m) for n in range(2, ZERNIKE_ORDER + 1) for m in range(n % 2, n + 1, 2)]
ZERNIKE_NAMES = [f"zernike_{n}_{m}" for n, m in ZERNIKE_INDICES]
SIZE_NAMES = ["log_area", "log_major", "log_minor"]


def _hull(mask: np.ndarray, edge: np.ndarray | None = None) -> tuple[float, float]:
    """Area and perimeter of the convex hull of a mask's pixel squares (``edge``: the mask's
    boundary pixels, when already known)."""
    from scipy.spatial import ConvexHull, QhullError

    edge = mask & ~ndi.binary_erosion(mask) if edge is None else edge
    pts = np.argwhere(edge)
    if pts.shape[0] < 3:
        return float(mask.sum()), 4.0 * np.sqrt(float(mask.sum()))
    corners = (pts[:, None, :] + np.array([[0, 0], [0, 1], [1, 0], [1, 1]])).reshape(-1, 2)
    try:
        hull = ConvexHull(corners)
    except (QhullError, ValueError):
        return float(mask.sum()), 4.0 * np.sqrt(float(mask.sum()))
    return float(hull.volume), float(hull.area)


def hull_area(mask: np.ndarray) -> float:
    """Area of the convex hull of a mask's pixel squares."""
    return _hull(mask)[0]


def _shape_one(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale-free shape (13 + 2 features) and ``(area, major, minor)`` in pixels of one mask."""
    from skimage.measure import regionprops

    if mask.sum() < 3:
        return np.zeros(15, np.float32), np.array([max(mask.sum(), 1), 1.0, 1.0], np.float32)
    props = regionprops(mask.astype(np.uint8))[0]
    area = float(props.area)
    per = max(float(props.perimeter), 1.0)
    major = max(float(props.axis_major_length), 1.0)
    minor = max(float(props.axis_minor_length), 1.0)
    hu = props.moments_hu
    edge = mask & ~ndi.binary_erosion(mask)
    h_area, h_per = _hull(mask, edge)
    # boundary roughness: spread of the boundary's distance to the centroid
    rad = np.hypot(*(np.argwhere(edge) - np.asarray(props.centroid)).T)
    rough = float(rad.std() / max(rad.mean(), 1.0))
    shape = np.array(
        [
            area / mask.size,
            props.eccentricity,
            min(area / max(h_area, 1.0), 1.0),
            props.extent,
            min(4 * np.pi * area / per**2, 1.5),
            minor / major,
            *(-np.sign(hu) * np.log10(np.abs(hu) + 1e-12))[:7] / 10.0,
            min(h_per / per, 1.5),
            rough,
        ],
        np.float32,
    )
    return shape, np.array([area, major, minor], np.float32)


def shape_features(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale-free shape of each mask and its size in pixels.

    Returns
    -------
    shape : ndarray
        ``(N, 15)``: :data:`SHAPE_NAMES` then :data:`CONTOUR_NAMES`.
    size_px : ndarray
        ``(N, 3)``: area, major and minor axis length in crop pixels.
    """
    out = [_shape_one(m) for m in masks]
    return np.stack([s for s, _ in out]), np.stack([z for _, z in out])


def _radial_terms(n: int, m: int) -> list[tuple[float, int]]:
    """Coefficients and powers of the Zernike radial polynomial ``R_n^m``."""
    return [
        ((-1) ** k * factorial(n - k)
         / (factorial(k) * factorial((n + m) // 2 - k) * factorial((n - m) // 2 - k)), n - 2 * k)
        for k in range((n - m) // 2 + 1)
    ]  # fmt: skip


def zernike_features(masks: np.ndarray) -> np.ndarray:
    """Magnitudes of the Zernike moments of each mask, orders 1..:data:`ZERNIKE_ORDER`.

    The unit disc is centred on the mask's centroid with the radius of its farthest pixel, so the
    magnitudes are invariant to translation, rotation and scale; the ``m = 0`` moments describe
    how the mask fills the disc radially, the others its departures from rotational symmetry
    (two lobes, a bulge). Returns ``(N, len(ZERNIKE_INDICES))``.
    """
    n, h, w = masks.shape
    f = max(1, h // ZERNIKE_SIZE)
    m = masks[:, : h // f * f, : w // f * f].reshape(n, h // f, f, w // f, f).mean(axis=(2, 4))
    # only the pixels inside the masks, flattened over the batch (a third of the crop)
    idx, yy, xx = np.nonzero(m > 0)
    val = m[idx, yy, xx]
    tot = np.maximum(np.bincount(idx, val, n), 1e-6)
    cy = np.bincount(idx, val * yy, n) / tot
    cx = np.bincount(idx, val * xx, n) / tot
    dy, dx = yy - cy[idx], xx - cx[idx]
    r = np.hypot(dy, dx)
    rmax = np.ones(n)
    np.maximum.at(rmax, idx, r)
    rho = r / rmax[idx]
    theta = np.arctan2(dy, dx)
    rho_pow = [np.ones_like(rho)]
    for _ in range(ZERNIKE_ORDER):
        rho_pow.append(rho_pow[-1] * rho)
    cos_m = [np.cos(k * theta) * val for k in range(ZERNIKE_ORDER + 1)]
    sin_m = [np.sin(k * theta) * val for k in range(ZERNIKE_ORDER + 1)]
    out = np.zeros((n, len(ZERNIKE_INDICES)), np.float32)
    for j, (order, rep) in enumerate(ZERNIKE_INDICES):
        v = sum(c * rho_pow[p] for c, p in _radial_terms(order, rep))
        re = np.bincount(idx, v * cos_m[rep], n)
        im = np.bincount(idx, v * sin_m[rep], n)
        out[:, j] = (order + 1) / np.pi * np.hypot(re, im) / rmax**2
    return out


def size_features(size_px: np.ndarray, pixel_size) -> np.ndarray:
    """Log area, major and minor axis of each cell in the unit of ``pixel_size``.

    Parameters
    ----------
    size_px : ndarray
        ``(N, 3)`` area, major, minor axis in crop pixels (from :func:`shape_features`).
    pixel_size : ndarray
        ``(N,)`` side of one crop pixel (micrometres, or image pixels when the physical size is
        unknown); NaN where unknown (the row is then NaN).

    Returns
    -------
    ndarray
        ``(N, 3)``.
    """
    s = np.asarray(pixel_size, np.float64)
    area = np.log(np.maximum(size_px[:, 0], 1.0) * s**2)
    major = np.log(np.maximum(size_px[:, 1], 1.0) * s)
    minor = np.log(np.maximum(size_px[:, 2], 1.0) * s)
    return np.stack([area, major, minor], axis=1).astype(np.float32)
