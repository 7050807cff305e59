"""Image plane -> instance labels.

:func:`segment_plane` dispatches to SAM (:mod:`cellseek.segment.sam`, needs weights) or to the
weights-free classical segmenter (:mod:`cellseek.segment.classical`), then applies the area and
border filters of the :class:`~cellseek.config.SegmentConfig`. Both are generators that yield
:class:`~cellseek.types.Progress` and return their result (see :func:`cellseek.types.run_work`).

Nothing heavy is imported here: SAM and its torch dependency load only when SAM is used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from cellseek.config import SegmentConfig
from cellseek.segment.filters import filter_labels
from cellseek.segment.method import METHODS, choose_method
from cellseek.types import Progress, Work

logger = logging.getLogger(__name__)

__all__ = ["METHODS", "choose_method", "filter_labels", "resolve_method", "segment_plane",
           "segment_planes"]


def resolve_method(config: SegmentConfig, *, weights_dir=None, plane=None) -> str:
    """The segmenter :func:`segment_plane` will use: ``"sam"`` or ``"classical"``.

    Parameters
    ----------
    config : SegmentConfig
        ``method="auto"`` is resolved by :func:`cellseek.segment.method.choose_method`: SAM
        when weights of a point-prompted SAM are here, else (LiteMedSAM, which ships with
        cellseek) SAM or classical by the plane's modality, as measured.
    weights_dir : path-like, optional
        Local weights folder handed to the SAM weight lookup (default
        ``$CELLSEEK_WEIGHTS_DIR``).
    plane : ndarray, optional
        The plane; without it, ``"auto"`` is returned when the choice depends on the plane.

    Returns
    -------
    str
    """
    method, reason = choose_method(config, plane, weights_dir=weights_dir)
    if config.method == "auto":
        logger.info("segmentation: %s", reason)
    return method


def segment_plane(
    plane: np.ndarray, config: SegmentConfig | None = None, *, weights_dir=None
) -> Work[np.ndarray]:
    """Segment one plane into instance labels (a generator; see :func:`cellseek.types.run_work`).

    Parameters
    ----------
    plane : ndarray
        ``(Y, X)`` grey or ``(Y, X, 3)`` RGB. Not modified.
    config : SegmentConfig, optional
        Method, stain, target, area and border options. Default ``SegmentConfig()``.
    weights_dir : path-like, optional
        Local weights folder for SAM.

    Yields
    ------
    Progress

    Returns
    -------
    ndarray
        int32 ``(Y, X)`` labels numbered 1..n.

    Raises
    ------
    MissingWeightsError
        ``method="sam"`` without SAM weights.
    CellseekError
        Unusable plane (wrong shape, all NaN) or unknown option.
    """
    config = config or SegmentConfig()
    method = resolve_method(config, weights_dir=weights_dir, plane=plane)
    yield Progress(0, 1, "segment", f"{method} segmentation")
    if method == "sam":
        from cellseek.segment.sam import segment_plane_sam

        labels = yield from segment_plane_sam(plane, config, weights_dir=weights_dir)
    else:
        from cellseek.segment.classical import segment

        labels = segment(
            plane,
            stain=config.stain,
            min_area=config.min_area,
            max_area=config.max_area,
            exclude_border=config.exclude_border,
            target=config.target,
        )
    labels = filter_labels(
        np.asarray(labels),
        min_area=config.min_area,
        max_area=config.max_area,
        exclude_border=config.exclude_border,
    )
    yield Progress(1, 1, "segment", f"{int(labels.max())} objects")
    return labels


def segment_planes(
    planes: Iterable, config: SegmentConfig | None = None, *, weights_dir=None
) -> Work[dict]:
    """Segment a stack plane by plane.

    Parameters
    ----------
    planes : iterable of (t, z, plane)
        E.g. from :func:`cellseek.io.iter_planes`.
    config : SegmentConfig, optional
        As in :func:`segment_plane`.
    weights_dir : path-like, optional
        Local weights folder for SAM.

    Yields
    ------
    Progress
        One per plane (``done`` counts planes; ``total`` is known when ``planes`` has a length).

    Returns
    -------
    dict
        ``(t, z) -> int32 labels``.
    """
    config = config or SegmentConfig()
    total = len(planes) if hasattr(planes, "__len__") else 0
    out: dict = {}
    for i, (t, z, plane) in enumerate(planes):
        yield Progress(i, total, "segment", f"plane t={t} z={z}")
        gen = segment_plane(plane, config, weights_dir=weights_dir)
        out[(t, z)] = yield from gen
    yield Progress(len(out), total or len(out), "segment", "done")
    return out
