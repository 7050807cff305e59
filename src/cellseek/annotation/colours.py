"""The one class palette of cellseek (napari, plots, demo) and the per-cell colour table.

Cells are drawn as outlines: confirmed cells in their class colour, suggested cells in the
colour of their suggestion but faded, unlabelled cells in a neutral tone that contrasts with the
image (:func:`unlabelled_colour`). Class colours are handed out in class creation order and
saved with the reference set (:meth:`cellseek.session.Session.class_colours`).
"""

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
#: Colour of cells without a confirmed or suggested class (plots, demo; on images see
#: :func:`unlabelled_colour`).
UNLABELLED = (0.62, 0.62, 0.62)
#: Unlabelled outlines on dark images (RI, fluorescence, dark phase contrast) ...
UNLABELLED_ON_DARK = (0.95, 0.95, 0.95)
#: ... and on bright images (brightfield, stained smears).
UNLABELLED_ON_BRIGHT = (0.08, 0.08, 0.08)
#: Opacity of confirmed, suggested and unlabelled cells (outlines; the layer opacity scales all).
CONFIRMED_ALPHA = 1.0
SUGGESTED_ALPHA = 0.45
UNLABELLED_ALPHA = 0.8


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


def unlabelled_colour(brightness: float) -> tuple[float, float, float]:
    """A neutral outline colour that stands out on an image of this mean brightness.

    Parameters
    ----------
    brightness : float
        Mean of the displayed plane scaled by its contrast limits to [0, 1].

    Returns
    -------
    tuple
        :data:`UNLABELLED_ON_BRIGHT` for bright images (> 0.5), else :data:`UNLABELLED_ON_DARK`.
    """
    return UNLABELLED_ON_BRIGHT if brightness > 0.5 else UNLABELLED_ON_DARK


def cell_colour(
    cell: Mapping,
    colours: Mapping[str, tuple[float, float, float]],
    *,
    threshold: float | None = None,
    unlabelled: tuple[float, float, float] = UNLABELLED,
) -> tuple[float, float, float, float]:
    """RGBA of one cell by class and state (see :func:`cell_colour_table`)."""
    label, sugg = cell.get("label"), cell.get("suggestion")
    conf = cell.get("confidence")
    if sugg is not None and threshold is not None and (conf is None or conf < threshold):
        sugg = None
    if label is not None:
        return (*colours.get(label, unlabelled), CONFIRMED_ALPHA)
    if sugg is not None:
        return (*colours.get(sugg, unlabelled), SUGGESTED_ALPHA)
    return (*unlabelled, UNLABELLED_ALPHA)


def cell_colour_table(
    cells: Iterable[Mapping],
    colours: Mapping[str, tuple[float, float, float]],
    *,
    threshold: float | None = None,
    unlabelled: tuple[float, float, float] = UNLABELLED,
) -> dict[int, tuple[float, float, float, float]]:
    """RGBA colour of every cell of a label image, by class and state.

    Confirmed cells get their class colour at :data:`CONFIRMED_ALPHA`, suggested cells the
    colour of their suggestion at :data:`SUGGESTED_ALPHA`, the rest ``unlabelled`` at
    :data:`UNLABELLED_ALPHA`.

    Parameters
    ----------
    cells : iterable of mapping
        Each with ``label_value``, ``label`` (confirmed class or None) and ``suggestion``
        (class or None); ``confidence`` is used with ``threshold``.
    colours : mapping
        Class -> RGB (see :func:`class_colours`); unknown classes get :data:`UNLABELLED`.
    threshold : float, optional
        Show a suggestion only when its ``confidence`` reaches this value.
    unlabelled : tuple
        RGB of cells without a class (see :func:`unlabelled_colour`).

    Returns
    -------
    dict
        Label value -> RGBA.
    """
    return {int(cell["label_value"]): cell_colour(cell, colours, threshold=threshold,
                                                  unlabelled=unlabelled)
            for cell in cells}


def class_hex(label: str | None, colours: Mapping[str, Iterable[float]]) -> str:
    """``#rrggbb`` of a class (:data:`UNLABELLED` grey for None or an unknown class).

    With ``colours = session.class_colours()`` this is the colour napari and the plots give
    the class (e.g. for ``cellseek demo``'s overview).
    """
    return hex_colour(colours.get(label, UNLABELLED) if label is not None else UNLABELLED)


def hex_colour(rgb: Iterable[float]) -> str:
    """``#rrggbb`` of an RGB triple in [0, 1]."""
    r, g, b = (max(0, min(255, round(float(c) * 255))) for c in list(rgb)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"
