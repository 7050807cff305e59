"""Run core generators off the GUI thread (or synchronously with ``CELLSEEK_SYNC=1``).

The core's long steps are generators that yield :class:`~cellseek.types.Progress` and return
their result. :class:`WorkRunner` drives one in a napari ``GeneratorWorker`` (its ``returned``
signal carries the result), forwards progress, turns errors into napari notifications a
biologist can read, and quits running workers when the widget closes. Like stardist-napari, the
environment switch ``CELLSEEK_SYNC=1`` runs the same generator synchronously for debugging.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Generator

from qtpy.QtCore import QObject, Signal

from cellseek.errors import CellseekError
from cellseek.types import Progress

logger = logging.getLogger(__name__)

#: Environment variable: run work synchronously on the calling thread.
SYNC_ENV = "CELLSEEK_SYNC"


def sync_mode() -> bool:
    """Whether ``CELLSEEK_SYNC`` asks for synchronous work."""
    return os.environ.get(SYNC_ENV, "").strip().lower() in ("1", "true", "yes", "on")


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


class WorkRunner(QObject):
    """Runs one core generator at a time and reports progress.

    Signals
    -------
    started(str)
        A job started; the argument says what it does.
    progress(object)
        A :class:`~cellseek.types.Progress` of the running job.
    finished(str)
        The job ended (returned, failed or was cancelled).
    """

    started = Signal(str)
    progress = Signal(object)
    finished = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._worker = None
        self._what = ""
        self._closed = False
        self._side: list = []
        #: Thread the last job's generator ran on (for tests and diagnostics).
        self.last_thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        """Whether a job is running."""
        return self._worker is not None

    @property
    def what(self) -> str:
        """What the running job does (empty when idle)."""
        return self._what if self.busy else ""

    def _tracked(self, gen: Generator) -> Generator:
        self.last_thread = threading.current_thread()
        result = yield from gen
        return result

    def run(
        self,
        what: str,
        gen: Generator,
        on_returned: Callable | None = None,
        on_error: Callable | None = None,
    ):
        """Start a job.

        Parameters
        ----------
        what : str
            Short description for the progress label and error messages ("Segmentation").
        gen : generator
            Yields Progress, returns the result.
        on_returned : callable, optional
            Called on the GUI thread with the result.
        on_error : callable, optional
            Called with the exception after the notification.

        Returns
        -------
        GeneratorWorker or None
            The worker (None in synchronous mode or when busy).
        """
        if self._closed:
            gen.close()
            return None
        if self.busy:
            from napari.utils.notifications import show_warning

            gen.close()
            show_warning(f"cellseek is busy with {self._what.lower()}; wait for it to finish "
                         "or cancel it.")
            return None
        self._what = what
        gen = self._tracked(gen)
        if sync_mode():
            self._worker = "sync"
            self.started.emit(what)
            try:
                while True:
                    try:
                        self._on_yield(next(gen))
                    except StopIteration as stop:
                        self._done(what, ok=True)
                        if on_returned is not None:
                            on_returned(stop.value)
                        return None
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self._done(what, ok=False)
                notify_error(exc, what)
                if on_error is not None:
                    on_error(exc)
                return None

        from napari.qt.threading import create_worker

        worker = create_worker(lambda: (yield from gen), _start_thread=False)
        worker.yielded.connect(self._on_yield)
        if on_returned is not None:
            worker.returned.connect(lambda value: self._deliver(on_returned, value))
        worker.errored.connect(lambda exc: self._failed(what, exc, on_error))
        worker.finished.connect(lambda: self._done(what, ok=True))
        self._worker = worker
        self.started.emit(what)
        worker.start()
        return worker

    def _on_yield(self, value) -> None:
        if not self._closed and isinstance(value, Progress):
            self.progress.emit(value)

    def _deliver(self, callback: Callable, value) -> None:
        if self._closed:
            return
        try:
            callback(value)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            notify_error(exc, self._what or "cellseek")

    def _failed(self, what: str, exc: BaseException, on_error) -> None:
        if self._closed:
            return
        notify_error(exc, what)
        if on_error is not None:
            on_error(exc)

    def _done(self, what: str, *, ok: bool) -> None:
        self._worker = None
        self._what = ""
        if not self._closed:
            self.finished.emit(what)

    def run_side(self, what: str, func: Callable, on_returned: Callable) -> None:
        """Run a quick function that does not touch the session in a worker, alongside jobs.

        Used for look-ups that may import heavy packages (e.g. the weight check).
        """
        if self._closed:
            return
        if sync_mode():
            try:
                value = func()
            except Exception as exc:  # noqa: BLE001 - shown to the user
                notify_error(exc, what)
                return
            on_returned(value)
            return
        from napari.qt.threading import create_worker

        worker = create_worker(func, _start_thread=False)
        worker.returned.connect(lambda value: self._deliver(on_returned, value))
        worker.errored.connect(lambda exc: self._failed(what, exc, None))
        self._side.append(worker)
        worker.finished.connect(lambda: self._side.remove(worker) if worker in self._side else None)
        worker.start()

    def cancel(self) -> None:
        """Ask the running job to stop at its next progress step."""
        if self._worker not in (None, "sync"):
            self._worker.quit()

    def close(self, then: Callable | None = None) -> None:
        """Stop the running job and deliver nothing more (the widget is going away).

        Parameters
        ----------
        then : callable, optional
            Called once the running job has really stopped (at once when idle), e.g. to close
            the store the job may still be writing to.
        """
        self._closed = True
        worker, self._worker = self._worker, None
        if worker in (None, "sync"):
            if then is not None:
                then()
            return
        if then is not None:
            worker.finished.connect(then)
        worker.quit()


def guarded(what: str):
    """Decorator for GUI handlers: errors become notifications instead of tracebacks."""
    import functools

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
