"""Weights-free cell segmentation: stain-aware thresholds and marker-controlled watersheds.

This is the offline default of cellseek, used whenever the SAM weights are absent. Two pipelines:

``"stained"`` (Romanowsky-stained blood smears, H&E-like RGB)
    1. Nucleus channel ``B - max(R, G)`` (:func:`cellseek.segment.stain.nucleus_channel`),
       smoothed, thresholded at ``max(Otsu, 0.06)``; specks are dropped.
    2. Lobes of one nucleus (segmented neutrophils) are grouped: nucleus pixels within 6 px
       (a dilation by a 6 px disc) of each other belong to one cell.
    3. Each nucleus group floods into its cytoplasm with a marker watershed on a "purple-ness"
       map (``B - (R + G) / 2`` relative to the background colour, clipped so the nucleus edge is
       no barrier); the competing markers are the bright background and the pink red blood cells.
       The growth is bounded at 0.65 x the nucleus group's equivalent radius; holes are filled.
    4. Groups whose chromatin covers less than 15 % of a typical red blood cell (its radius is
       the area-weighted median of the inscribed-disc radius of the non-nucleated objects) are
       platelets and are dropped.
    5. ``target="wbc"`` keeps only the nucleated cells. ``target="cells"`` adds every other
       foreground object (red blood cells, platelets), split by a distance-transform watershed.

Label-free planes (brightfield, phase contrast, QPI / holotomography RI, fluorescence)
    :mod:`cellseek.segment.label_free`, by modality (:mod:`cellseek.segment.modality`): cells
    brighter than the background (``"qpi"``), darker (``"brightfield"``) or both
    (``"phase-contrast"``) are thresholded on their departure from the background level, holes
    filled, and touching cells split by a distance-transform watershed. Planes whose contrast does
    not rise above the noise give no objects.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import gaussian
from skimage.measure import regionprops
from skimage.morphology import disk
from skimage.segmentation import watershed

from cellseek.errors import CellseekError
from cellseek.segment.filters import fill_label_holes, filter_labels, otsu_threshold
from cellseek.segment.label_free import central_object, segment_label_free, split_touching
from cellseek.segment.modality import LABEL_FREE, label_free_modality
from cellseek.segment.stain import (
    background_colour,
    is_stained,
    nucleus_channel,
    to_float_rgb,
)

logger = logging.getLogger(__name__)

__all__ = ["STAINS", "TARGETS", "central_cell_mask", "resolve_modality", "resolve_stain",
           "segment"]  # fmt: skip

#: Accepted values of ``stain``: ``"label-free"`` lets the segmenter pick one of the label-free
#: modalities of :mod:`cellseek.segment.modality`; naming one forces it.
STAINS = ("auto", "stained", "label-free", *LABEL_FREE)
#: Accepted values of ``target``.
TARGETS = ("auto", "cells", "wbc")

#: Lowest nucleus-channel threshold (B - max(R, G), on [0, 1] intensities).
_NUC_MIN_THRESHOLD = 0.06
#: Largest cytoplasm growth around a nucleus group, in units of its equivalent radius.
_GROWTH = 0.65


# --------------------------------------------------------------------------------------------
# input handling


def _prepare(plane) -> tuple[np.ndarray, np.ndarray, bool]:
    """Return (array float32, valid mask, is_rgb); warn on NaN, raise on all-NaN."""
    arr = np.asarray(plane)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        is_rgb = True
    elif arr.ndim == 2:
        is_rgb = False
    else:
        raise CellseekError(
            f"cannot segment an image of shape {arr.shape}: a plane must be 2-D grey (Y, X) or "
            "RGB (Y, X, 3); pick one plane (time point, z slice, channel) first"
        )
    if arr.size == 0:
        raise CellseekError("cannot segment an empty image")
    if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.complexfloating):
        finite = np.isfinite(arr) if not is_rgb else np.isfinite(arr).all(axis=-1)
        if not finite.any():
            raise CellseekError(
                "cannot segment this image: every pixel is NaN or infinite (no measured values)"
            )
        if not finite.all():
            warnings.warn(
                f"{int((~finite).sum())} NaN/infinite pixels are treated as background",
                RuntimeWarning,
                stacklevel=3,
            )
    if is_rgb:
        rgb, valid = to_float_rgb(arr)
        return rgb, valid, True
    grey = arr.astype(np.float32)
    valid = np.isfinite(grey)
    if not valid.all():
        grey = np.where(valid, grey, np.median(grey[valid])).astype(np.float32)
    return grey, valid, False


def resolve_stain(plane, stain: str = "auto") -> str:
    """Decide which pipeline a plane gets.

    Parameters
    ----------
    plane : ndarray
        ``(Y, X)`` grey or ``(Y, X, 3)`` RGB.
    stain : {"auto", "stained", "label-free"}, optional
        ``"auto"``: RGB planes with stain-like colour (:func:`cellseek.segment.stain.is_stained`)
        are ``"stained"``, everything else ``"label-free"``. Default ``"auto"``.

    Returns
    -------
    str
        ``"stained"`` or ``"label-free"``.
    """
    if stain not in STAINS:
        raise CellseekError(f"unknown stain {stain!r}; choose one of {', '.join(STAINS)}")
    arr = np.asarray(plane)
    rgb_like = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    if stain == "stained":
        return "stained"
    if stain == "label-free" or not rgb_like:
        return "label-free"
    rgb, _ = to_float_rgb(arr)
    return "stained" if is_stained(rgb) else "label-free"


def resolve_modality(plane, stain: str = "auto") -> str:
    """The modality a plane is segmented as: ``"stained"`` or a label-free one.

    Parameters
    ----------
    plane : ndarray
        ``(Y, X)`` grey or ``(Y, X, 3)`` RGB.
    stain : str, optional
        One of :data:`STAINS`. ``"auto"`` and ``"label-free"`` detect the modality
        (:func:`cellseek.segment.modality.detect_modality`); a named label-free modality is
        returned as given. Default ``"auto"``.

    Returns
    -------
    str
        ``"stained"``, ``"qpi"``, ``"brightfield"`` or ``"phase-contrast"``.
    """
    if stain in LABEL_FREE:
        return stain
    if resolve_stain(plane, stain if stain in ("auto", "stained") else "label-free") == "stained":
        return "stained"
    data, valid, is_rgb = _prepare(plane)
    grey = data.mean(axis=-1) if is_rgb else data
    lo, hi = np.percentile(grey[valid], [0.5, 99.5])
    g = np.clip((grey - lo) / max(float(hi - lo), 1e-12), 0, 1)
    return label_free_modality(gaussian(g, 1.0, preserve_range=True), valid)


# --------------------------------------------------------------------------------------------
# helpers


def _dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """Dilation by a Euclidean disc (via the distance transform: fast for any radius)."""
    if not mask.any():
        return mask.copy()
    return ndi.distance_transform_edt(~mask) <= radius


def _erode(mask: np.ndarray, radius: float) -> np.ndarray:
    """Erosion by a Euclidean disc; the outside of the image counts as a copy of the edge."""
    if mask.all():
        return mask.copy()
    return ndi.distance_transform_edt(mask) > radius


def _binary(op, mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary opening or closing by a Euclidean disc (``op``: ndi.binary_opening/closing)."""
    r = max(1, int(radius))
    if op is ndi.binary_closing:
        return _erode(_dilate(mask, r), r)
    return _dilate(_erode(mask, r), r)


