"""Wording shared by the core, the CLI and the napari layer: counts with the right plural."""

from __future__ import annotations

__all__ = ["cells_text", "count_text", "images_text"]


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
