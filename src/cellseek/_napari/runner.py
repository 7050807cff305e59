"""The one way into threads: core generators run off the GUI thread, in three lanes.

The core's long steps are generators that yield :class:`~cellseek.types.Progress` and return
their result. :class:`Runner` drives each one in a napari ``GeneratorWorker`` (its ``returned``
signal carries the result), turns errors into notifications a biologist can read, and stops
everything when the widget closes. Every job goes into one of three lanes:

``queue``
    One job at a time, in the order asked, with progress and Cancel: everything that touches
    the reference set. Work that follows other work (embedding after segmentation, the index
    after an import) is queued from the first job's result callback and goes to the front, so
    it runs right after the job it follows and before an action the user asked for meanwhile
    ("Segment, then Suggest" suggests for the embedded cells). A user action while a job runs
    waits at the end of the queue instead of being lost.
``side``
    Starts at once beside the queue, for quick look-ups that do not touch the reference set and
    may import heavy packages (the weight check).
``background``
    Starts at once beside the queue and is replaced by the next background job with the same
    key (SAM pre-computation restarts from the plane the user moved to). Cancel leaves it.

Queue jobs are given as factories where their input must be read when they start (e.g. the
cells a suggestion covers, which the embedding before it creates). Like stardist-napari, the
environment switch ``CELLSEEK_SYNC=1`` runs the same generators synchronously for debugging.

While a worker runs, Python's thread switch interval is shortened to :data:`SWITCH_S` (and put
back once none runs): a worker computing in Python holds the GIL for up to the interval each
time the GUI thread asks for it, and the GUI thread asks for it at every call into Qt while it
paints, so with the default 5 ms a repaint waited many times 5 ms.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Generator

from qtpy.QtCore import QObject, Signal

from cellseek.types import Progress

from .notify import guarded, notify_error

logger = logging.getLogger(__name__)

#: Environment variable: run work synchronously on the calling thread (debugging only).
SYNC_ENV = "CELLSEEK_SYNC"
#: The lanes of :meth:`Runner.run`.
LANES = ("queue", "side", "background")
#: Python's thread switch interval (s) while a worker runs (the default is 0.005).
SWITCH_S = 0.001


def sync_mode() -> bool:
    """Whether ``CELLSEEK_SYNC`` asks for synchronous work."""
    return os.environ.get(SYNC_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def call_work(func, *args, **kwargs):
    """A job (a generator) that calls ``func(*args, **kwargs)`` once and returns its result.

    The call is one step (a merge or an export is one transaction or one copy): Cancel cannot
    stop it midway, so no progress step follows it, where a pending Cancel would stop the job
    after the work was done and drop its result (the status said "cancelled" for an export
    whose files were written).
    """
    yield Progress(0, 1, "", "")
    return func(*args, **kwargs)


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
    lane : str
        ``"queue"``, ``"side"`` or ``"background"``.
    result : object
        What the generator returned (once ``done``).
    """

    def __init__(self, what, work, on_returned, on_error, *, quiet: bool, key,
                 on_cancel=None, lane: str = "queue") -> None:
        self.what = what
        self.work = work
        self.on_returned = on_returned
        self.on_error = on_error
        self.on_cancel = on_cancel
        self.quiet = quiet
        self.key = key
        self.lane = lane
        self.state = "queued"
        self.result = None
        self.worker = None

    def __repr__(self) -> str:
        return f"Job({self.what!r}, {self.state})"


