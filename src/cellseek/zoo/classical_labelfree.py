"""Label-free (unstained) cell measurements: contrast signal, intensity moments, radial profile.

In brightfield, phase contrast, quantitative phase (QPI) and refractive-index (RI) images a cell
is seen as a *departure from the background*: darker and brighter than it in brightfield and
phase contrast (edges, halos, granules), brighter than it in QPI / RI (phase delay or refractive
index excess, proportional to the dry mass). :func:`contrast_signal` turns each grey crop into
that signed departure ``(I - background) / contrast``, where the background is the median
outside the cell and the contrast is the cell's 98th percentile of ``|I - background|``: a
brighter lamp, another camera gain or another offset cancels, the sign is kept. Every other
function measures that signal inside (and just outside) the cell mask. CellProfiler's
MeasureObjectIntensity and MeasureObjectIntensityDistribution are the reference.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: The signal is clipped to +-this many contrast units.
SIGNAL_CLIP = 1.5
#: Pixels further than this from the cell (at the embedder's input size) are background.
BACKGROUND_GAP = 3
#: Rings of the radial profile inside the cell (equal steps of the normalised inner distance).
RADIAL_BINS = 5
#: Rings just outside the cell, in pixels from its edge (halo of phase contrast, rim of
#: brightfield).
OUTER_RINGS = ((0, 3), (3, 8))

INTENSITY_NAMES = [
    "lf_mean", "lf_sd", "lf_skew", "lf_kurt", "lf_p10", "lf_p50", "lf_p90", "lf_abs_mean",
    "lf_pos_frac", "lf_neg_frac", "lf_pos_mean", "lf_neg_mean", "lf_log_contrast", "lf_log_mass",
]  # fmt: skip
RADIAL_NAMES = [
    *(f"rad_mean_{i}" for i in range(RADIAL_BINS)),
    *(f"rad_sd_{i}" for i in range(RADIAL_BINS)),
    *(f"rad_out_{a}_{b}" for a, b in OUTER_RINGS),
]  # fmt: skip


def contrast_signal(grey: np.ndarray, masks: np.ndarray):
    """Signed departure of each crop from its background, in units of the cell's contrast.

    Parameters
    ----------
    grey : ndarray
        float ``(N, H, W)`` intensities in [0, 1].
    masks : ndarray
        bool ``(N, H, W)`` cell masks (non-empty).

    Returns
    -------
    signal : ndarray
        float32 ``(N, H, W)`` in [-:data:`SIGNAL_CLIP`, :data:`SIGNAL_CLIP`].
    background : ndarray
        ``(N,)`` background level (median outside the dilated mask; the crop border when the
        cell fills the crop).
    contrast : ndarray
        ``(N,)`` 98th percentile of ``|I - background|`` inside the cell (at least 1e-3).
    """
    n = grey.shape[0]
    near = ndi.binary_dilation(masks, structure=np.ones((1, 3, 3), bool), iterations=BACKGROUND_GAP)
    border = np.zeros(grey.shape[1:], bool)
    border[[0, -1], :] = True
    border[:, [0, -1]] = True
    background = np.empty(n, np.float32)
    contrast = np.empty(n, np.float32)
    for i in range(n):
        bg = ~near[i]
        pix = grey[i][bg] if bg.mean() > 0.05 else grey[i][border]
        background[i] = np.median(pix)
        dev = np.abs(grey[i][masks[i]] - background[i])
        contrast[i] = max(float(np.percentile(dev, 98)) if dev.size else 0.0, 1e-3)
    signal = (grey - background[:, None, None]) / contrast[:, None, None]
    return np.clip(signal, -SIGNAL_CLIP, SIGNAL_CLIP).astype(np.float32), background, contrast


def intensity_features(signal: np.ndarray, masks: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    """Moments of the signal in each cell: ``(N, len(INTENSITY_NAMES))``.

    Mean, standard deviation, skewness, log kurtosis, 10/50/90th percentiles, mean absolute
    value, share and mean of the clearly brighter (> 0.2) and darker (< -0.2) pixels, the log
    contrast (cell contrast relative to the image range: the refractive-index or phase excess in
    QPI / RI) and the log of the integrated absolute departure per crop area (the dry-mass
    analogue, relative to the crop).
    """
    n = signal.shape[0]
    out = np.zeros((n, len(INTENSITY_NAMES)), np.float32)
    for i in range(n):
        v = signal[i][masks[i]].astype(np.float64)
        if v.size < 3:
            continue
        mu, sd = v.mean(), v.std()
        z = (v - mu) / max(sd, 1e-6)
        p10, p50, p90 = np.percentile(v, [10, 50, 90])
        pos, neg = v > 0.2, v < -0.2
        out[i] = [
            mu, sd, (z**3).mean(), np.log((z**4).mean() + 1e-6), p10, p50, p90, np.abs(v).mean(),
            pos.mean(), neg.mean(), v[pos].mean() if pos.any() else 0.0,
            v[neg].mean() if neg.any() else 0.0, np.log(contrast[i]),
            np.log(np.abs(v).sum() * contrast[i] / signal[i].size + 1e-6),
        ]  # fmt: skip
    return out


def radial_features(signal: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Radial profile: mean and spread of the signal in rings, and just outside the cell.

    Inside, the rings are equal steps of the distance to the cell edge divided by its maximum
    (edge = 0, centre = 1), so the profile is independent of the cell's size. Outside, the rings
    of :data:`OUTER_RINGS` (pixels from the edge) carry the phase-contrast halo or the brightfield
    rim. Returns ``(N, len(RADIAL_NAMES))``.
    """
    n = signal.shape[0]
    out = np.zeros((n, len(RADIAL_NAMES)), np.float32)
    for i in range(n):
        m = masks[i]
        inner = ndi.distance_transform_edt(m)
        top = inner.max()
        if top <= 0:
            continue
        ring = np.minimum((inner / top * RADIAL_BINS).astype(np.int64), RADIAL_BINS - 1)
        ring = np.where(m, ring, RADIAL_BINS)
        s = signal[i].astype(np.float64)
        cnt = np.bincount(ring.ravel(), minlength=RADIAL_BINS + 1)[:RADIAL_BINS]
        s1 = np.bincount(ring.ravel(), s.ravel(), RADIAL_BINS + 1)[:RADIAL_BINS]
        s2 = np.bincount(ring.ravel(), (s * s).ravel(), RADIAL_BINS + 1)[:RADIAL_BINS]
        mean = s1 / np.maximum(cnt, 1)
        sd = np.sqrt(np.maximum(s2 / np.maximum(cnt, 1) - mean**2, 0.0))
        outer = ndi.distance_transform_edt(~m)
        rings_out = [
            s[(outer > a) & (outer <= b)].mean() if ((outer > a) & (outer <= b)).any() else 0.0
            for a, b in OUTER_RINGS
        ]
        out[i] = [*mean, *sd, *rings_out]
    return out
