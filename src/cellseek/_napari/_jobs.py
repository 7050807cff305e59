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
    """A job (a generator) that calls ``func(*args, **kwargs)`` once and returns its result.

    The call is one step (a merge or an export is one transaction or one copy): Cancel cannot
    stop it midway, so no progress step follows it, where a pending Cancel would stop the job
    after the work was done and drop its result (the status said "cancelled" for an export
    whose files were written).
    """
    yield Progress(0, 1, "", "")
    return func(*args, **kwargs)
