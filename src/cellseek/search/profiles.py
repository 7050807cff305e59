"""Search profiles: which models (with which weights) the cells of a source are searched with.

The fused index holds every reference cell once, each model's block scaled by sqrt(w_m) for the
global weights w (:func:`cellseek.search.weighting.fuse`). A *profile* is another set of weights
v over the same models. Scaling a query's block m by ``v_m / w_m`` makes its inner product with a
fused reference vector ``sum_m v_m cos_m``: the same index answers for every profile, and
searching with a profile that leaves a model out costs nothing extra.

Two profiles exist (:func:`profiles_for`): ``"all"``, the global weights, and the *robust* one,
the models of ``LearnConfig.robust_models`` present in the set (the hand-crafted ``classical``
features by default) with equal weights, named after them (``"classical"``). Which profile a
source uses is validated like the learned head (:mod:`cellseek.search.choice`): foundation models
sharpen the classes on the device the reference cells came from, and can mislead on another
microscope, so a new device is searched with the robust profile until validation says otherwise.

With an approximate index (IVF-PQ, over a million cells) a block with a tiny global weight is
quantised coarsely, so a profile that leans on it is searched less exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: The profile of the global weights.
ALL = "all"
#: Weights below this are treated as this when a query block is rescaled (no division by 0).
_MIN_WEIGHT = 1e-6


def profiles_for(models: Sequence[str], weights: Mapping[str, float],
                 robust_models: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{"all": weights}`` plus the robust profile when it differs from it.

    The robust profile weighs the ``robust_models`` present in ``models`` equally; it is left
    out when none of them is present or when it would hold every model.
    """
    profiles = {ALL: {m: float(weights.get(m, 0.0)) for m in models}}
    robust = [m for m in models if m in set(robust_models)]
    if robust and len(robust) < len(models):
        profiles["+".join(robust)] = {m: (1.0 / len(robust) if m in robust else 0.0)
                                      for m in models}
    return profiles


def block_sizes(blocks: Mapping[str, np.ndarray], models: Sequence[str]) -> dict[str, int]:
    """Model -> number of columns of its block in the fused vector."""
    return {m: int(np.shape(blocks[m])[1]) for m in models}


def column_factors(models: Sequence[str], sizes: Mapping[str, int],
                   base: Mapping[str, float], profile: Mapping[str, float],
                   *, query: bool) -> np.ndarray:
    """Per-column factors that turn fused vectors of ``base`` weights into ``profile`` ones.

    Parameters
    ----------
    query : bool
        True: factors ``v_m / w_m`` for query vectors searched against the fused index (the
        reference side stays as stored). False: ``sqrt(v_m / w_m)`` for vectors compared with
        each other (both sides scaled), e.g. the training sample of the heads.
    """
    parts = []
    for m in models:
        ratio = float(profile.get(m, 0.0)) / max(float(base.get(m, 0.0)), _MIN_WEIGHT)
        parts.append(np.full(int(sizes[m]), ratio if query else np.sqrt(ratio), np.float32))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def split_candidate(candidate: str) -> tuple[str, str]:
    """``"lda@classical"`` -> ``("lda", "classical")``; a bare predictor uses :data:`ALL`."""
    predictor, _, profile = candidate.partition("@")
    return predictor, profile or ALL


def candidate_name(predictor: str, profile: str) -> str:
    """The candidate of a predictor on a profile (the bare name on :data:`ALL`)."""
    return predictor if profile == ALL else f"{predictor}@{profile}"
