"""Terminal progress bars for ``Work`` generators (one bar per stage)."""

from __future__ import annotations

import sys


def run_with_progress(work, *, quiet: bool = False):
    """Drive a ``Work`` generator with a terminal progress bar per stage; return its result."""
    from tqdm.auto import tqdm

    bars: dict[str, tqdm] = {}
    try:
        while True:
            try:
                p = next(work)
            except StopIteration as stop:
                return stop.value
            if quiet:
                continue
            stage = p.stage.split(":")[0] or "work"
            bar = bars.get(stage)
            if bar is None:
                bar = bars[stage] = tqdm(total=p.total or None, desc=stage, unit="step",
                                         leave=False, file=sys.stderr)
            if p.total and bar.total != p.total:
                bar.total = p.total
            bar.n = p.done
            bar.set_postfix_str(p.message[-40:], refresh=True)
    finally:
        for bar in bars.values():
            bar.close()
