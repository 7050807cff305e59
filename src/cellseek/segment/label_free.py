"""Weights-free segmentation of label-free planes, by modality (:mod:`cellseek.segment.modality`).

1. The plane is scaled between its 0.5th and 99.5th percentiles; a plane whose range is under 6x
   its noise level (MAD of neighbour differences) gives no objects.
2. Lightly smoothed (``sigma = max(1, 0.05 sqrt(min_area))``), the signed departure from the
   background level (histogram mode) becomes a foreground score: the departure itself for
   ``"qpi"`` (cells brighter than the background; the dark halo around QPI cells stays
   outside), its negative for ``"brightfield"`` (cells darker), its absolute value for
   ``"phase-contrast"`` (dark bodies and bright halos or rings), where the local standard
   deviation joins in to catch low-contrast cell bodies.
3. Foreground = score above ``max(0.5 x Otsu(score), 5 x noise)``; holes filled (a cell
   outlined by a closed rim is one object), opened.
4. Touching cells are split by a watershed on the distance transform seeded by its maxima at
   least ``max(3, 0.5 sqrt(min_area))`` apart; with ``"phase-contrast"`` the seeds are the
   maxima of the filled rims, so neighbours whose rims touch stay apart.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import gaussian
from skimage.segmentation import watershed

from cellseek.segment.filters import otsu_threshold
from cellseek.segment.modality import LABEL_FREE, background_level, label_free_modality

logger = logging.getLogger(__name__)

__all__ = ["central_object", "foreground", "segment_label_free", "split_touching"]

#: Foreground threshold as a multiple of the Otsu threshold of the score.
OTSU_SCALE = 0.7
#: Window of the local standard deviation (``"phase-contrast"``), in units of the smoothing sigma.
TEXTURE_SCALE = 1.5
#: Foreground threshold floor as a multiple of the noise level of the smoothed plane.
NOISE_SCALE = 5.0
#: :func:`central_object` joins fragments within this fraction of the image's short side.
FRAGMENT_GAP = 0.03


def _disc_op(op, mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary opening / closing by a Euclidean disc, via distance transforms."""
    r = max(1, int(radius))
    if op == "close":
        grown = ndi.distance_transform_edt(~mask) <= r if mask.any() else mask
        return ndi.distance_transform_edt(grown) > r if not grown.all() else grown
    shrunk = ndi.distance_transform_edt(mask) > r if not mask.all() else mask
    return ndi.distance_transform_edt(~shrunk) <= r if shrunk.any() else shrunk


def split_touching(mask: np.ndarray, min_distance: int) -> np.ndarray:
    """Split a binary mask into objects with a watershed on its distance transform."""
    from skimage.feature import peak_local_max

    lab, n = ndi.label(mask)
    if n == 0:
        return lab.astype(np.int32)
    dist = gaussian(ndi.distance_transform_edt(mask), sigma=1.0, preserve_range=True)
    peaks = peak_local_max(dist, min_distance=max(1, int(min_distance)),
                           threshold_abs=max(1.0, 0.3 * min_distance), labels=lab,
                           exclude_border=False)  # fmt: skip
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    has = np.zeros(n + 1, bool)
    has[lab[tuple(peaks.T)]] = True
    missing = np.flatnonzero(~has[1:]) + 1
    if missing.size:  # components without a peak keep one marker of their own
        extra = np.isin(lab, missing)
        markers[extra] = lab[extra] + len(peaks)
    return watershed(-dist, markers, mask=mask).astype(np.int32)


