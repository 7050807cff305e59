"""Small helpers the controller's parts share: notifications and one-call jobs."""

from __future__ import annotations

from cellseek.types import Progress


def info(text: str) -> None:
    """A napari information notification."""
    from napari.utils.notifications import show_info

    show_info(text)


def warn(text: str) -> None:
    """A napari warning notification."""
    from napari.utils.notifications import show_warning

    show_warning(text)


def call_work(func, *args, **kwargs):
    """A job (a generator) that calls ``func(*args, **kwargs)`` once and returns its result."""
    yield Progress(0, 1, "", "")
    result = func(*args, **kwargs)
    yield Progress(1, 1, "", "done")
    return result
