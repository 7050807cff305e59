"""The offline hand-crafted embedder: colour, nucleus, histogram, texture and shape features.

No weights and no torch: it works on any machine and is the default of the ``offline`` preset.
Features are described in ``docs/classical.md`` and computed in
:mod:`cellseek.zoo.classical_features`. Each feature is standardised with a *fixed* robust centre
and scale (median and IQR over an unlabelled calibration set of stained blood-cell crops, stored
in ``classical_scaling.json`` next to this module) and clipped to [-5, 5]; each feature group is
then scaled by ``sqrt(w_g / d_g)`` so that the cosine similarity of two embeddings is a weighted
mean of per-group similarities regardless of how many features a group has. Nothing is fitted on
the data being embedded; per-source centring is the job of :mod:`cellseek.search.align`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from cellseek.zoo.base import ModelSpec
from cellseek.zoo.classical_features import FEATURE_NAMES, raw_features

logger = logging.getLogger(__name__)

#: Side of the square crop the features are measured on.
INPUT_SIZE = 128
#: Feature groups, in output order.
GROUPS = ("shape", "nucleus", "colour", "histogram", "texture")
#: Default relative weight of each group in the cosine similarity.
DEFAULT_GROUP_WEIGHTS = {"shape": 1.0, "nucleus": 1.0, "colour": 1.0, "histogram": 1.0,
                         "texture": 1.0}  # fmt: skip
#: Default Gaussian pre-smoothing (pixels at :data:`INPUT_SIZE`).
DEFAULT_SMOOTH = 1.0
#: Default appearance normalisation applied to each crop (see :mod:`cellseek.zoo.normalise`).
DEFAULT_NORMALISE = "none"
#: Embedding size.
FEATURE_DIM = sum(len(FEATURE_NAMES[g]) for g in GROUPS)
#: Where the fixed per-feature centre / scale live.
SCALING_FILE = Path(__file__).with_name("classical_scaling.json")
#: Standardised features are clipped to this absolute value.
CLIP = 5.0

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
    description="Hand-crafted colour, nucleus, texture and shape features (offline, CPU)",
)


def feature_names() -> list[str]:
    """Names of the :data:`FEATURE_DIM` output features, in order."""
    return [n for g in GROUPS for n in FEATURE_NAMES[g]]


def load_scaling(path: Path = SCALING_FILE) -> tuple[np.ndarray, np.ndarray]:
    """Fixed per-feature centre and scale; identity when the file is absent."""
    names = feature_names()
    centre = np.zeros(len(names), np.float32)
    scale = np.ones(len(names), np.float32)
    if not path.is_file():
        logger.warning("%s not found: classical features are not standardised", path)
        return centre, scale
    table = json.loads(path.read_text())
    for j, name in enumerate(names):
        if name in table:
            centre[j], scale[j] = table[name]
    return centre, np.maximum(scale, 1e-6)


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
        Apply the fixed centre / scale (False returns raw features, for calibration).
    """

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
        self.centre, self.scale = load_scaling()
        tot = sum(float(gw.get(g, 0.0)) for g in GROUPS) or 1.0
        self.column_weight = np.concatenate(
            [
                np.full(
                    len(FEATURE_NAMES[g]),
                    np.sqrt(float(gw.get(g, 0.0)) / tot / len(FEATURE_NAMES[g])),
                )
                for g in GROUPS
            ]
        ).astype(np.float32)

    def raw(self, crops: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Unstandardised features ``(N, FEATURE_DIM)``."""
        crops = np.clip(np.nan_to_num(np.asarray(crops, np.float32)), 0.0, 1.0)
        masks = np.asarray(masks, bool)
        if crops.ndim == 3:
            crops = np.repeat(crops[..., None], 3, axis=-1)
        if crops.shape[0] == 0:
            return np.zeros((0, FEATURE_DIM), np.float32)
        size = self.spec.input_size
        crops, masks = _resize_batch(crops, masks, size)
        if self.normalise != "none":
            from cellseek.zoo.normalise import normalise_crops

            crops = normalise_crops(crops, masks, self.normalise)
        groups = raw_features(crops, masks, smooth=self.smooth)
        out = np.concatenate([groups[g] for g in GROUPS], axis=1)
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def embed(self, crops: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Embed a batch.

        Parameters
        ----------
        crops : ndarray
            float32 ``(N, H, W, 3)`` in [0, 1] (grey ``(N, H, W)`` is accepted).
        masks : ndarray
            bool ``(N, H, W)``.

        Returns
        -------
        ndarray
            float32 ``(N, FEATURE_DIM)``.
        """
        return self.from_raw(self.raw(crops, masks))

    def from_raw(self, raw: np.ndarray) -> np.ndarray:
        """Standardise and group-weight raw features (:meth:`raw`) into embeddings."""
        if not self.standardise:
            return np.asarray(raw, np.float32)
        z = np.clip((raw - self.centre) / self.scale, -CLIP, CLIP)
        return (z * self.column_weight).astype(np.float32)


def build(spec: ModelSpec | None = None, *, weights_dir=None, device="auto", checkpoint=None):
    """Factory for the registry: a :class:`ClassicalEmbedder` (weights arguments are ignored)."""
    return ClassicalEmbedder(spec)


def calibrate(raw: np.ndarray, path: Path = SCALING_FILE) -> dict:
    """Write robust centre / scale (median, IQR / 1.349) of raw features to ``path``.

    Parameters
    ----------
    raw : ndarray
        ``(N, FEATURE_DIM)`` raw features of an unlabelled calibration set.
    path : Path
        Output JSON.

    Returns
    -------
    dict
        feature name -> ``[centre, scale]``.
    """
    med = np.median(raw, axis=0)
    q1, q3 = np.percentile(raw, [25, 75], axis=0)
    scale = (q3 - q1) / 1.349
    std = raw.std(axis=0)
    scale = np.where(scale > 1e-6, scale, np.where(std > 1e-6, std, 1.0))
    table = {n: [round(float(c), 6), round(float(s), 6)]
             for n, c, s in zip(feature_names(), med, scale)}  # fmt: skip
    lines = [f"  {json.dumps(n)}: {json.dumps(v)}" for n, v in table.items()]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    return table
