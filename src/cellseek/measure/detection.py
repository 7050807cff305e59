"""Match segmented objects to ground-truth bounding boxes (detection recall and precision).

Each labelled object is reduced to its bounding box; predicted and ground-truth boxes are paired
one-to-one by maximising the total box IoU (Hungarian assignment) among the pairs whose IoU reaches
the threshold. Pure NumPy/SciPy.

Boxes are ``(row_min, col_min, row_max, col_max)``, half-open, in pixels, like
:attr:`cellseek.types.Cell.bbox`. VOC boxes ``(xmin, ymin, xmax, ymax)`` convert with
:func:`voc_to_boxes`.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

logger = logging.getLogger(__name__)

__all__ = ["box_iou", "label_boxes", "match_boxes", "voc_to_boxes"]


def voc_to_boxes(voc) -> np.ndarray:
    """Convert VOC ``(xmin, ymin, xmax, ymax)`` boxes to ``(row_min, col_min, row_max, col_max)``.

    Parameters
    ----------
    voc : array-like
        ``(N, 4)`` VOC boxes. VOC coordinates are 1-based and inclusive; the conversion keeps the
        numbers (``xmax`` is read as a half-open end), which changes IoU by well under 1 % for
        cell-sized boxes.

    Returns
    -------
    ndarray
        float64 ``(N, 4)``.
    """
    voc = np.asarray(voc, dtype=np.float64).reshape(-1, 4)
    return voc[:, [1, 0, 3, 2]].copy()


def label_boxes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box of every object in a label image.

    Parameters
    ----------
    labels : ndarray
        Integer ``(Y, X)`` instance labels, 0 = background.

    Returns
    -------
    ids : ndarray
        int64 ``(N,)`` label values present, ascending.
    boxes : ndarray
        float64 ``(N, 4)`` ``(row_min, col_min, row_max, col_max)``, half-open.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer, got {labels.dtype}")
    ids = np.unique(labels)
    ids = ids[ids > 0].astype(np.int64)
    boxes = np.zeros((ids.size, 4), np.float64)
    if ids.size == 0:
        return ids, boxes
    slices = ndi.find_objects(labels.astype(np.int64, copy=False))
    for i, lab in enumerate(ids):
        sl = slices[int(lab) - 1]
        boxes[i] = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
    return ids, boxes


def box_iou(a, b) -> np.ndarray:
    """Pairwise intersection over union of two sets of boxes.

    Parameters
    ----------
    a, b : array-like
        ``(N, 4)`` and ``(M, 4)`` boxes ``(row_min, col_min, row_max, col_max)``, half-open.

    Returns
    -------
    ndarray
        float64 ``(N, M)``; 0 where a box has no area.
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    r0 = np.maximum(a[:, None, 0], b[None, :, 0])
    c0 = np.maximum(a[:, None, 1], b[None, :, 1])
    r1 = np.minimum(a[:, None, 2], b[None, :, 2])
    c1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(r1 - r0, 0, None) * np.clip(c1 - c0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def match_boxes(labels: np.ndarray, boxes, iou: float = 0.5) -> dict:
    """Match labelled objects to ground-truth boxes one-to-one by bounding-box IoU.

    Parameters
    ----------
    labels : ndarray
        Integer ``(Y, X)`` instance labels, 0 = background.
    boxes : array-like
        ``(M, 4)`` ground-truth boxes ``(row_min, col_min, row_max, col_max)``, half-open (see
        :func:`voc_to_boxes`).
    iou : float, optional
        A pair counts as a match when its box IoU is at least this. Default 0.5.

    Returns
    -------
    dict
        ``recall`` (matched / ground-truth boxes; 1.0 when there are none), ``precision``
        (matched / predicted objects; 1.0 when there are none), ``f1``, ``n_pred``, ``n_gt``,
        ``n_matched``, ``matches`` (predicted label -> ground-truth index), ``ious`` (predicted
        label -> IoU of its match), ``mean_iou`` (over matches; NaN when none) and ``best_iou``
        (per ground-truth box, the best IoU with any predicted object; ``(M,)`` array).
    """
    ids, pred = label_boxes(labels)
    gt = np.asarray(boxes, np.float64).reshape(-1, 4)
    mat = box_iou(pred, gt)
    matches: dict[int, int] = {}
    ious: dict[int, float] = {}
    if mat.size:
        # Hungarian assignment on IoU, restricted to admissible pairs.
        cost = np.where(mat >= iou, -mat, 0.0)
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols):
            if mat[r, c] >= iou and mat[r, c] > 0:
                matches[int(ids[r])] = int(c)
                ious[int(ids[r])] = float(mat[r, c])
    n_pred, n_gt, n_match = len(ids), len(gt), len(matches)
    recall = n_match / n_gt if n_gt else 1.0
    precision = n_match / n_pred if n_pred else 1.0
    f1 = 2 * n_match / (n_pred + n_gt) if (n_pred + n_gt) else 1.0
    return {
        "recall": recall,
        "precision": precision,
        "f1": f1,
        "n_pred": n_pred,
        "n_gt": n_gt,
        "n_matched": n_match,
        "matches": matches,
        "ious": ious,
        "mean_iou": float(np.mean(list(ious.values()))) if ious else float("nan"),
        "best_iou": mat.max(axis=0) if mat.size else np.zeros(len(gt)),
    }
