"""Classes in creation order, with the key that labels them and their colour (no Qt)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Classes beyond this position have no number key.
N_KEYS = 9


@dataclass(frozen=True)
class ClassInfo:
    """One class of a reference set.

    Attributes
    ----------
    name : str
        The class name.
    key : int or None
        The number key (1-9) that gives a cell this class; None from the tenth class on.
    colour : tuple of float
        RGB in [0, 1], the same in napari, the plots and the demo.
    count : int
        Confirmed cells of this class.
    """

    name: str
    key: int | None
    colour: tuple[float, float, float]
    count: int


def ordered_classes(
    saved: Iterable[str], present: Iterable[str], first_seen: Mapping[str, int] | None = None
) -> list[str]:
    """The class order: the saved order first, then new classes by when they first appeared.

    Adding a class only appends it, so the key of every other class stays the same.

    Parameters
    ----------
    saved : iterable of str
        Classes in the order saved with the reference set (may include classes without cells).
    present : iterable of str
        Classes that confirmed cells have now.
    first_seen : mapping, optional
        Class -> a number that grows with time (e.g. the smallest cell id with that class) for
        ordering classes missing from ``saved``; by name where it is missing.

    Returns
    -------
    list of str
    """
    order = list(dict.fromkeys(str(s) for s in saved))
    known = set(order)
    new = [p for p in dict.fromkeys(present) if p not in known]
    seen = first_seen or {}
    new.sort(key=lambda name: (seen.get(name, float("inf")), name))
    return order + new


def class_infos(
    order: Iterable[str], colours: Mapping[str, tuple], counts: Mapping[str, int]
) -> list[ClassInfo]:
    """:class:`ClassInfo` rows for classes in order (key n for the n-th, up to 9)."""
    return [
        ClassInfo(name, i + 1 if i < N_KEYS else None, tuple(colours[name]),
                  int(counts.get(name, 0)))
        for i, name in enumerate(order)
    ]
