"""The offline hand-crafted embedder: shape, size, stain or label-free contrast, texture features.

No weights and no torch: it works on any machine and is the default of the ``offline`` preset.
Every crop is classed as stained or label-free and measured with the groups of its modality
(:mod:`cellseek.zoo.classical_features`; ``docs/classical.md`` lists every feature). Each
feature is standardised with a *fixed* robust centre and scale per modality (median and IQR over
unlabelled calibration crops, stored in ``classical_scaling.json`` next to this module) and
clipped to [-5, 5]; groups that do not apply to a crop's modality, and the size group when the
crop's pixel size is unknown, are 0 (neutral for the cosine similarity). Each group is then
scaled by ``sqrt(w_g / (W_m d_g))`` (``W_m`` the total weight of the modality's groups) so that
the cosine similarity of two embeddings is a weighted mean of per-group similarities regardless
of how many features a group has. Nothing is fitted on the data being embedded; per-source
centring is the job of :mod:`cellseek.search.align`.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cellseek.errors import CellseekError
from cellseek.zoo.base import ModelSpec
from cellseek.zoo.classical_features import (
    FEATURE_NAMES,
    GROUPS,
    MODALITIES,
    MODALITY_GROUPS,
    raw_features,
)

logger = logging.getLogger(__name__)

#: Side of the square crop the features are measured on.
INPUT_SIZE = 128
#: Default relative weight of each group in the cosine similarity.
DEFAULT_GROUP_WEIGHTS = dict.fromkeys(GROUPS, 1.0)
#: Default Gaussian pre-smoothing (pixels at :data:`INPUT_SIZE`).
DEFAULT_SMOOTH = 1.0
#: Default appearance normalisation applied to each crop (see :mod:`cellseek.zoo.normalise`).
DEFAULT_NORMALISE = "none"
#: Embedding size.
FEATURE_DIM = sum(len(FEATURE_NAMES[g]) for g in GROUPS)
#: Version of the feature space (1: the 107 stained-smear features of cellseek <= 0.1;
#: 2: modality-aware stained / label-free groups, shape with Zernike moments, size).
VERSION = 2
#: Where the fixed per-modality, per-feature centre / scale live.
SCALING_FILE = Path(__file__).with_name("classical_scaling.json")
#: Standardised features are clipped to this absolute value.
CLIP = 5.0
#: Centre and scale of the ``size`` group when no calibration crop had a known pixel size
#: (a priori, for both modalities): a cell of about 100 um^2 (11 um across, 12 x 10 um axes),
#: within-population spreads of 0.5 in log area and 0.25 in log axis length.
SIZE_SCALING = {"log_area": (4.6, 0.5), "log_major": (2.5, 0.25), "log_minor": (2.3, 0.25)}

SPEC = ModelSpec(
    name="classical",
    backend="classical",
    factory="cellseek.zoo.classical:build",
    weights_id="",
    dim=FEATURE_DIM,
    input_size=INPUT_SIZE,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    licence="BSD-3-Clause",
    source="cellseek (hand-crafted, no weights)",
    description="Hand-crafted shape, size, stain / label-free contrast and texture features "
    "(offline, CPU)",
    version=VERSION,
)


def feature_names() -> list[str]:
    """Names of the :data:`FEATURE_DIM` output features, in order."""
    return [n for g in GROUPS for n in FEATURE_NAMES[g]]


def group_slices() -> dict[str, slice]:
    """Column range of every group in the embedding."""
    out, start = {}, 0
    for g in GROUPS:
        out[g] = slice(start, start + len(FEATURE_NAMES[g]))
        start += len(FEATURE_NAMES[g])
    return out


def load_scaling(path: Path = SCALING_FILE) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fixed centre and scale of every feature, per modality (identity where not listed).

    Raises
    ------
    CellseekError
        When the file exists but is not a scaling table of this feature version.
    """
    names = feature_names()
    out = {}
    table = {}
    if path.is_file():
        table = json.loads(path.read_text())
        if table.get("version") != VERSION:
            raise CellseekError(
                f"{path}: scaling table of classical features version {table.get('version')}, "
                f"this cellseek computes version {VERSION}; recalibrate "
                "(scripts/eval_labelfree.py calibrate)"
            )
    else:
        logger.warning("%s not found: classical features are not standardised", path)
    for modality in MODALITIES:
        centre = np.zeros(len(names), np.float32)
        scale = np.ones(len(names), np.float32)
        rows = table.get(modality, {})
        for j, name in enumerate(names):
            if name in rows:
                centre[j], scale[j] = rows[name]
        out[modality] = (centre, np.maximum(scale, 1e-6))
    return out


