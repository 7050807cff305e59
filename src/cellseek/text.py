"""Text shared by the core, the CLI and the napari layer: counts with the right plural, and
CSV cells a spreadsheet will not run as formulas."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["FORMULA_STARTS", "cells_text", "classes_text", "count_text", "images_text",
           "spreadsheet_row", "spreadsheet_safe"]

#: Spreadsheets run a cell starting with one of these as a formula (CSV injection): OWASP's
#: list, a line break, the pipe (DDE in older Excel) and the full-width forms of = + - @ that
#: some spreadsheets (and their East Asian input methods) read as formulas too.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "|", "\uff1d", "\uff0b", "\uff0d",
                  "\uff20")


def count_text(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, in the plural unless ``n`` is 1 ("1 cell", "0 cells", "3 classes").

    Parameters
    ----------
    n : int
        The count.
    noun : str
        The singular noun.
    plural : str, optional
        The plural noun (default ``noun + "s"``).

    Returns
    -------
    str
    """
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def cells_text(n: int) -> str:
    """``"1 cell"``, ``"2 cells"``."""
    return count_text(n, "cell")


def images_text(n: int) -> str:
    """``"1 image"``, ``"2 images"``."""
    return count_text(n, "image")


def classes_text(counts) -> str:
    """``"basophil 12, eosinophil 3"``: classes with their cell counts, as a reader lists them
    (``"none"`` when there are none).

    Parameters
    ----------
    counts : mapping of str to int
        Class -> number of cells.

    Returns
    -------
    str
    """
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "none"


def spreadsheet_safe(value):
    """A CSV cell a spreadsheet shows as text.

    Strings starting with ``= + - @ |``, their full-width forms, a tab or a line break, also
    after leading white space (``" =1+1"`` runs in some spreadsheets), get a leading ``'``
    (OWASP's advice against CSV formula injection); every other value is returned as it is.

    Parameters
    ----------
    value : object
        A value about to be written to a CSV cell (a class name, a path, a number...).

    Returns
    -------
    object
    """
    if isinstance(value, str) and (value.startswith(FORMULA_STARTS)
                                   or value.lstrip().startswith(FORMULA_STARTS)):
        return "'" + value
    return value


def spreadsheet_row(values: Iterable) -> list:
    """:func:`spreadsheet_safe` of every value of a CSV row (None becomes an empty cell)."""
    return ["" if v is None else spreadsheet_safe(v) for v in values]