class Runner(QObject):
    """Runs jobs off the GUI thread (see the module docstring for the lanes).

    Signals (of the ``queue`` lane)
    -------------------------------
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
        self._beside: list[Job] = []  # side and background jobs that run
        self._workers = 0  # workers running now
        self._switch: float | None = None  # the thread switch interval to put back
        #: Thread the last queue job's generator ran on (for tests and diagnostics).
        self.last_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        """Whether a queue job runs or waits."""
        return self._current is not None or bool(self._queue)

    @property
    def running(self) -> Job | None:
        """The running queue job."""
        return self._current

    @property
    def what(self) -> str:
        """What the running queue job does (empty when idle)."""
        return self._current.what if self._current is not None else ""

    @property
    def waiting(self) -> list[Job]:
        """Queue jobs waiting, first to start first."""
        return list(self._queue)

    def background(self, key: str) -> Job | None:
        """The running side or background job with this key, or None."""
        return next((j for j in self._beside if j.key == key and j.state == "running"), None)

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
        lane: str = "queue",
    ) -> Job | None:
        """Run a job in a lane; a queue job starts at once when nothing else runs.

        Parameters
        ----------
        what : str
            Short description for the status line and error messages ("Segmentation").
        work : generator or callable
            A generator (yields Progress, returns the result), or a function that makes one
            when the job starts (so it reads its input then, not when it was asked for).
        on_returned : callable, optional
            Called on the GUI thread with the result.
        on_error : callable, optional
            Called with the exception after the notification.
        quiet : bool
            A short interactive step (no status text).
        key : str, optional
            Queue: a waiting job with the same key is replaced by this one (only the last
            clicked cell's gallery matters). Background: the running job with the same key is
            stopped.
        on_cancel : callable, optional
            Called without arguments when the job is cancelled (before or while it runs).
        lane : {"queue", "side", "background"}

        Returns
        -------
        Job or None
            None when the runner is closed.
        """
        if lane not in LANES:
            raise ValueError(f"lane must be one of {LANES}, got {lane!r}")
        if self._closed:
            if isinstance(work, Generator):
                work.close()
            return None
        job = Job(what, work, on_returned, on_error, quiet=quiet or lane != "queue", key=key,
                  on_cancel=on_cancel, lane=lane)
        if lane != "queue":
            self._start_beside(job)
            return job
        if key is not None:
            for old in [j for j in self._queue if j.key == key]:
                self._queue.remove(old)
                old.state = "cancelled"
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
        """Start the next queue job (in sync mode: run every job to its end, in order)."""
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
                gen = self._tracked(gen)
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
            self._failed(job, exc)
            if job.lane == "queue":
                self.finished.emit(job)
            return None
        return gen

    def _run_sync(self, job: Job, gen: Generator) -> None:
        try:
            while True:
                self._on_yield(job, next(gen))
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
        self._worker_started()
        worker.finished.connect(self._worker_ended)
        worker.yielded.connect(lambda value: self._on_yield(job, value))
        worker.returned.connect(lambda value: self._returned(job, value))
        worker.errored.connect(lambda exc: self._errored(job, exc))
        worker.finished.connect(lambda: self._worker_finished(job, completed))
        job.worker = worker
        worker.start()

    def _worker_started(self) -> None:
        if self._workers == 0:
            self._switch = sys.getswitchinterval()
            sys.setswitchinterval(min(self._switch, SWITCH_S))
        self._workers += 1

    def _worker_ended(self) -> None:
        self._workers -= 1
        if self._workers == 0 and self._switch is not None:
            sys.setswitchinterval(self._switch)
            self._switch = None

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
        if job.lane == "queue":
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
        if job in self._beside:
            self._beside.remove(job)
            return
        if self._current is job:
            self._current = None
        if not self._closed:
            self.finished.emit(job)

    def _on_yield(self, job: Job, value) -> None:
        if job.lane == "queue" and not self._closed and isinstance(value, Progress):
            self.progress.emit(value)

    def _deliver(self, job: Job, value) -> None:
        if self._closed or job.on_returned is None:
            return
        self._follow_at = 0 if job.lane == "queue" else None
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

    # ------------------------------------------------------------------ side and background
    def _start_beside(self, job: Job) -> None:
        if job.lane == "background" and job.key is not None:
            self.stop(job.key)
        gen = self._generator(job)
        if gen is None:
            return
        job.state = "running"
        self._beside.append(job)
        if sync_mode():
            self._run_sync(job, gen)
        else:
            self._start_worker(job, gen)

    def stop(self, key: str) -> None:
        """Stop the side or background jobs with this key at their next step."""
        for job in [j for j in self._beside if j.key == key]:
            if job.worker is not None:
                job.worker.quit()
            job.key = None  # a new job with the key may start before this one has stopped

    # ------------------------------------------------------------------ stopping
    def cancel(self) -> list[Job]:
        """Stop the running queue job at its next progress step and drop the waiting ones.

        Returns
        -------
        list of Job
            The jobs stopped or dropped (the running one first).
        """
        dropped = self.drop_waiting()
        current = self._current
        if current is not None and current.worker is not None:
            current.worker.quit()
        return ([current] if current is not None else []) + dropped

    def drop_waiting(self) -> list[Job]:
        """Drop the waiting queue jobs (the running one goes on)."""
        dropped, self._queue = self._queue, []
        for job in dropped:
            job.state = "cancelled"
            self._cancelled(job)
        return dropped

    def close(self, then: Callable | None = None) -> None:
        """Stop every job and deliver nothing more (the widget is going away).

        Parameters
        ----------
        then : callable, optional
            Called once the running queue job has really stopped (at once when idle), e.g. to
            close the store the job may still be writing to.
        """
        self._closed = True
        if self._switch is not None:  # the GUI goes away: the interval is Python's again
            sys.setswitchinterval(self._switch)
            self._switch = None
        for job in self._queue:
            job.state = "cancelled"
        self._queue = []
        for job in list(self._beside):
            if job.worker is not None:
                job.worker.quit()
        current, self._current = self._current, None
        worker = current.worker if current is not None else None
        if worker is None:
            if then is not None:
                then()
            return
        if then is not None:
            worker.finished.connect(then)
        worker.quit()


__all__ = ["LANES", "Job", "Runner", "call_work", "guarded", "notify_error", "sync_mode"]
