"""napari notifications: information, warnings and errors a biologist can read."""

from __future__ import annotations

import functools
import logging

from cellseek.errors import CellseekError

logger = logging.getLogger(__name__)


def info(text: str) -> None:
    """A napari information notification."""
    from napari.utils.notifications import show_info

    show_info(text)


def warn(text: str) -> None:
    """A napari warning notification."""
    from napari.utils.notifications import show_warning

    show_warning(text)


def user_message(exc: BaseException, what: str) -> str:
    """A notification text for an error raised while doing ``what``."""
    if isinstance(exc, CellseekError):
        return f"{what} failed: {exc}"
    if isinstance(exc, MemoryError):
        return f"{what} failed: not enough memory. Try the current plane only or a smaller model."
    if isinstance(exc, OSError):
        return f"{what} failed: {exc.strerror or exc} ({getattr(exc, 'filename', '') or ''})"
    return f"{what} failed with an unexpected error ({type(exc).__name__}: {exc}). See the log."


def notify_error(exc: BaseException, what: str) -> None:
    """Show an error as a napari notification (and log the traceback)."""
    from napari.utils.notifications import show_error

    if not isinstance(exc, CellseekError):
        logger.error("%s failed", what, exc_info=(type(exc), exc, exc.__traceback__))
    show_error(user_message(exc, what))


def guarded(what: str):
    """Decorator for GUI handlers: errors become notifications instead of tracebacks."""

    def deco(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                notify_error(exc, what)
                return None

        return wrapper

    return deco
