"""Post-processing of instance label images: area and border filters, sequential relabelling."""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi

logger = logging.getLogger(__name__)

__all__ = ["border_labels", "fill_label_holes", "filter_labels", "otsu_threshold"]


def border_labels(labels: np.ndarray) -> np.ndarray:
    """Label values of the objects that touch the image border.

    Parameters
    ----------
    labels : ndarray
        Integer ``(Y, X)`` instance labels, 0 = background.

    Returns
    -------
    ndarray
        Sorted unique label values (> 0) found on the outermost rows and columns.
    """
    labels = np.asarray(labels)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    vals = np.unique(edge)
    return vals[vals > 0]


def filter_labels(
    labels: np.ndarray,
    *,
    min_area: int = 0,
    max_area: int = 0,
    exclude_border: bool = False,
) -> np.ndarray:
    """Drop objects by area and border contact, then relabel sequentially.

    Parameters
    ----------
    labels : ndarray
        Integer ``(Y, X)`` instance labels, 0 = background. Not modified.
    min_area : int, optional
        Objects with fewer pixels are dropped. Default 0 (keep all).
    max_area : int, optional
        Objects with more pixels are dropped; 0 = no upper limit. Default 0.
    exclude_border : bool, optional
        Drop objects touching the image border. Default False.

    Returns
    -------
    ndarray
        int32 labels of the same shape, values 1..n in order of the original label values.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array, got {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be non-negative")
    lab = labels.astype(np.int64, copy=False)
    nmax = int(lab.max()) if lab.size else 0
    if nmax == 0:
        return np.zeros(labels.shape, np.int32)
    areas = np.bincount(lab.ravel(), minlength=nmax + 1)
    keep = areas > 0
    keep[0] = False
    if min_area > 0:
        keep &= areas >= min_area
    if max_area > 0:
        keep &= areas <= max_area
    if exclude_border:
        keep[border_labels(lab)] = False
    lut = np.zeros(nmax + 1, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    out = lut[lab]
    dropped = int((areas[1:] > 0).sum()) - int(keep.sum())
    if dropped:
        logger.debug("filter_labels: dropped %d of %d objects", dropped, dropped + int(keep.sum()))
    return out


def fill_label_holes(labels: np.ndarray) -> np.ndarray:
    """Fill holes inside every object (a hole = background enclosed by one object).

    Parameters
    ----------
    labels : ndarray
        Integer ``(Y, X)`` instance labels. Not modified.

    Returns
    -------
    ndarray
        Labels of the same dtype with holes filled.
    """
    labels = np.asarray(labels)
    out = labels.copy()
    for i, sl in enumerate(ndi.find_objects(labels.astype(np.int64, copy=False)), start=1):
        if sl is None:
            continue
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        mask = labels[sl] == i
        filled = ndi.binary_fill_holes(mask)
        sub = out[sl]
        sub[filled & (sub == 0)] = i
    return out


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of the finite values (a sample of at most about 200,000 of them).

    A constant or empty input gives its value (or 0) instead of scikit-image's error.
    """
    from skimage.filters import threshold_otsu

    values = values[np.isfinite(values)]
    if values.size == 0 or values.min() == values.max():
        return float(values.max()) if values.size else 0.0
    step = max(1, values.size // 200_000)
    return float(threshold_otsu(values[::step]))
