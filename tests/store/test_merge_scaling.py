"""Merging stays linear in the size of the stores (issue 12): counted, not timed.

SQLite's progress handler is called every fixed number of virtual-machine instructions, so the
calls made during one merge count the work SQLite does, independent of the machine's speed or
load. A merge four times larger must cost about four times the instructions; the old merge,
whose per-cell lookup scanned the whole embeddings table, grew with the square of the size.
"""

from __future__ import annotations

import numpy as np

from cellseek.measure.bench_merge import MODELS, _fill, _thumbnail
from cellseek.store import ReferenceStore, exchange

INSTRUCTIONS = 1000


def _merge_instructions(tmp_path, n_images: int, monkeypatch) -> int:
    rng = np.random.default_rng(0)
    thumb = _thumbnail()
    other_path, target_path = tmp_path / "other.cellseek", tmp_path / "target.cellseek"
    with ReferenceStore.create(other_path, MODELS) as other:
        _fill(other, range(n_images), rng, thumb, label_shift=0)
    with ReferenceStore.create(target_path, MODELS) as target:
        _fill(target, range(0, n_images, 10), rng, thumb, label_shift=1)
    calls = [0]
    real_merge = exchange.merge

    def counted(src, dst, **kwargs):
        def tick():
            calls[0] += 1
            return 0

        for conn in (src, dst):
            conn.set_progress_handler(tick, INSTRUCTIONS)
        try:
            return real_merge(src, dst, **kwargs)
        finally:
            for conn in (src, dst):
                conn.set_progress_handler(None, INSTRUCTIONS)

    monkeypatch.setattr(exchange, "merge", counted)
    with ReferenceStore.open(target_path) as target:
        counts = target.merge_from(other_path)
    assert counts["cells_added"] == (n_images - len(range(0, n_images, 10))) * 100
    return calls[0]


def test_a_four_times_larger_merge_costs_about_four_times_the_work(tmp_path, monkeypatch):
    small = _merge_instructions(tmp_path / "small", 10, monkeypatch)
    (tmp_path / "large").mkdir()
    large = _merge_instructions(tmp_path / "large", 40, monkeypatch)
    assert small > 0
    assert large / small < 6, (small, large)  # linear: ~4; the quadratic merge: ~16