def column_weights(group_weights: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Per-modality column weights ``sqrt(w_g / (W_m d_g))`` (0 outside the modality's groups)."""
    out = {}
    for modality in MODALITIES:
        groups = MODALITY_GROUPS[modality]
        tot = sum(float(group_weights.get(g, 0.0)) for g in groups) or 1.0
        out[modality] = np.concatenate(
            [
                np.full(
                    len(FEATURE_NAMES[g]),
                    np.sqrt(float(group_weights.get(g, 0.0)) / tot / len(FEATURE_NAMES[g]))
                    if g in groups else 0.0,
                )
                for g in GROUPS
            ]
        ).astype(np.float32)  # fmt: skip
    return out


def raw_modalities(raw: np.ndarray) -> np.ndarray:
    """Modality of every row of :meth:`ClassicalEmbedder.raw` output (stained rows have the
    ``nucleus`` group, label-free rows the ``intensity`` group)."""
    col = group_slices()["nucleus"].start
    return np.where(np.isfinite(raw[:, col]), "stained", "label-free").astype(object)


def _resize_batch(crops: np.ndarray, masks: np.ndarray, size: int):
    from skimage.transform import resize

    if crops.shape[1:3] == (size, size):
        return crops, masks
    c = np.stack([resize(x, (size, size), order=1, anti_aliasing=True) for x in crops])
    m = np.stack([resize(x.astype(np.float32), (size, size), order=1) >= 0.5 for x in masks])
    return c.astype(np.float32), m


class ClassicalEmbedder:
    """Hand-crafted feature embedder (see module docstring).

    Parameters
    ----------
    spec : ModelSpec, optional
        Defaults to :data:`SPEC`.
    group_weights : dict, optional
        Relative weight per feature group (missing groups get 0); default
        :data:`DEFAULT_GROUP_WEIGHTS`.
    smooth : float
        Gaussian pre-smoothing sigma in pixels (see :func:`raw_features`).
    normalise : str
        Appearance normalisation of each crop before measuring (a method of
        :func:`cellseek.zoo.normalise.normalise_crops`).
    standardise : bool
        Apply the fixed centre / scale (False returns raw features with NaN mapped to 0).
    """

    #: :func:`cellseek.zoo.embed.embed_crops` passes each crop's pixel size to :meth:`embed`.
    uses_pixel_size = True

    def __init__(
        self,
        spec: ModelSpec | None = None,
        *,
        group_weights: dict | None = None,
        smooth: float = DEFAULT_SMOOTH,
        normalise: str = DEFAULT_NORMALISE,
        standardise: bool = True,
    ) -> None:
        self.spec = spec or SPEC
        self.smooth = float(smooth)
        self.normalise = normalise
        self.standardise = standardise
        gw = DEFAULT_GROUP_WEIGHTS if group_weights is None else group_weights
        self.scaling = load_scaling()
        self.column_weight = column_weights(gw)

    def raw(self, crops: np.ndarray, masks: np.ndarray, *, pixel_size=None) -> np.ndarray:
        """Unstandardised features ``(N, FEATURE_DIM)``; NaN where a group does not apply.

        See :meth:`embed` for the parameters.
        """
        crops = np.clip(np.nan_to_num(np.asarray(crops, np.float32)), 0.0, 1.0)
        masks = np.asarray(masks, bool)
        if crops.ndim == 3:
            crops = np.repeat(crops[..., None], 3, axis=-1)
        if crops.shape[0] == 0:
            return np.zeros((0, FEATURE_DIM), np.float32)
        size = self.spec.input_size
        if pixel_size is not None:
            pixel_size = np.broadcast_to(np.asarray(pixel_size, np.float64), (len(crops),))
            pixel_size = pixel_size * (crops.shape[1] / size)
        crops, masks = _resize_batch(crops, masks, size)
        if self.normalise != "none":
            from cellseek.zoo.normalise import normalise_crops

            crops = normalise_crops(crops, masks, self.normalise)
        groups = raw_features(crops, masks, smooth=self.smooth, pixel_size=pixel_size)
        mods = groups["modality"]
        parts = []
        for g in GROUPS:
            v = groups[g]
            applies = np.array([g in MODALITY_GROUPS[m] for m in mods])[:, None]
            known = np.isfinite(v).all(axis=1, keepdims=True) | (g != "size")
            # a measurement that failed (NaN, inf) counts as 0; a group that does not apply
            # (or a size without pixel size) stays NaN
            v = np.where(applies & known, np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0),
                         np.nan)  # fmt: skip
            parts.append(v)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def embed(self, crops: np.ndarray, masks: np.ndarray, *, pixel_size=None) -> np.ndarray:
        """Embed a batch.

        Parameters
        ----------
        crops : ndarray
            float32 ``(N, H, W, 3)`` in [0, 1] (grey ``(N, H, W)`` is accepted).
        masks : ndarray
            bool ``(N, H, W)``.
        pixel_size : float or array-like, optional
            Side of one crop pixel at the given size ``H`` (scalar or ``(N,)``): micrometres
            when the image's pixel size is known, otherwise image pixels (a per-source unit that
            the source alignment removes). Without it the ``size`` group is neutral.

        Returns
        -------
        ndarray
            float32 ``(N, FEATURE_DIM)``.
        """
        return self.from_raw(self.raw(crops, masks, pixel_size=pixel_size))

    def from_raw(self, raw: np.ndarray) -> np.ndarray:
        """Standardise and group-weight raw features (:meth:`raw`) into embeddings."""
        raw = np.asarray(raw, np.float32)
        if not self.standardise:
            return np.nan_to_num(raw, nan=0.0)
        mods = raw_modalities(raw)
        out = np.zeros_like(raw)
        for modality in MODALITIES:
            rows = mods == modality
            if rows.any():
                centre, scale = self.scaling[modality]
                z = np.clip((raw[rows] - centre) / scale, -CLIP, CLIP)
                out[rows] = np.nan_to_num(z, nan=0.0) * self.column_weight[modality]
        return out.astype(np.float32)


def build(spec: ModelSpec | None = None, *, weights_dir=None, device="auto", checkpoint=None):
    """Factory for the registry: a :class:`ClassicalEmbedder` (weights arguments are ignored)."""
    return ClassicalEmbedder(spec)


def _source_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise median and robust spread (IQR / 1.349, else std, else 1) of one source."""
    med = np.nanmedian(x, axis=0)
    q1, q3 = np.nanpercentile(x, [25, 75], axis=0)
    scale = (q3 - q1) / 1.349
    std = np.nanstd(x, axis=0)
    return med, np.where(scale > 1e-6, scale, np.where(std > 1e-6, std, np.nan))


def calibrate(raw_by_source: Mapping[str, np.ndarray], path: Path = SCALING_FILE,
              note: str = "", keep: Mapping[str, dict] | None = None) -> dict:  # fmt: skip
    """Write the fixed centre / scale of every feature, per modality, to ``path``.

    For each modality, every source with at least 10 crops of it gives a median and a robust
    spread (IQR / 1.349) per feature; the centre is the median of the source medians and the
    scale the mean of the source spreads. The scale is thus the typical spread *within* one
    source (one device, one preparation), which is what a nearest-neighbour search inside a
    source compares; offsets between sources are the job of the source alignment. No labels are
    used.

    Parameters
    ----------
    raw_by_source : mapping
        source name -> ``(N, FEATURE_DIM)`` raw features (:meth:`ClassicalEmbedder.raw`) of
        unlabelled calibration crops.
    path : Path
        Output JSON.
    note : str
        What the table was fitted on (stored in the file).
    keep : mapping, optional
        modality -> ``{feature: [centre, scale]}`` written as given instead of fitted (the
        stained table of version 1, see ``docs/classical.md``); missing features are fitted.

    Returns
    -------
    dict
        The table written.
    """
    names = feature_names()
    table: dict = {"version": VERSION, "fitted_on": {}, "note": note}
    keep = dict(keep or {})
    for modality in MODALITIES:
        meds, scales = [], []
        for source, raw in raw_by_source.items():
            rows = raw_modalities(raw) == modality
            if rows.sum() >= 10:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    med, scale = _source_stats(np.asarray(raw[rows], np.float64))
                meds.append(med)
                scales.append(scale)
                table["fitted_on"].setdefault(modality, {})[source] = int(rows.sum())
        if not meds and modality not in keep:
            continue
        if not meds:
            meds = scales = [np.full(len(names), np.nan)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # features absent from a source
            centre = np.nanmedian(np.stack(meds), axis=0)
            scale = np.nanmean(np.stack(scales), axis=0)
        scale = np.where(np.isfinite(scale), scale, 1.0)
        table[modality] = {
            n: [round(float(c), 6), round(float(s), 6)]
            for n, c, s in zip(names, centre, scale) if np.isfinite(c)
        }  # fmt: skip
        for n, cs in SIZE_SCALING.items():
            table[modality].setdefault(n, list(cs))
        if modality in keep:
            table[modality].update({n: list(v) for n, v in keep[modality].items()})
            table["fitted_on"][modality] = {"kept": len(keep[modality])}
    path.write_text(json.dumps(table, indent=1) + "\n")
    return table
