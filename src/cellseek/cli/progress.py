"""Terminal progress bars for ``Work`` generators and progress callbacks (one bar per stage)."""

from __future__ import annotations

import sys
from contextlib import contextmanager


class _Bars:
    """One tqdm bar per stage, updated from :class:`~cellseek.types.Progress` reports."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bars: dict = {}

    def __call__(self, p) -> None:
        if self.quiet:
            return
        from tqdm.auto import tqdm

        stage = p.stage.split(":")[0] or "work"
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=p.total or None, desc=stage, unit="step",
                                          leave=False, file=sys.stderr)
        if p.total and bar.total != p.total:
            bar.total = p.total
        bar.n = p.done
        bar.set_postfix_str(p.message[-40:], refresh=True)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def run_with_progress(work, *, quiet: bool = False):
    """Drive a ``Work`` generator with a terminal progress bar per stage; return its result."""
    bars = _Bars(quiet)
    try:
        while True:
            try:
                p = next(work)
            except StopIteration as stop:
                return stop.value
            bars(p)
    finally:
        bars.close()


@contextmanager
def progress_bars(*, quiet: bool = False):
    """A progress callback (``callback(Progress)``) drawing a terminal bar per stage, for
    blocking calls that report progress instead of yielding it."""
    bars = _Bars(quiet)
    try:
        yield bars
    finally:
        bars.close()
