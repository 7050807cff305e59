"""Map tifffile axis letters onto cellseek's ``TZCYXS`` convention."""

from __future__ import annotations

from dataclasses import dataclass

#: Canonical axis order of :class:`cellseek.types.ImageData`.
AXES = "TZCYXS"


@dataclass(frozen=True)
class AxisPlan:
    """How to turn an array with tifffile axes into one with ``TZCYXS`` axes.

    Apply :meth:`apply`: squeeze ``drop`` (singleton axes), transpose by ``order``, then keep the
    first three RGB samples when ``drop_alpha``.
    """

    source_axes: str
    drop: tuple[int, ...]
    order: tuple[int, ...]
    axes: str
    drop_alpha: bool = False

    def apply(self, data):
        """Return ``data`` (NumPy or Dask) re-arranged to :attr:`axes`."""
        if self.drop:
            index = tuple(0 if i in self.drop else slice(None) for i in range(data.ndim))
            data = data[index]
        if self.order != tuple(range(len(self.order))):
            data = data.transpose(self.order)
        if self.drop_alpha:
            data = data[..., :3]
        return data


class AxisError(ValueError):
    """The axes cannot be mapped onto TZCYXS."""


def plan_axes(
    source_axes: str, shape: tuple[int, ...], *, rgb: bool, unknown_as: str = "T"
) -> AxisPlan:
    """Plan the mapping of tifffile axes onto ``TZCYXS``.

    Parameters
    ----------
    source_axes : str
        One letter per dimension as tifffile reports it (``"QYX"``, ``"TZCYXS"``, ``"IYXS"``).
    shape : tuple of int
        Shape of the data.
    rgb : bool
        Whether a samples axis holds colour (photometric RGB / YCbCr / palette-expanded).
    unknown_as : {"T", "Z", "C"}
        Where a non-singleton axis of unknown meaning (tifffile's ``Q``, ``I``, ``P``, ``R`` ...)
        goes first; further ones take the next free letter of ``T``, ``Z``, ``C``.

    Returns
    -------
    AxisPlan

    Raises
    ------
    AxisError
        When there are no Y and X axes or more dimensions than ``TZCYXS`` can hold.
    """
    if len(source_axes) != len(shape):
        raise AxisError(f"axes {source_axes!r} do not match shape {shape}")
    letters: list[str | None] = []
    for i, (letter, size) in enumerate(zip(source_axes, shape)):
        if letter in "TZCYX":
            letters.append(letter)
        elif letter == "S":
            is_colour = rgb and size in (3, 4) and i == len(shape) - 1
            letters.append("S" if is_colour else ("C" if size > 1 else None))
        else:
            letters.append(None if size == 1 else "?")
    # a known axis letter that occurs twice: treat the second one as unknown
    seen: set[str] = set()
    for i, letter in enumerate(letters):
        if letter and letter != "?":
            if letter in seen:
                letters[i] = "?" if shape[i] > 1 else None
            seen.add(letter)
    preference = [unknown_as] + [a for a in "TZC" if a != unknown_as]
    for i, letter in enumerate(letters):
        if letter == "?":
            free = [a for a in preference if a not in seen]
            if not free:
                raise AxisError(
                    f"image has too many dimensions {tuple(shape)} (axes {source_axes!r}); "
                    f"at most {AXES} are supported"
                )
            letters[i] = free[0]
            seen.add(free[0])
    if "Y" not in seen or "X" not in seen:
        raise AxisError(
            f"image has no Y and X axes (shape {tuple(shape)}, axes {source_axes!r}); "
            "expected a 2-D image or a stack of 2-D planes"
        )
    drop = tuple(i for i, letter in enumerate(letters) if letter is None)
    kept = [(AXES.index(letter), i) for i, letter in enumerate(letters) if letter is not None]
    kept.sort()
    # positions after dropping singleton axes
    remaining = [i for i in range(len(shape)) if i not in drop]
    order = tuple(remaining.index(i) for _, i in kept)
    axes = "".join(AXES[k] for k, _ in kept)
    drop_alpha = axes.endswith("S") and shape[remaining[order[-1]]] == 4
    return AxisPlan(source_axes, drop, order, axes, drop_alpha)


def expand_to(data, axes: str, wanted: str):
    """Insert singleton axes so that every letter of ``wanted`` is present, in TZCYXS order.

    Parameters
    ----------
    data : array-like
        NumPy or Dask array with axes ``axes``.
    axes : str
        Its axes (canonical order).
    wanted : str
        Letters that must be present afterwards, e.g. ``"TZC"``.

    Returns
    -------
    data, axes
    """
    out_axes = "".join(a for a in AXES if a in axes or a in wanted)
    for position, letter in enumerate(out_axes):
        if letter not in axes:
            data = data[(slice(None),) * position + (None,)]
            axes = axes[:position] + letter + axes[position:]
    return data, axes
