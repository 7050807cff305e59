"""Stained-cell measurements for :mod:`cellseek.zoo.classical`: nucleus, colour, stain histogram
and stain texture.

Colour is measured as optical density relative to the crop's own white point (the brightest
background), so a brighter lamp or another camera gain cancels; the nucleus is the part of the
cell whose red optical density exceeds :data:`NUCLEUS_LEVEL` of the cell's 98th percentile
(nuclei absorb red, cytoplasm and red cells hardly do). :func:`stained_groups` returns the four
groups of one batch of stained crops.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from cellseek.zoo.classical_shape import hull_area
from cellseek.zoo.classical_texture import code_histograms, lbp_codes

_EPS = 1e-6
#: Relative nuclear-stain level (fraction of the cell's 98th percentile) above which a cell
#: pixel counts as nucleus.
NUCLEUS_LEVEL = 0.55
HIST_BINS = 10
GLCM_LEVELS = 16
GLCM_DISTANCES = (1, 2, 4)
DOG_SIGMAS = (1.0, 2.0, 4.0)


def white_point(crops: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per-crop, per-channel white point: 95th percentile outside the (dilated) cell.

    Parameters
    ----------
    crops : ndarray
        float32 ``(N, H, W, 3)``.
    masks : ndarray
        bool ``(N, H, W)``.

    Returns
    -------
    ndarray
        ``(N, 3)`` in [0.05, 1].
    """
    n = crops.shape[0]
    out = np.empty((n, 3), np.float32)
    bgs = ~ndi.binary_dilation(masks, structure=np.ones((1, 3, 3), bool), iterations=2)
    for i in range(n):
        bg = bgs[i]
        pix = crops[i][bg] if bg.mean() > 0.05 else crops[i].reshape(-1, 3)
        out[i] = np.percentile(pix, 95, axis=0)
    return np.clip(out, 0.05, 1.0)


def optical_density(crops: np.ndarray, white: np.ndarray) -> np.ndarray:
    """``-log(I / white)`` per channel, clipped to [0, 4]."""
    rel = np.clip(crops / white[:, None, None, :], 1.0 / 64, 1.0)
    return -np.log(rel)


