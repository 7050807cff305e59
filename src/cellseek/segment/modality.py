"""Which kind of image a plane is: stained, or one of three label-free appearances.

The classical segmenter picks its pipeline by modality (:func:`detect_modality`), as it picked
the stained pipeline by colour before. Label-free images are told apart by where the cells sit
relative to the background level (the mode of the histogram):

``"qpi"``
    Cells brighter than the background: quantitative phase (QPI) and refractive-index
    (holotomography, e.g. Nanolive) images, where the phase delay / refractive index excess is
    positive inside a cell; fluorescence looks the same. A dark halo (phase-unwrapping or
    background-subtraction artefact) may surround the cell and is not part of it.
``"brightfield"``
    Cells darker than a bright background (absorption; in-focus brightfield of dense cells).
``"phase-contrast"``
    Cells both darker and brighter than a mid-grey background: phase contrast (dark body,
    bright halo), DIC, and defocused brightfield such as imaging-flow-cytometer brightfield
    (bright ring inside a dark rim). The segmenter treats them alike.

The decision uses the plane's extreme departures from the background (0.1th and 99.9th
percentiles of the smoothed plane): positive departures more than :data:`QPI_RATIO` times the
negative ones give ``"qpi"``, negative ones more than ``1 / BRIGHTFIELD_RATIO`` times the
positive ones give ``"brightfield"``, anything in between ``"phase-contrast"``.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi

logger = logging.getLogger(__name__)

__all__ = ["LABEL_FREE", "MODALITIES", "background_level", "detect_modality", "departures"]

#: Label-free modalities, in the order of the module docstring.
LABEL_FREE = ("qpi", "brightfield", "phase-contrast")
#: Every modality :func:`detect_modality` returns.
MODALITIES = ("stained", *LABEL_FREE)
#: Positive over negative extreme departure above which a plane is ``"qpi"``.
QPI_RATIO = 2.0
#: Positive over negative extreme departure below which a plane is ``"brightfield"``.
BRIGHTFIELD_RATIO = 0.5


def background_level(grey: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Background level of a grey plane in [0, 1]: the mode of its smoothed 256-bin histogram."""
    values = grey[valid] if valid is not None else grey.ravel()
    hist, edges = np.histogram(values, bins=256, range=(0, 1))
    hist = ndi.gaussian_filter1d(hist.astype(float), 2)
    k = int(np.argmax(hist))
    return float(0.5 * (edges[k] + edges[k + 1]))


def departures(grey: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, float, float]:
    """Background level and the extreme positive and negative departures from it.

    Parameters
    ----------
    grey : ndarray
        float ``(Y, X)`` scaled to [0, 1] (e.g. between its 0.5th and 99.5th percentiles) and
        lightly smoothed.
    valid : ndarray, optional
        bool ``(Y, X)``, pixels to use.

    Returns
    -------
    background, positive, negative : float
        The background level, ``p99.9 - background`` and ``background - p0.1`` (both >= 0).
    """
    values = grey[valid] if valid is not None else grey.ravel()
    bg = background_level(grey, valid)
    step = max(1, values.size // 500_000)
    lo, hi = np.percentile(values[::step], [0.1, 99.9])
    return bg, max(float(hi) - bg, 0.0), max(bg - float(lo), 0.0)


def label_free_modality(grey: np.ndarray, valid: np.ndarray | None = None) -> str:
    """``"qpi"``, ``"brightfield"`` or ``"phase-contrast"`` for a grey plane (see the module
    docstring; ``grey`` as in :func:`departures`)."""
    _, pos, neg = departures(grey, valid)
    ratio = pos / max(neg, 1e-6)
    if ratio > QPI_RATIO:
        return "qpi"
    if ratio < BRIGHTFIELD_RATIO:
        return "brightfield"
    return "phase-contrast"


def detect_modality(plane) -> str:
    """The modality of one plane: ``"stained"``, ``"qpi"``, ``"brightfield"`` or
    ``"phase-contrast"``.

    Parameters
    ----------
    plane : ndarray
        ``(Y, X)`` grey of any dtype (NaN ignored) or ``(Y, X, 3|4)`` RGB. Not modified.

    Returns
    -------
    str
        ``"stained"`` for RGB planes whose colours depart from the grey axis
        (:func:`cellseek.segment.stain.is_stained`); otherwise the label-free modality of the
        mean channel.
    """
    from cellseek.segment.stain import is_stained, to_float_rgb

    arr = np.asarray(plane)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb, valid = to_float_rgb(arr)
        if is_stained(rgb):
            return "stained"
        grey = rgb.mean(axis=-1)
    elif arr.ndim == 2:
        grey = arr.astype(np.float32)
        valid = np.isfinite(grey)
    else:
        raise ValueError(f"a plane must be (Y, X) or (Y, X, 3), got shape {arr.shape}")
    if not valid.any():
        return "phase-contrast"
    lo, hi = np.percentile(grey[valid], [0.5, 99.5])
    g = np.clip((np.where(valid, grey, lo) - lo) / max(float(hi - lo), 1e-12), 0, 1)
    g = ndi.gaussian_filter(g, 1.0)
    modality = label_free_modality(g, valid)
    logger.debug("detect_modality: %s", modality)
    return modality
