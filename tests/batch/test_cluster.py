"""Batch embedding on a real 2-worker Dask LocalCluster (processes), with a worker killed.

Each test runs 6 real fields through the cluster: about 7 s on a quiet 2-core machine (over
20 s when other jobs load it).
"""

from __future__ import annotations

import os
import signal
import sys
from functools import partial
from pathlib import Path

import pytest
import test_batch as tb

from cellseek.batch.runner import embed_many
from cellseek.batch.tasks import process_image

# session fixtures shared with test_batch.py (the serial reference is computed once)
images = tb.images
reference = tb.reference
BCCD = tb.BCCD

pytestmark = pytest.mark.skipif(
    not BCCD.is_dir(), reason=f"real images not found at {BCCD} (../shared/data is absent)"
)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    import cloudpickle

    # the fault-injecting task below must travel by value: workers cannot import test modules
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _kill_once(path, *, marker: str, victim: str, **kwargs):
    """Kill this worker process on the first attempt at ``victim``; behave normally after."""
    if Path(path).name == victim and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return process_image(path, **kwargs)


def test_two_worker_cluster_equals_single_process(client, images, reference, tmp_path):
    store = tmp_path / "cluster.cellseek"
    summary = embed_many(images, store, scheduler=client, progress=False)
    assert summary["failed"] == []
    assert summary["computed"] + summary["skipped"] == 6
    assert summary["images_added"] == 5 and summary["duplicates"] == 1
    tb.assert_same_store(tb.dump_store(store), reference)


def test_worker_killed_mid_run_is_retried(client, images, reference, tmp_path):
    marker = tmp_path / "killed"
    victim = sorted(images.rglob("*.jpg"))[1].name
    task = partial(_kill_once, marker=str(marker), victim=victim)
    store = tmp_path / "killed.cellseek"
    summary = embed_many(images, store, scheduler=client, progress=False, task=task)
    assert marker.exists(), "the fault was never injected"
    assert summary["failed"] == []
    assert summary["images_added"] == 5
    tb.assert_same_store(tb.dump_store(store), reference)
