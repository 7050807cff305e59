"""Which segmenter ``method="auto"`` uses for a plane, and why (one line for the user).

A SAM model is on every install (LiteMedSAM ships with cellseek), so "SAM when its weights are
here" no longer decides anything. The rule:

* ``method="sam"`` / ``"classical"``: as set.
* ``"auto"`` with SAM weights of a point-prompted model that the SAM choice would use
  (:func:`cellseek.zoo.sam_choice.choose_sam_model`: micro-sam, MobileSAM, SAM): SAM, as before.
* ``"auto"`` when the SAM in use is LiteMedSAM (box prompts from the classical detector): SAM or
  classical **per image modality**, as measured on the shared data (:data:`BOX_SAM_BY_MODALITY`;
  the figures are in docs/segmentation.md). The modality is the classical segmenter's
  (:func:`cellseek.segment.classical.resolve_modality`).

Nothing here imports torch unless two SAM models are present whose order differs between a CPU
and a GPU.
"""

from __future__ import annotations

import logging

import numpy as np

from cellseek.config import SegmentConfig
from cellseek.errors import CellseekError

logger = logging.getLogger(__name__)

__all__ = ["BOX_SAM_BY_MODALITY", "METHODS", "choose_method", "sam_model_in_use"]

#: Accepted values of :attr:`SegmentConfig.method`.
METHODS = ("auto", "sam", "classical")

#: ``method="auto"`` with LiteMedSAM: modality -> (method, the measurement behind it).
BOX_SAM_BY_MODALITY: dict[str, tuple[str, str]] = {
    "stained": ("sam", "on BCCD smears LiteMedSAM, prompted with the classical detector's boxes, "
                "outlined the white cells closer to hand-drawn masks (median IoU 0.92 against "
                "0.89) with the same detections"),
    "brightfield": ("classical", "LiteMedSAM has not been shown to help on brightfield planes "
                    "and costs far more time"),
    "phase-contrast": ("classical", "LiteMedSAM has not been measured on phase-contrast planes"),
    "qpi": ("classical", "LiteMedSAM has not been measured on QPI / fluorescence planes"),
}


def _available(weights_dir) -> list[str]:
    """SAM models whose weights are here (file lookups only; a damaged file counts as absent)."""
    from cellseek.zoo import sam_loader

    found = []
    for name in sam_loader.SAM_MODELS:
        try:
            if name in sam_loader.BOX_PROMPT_MODELS:
                sam_loader.find_sam_checkpoint(name, weights_dir=weights_dir)  # digest checked
                found.append(name)
            elif sam_loader.sam_weights_available(name, weights_dir=weights_dir):
                found.append(name)
        except CellseekError as exc:
            logger.warning("%s", exc)
        except Exception as exc:  # noqa: BLE001 - an unusable lookup means "not here"
            logger.warning("could not check for SAM %s weights (%s)", name, exc)
    return found


def sam_model_in_use(config: SegmentConfig, *, weights_dir=None, device: str = "auto"
                     ) -> str | None:
    """The SAM model ``config`` would segment with on this machine, or None (no weights)."""
    from cellseek.zoo.sam_choice import CPU_PREFERENCE, GPU_PREFERENCE
    from cellseek.zoo.sam_loader import sam_model_name

    here = _available(weights_dir)
    if config.sam_model != "auto":
        name = sam_model_name(config.sam_model)
        return name if name in here else None
    if not here:
        return None
    cpu = next(n for n in CPU_PREFERENCE if n in here)
    gpu = next(n for n in GPU_PREFERENCE if n in here)
    if cpu == gpu:
        return cpu
    from cellseek.zoo.sam_choice import device_kind

    return cpu if device_kind(device) == "cpu" else gpu


def choose_method(config: SegmentConfig, plane: np.ndarray | None = None, *, weights_dir=None,
                  device: str = "auto") -> tuple[str, str]:
    """The segmenter for a plane: ``"sam"``, ``"classical"`` or, without a plane when the
    choice depends on it, ``"auto"``; and why, in one line.

    Parameters
    ----------
    config : SegmentConfig
        ``method``, ``sam_model`` and ``stain`` are used.
    plane : ndarray, optional
        The plane to segment; its modality decides when the SAM in use is LiteMedSAM.
    weights_dir : path-like, optional
        Local weights folder (default ``$CELLSEEK_WEIGHTS_DIR``).
    device : str
        Decides the SAM model only when the CPU and GPU preferences differ.

    Raises
    ------
    CellseekError
        An unknown method.
    """
    method = config.method
    if method not in METHODS:
        raise CellseekError(
            f"unknown segmentation method {method!r}; choose one of {', '.join(METHODS)}")
    if method != "auto":
        return method, f"{method}: set in the segmentation settings"
    from cellseek.zoo.sam_loader import BOX_PROMPT_MODELS

    model = sam_model_in_use(config, weights_dir=weights_dir, device=device)
    if model is None:
        return "classical", (f"classical: no usable weights of SAM {config.sam_model} on this "
                             "machine")
    if model not in BOX_PROMPT_MODELS:
        return "sam", f"SAM ({model}): its weights are on this machine"
    modality = _modality(config, plane)
    if modality is None and plane is not None:
        return "classical", "classical: the plane's modality could not be told"
    if modality is None:
        choices = {m for m, _ in BOX_SAM_BY_MODALITY.values()}
        if len(choices) == 1:
            only = choices.pop()
            return only, f"{only} for every image modality with {model}"
        return "auto", f"SAM ({model}) or classical, by each plane's modality"
    chosen, why = BOX_SAM_BY_MODALITY[modality]
    name = f"SAM ({model})" if chosen == "sam" else "classical"
    return chosen, f"{name} for this {modality} plane: {why} (docs/segmentation.md)"


def _modality(config: SegmentConfig, plane) -> str | None:
    """The plane's modality (``"stained"`` or a label-free one), or None without a plane when
    the settings do not force one."""
    forced = {"stained": "stained", "qpi": "qpi", "brightfield": "brightfield",
              "phase-contrast": "phase-contrast"}
    if config.stain in forced:
        return forced[config.stain]
    if plane is None:
        return None
    from cellseek.segment.classical import resolve_modality

    try:
        return resolve_modality(plane, config.stain)
    except (CellseekError, ValueError, IndexError):
        return None