# --------------------------------------------------------------------------------------------
# stained pipeline


def _nucleus_groups(
    nuc: np.ndarray, valid: np.ndarray, *, min_nucleus_area: int, lobe_gap: int
) -> tuple[np.ndarray, np.ndarray]:
    """Nucleus mask and nucleus-group labels (lobes of one cell share a label)."""
    thr = max(otsu_threshold(nuc[valid]), _NUC_MIN_THRESHOLD)
    mask = (nuc > thr) & valid
    mask = ndi.binary_opening(mask, structure=disk(1))
    lab, n = ndi.label(mask)
    if n == 0:
        return mask, lab.astype(np.int32)
    areas = np.bincount(lab.ravel())
    # specks well below a platelet can never be (part of) a nucleus
    speck = areas < max(8, min_nucleus_area // 20)
    speck[0] = False
    mask &= ~speck[lab]
    grouped, _ = ndi.label(_dilate(mask, lobe_gap))
    groups = np.where(mask, grouped, 0)
    # drop groups whose chromatin area is platelet-sized
    garea = np.bincount(groups.ravel())
    small = garea < min_nucleus_area
    small[0] = False
    groups[small[groups]] = 0
    groups = filter_labels(groups)
    mask &= groups > 0
    return mask, groups


def _cell_radius(foreground: np.ndarray, exclude: np.ndarray) -> float:
    """Typical radius of the non-nucleated cells (red blood cells).

    The median over connected components of the largest inscribed-disc radius; touching cells in a
    clump still give about one cell's radius.
    """
    fg = _binary(ndi.binary_opening, foreground & ~exclude, 2)
    lab, n = ndi.label(fg)
    if n < 3:
        return 0.0
    dist = ndi.distance_transform_edt(fg)
    idx = np.arange(1, n + 1)
    peak = ndi.maximum(dist, lab, idx)
    area = ndi.sum_labels(np.ones_like(dist), lab, idx)
    ok = peak >= 3
    if ok.sum() < 3:
        return 0.0
    # area-weighted median: fragments of pale cells do not drag the estimate down
    order = np.argsort(peak[ok])
    cum = np.cumsum(area[ok][order])
    return float(peak[ok][order][np.searchsorted(cum, 0.5 * cum[-1])])


def _grow_cells(
    rgb: np.ndarray, valid: np.ndarray, groups: np.ndarray, nuc_mask: np.ndarray, *, growth: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Grow nucleus groups into their cytoplasm.

    Returns (cell labels, foreground mask, typical radius of the other cells).
    """
    smooth = gaussian(rgb, sigma=1.5, channel_axis=-1, preserve_range=True)
    grey = smooth.mean(axis=-1)
    bg = background_colour(smooth)
    # purple-ness relative to the background: chromatin >> cytoplasm > background > pink RBCs
    purple = smooth[..., 2] - 0.5 * (smooth[..., 0] + smooth[..., 1])
    purple = gaussian(purple - float(bg[2] - 0.5 * (bg[0] + bg[1])), sigma=1.5)
    fg_thr = min(otsu_threshold(grey[valid]), float(bg.mean()) - 0.03)
    foreground = (grey < fg_thr) & valid
    nuc_level = float(np.median(purple[nuc_mask])) if nuc_mask.any() else 0.25
    cyt_thr = max(0.15 * nuc_level, 0.03)
    cyt_like = (purple > cyt_thr) | nuc_mask
    cyt_like = ndi.binary_fill_holes(_binary(ndi.binary_closing, cyt_like, 2))
    foreground = ndi.binary_fill_holes(foreground | (cyt_like & valid))
    n = int(groups.max())
    if n == 0:
        return groups, foreground, _cell_radius(foreground, groups > 0)
    # flood from the nuclei through purple (cytoplasm) first; the nucleus edge is no barrier
    elevation = -np.minimum(purple, 2 * cyt_thr)
    markers = groups.copy()
    near = _dilate(groups > 0, 3)
    background = _erode(~foreground, 2)
    rbc = foreground & ~_dilate(cyt_like, 2)
    rbc = _erode(rbc & (purple < 0.5 * cyt_thr), 3)
    markers[background & ~near] = n + 1
    markers[rbc & ~near & (markers == 0)] = n + 2
    ws = watershed(elevation, markers, mask=valid)
    cells = np.where(ws <= n, ws, 0).astype(np.int32)
    # bound the growth: at most `growth` x the nucleus group's equivalent radius away
    out = np.zeros_like(cells)
    for p in regionprops(groups):
        r_eq = np.sqrt(p.area / np.pi)
        r0, c0, r1, c1 = p.bbox
        pad = int(np.ceil(growth * r_eq)) + 2
        sl = (slice(max(r0 - pad, 0), r1 + pad), slice(max(c0 - pad, 0), c1 + pad))
        core = groups[sl] == p.label
        dist = ndi.distance_transform_edt(~core)
        region = (cells[sl] == p.label) & (dist <= growth * r_eq)
        region = _binary(ndi.binary_opening, region, 2) | core
        region = ndi.binary_fill_holes(region)
        lab, _ = ndi.label(region)
        keep = np.unique(lab[core])
        region = np.isin(lab, keep[keep > 0])
        sub = out[sl]
        sub[region & (sub == 0)] = p.label
    out = fill_label_holes(out)
    return out, foreground, _cell_radius(foreground, _dilate(out > 0, 2))


def _segment_stained(
    rgb: np.ndarray, valid: np.ndarray, *, target: str, min_area: int
) -> np.ndarray:
    nuc = gaussian(nucleus_channel(rgb), sigma=1.0, preserve_range=True)
    min_nucleus_area = max(int(min_area), 30)
    mask, groups = _nucleus_groups(nuc, valid, min_nucleus_area=min_nucleus_area, lobe_gap=6)
    cells, foreground, radius = _grow_cells(rgb, valid, groups, mask, growth=_GROWTH)
    if radius > 0 and cells.max() > 0:
        # a nucleated cell's chromatin covers at least ~15 % of a red blood cell's area; smaller
        # purple objects are platelets
        chrom = np.bincount(groups.ravel(), minlength=int(groups.max()) + 1)
        small = chrom < 0.15 * np.pi * radius**2
        small[0] = False
        cells[small[cells]] = 0
    if target == "wbc":
        return cells
    # all other cells: foreground minus the nucleated cells, split by distance watershed
    rest = foreground & (cells == 0)
    rest = _binary(ndi.binary_opening, rest, 2)
    d = int(max(3, 0.7 * radius, 0.5 * np.sqrt(max(min_area, 1))))
    others = split_touching(rest, min_distance=d)
    others[others > 0] += int(cells.max())
    return np.where(cells > 0, cells, others).astype(np.int32)


# --------------------------------------------------------------------------------------------
# public API


def segment(
    plane,
    *,
    stain: str = "auto",
    min_area: int = 150,
    max_area: int = 0,
    exclude_border: bool = False,
    target: str = "auto",
) -> np.ndarray:
    """Segment the cells of one plane without any model weights.

    Parameters
    ----------
    plane : ndarray
        ``(Y, X)`` grey (any dtype, float included; NaN pixels are background, with a warning) or
        ``(Y, X, 3)`` RGB. Not modified.
    stain : {"auto", "stained", "label-free", "qpi", "brightfield", "phase-contrast"}, optional
        Which pipeline (see the module docstring); ``"auto"`` picks ``"stained"`` for RGB planes
        with stain-like colour, else the detected label-free modality; ``"label-free"`` always
        detects a label-free one. Default ``"auto"``.
    min_area : int, optional
        Smallest object kept, in pixels; also sets the scale of the smoothing and of the watershed
        seeds. Default 150.
    max_area : int, optional
        Largest object kept, in pixels; 0 = no limit. Default 0.
    exclude_border : bool, optional
        Drop objects touching the image border. Default False.
    target : {"auto", "cells", "wbc"}, optional
        ``"wbc"``: only nucleated cells (white blood cells) of stained planes, not the red blood
        cells. ``"cells"``: every cell. ``"auto"``: ``"wbc"`` for stained planes (haematology
        users annotate white blood cells), ``"cells"`` for label-free planes. Label-free planes
        always segment every cell. Default ``"auto"``.

    Returns
    -------
    ndarray
        int32 ``(Y, X)`` instance labels, 0 = background, objects numbered 1..n.

    Raises
    ------
    CellseekError
        On a plane that is not 2-D grey or RGB, or whose pixels are all NaN, or on an unknown
        ``stain`` or ``target``.
    """
    if target not in TARGETS:
        raise CellseekError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if stain not in STAINS:
        raise CellseekError(f"unknown stain {stain!r}; choose one of {', '.join(STAINS)}")
    data, valid, is_rgb = _prepare(plane)
    if is_rgb:
        mode = "stained" if stain == "stained" else "label-free"
        if stain == "auto":
            mode = "stained" if is_stained(data) else "label-free"
    else:
        if stain == "stained":
            logger.warning("stain='stained' needs an RGB plane; using the label-free pipeline")
        mode = "label-free"
    if mode == "stained":
        tgt = "wbc" if target == "auto" else target
        labels = _segment_stained(data, valid, target=tgt, min_area=min_area)
    else:
        grey = data.mean(axis=-1) if is_rgb else data
        mode = stain if stain in LABEL_FREE else "auto"
        labels = segment_label_free(grey, valid, modality=mode, min_area=min_area)
    labels[~valid] = 0
    logger.debug("classical.segment: %s pipeline, %d objects before filtering", mode, labels.max())
    return filter_labels(
        labels, min_area=min_area, max_area=max_area, exclude_border=exclude_border
    )


#: Short side (pixels) at which :func:`central_cell_mask` segments a crop.
_CROP_WORK_SIZE = 192


def _downsample(arr: np.ndarray, f: int) -> np.ndarray:
    """Block-mean downsampling by an integer factor (strided when the plane holds NaN)."""
    if f == 1:
        return arr
    h, w = (arr.shape[0] // f) * f, (arr.shape[1] // f) * f
    a = arr[:h, :w]
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        return a[::f, ::f]
    blocks = np.zeros((h // f, w // f, *a.shape[2:]), np.float32)
    for i in range(f):
        for j in range(f):
            blocks += a[i::f, j::f]
    blocks /= f * f
    if np.issubdtype(arr.dtype, np.integer):
        return np.round(blocks).astype(arr.dtype)
    return blocks


def central_cell_mask(image, *, stain: str = "auto") -> np.ndarray:
    """Mask of the cell nearest the centre of a single-cell crop.

    Parameters
    ----------
    image : ndarray
        ``(Y, X)`` grey or ``(Y, X, 3)`` RGB crop with the cell of interest near its centre.
    stain : {"auto", "stained", "label-free"}, optional
        As in :func:`segment`; stained crops segment the nucleated cell (cell body including the
        cytoplasm). Default ``"auto"``.

    Returns
    -------
    ndarray
        bool ``(Y, X)``. When nothing is found, a centred disc of radius ``min(Y, X) / 4``.
    """
    arr = np.asarray(image)
    shape = arr.shape[:2]
    if arr.ndim not in (2, 3) or min(shape) < 1:
        raise CellseekError(f"cannot segment an image of shape {arr.shape}")
    # single-cell crops are segmented at about 192 px on the short side (speed), then upsampled
    f = max(1, int(round(min(shape) / _CROP_WORK_SIZE)))
    small = _downsample(arr, f)
    min_area = max(30, int(0.002 * small.shape[0] * small.shape[1]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            modality = resolve_modality(small, stain)
            if modality == "stained":
                labels = segment(small, stain="stained", min_area=min_area, target="auto")
            else:
                data, valid, is_rgb = _prepare(small)
                grey = data.mean(axis=-1) if is_rgb else data
                obj = central_object(grey, valid, modality=modality, min_area=min_area)
                labels = np.zeros(small.shape[:2], np.int32) if obj is None else obj.astype(
                    np.int32)
    except CellseekError:
        labels = np.zeros(small.shape[:2], np.int32)
    if f > 1:
        labels = np.repeat(np.repeat(labels, f, axis=0), f, axis=1)
        pad = ((0, max(shape[0] - labels.shape[0], 0)), (0, max(shape[1] - labels.shape[1], 0)))
        labels = np.pad(labels, pad, mode="edge")[: shape[0], : shape[1]]
    if labels.max() > 0:
        cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
        at_centre = labels[int(round(cy)), int(round(cx))]
        if at_centre > 0:
            return labels == at_centre
        yy, xx = np.ogrid[: shape[0], : shape[1]]
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2 + np.zeros(shape)
        ids = np.arange(1, int(labels.max()) + 1)
        nearest = np.asarray(ndi.minimum(d2, labels, ids), float)
        return labels == ids[int(np.nanargmin(nearest))]
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    r = min(shape) / 4
    return (yy - (shape[0] - 1) / 2) ** 2 + (xx - (shape[1] - 1) / 2) ** 2 <= r * r
