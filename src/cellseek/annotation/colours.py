"""Class colours and the per-cell colour table of the cells layer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: Distinct colours for classes (RGB in [0, 1]), Okabe-Ito first, then tab10 extras.
PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.902, 0.624, 0.0),
    (0.337, 0.706, 0.914),
    (0.0, 0.620, 0.451),
    (0.941, 0.894, 0.259),
    (0.0, 0.447, 0.698),
    (0.835, 0.369, 0.0),
    (0.800, 0.475, 0.655),
    (0.580, 0.404, 0.741),
    (0.549, 0.337, 0.294),
    (0.737, 0.741, 0.133),
    (0.090, 0.745, 0.812),
    (0.839, 0.153, 0.157),
)
#: Colour of cells without a confirmed or suggested class.
UNLABELLED = (0.62, 0.62, 0.62)
#: Opacity of confirmed, suggested and unlabelled cells.
CONFIRMED_ALPHA = 0.9
SUGGESTED_ALPHA = 0.35
UNLABELLED_ALPHA = 0.3


def class_colours(
    classes: Iterable[str], known: Mapping[str, Iterable[float]] | None = None
) -> dict[str, tuple[float, float, float]]:
    """Give every class a colour, keeping the colours classes already have.

    Parameters
    ----------
    classes : iterable of str
        Class names, in the order new colours are handed out.
    known : mapping, optional
        Class -> RGB already in use (kept as they are).

    Returns
    -------
    dict
        Class -> RGB in [0, 1] for every class of ``classes`` and ``known``.
    """
    out = {str(k): tuple(float(c) for c in v)[:3] for k, v in (known or {}).items()}
    used = set(out.values())
    free = [c for c in PALETTE if c not in used]
    n_extra = 0
    for name in classes:
        if name in out:
            continue
        if free:
            out[name] = free.pop(0)
        else:  # more classes than the palette: cycle with a darker shade
            base = PALETTE[n_extra % len(PALETTE)]
            shade = 0.6 ** (1 + n_extra // len(PALETTE))
            out[name] = tuple(round(c * shade, 3) for c in base)
            n_extra += 1
    return out


def cell_colour_table(
    cells: Iterable[Mapping],
    colours: Mapping[str, tuple[float, float, float]],
    *,
    threshold: float | None = None,
) -> dict[int, tuple[float, float, float, float]]:
    """RGBA colour of every cell of a label image, by class and state.

    Confirmed cells get their class colour at :data:`CONFIRMED_ALPHA`, suggested cells the
    colour of their suggestion at :data:`SUGGESTED_ALPHA`, the rest :data:`UNLABELLED`.

    Parameters
    ----------
    cells : iterable of mapping
        Each with ``label_value``, ``label`` (confirmed class or None) and ``suggestion``
        (class or None); ``confidence`` is used with ``threshold``.
    colours : mapping
        Class -> RGB (see :func:`class_colours`); unknown classes get :data:`UNLABELLED`.
    threshold : float, optional
        Show a suggestion only when its ``confidence`` reaches this value.

    Returns
    -------
    dict
        Label value -> RGBA.
    """
    table = {}
    for cell in cells:
        label, sugg = cell.get("label"), cell.get("suggestion")
        conf = cell.get("confidence")
        if sugg is not None and threshold is not None and (conf is None or conf < threshold):
            sugg = None
        if label is not None:
            rgba = (*colours.get(label, UNLABELLED), CONFIRMED_ALPHA)
        elif sugg is not None:
            rgba = (*colours.get(sugg, UNLABELLED), SUGGESTED_ALPHA)
        else:
            rgba = (*UNLABELLED, UNLABELLED_ALPHA)
        table[int(cell["label_value"])] = rgba
    return table


def hex_colour(rgb: Iterable[float]) -> str:
    """``#rrggbb`` of an RGB triple in [0, 1]."""
    r, g, b = (max(0, min(255, round(float(c) * 255))) for c in list(rgb)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"
