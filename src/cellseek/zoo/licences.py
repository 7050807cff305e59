"""Licences of the zoo's weights: which models forbid commercial use, and the warning to show.

``cellseek models list`` prints the warning under its table; the code that creates a reference
store should print (or show) :func:`licence_warning` for the store's model set, since the
embeddings in a shared store carry the licence of the weights that made them.
"""

from __future__ import annotations

from collections.abc import Iterable

from cellseek.zoo.registry import PRESETS, get_spec

__all__ = ["licence_warning", "non_commercial_models", "non_commercial_presets"]


def non_commercial_models(names: Iterable[str]) -> tuple[str, ...]:
    """The models among ``names`` whose weights are licensed for non-commercial use only."""
    return tuple(n for n in dict.fromkeys(names) if getattr(get_spec(n), "non_commercial", False))


def non_commercial_presets() -> dict[str, tuple[str, ...]]:
    """Preset name -> its non-commercial models, for the presets that include any."""
    out = {}
    for preset, names in PRESETS.items():
        nc = non_commercial_models(names)
        if nc:
            out[preset] = nc
    return out


def licence_warning(names: Iterable[str]) -> str | None:
    """One line warning about non-commercial weights in a model set, or None.

    Parameters
    ----------
    names : iterable of str
        Model names (e.g. ``resolve_models(preset, models)``).

    Returns
    -------
    str or None
        E.g. ``"vit_mae_base (CC-BY-NC-4.0) may not be used commercially; ..."``.
    """
    nc = non_commercial_models(names)
    if not nc:
        return None
    which = ", ".join(f"{n} ({get_spec(n).licence.split(' ')[0]})" for n in nc)
    return (f"non-commercial weights: {which} may be used for non-commercial purposes only "
            "(embeddings they made carry the same terms); leave them out of the model set for "
            "commercial work")
