"""Jobs on the open reference set: the runner's queue lane, with the rule that a result
belongs to the reference set its job ran on."""

from __future__ import annotations

import logging

from cellseek.errors import CellseekError

logger = logging.getLogger(__name__)

#: What a user is told when an action needs a reference set.
NEED_SET = "create or open a reference set first (Reference set tab)"


class SessionJobs:
    """Queue jobs that work on the open :class:`~cellseek.session.Session`.

    Parameters
    ----------
    runner : Runner
        Its ``queue`` lane runs the jobs.
    state : AnnotationState
        Holds the open session.
    """

    def __init__(self, runner, state) -> None:
        self.runner = runner
        self.state = state
        self._store_jobs: list = []

    def need_session(self):
        """The open session; a one-line error when there is none."""
        if self.state.session is None:
            raise CellseekError(NEED_SET)
        return self.state.session

    def track_store_job(self, job) -> None:
        """Remember a job that creates or opens a reference set (see :meth:`store_pending`)."""
        if job is not None:
            self._store_jobs = [j for j in self._store_jobs if j.state in ("queued", "running")]
            self._store_jobs.append(job)

    def store_pending(self) -> bool:
        """Whether a reference set is being created or opened (or waits to be)."""
        return any(j.state in ("queued", "running") for j in self._store_jobs)

    def is_store_job(self, job) -> bool:
        """Whether ``job`` creates or opens a reference set."""
        return job in self._store_jobs

    def run(self, what: str, work, on_returned=None, **kwargs):
        """Queue a job on the open reference set, or on the one being created or opened.

        ``work(session)`` makes the job's generator when the job starts. Its result is
        dropped when another set replaced the one it ran on meanwhile (New... or Open...
        while it ran): applying it would write that set's cell ids into the new one's images.
        """
        if self.state.session is None and not self.store_pending():
            raise CellseekError(NEED_SET)
        ran_on = []

        def start():
            ran_on.append(self.need_session())
            return work(ran_on[0])

        def returned(result):
            if not ran_on or ran_on[0] is not self.state.session:
                logger.info("%s finished on a reference set closed meanwhile; result dropped",
                            what)
                return
            if on_returned is not None:
                on_returned(result)

        return self.runner.run(what, start, returned, **kwargs)
