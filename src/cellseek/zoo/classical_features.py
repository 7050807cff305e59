"""Every hand-crafted feature group of a batch of crops, by modality (classical embedder).

Each crop is first classed as **stained** (colour departs from the grey axis:
:func:`cellseek.segment.stain.is_stained`) or **label-free** (grey: brightfield, phase contrast,
QPI, refractive index, fluorescence). Both get the mask's ``shape`` and, when the size of a crop
pixel is known, its ``size``. Stained crops then get the optical-density groups of
:mod:`cellseek.zoo.classical_stained` (``nucleus``, ``colour``, ``histogram``, ``texture``: the
version 1 features, unchanged); label-free crops get the mask's ``outline`` (convexity,
roughness, Zernike moments) and the contrast-signal groups of
:mod:`cellseek.zoo.classical_labelfree` and :mod:`cellseek.zoo.classical_texture`
(``intensity``, ``radial``, ``lf_texture``, ``granularity``). A group that does not apply to a
crop's modality is NaN in its row, and so is ``size`` without a pixel size;
:class:`cellseek.zoo.classical.ClassicalEmbedder` maps NaN to the neutral 0.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from cellseek.zoo import classical_labelfree as lf
from cellseek.zoo import classical_shape as shp
from cellseek.zoo import classical_stained as st
from cellseek.zoo import classical_texture as tex

#: Colour departure (99th percentile) above which a crop counts as stained.
STAIN_CHROMA = 0.06
#: Crop modalities of the embedder.
MODALITIES = ("stained", "label-free")
#: Feature groups, in output order.
GROUPS = ("shape", "outline", "size", "nucleus", "colour", "histogram", "texture", "intensity",
          "radial", "lf_texture", "granularity")  # fmt: skip
#: The groups measured for each modality.
MODALITY_GROUPS = {
    "stained": ("shape", "size", "nucleus", "colour", "histogram", "texture"),
    "label-free": ("shape", "outline", "size", "intensity", "radial", "lf_texture", "granularity"),
}
FEATURE_NAMES = {
    "shape": shp.SHAPE_NAMES,
    "outline": [*shp.CONTOUR_NAMES, *shp.ZERNIKE_NAMES],
    "size": shp.SIZE_NAMES,
    "nucleus": st.NUCLEUS_NAMES,
    "colour": st.COLOUR_NAMES,
    "histogram": st.HISTOGRAM_NAMES,
    "texture": st.TEXTURE_NAMES,
    "intensity": lf.INTENSITY_NAMES,
    "radial": lf.RADIAL_NAMES,
    "lf_texture": [*tex.HARALICK_NAMES, *tex.LBP_NAMES, *tex.GABOR_NAMES],
    "granularity": tex.GRANULARITY_NAMES,
}


def crop_modalities(crops: np.ndarray) -> np.ndarray:
    """``"stained"`` or ``"label-free"`` for every crop of a batch ``(N, H, W, 3)``.

    A crop is stained when the 99th percentile of its colour departure from the grey axis,
    relative to its background colour (the median of its brightest quarter), exceeds
    :data:`STAIN_CHROMA` — the rule :func:`cellseek.segment.stain.is_stained` applies to whole
    planes, here on every 4th pixel of each crop, vectorised. Grey crops, and grey images saved
    as RGB, are label-free.
    """
    n = crops.shape[0]
    sub = crops[:, ::4, ::4].reshape(n, -1, 3).astype(np.float32)
    grey = sub.mean(axis=-1)
    bright = grey >= np.quantile(grey, 0.75, axis=1, keepdims=True)
    bg = np.nanmedian(np.where(bright[..., None], sub, np.nan), axis=1)
    diff = sub - bg[:, None, :]
    off = diff - diff.mean(axis=-1, keepdims=True)
    chroma = np.quantile(np.sqrt((off**2).sum(axis=-1)), 0.99, axis=1)
    return np.where(chroma > STAIN_CHROMA, "stained", "label-free").astype(object)


def label_free_groups(crops: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """The ``intensity``, ``radial``, ``lf_texture`` and ``granularity`` groups of grey crops.

    Measured on the contrast signal (:func:`cellseek.zoo.classical_labelfree.contrast_signal`)
    of the mean channel; texture inside the cell only.
    """
    grey = crops.mean(axis=-1)
    signal, _, contrast = lf.contrast_signal(grey, masks)
    inner = ndi.binary_erosion(masks, structure=np.ones((1, 3, 3), bool))
    inner = np.where(inner.sum(axis=(1, 2), keepdims=True) > 8, inner, masks)
    texture = np.concatenate(
        [
            tex.haralick_features(signal, inner, lo=-1.0, hi=1.0),
            tex.lbp_features(signal, inner),
            tex.gabor_features(signal, masks),
        ],
        axis=1,
    )
    return {
        "intensity": lf.intensity_features(signal, masks, contrast),
        "radial": lf.radial_features(signal, masks),
        "lf_texture": texture,
        "granularity": tex.granularity_features(signal, masks),
    }


def _label_free_all(crops: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    zernike = shp.zernike_features(masks)
    contour_slots = np.zeros((len(masks), len(shp.CONTOUR_NAMES)), np.float32)  # filled after
    return {"outline": np.concatenate([contour_slots, zernike], axis=1),
            **label_free_groups(crops, masks)}  # fmt: skip


def raw_features(
    crops: np.ndarray, masks: np.ndarray, *, smooth: float = 0.0, pixel_size=None,
    modalities=None,
) -> dict:  # fmt: skip
    """All feature groups of a batch.

    Parameters
    ----------
    crops : ndarray
        float32 ``(N, S, S, 3)`` in [0, 1].
    masks : ndarray
        bool ``(N, S, S)``; an empty mask is replaced by the whole crop.
    smooth : float
        Gaussian sigma (pixels) applied before measuring; a mild blur makes features less
        sensitive to differences in optical sharpness between devices.
    pixel_size : array-like, optional
        ``(N,)`` side of one crop pixel at size ``S`` (micrometres, or image pixels when the
        physical size is unknown); NaN or None: the ``size`` group is NaN.
    modalities : array-like, optional
        ``(N,)`` modality of each crop (default :func:`crop_modalities`).

    Returns
    -------
    dict
        group name -> ``(N, d)`` float32 array (NaN where the group does not apply), plus
        ``"modality"`` -> ``(N,)`` object array.
    """
    n = crops.shape[0]
    masks = masks.copy()
    empty = masks.sum(axis=(1, 2)) < 3
    masks[empty] = True
    if smooth > 0:
        crops = ndi.gaussian_filter(crops, sigma=(0, smooth, smooth, 0))
    mods = crop_modalities(crops) if modalities is None else np.asarray(modalities, object)
    out = {g: np.full((n, len(FEATURE_NAMES[g])), np.nan, np.float32) for g in GROUPS}
    shape, size_px = shp.shape_features(masks)
    out["shape"] = shape[:, : len(shp.SHAPE_NAMES)]
    contour = shape[:, len(shp.SHAPE_NAMES) :]
    if pixel_size is not None:
        s = np.broadcast_to(np.asarray(pixel_size, np.float64), (n,))
        out["size"] = shp.size_features(size_px, np.where(s > 0, s, np.nan))
    for modality, measure in (("stained", st.stained_groups), ("label-free", _label_free_all)):
        rows = np.flatnonzero(mods == modality)
        if rows.size:
            for g, v in measure(crops[rows], masks[rows]).items():
                out[g][rows] = v
            if modality == "label-free":
                out["outline"][rows, : contour.shape[1]] = contour[rows]
    out["modality"] = mods
    return out