def _region_stats(values: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (N, H, W[, C]) over ``region`` (N, H, W); 0 where empty."""
    cnt = region.sum(axis=(1, 2)).astype(np.float32)
    if values.ndim == 4:
        s = (values * region[..., None]).sum(axis=(1, 2))
        return s / np.maximum(cnt, 1)[:, None]
    return (values * region).sum(axis=(1, 2)) / np.maximum(cnt, 1)


def _masked_percentile(values: np.ndarray, masks: np.ndarray, q: float) -> np.ndarray:
    out = np.zeros(values.shape[0], np.float32)
    for i in range(values.shape[0]):
        v = values[i][masks[i]]
        out[i] = np.percentile(v, q) if v.size else 0.0
    return out


def nucleus_masks(nuc_od: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nucleus inside each cell: nuclear OD above :data:`NUCLEUS_LEVEL` of the cell's p98.

    Returns the nucleus masks ``(N, H, W)`` and the per-cell reference level ``(N,)``.
    """
    ref = np.maximum(_masked_percentile(nuc_od, masks, 98), 0.05)
    nuc = masks & (nuc_od > NUCLEUS_LEVEL * ref[:, None, None])
    nuc = ndi.binary_opening(nuc, structure=np.ones((1, 3, 3), bool))
    return nuc, ref


NUCLEUS_NAMES = [
    "nuc_frac", "n_lobes", "n_lobes_eroded", "nuc_solidity", "nuc_ecc", "nuc_circularity",
    "nuc_thickness", "nuc_offset", "nuc_hull_frac", "nuc_extent",
]  # fmt: skip


def _nucleus_one(nuc: np.ndarray, cell: np.ndarray) -> np.ndarray:
    from skimage.measure import label, regionprops

    a_cell = max(float(cell.sum()), 1.0)
    a_nuc = float(nuc.sum())
    if a_nuc < 4:
        return np.array([a_nuc / a_cell, 0, 0, 0, 0, 0, 0, 0, 0, 0], np.float32)
    lab = label(nuc)
    areas = np.bincount(lab.ravel())[1:]
    n_lobes = int((areas >= 0.02 * a_cell).sum())
    r_cell = np.sqrt(a_cell / np.pi)
    k = max(1, int(round(0.08 * r_cell)))
    eroded = ndi.binary_erosion(nuc, iterations=k)
    lab_e, n_e = ndi.label(eroded)
    if n_e:
        ar_e = np.bincount(lab_e.ravel())[1:]
        n_e = int((ar_e >= 0.01 * a_cell).sum())
    props = regionprops(nuc.astype(np.uint8))[0]
    per = max(float(props.perimeter), 1.0)
    r0, c0, r1, c1 = props.bbox
    box = nuc[r0:r1, c0:c1]
    thick = ndi.distance_transform_edt(np.pad(box, 1))[1:-1, 1:-1][box].mean()
    hull = max(hull_area(nuc), a_nuc)
    cy, cx = np.argwhere(cell).mean(axis=0) if cell.any() else props.centroid
    ny, nx = props.centroid
    return np.array(
        [
            a_nuc / a_cell,
            np.log1p(n_lobes),
            np.log1p(n_e),
            a_nuc / hull,
            props.eccentricity,
            min(4 * np.pi * a_nuc / per**2, 1.5),
            thick / np.sqrt(a_nuc / np.pi),
            np.hypot(ny - cy, nx - cx) / r_cell,
            hull / a_cell,
            props.extent,
        ],
        np.float32,
    )


def nucleus_features(nuc: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Nucleus-vs-cell morphology (area fraction, lobes, solidity, thickness...): ``(N, 10)``."""
    return np.stack([_nucleus_one(n, m) for n, m in zip(nuc, masks)])


COLOUR_NAMES = [
    *(f"{r}_chroma_{c}" for r in ("nuc", "cyt") for c in "rgb"),
    *(f"cyt_over_nuc_{c}" for c in "rgb"),
    "nuc_od_log", "cyt_od_log", "nuc_sd_rel", "cyt_sd_rel",
]  # fmt: skip


def colour_features(od: np.ndarray, nuc: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Relative colour: OD chromaticity of nucleus and cytoplasm, their ratios: ``(N, 13)``.

    Only the cell is described: the white point and the background (red cells, plasma) describe
    the device and the preparation, not the cell, and are left out on purpose.
    """
    cyt = masks & ~nuc
    cyt_or_cell = np.where(cyt.sum(axis=(1, 2), keepdims=True) > 8, cyt, masks)
    nuc_or_cell = np.where(nuc.sum(axis=(1, 2), keepdims=True) > 8, nuc, masks)
    od_n = _region_stats(od, nuc_or_cell)
    od_c = _region_stats(od, cyt_or_cell)
    ch_n = od_n / np.maximum(od_n.sum(1, keepdims=True), _EPS)
    ch_c = od_c / np.maximum(od_c.sum(1, keepdims=True), _EPS)
    ratio = np.log((od_c + 0.02) / (od_n + 0.02))
    tot = od.sum(-1)
    sd_n = np.array([tot[i][nuc_or_cell[i]].std() for i in range(len(tot))])
    sd_c = np.array([tot[i][cyt_or_cell[i]].std() for i in range(len(tot))])
    s_n, s_c = od_n.sum(1), od_c.sum(1)
    return np.concatenate(
        [
            ch_n,
            ch_c,
            ratio,
            np.log(s_n + 0.02)[:, None],
            np.log(s_c + 0.02)[:, None],
            (sd_n / (s_n + 0.02))[:, None],
            (sd_c / (s_c + 0.02))[:, None],
        ],
        axis=1,
    ).astype(np.float32)


def histogram_features(rel: np.ndarray, nuc: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Histograms of the relative nuclear-stain level in the cell and in the cytoplasm.

    ``rel`` is the nuclear OD divided by the cell's reference level (so 1 = the darkest nucleus).
    Bins cover [0, 1.2] (:data:`HIST_BINS` each); square-rooted frequencies (Hellinger).
    Returns ``(N, 2 * HIST_BINS)``.
    """
    edges = np.linspace(0, 1.2, HIST_BINS + 1)
    b = np.clip(np.digitize(rel, edges) - 1, 0, HIST_BINS - 1)
    out = np.zeros((rel.shape[0], 2 * HIST_BINS), np.float32)
    cyt = masks & ~nuc
    for j, region in enumerate((masks, cyt)):
        for i in range(rel.shape[0]):
            h = np.bincount(b[i][region[i]], minlength=HIST_BINS).astype(np.float32)
            out[i, j * HIST_BINS : (j + 1) * HIST_BINS] = np.sqrt(h / max(h.sum(), 1.0))
    return out


def _glcm_one(q: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Masked GLCM props: level 0 is reserved for outside pixels and dropped."""
    from skimage.feature import graycomatrix

    img = np.where(region, q + 1, 0).astype(np.uint8)
    glcm = graycomatrix(
        img, GLCM_DISTANCES, (0, np.pi / 4, np.pi / 2, 3 * np.pi / 4), levels=GLCM_LEVELS + 1
    )[1:, 1:].astype(np.float64)
    glcm = glcm.sum(axis=3)  # rotation-averaged, (L, L, D)
    glcm = glcm + glcm.transpose(1, 0, 2)
    tot = glcm.sum(axis=(0, 1), keepdims=True)
    p = glcm / np.maximum(tot, 1)
    ii, jj = np.meshgrid(np.arange(GLCM_LEVELS), np.arange(GLCM_LEVELS), indexing="ij")
    ii, jj = ii[..., None], jj[..., None]
    d2 = (ii - jj) ** 2
    contrast = (p * d2).sum(axis=(0, 1))
    homog = (p / (1.0 + d2)).sum(axis=(0, 1))
    energy = np.sqrt((p**2).sum(axis=(0, 1)))
    mu = (p * ii).sum(axis=(0, 1))
    var = (p * (ii - mu) ** 2).sum(axis=(0, 1))
    corr = (p * (ii - mu) * (jj - mu)).sum(axis=(0, 1)) / np.maximum(var, 1e-6)
    return np.concatenate([np.log1p(contrast), homog, energy, corr]).astype(np.float32)


TEXTURE_NAMES = [
    *(f"lbp8_{r}_{i}" for r in ("nuc", "cyt") for i in range(10)),
    *(f"lbp8r2_cell_{i}" for i in range(10)),
    *(f"glcm_{p}_{d}" for p in ("contrast", "homog", "energy", "corr") for d in GLCM_DISTANCES),
    *(f"dog{s:g}_{r}" for s in DOG_SIGMAS for r in ("nuc", "cyt")),
    "grad_nuc", "grad_cyt", "grad_edge",
]  # fmt: skip


def texture_features(grey: np.ndarray, nuc: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """LBP histograms, masked GLCM, difference-of-Gaussian granularity and gradients.

    ``grey`` is the relative stain level (0 = white, 1 = darkest nucleus) ``(N, H, W)``.
    """
    n = grey.shape[0]
    cyt = masks & ~nuc
    cyt_or_cell = np.where(cyt.sum(axis=(1, 2), keepdims=True) > 8, cyt, masks)
    nuc_or_cell = np.where(nuc.sum(axis=(1, 2), keepdims=True) > 8, nuc, masks)
    g8 = np.clip(grey * 200, 0, 255).astype(np.uint8)
    q = np.clip((grey / 1.2 * GLCM_LEVELS).astype(np.int64), 0, GLCM_LEVELS - 1)
    c1, c2 = lbp_codes(g8, 1), lbp_codes(g8, 2)
    lbp = np.concatenate(
        [
            code_histograms(c1, nuc_or_cell, 10),
            code_histograms(c1, cyt_or_cell, 10),
            code_histograms(c2, masks, 10),
        ],
        axis=1,
    )
    glcm = np.zeros((n, 4 * len(GLCM_DISTANCES)), np.float32)
    for i in range(n):
        glcm[i] = _glcm_one(q[i], masks[i]) if masks[i].sum() > 4 else 0.0
    dogs = []
    prev = grey
    for s in DOG_SIGMAS:
        g = ndi.gaussian_filter(grey, sigma=(0, s, s))
        band = np.abs(prev - g)
        dogs += [_region_stats(band, nuc_or_cell), _region_stats(band, cyt_or_cell)]
        prev = g
    # Sobel within each crop (ndi.sobel would also smooth across the batch axis)
    gy = ndi.correlate1d(ndi.correlate1d(grey, [-1, 0, 1], axis=1), [1, 2, 1], axis=2)
    gx = ndi.correlate1d(ndi.correlate1d(grey, [-1, 0, 1], axis=2), [1, 2, 1], axis=1)
    gm = np.hypot(gx, gy)
    edge = masks ^ ndi.binary_erosion(masks, structure=np.ones((1, 3, 3), bool), iterations=2)
    grads = [
        _region_stats(gm, nuc_or_cell),
        _region_stats(gm, cyt_or_cell),
        _region_stats(gm, edge),
    ]
    return np.concatenate(
        [lbp, glcm, np.log(np.stack(dogs, 1) + 1e-3), np.log(np.stack(grads, 1) + 1e-3)], axis=1
    ).astype(np.float32)


HISTOGRAM_NAMES = [f"hist_{r}_{i}" for r in ("cell", "cyt") for i in range(HIST_BINS)]


def stained_groups(crops: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """The ``nucleus``, ``colour``, ``histogram`` and ``texture`` groups of stained crops.

    Parameters
    ----------
    crops : ndarray
        float32 ``(N, S, S, 3)`` in [0, 1] (already smoothed).
    masks : ndarray
        bool ``(N, S, S)``, non-empty.

    Returns
    -------
    dict
        group name -> ``(N, d)`` float32.
    """
    white = white_point(crops, masks)
    od = optical_density(crops, white)
    nuc_od = od[..., 0]
    nuc, ref = nucleus_masks(nuc_od, masks)
    rel = nuc_od / ref[:, None, None]
    return {
        "nucleus": nucleus_features(nuc, masks),
        "colour": colour_features(od, nuc, masks),
        "histogram": histogram_features(rel, nuc, masks),
        "texture": texture_features(rel, nuc, masks),
    }