def foreground(
    grey: np.ndarray, valid: np.ndarray, *, modality: str = "auto", min_area: int = 150
) -> tuple[np.ndarray, str]:
    """Cell pixels of a label-free plane (steps 1-3 of the module docstring).

    Parameters
    ----------
    grey : ndarray
        float ``(Y, X)``, any range; invalid pixels hold any finite value.
    valid : ndarray
        bool ``(Y, X)``, False on pixels that were NaN.
    modality : {"auto", "qpi", "brightfield", "phase-contrast"}
        ``"auto"`` detects it (:func:`cellseek.segment.modality.label_free_modality`).
    min_area : int
        Smallest expected object in pixels; sets the smoothing.

    Returns
    -------
    mask : ndarray
        bool ``(Y, X)``.
    modality : str
        The modality used.
    """
    g = grey.astype(np.float32)
    lo, hi = np.percentile(g[valid], [0.5, 99.5])
    pairs = valid[:, 1:] & valid[:, :-1]
    noise = 1.4826 * float(np.median(np.abs(np.diff(g, axis=1)[pairs]))) / np.sqrt(2)
    if modality != "auto" and modality not in LABEL_FREE:
        raise ValueError(f"unknown label-free modality {modality!r}")
    if hi - lo <= max(6 * noise, 1e-6 * max(abs(hi), 1.0)):
        logger.info("label-free: no contrast above the noise; no objects")
        return np.zeros(g.shape, bool), modality
    g = np.clip((g - lo) / max(hi - lo, 1e-12), 0, 1)
    g[~valid] = 0
    sigma = max(1.0, 0.05 * np.sqrt(max(min_area, 1)))
    gs = gaussian(g, sigma=sigma, preserve_range=True)
    if modality == "auto":
        modality = label_free_modality(gs, valid)
    bg = background_level(gs, valid)
    dev = gs - bg
    noise_s = noise / max(hi - lo, 1e-12) / (2 * np.sqrt(np.pi) * sigma)  # after smoothing
    if modality == "qpi":
        score = dev
    else:
        # texture (local standard deviation, a window of about the smoothing scale) catches
        # cell bodies whose mean sits near the background level
        mean = gaussian(g, sigma=TEXTURE_SCALE * sigma, preserve_range=True)
        sq = gaussian(g * g, sigma=TEXTURE_SCALE * sigma, preserve_range=True)
        std = np.sqrt(np.clip(sq - mean * mean, 0, None))
        score = np.maximum(np.abs(dev), std)
    score = np.where(valid, score, 0)
    thr = max(OTSU_SCALE * otsu_threshold(score[valid]), NOISE_SCALE * noise_s)
    mask = (score > thr) & valid
    mask = _disc_op("close", mask, 1)
    mask = ndi.binary_fill_holes(mask)
    mask = _disc_op("open", mask, max(1, int(round(sigma))))
    logger.debug("label-free %s: threshold %.3f, foreground %.3f", modality, thr, mask.mean())
    return mask, modality


def segment_label_free(
    grey: np.ndarray, valid: np.ndarray, *, modality: str = "auto", min_area: int = 150
) -> np.ndarray:
    """Instance labels of a label-free plane (see the module docstring and :func:`foreground`
    for the parameters).

    Returns
    -------
    ndarray
        int32 labels (not yet area-filtered).
    """
    mask, _ = foreground(grey, valid, modality=modality, min_area=min_area)
    return split_touching(mask, min_distance=int(max(3, 0.5 * np.sqrt(max(min_area, 1)))))


def central_object(
    grey: np.ndarray, valid: np.ndarray, *, modality: str = "auto", min_area: int = 30
) -> np.ndarray | None:
    """The cell at (or nearest) the centre of a single-cell label-free image, or None.

    Unlike :func:`segment_label_free`, nothing is split: a single-cell image shows one cell of
    interest, and a flat, spread cell often appears as separate fragments (outline pieces,
    granules). The foreground component at or nearest the centre is kept together with every
    component within :data:`FRAGMENT_GAP` of the short side of it; they are closed over that gap
    and their holes filled.
    """
    mask, _ = foreground(grey, valid, modality=modality, min_area=min_area)
    lab, n = ndi.label(mask)
    if n == 0:
        return None
    areas = np.bincount(lab.ravel(), minlength=n + 1)
    h, w = mask.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = np.ogrid[:h, :w]
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2 + np.zeros(mask.shape)
    near = np.asarray(ndi.minimum(d2, lab, np.arange(1, n + 1)), float)
    near[areas[1:] < max(4, min_area // 4)] = np.inf
    if not np.isfinite(near).any():
        return None
    chosen = lab == int(np.argmin(near)) + 1
    gap = max(2, int(round(FRAGMENT_GAP * min(h, w))))
    reach = ndi.distance_transform_edt(~chosen) <= gap
    keep = np.unique(lab[reach & mask])
    cell = np.isin(lab, keep[keep > 0])
    cell = ndi.binary_fill_holes(_disc_op("close", cell, gap))
    out, _ = ndi.label(cell)
    return out == np.bincount(out[chosen]).argmax()
