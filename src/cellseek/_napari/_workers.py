"""Run core generators off the GUI thread, one at a time, in the order they were asked for.

The core's long steps are generators that yield :class:`~cellseek.types.Progress` and return
their result. :class:`WorkRunner` keeps a queue of :class:`Job` s and drives one at a time in a
napari ``GeneratorWorker`` (its ``returned`` signal carries the result), forwards progress, turns
errors into napari notifications a biologist can read, and stops when the widget closes.

Work that follows other work (embedding after segmentation, the index after an import) is
queued from the first job's result callback; it goes to the front of the queue, so it runs
right after the job it follows and before any action the user asked for meanwhile ("Segment,
then Suggest" suggests for the embedded cells). A user action while a job runs waits at the end
of the queue (the widget says so) instead of being lost.
Jobs are given as factories where their input must be read when they start (e.g. the cells a
suggestion covers, which the embedding before it creates). Like stardist-napari, the
environment switch ``CELLSEEK_SYNC=1`` runs the same generators synchronously for debugging.
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

#: Environment variable: run work synchronously on the calling thread (debugging only).
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


class Job:
    """One piece of work: waiting, running, or over.

    Attributes
    ----------
    what : str
        Short description ("Segmentation") for the status line and error messages.
    state : str
        ``"queued"``, ``"running"``, ``"done"``, ``"failed"`` or ``"cancelled"``.
    quiet : bool
        A short interactive step (a label key, a gallery look-up): no status text while it runs.
    result : object
        What the generator returned (once ``done``).
    """

    def __init__(self, what, work, on_returned, on_error, *, quiet: bool, key,
                 on_cancel=None) -> None:
        self.what = what
        self.work = work
        self.on_returned = on_returned
        self.on_error = on_error
        self.on_cancel = on_cancel
        self.quiet = quiet
        self.key = key
        self.state = "queued"
        self.result = None
        self.worker = None

    def __repr__(self) -> str:
        return f"Job({self.what!r}, {self.state})"


class WorkRunner(QObject):
    """Runs queued jobs one at a time and reports progress.

    Signals
    -------
    started(Job)
        A job started.
    progress(object)
        A :class:`~cellseek.types.Progress` of the running job.
    finished(Job)
        A job ended (done, failed or cancelled).
    queued(Job)
        A job waits behind the running one.
    idle()
        Nothing runs and nothing waits.
    """

    started = Signal(object)
    progress = Signal(object)
    finished = Signal(object)
    queued = Signal(object)
    idle = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._queue: list[Job] = []
        self._current: Job | None = None
        self._closed = False
        self._draining = False
        self._follow_at: int | None = None  # queue position for follow-ups while delivering
        self._side: list = []
        #: Thread the last job's generator ran on (for tests and diagnostics).
        self.last_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        """Whether a job runs or waits."""
        return self._current is not None or bool(self._queue)

    @property
    def running(self) -> Job | None:
        """The running job."""
        return self._current

    @property
    def what(self) -> str:
        """What the running job does (empty when idle)."""
        return self._current.what if self._current is not None else ""

    @property
    def waiting(self) -> list[Job]:
        """Jobs in the queue, first to start first."""
        return list(self._queue)

    # ------------------------------------------------------------------ submitting
    def run(
        self,
        what: str,
        work: Generator | Callable[[], Generator],
        on_returned: Callable | None = None,
        on_error: Callable | None = None,
        *,
        quiet: bool = False,
        key: str | None = None,
        on_cancel: Callable | None = None,
    ) -> Job | None:
        """Queue a job; it starts at once when nothing else runs.

        Parameters
        ----------
        what : str
            Short description for the status line and error messages ("Segmentation").
        work : generator or callable
            A generator (yields Progress, returns the result), or a function that makes one
            when the job starts (so it reads its input then, not when it was queued).
        on_returned : callable, optional
            Called on the GUI thread with the result.
        on_error : callable, optional
            Called with the exception after the notification.
        quiet : bool
            A short interactive step (no status text).
        key : str, optional
            A waiting job with the same key is replaced by this one (e.g. only the last clicked
            cell's gallery matters).
        on_cancel : callable, optional
            Called without arguments when the job is cancelled (before or while it runs).

        Returns
        -------
        Job or None
            None when the runner is closed.
        """
        if self._closed:
            if isinstance(work, Generator):
                work.close()
            return None
        if key is not None:
            for old in [j for j in self._queue if j.key == key]:
                self._queue.remove(old)
                old.state = "cancelled"
        job = Job(what, work, on_returned, on_error, quiet=quiet, key=key, on_cancel=on_cancel)
        if self._follow_at is not None:  # asked for by a job's result: runs next
            self._queue.insert(self._follow_at, job)
            self._follow_at += 1
        else:
            self._queue.append(job)
        if self._current is not None:
            self.queued.emit(job)
        self._drain()
        return job

    def _tracked(self, gen: Generator) -> Generator:
        self.last_thread = threading.current_thread()
        result = yield from gen
        return result

    def _drain(self) -> None:
        """Start the next job (in sync mode: run every job to its end, in order)."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._current is None and self._queue and not self._closed:
                job = self._queue.pop(0)
                gen = self._generator(job)
                if gen is None:
                    continue
                self._current = job
                job.state = "running"
                self.started.emit(job)
                if sync_mode():
                    self._run_sync(job, gen)
                else:
                    self._start_worker(job, gen)
        finally:
            self._draining = False
        if not self.busy and not self._closed:
            self.idle.emit()

    def _generator(self, job: Job) -> Generator | None:
        try:
            gen = job.work() if callable(job.work) and not isinstance(job.work, Generator) \
                else job.work
            if not isinstance(gen, Generator):
                raise TypeError(f"{job.what}: the work is not a generator ({type(gen).__name__})")
        except Exception as exc:  # noqa: BLE001 - shown to the user
            job.state = "failed"
            notify_error(exc, job.what)
            if job.on_error is not None:
                job.on_error(exc)
            self.finished.emit(job)
            return None
        return self._tracked(gen)

    def _run_sync(self, job: Job, gen: Generator) -> None:
        try:
            while True:
                self._on_yield(next(gen))
        except StopIteration as stop:
            job.result = stop.value
            self._end(job, "done")
            self._deliver(job, stop.value)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._end(job, "failed")
            self._failed(job, exc)

    def _start_worker(self, job: Job, gen: Generator) -> None:
        from napari.qt.threading import create_worker

        completed = []  # the generator's value once it ran to its end

        def run():
            completed.append((yield from gen))
            return completed[0]

        worker = create_worker(run, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_yield)
        worker.returned.connect(lambda value: self._returned(job, value))
        worker.errored.connect(lambda exc: self._errored(job, exc))
        worker.finished.connect(lambda: self._worker_finished(job, completed))
        job.worker = worker
        worker.start()

    def _returned(self, job: Job, value) -> None:
        job.result = value
        job.state = "done"
        self._deliver(job, value)

    def _errored(self, job: Job, exc: BaseException) -> None:
        job.state = "failed"
        self._failed(job, exc)

    def _worker_finished(self, job: Job, completed=()) -> None:
        if job.state == "running" and completed:
            # quit() came after the work's last step: the worker emits no result, but the
            # work is done (a merge or an export cannot be stopped midway); deliver it
            self._returned(job, completed[0])
        if job.state == "running":  # quit() before the end: neither returned nor errored
            job.state = "cancelled"
        self._end(job, job.state)
        if job.state == "cancelled":
            self._cancelled(job)
        self._drain()

    def _cancelled(self, job: Job) -> None:
        if self._closed or job.on_cancel is None:
            return
        try:
            job.on_cancel()
        except Exception as exc:  # noqa: BLE001 - shown to the user
            notify_error(exc, job.what)

    def _end(self, job: Job, state: str) -> None:
        job.state = state
        job.worker = None
        if self._current is job:
            self._current = None
        if not self._closed:
            self.finished.emit(job)

    def _on_yield(self, value) -> None:
        if not self._closed and isinstance(value, Progress):
            self.progress.emit(value)

    def _deliver(self, job: Job, value) -> None:
        if self._closed or job.on_returned is None:
            return
        self._follow_at = 0
        try:
            job.on_returned(value)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            notify_error(exc, job.what)
        finally:
            self._follow_at = None

    def _failed(self, job: Job, exc: BaseException) -> None:
        if self._closed:
            return
        notify_error(exc, job.what)
        if job.on_error is not None:
            try:
                job.on_error(exc)
            except Exception as inner:  # noqa: BLE001 - shown to the user
                notify_error(inner, job.what)

    # ------------------------------------------------------------------ side work
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

        worker = create_worker(func, _start_thread=False, _ignore_errors=True)
        side = Job(what, None, on_returned, None, quiet=True, key=None)
        worker.returned.connect(lambda value: self._deliver(side, value))
        worker.errored.connect(lambda exc: self._failed(side, exc))
        self._side.append(worker)
        worker.finished.connect(lambda: self._side.remove(worker) if worker in self._side else None)
        worker.start()

    # ------------------------------------------------------------------ stopping
    def cancel(self) -> list[Job]:
        """Stop the running job at its next progress step and drop the waiting ones.

        Returns
        -------
        list of Job
            The jobs stopped or dropped (the running one first).
        """
        dropped, self._queue = self._queue, []
        for job in dropped:
            job.state = "cancelled"
            self._cancelled(job)
        current = self._current
        if current is not None and current.worker is not None:
            current.worker.quit()
        return ([current] if current is not None else []) + dropped

    def close(self, then: Callable | None = None) -> None:
        """Stop the running job and deliver nothing more (the widget is going away).

        Parameters
        ----------
        then : callable, optional
            Called once the running job has really stopped (at once when idle), e.g. to close
            the store the job may still be writing to.
        """
        self._closed = True
        for job in self._queue:
            job.state = "cancelled"
        self._queue = []
        current, self._current = self._current, None
        worker = current.worker if current is not None else None
        if worker is None:
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
