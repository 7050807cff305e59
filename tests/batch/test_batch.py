"""Batch embedding without a cluster: inputs, shards, canonical merge, resume, merge atomicity.

The cluster tests (2-worker LocalCluster, a killed worker) are in ``test_batch_cluster.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cellseek.batch.merge import merge_shards, remove_stale_temporaries
from cellseek.batch.runner import embed_many, resolve_run_config, suggest_many
from cellseek.batch.shards import Shard, ShardError, read_shard, shard_path, signature, write_shard
from cellseek.batch.tasks import process_image
from cellseek.config import Config
from cellseek.errors import CellseekError
from cellseek.io.inputs import collect_inputs
from cellseek.session import Session
from cellseek.store import ReferenceStore
from cellseek.types import Cell, run_work

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BCCD = DATA / "bccd" / "images"
needs_data = pytest.mark.skipif(
    not BCCD.is_dir(), reason=f"real images not found at {BCCD} (../shared/data is absent)"
)


# ---------------------------------------------------------------------------- helpers

def dump_store(path) -> dict:
    """Everything that must match between a batch and a single-process store, in id order."""
    with ReferenceStore.open(path, readonly=True) as store:
        images = store.images()
        by_id = {i["id"]: i["content_hash"] for i in images}
        cells = store.cells()
        return {
            "models": dict(store.models),
            "config": store.meta("config"),
            "images": [(i["content_hash"], i["path"], i["device"], i["source"],
                        i["pixel_size_um"], i["shape"], i["n_cells"]) for i in images],
            "planes": {by_id[i["id"]]: store.plane_labels(i["id"]) for i in images},
            "cells": [(c["id"], by_id[c["image_id"]], c["t"], c["z"], c["label_value"],
                       c["bbox"], c["centroid"], c["area"], c["touches_border"], c["label"])
                      for c in cells],
            "embeddings": {m: store.embeddings(m) for m in store.models},
            "thumbnails": [store.thumbnail(c["id"]) for c in cells],
        }


def assert_same_store(a: dict, b: dict) -> None:
    assert a["models"] == b["models"]
    assert a["config"] == b["config"]
    assert a["images"] == b["images"]
    assert a["cells"] == b["cells"]
    assert a["planes"].keys() == b["planes"].keys()
    for h in a["planes"]:
        assert a["planes"][h].keys() == b["planes"][h].keys()
        for key in a["planes"][h]:
            np.testing.assert_array_equal(a["planes"][h][key], b["planes"][h][key])
    for m in a["embeddings"]:
        # both are float16 in the store; identical computations give identical bits
        np.testing.assert_allclose(a["embeddings"][m], b["embeddings"][m], atol=2e-3, rtol=2e-3)
    assert a["thumbnails"] == b["thumbnails"]


def serial_store(inputs, path) -> Path:
    """The single-process reference: Session.add_image over the inputs, one after the other."""
    with Session.create(path, Config()) as session:
        for p in inputs:
            run_work(session.add_image(p))
    return Path(path)


_MEMO: dict = {}  # shared with test_batch_cluster.py, which imports these fixtures


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> Path:
    """Five BCCD fields and a renamed duplicate of the first (dedup by content hash)."""
    if not BCCD.is_dir():
        pytest.skip(f"real images not found at {BCCD} (../shared/data is absent)")
    if "images" not in _MEMO:
        folder = tmp_path_factory.mktemp("screen")
        sources = sorted(BCCD.glob("*.jpg"))[:5]
        for i, src in enumerate(sources):
            sub = folder / ("well_A" if i < 3 else "well_B")
            sub.mkdir(exist_ok=True)
            shutil.copy(src, sub / src.name)
        shutil.copy(sources[0], folder / "well_B" / "zz_duplicate.jpg")
        _MEMO["images"] = folder
    return _MEMO["images"]


@pytest.fixture(scope="session")
def reference(images, tmp_path_factory) -> dict:
    """The single-process store of the inputs, dumped."""
    if "reference" not in _MEMO:
        path = tmp_path_factory.mktemp("serial") / "serial.cellseek"
        _MEMO["reference"] = dump_store(serial_store(collect_inputs(images), path))
    return _MEMO["reference"]


@pytest.fixture(scope="module")
def run_kwargs() -> dict:
    config, dims = resolve_run_config("/nonexistent/store.cellseek", Config())
    models = tuple(dims)
    return {"config": config, "models": models, "sig": signature(config, models, {}),
            "plane_kw": {}, "source": None}


@pytest.fixture(scope="module")
def all_shards(images, run_kwargs, tmp_path_factory) -> tuple[Path, list[str]]:
    """A shard folder holding the shard of every input (computed once per module)."""
    folder = tmp_path_factory.mktemp("shards")
    results = [process_image(p, shard_dir=folder, **run_kwargs) for p in collect_inputs(images)]
    assert [r["status"] for r in results].count("computed") == 5
    return folder, [r["shard"] for r in results]


# ---------------------------------------------------------------------------- inputs

def test_collect_inputs_folder_list_glob(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("img10.png", "img2.png", "notes.csv", ".hidden.png"):
        (tmp_path / "a" / name).write_bytes(b"x")
    (tmp_path / "a" / "b" / "x.tif").write_bytes(b"x")
    found = collect_inputs(tmp_path / "a")
    assert [p.name for p in found] == ["img2.png", "img10.png", "x.tif"]
    listing = tmp_path / "inputs.txt"
    listing.write_text("# plate 1\na/img10.png\n\na/b/x.tif\n")
    assert [p.name for p in collect_inputs(listing)] == ["img10.png", "x.tif"]
    assert [p.name for p in collect_inputs(str(tmp_path / "a" / "*.png"))] == [
        "img2.png", "img10.png"]
    both = collect_inputs([listing, tmp_path / "a" / "img2.png", tmp_path / "a" / "img10.png"])
    assert [p.name for p in both] == ["img10.png", "x.tif", "img2.png"]
    with pytest.raises(CellseekError, match="no such file"):
        collect_inputs(tmp_path / "missing")
    with pytest.raises(CellseekError, match="matches no file"):
        collect_inputs(str(tmp_path / "*.jpeg"))
    listing.write_text("a/nothere.png\n")
    with pytest.raises(CellseekError, match="line 1"):
        collect_inputs(listing)


def test_collect_inputs_plate_export_counts_each_stack_once(tmp_path):
    plate = tmp_path / "plate"
    plate.mkdir()
    # Lionheart/Gen5 names: well_read_channel_site_channel name_time; 2 time points per stack
    names = [f"{well}_01_1_{site}_Phase Contrast_{t:03d}.tif"
             for well, site in (("A1", 1), ("A1", 2), ("B2", 1)) for t in (1, 2)]
    for name in names:
        (plate / name).write_bytes(b"x")
    (plate / "overview.png").write_bytes(b"x")
    found = collect_inputs(plate)
    assert [p.name for p in found] == [
        "A1_01_1_1_Phase Contrast_001.tif", "A1_01_1_2_Phase Contrast_001.tif",
        "B2_01_1_1_Phase Contrast_001.tif", "overview.png"]


# ---------------------------------------------------------------------------- shards

def test_shard_round_trip_and_checksum(tmp_path):
    cells = [Cell(label=3, t=0, z=1, bbox=(1, 2, 5, 6), centroid=(3.0, 4.5), area=12),
             Cell(label=7, t=0, z=1, bbox=(0, 0, 4, 4), centroid=(2.0, 2.0), area=9,
                  touches_border=True)]
    emb = {"m": np.arange(8, dtype=np.float32).reshape(2, 4) / 8}
    labels = np.zeros((8, 8), np.int32)
    labels[1:5, 2:6] = 3
    shard = Shard(meta={"content_hash": "ab" * 32, "signature": "s1", "path": "x.png"},
                  cells=cells, embeddings=emb, thumbnails=[b"png1", None],
                  planes={(0, 1): labels})
    path = write_shard(shard_path(tmp_path, "ab" * 32, "s1"), shard)
    back = read_shard(path, sig="s1")
    assert back.cells == cells
    assert back.thumbnails == [b"png1", None]
    assert back.embeddings["m"].dtype == np.float16
    np.testing.assert_array_equal(back.planes[(0, 1)], labels)
    with pytest.raises(ShardError, match="other settings"):
        read_shard(path, sig="s2")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ShardError):
        read_shard(path, sig="s1")
    assert not list(path.parent.glob(".*.tmp"))


def test_signature_changes_with_crop_and_models():
    base = Config()
    from dataclasses import replace

    other = replace(base, crop=replace(base.crop, margin=0.5))
    assert signature(base, ["classical"]) == signature(base, ["classical"])
    assert signature(base, ["classical"]) != signature(other, ["classical"])
    assert signature(base, ["classical"]) != signature(base, ["classical", "x"])
    assert signature(base, ["classical"]) != signature(base, ["classical"], {"z_mode": "max"})


# ---------------------------------------------------------------------------- pipeline

@needs_data
def test_sync_run_equals_single_process_and_resumes(images, reference, all_shards, tmp_path):
    shards = tmp_path / "shards"
    # an interrupted earlier run: the shards of the first three inputs are already there
    for src in all_shards[1][:3]:
        dst = shards / Path(src).relative_to(all_shards[0])
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    store = tmp_path / "batch.cellseek"
    summary = embed_many(images, store, scheduler="sync", shard_dir=shards, progress=False)
    # 3 shards reused + the duplicate of the first image (same content, same shard)
    assert summary["skipped"] == 4 and summary["computed"] == 2
    assert summary["duplicates"] == 1 and summary["images_added"] == 5
    assert summary["failed"] == [] and summary["created"]
    assert_same_store(dump_store(store), reference)
    # a rerun computes nothing and adds nothing
    again = embed_many(images, store, scheduler="sync", shard_dir=shards, progress=False)
    assert again["skipped"] == 6 and again["computed"] == 0
    assert again["images_in_store"] == 6 and again["images_added"] == 0
    assert_same_store(dump_store(store), reference)


@needs_data
def test_merge_into_existing_store_appends_in_canonical_order(
    images, reference, all_shards, tmp_path
):
    inputs = collect_inputs(images)
    store = tmp_path / "grow.cellseek"
    kw = {"scheduler": "sync", "progress": False, "shard_dir": all_shards[0]}
    first = embed_many(inputs[:2], store, **kw)
    assert first["images_added"] == 2 and first["skipped"] == 2
    second = embed_many(inputs, store, **kw)
    # the two first images and the duplicate of the first are already in the store
    assert second["images_in_store"] == 3 and second["images_added"] == 3
    assert_same_store(dump_store(store), reference)


@needs_data
def test_bad_image_is_reported_not_fatal(images, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    good = sorted(images.rglob("*.jpg"))[0]
    summary = embed_many([good, bad], tmp_path / "s.cellseek", scheduler="sync", progress=False)
    assert [f["input"] for f in summary["failed"]] == [str(bad)]
    assert summary["images_added"] == 1


@needs_data
def test_store_with_other_models_is_refused(images, tmp_path):
    from cellseek.errors import IncompatibleStoreError

    store = tmp_path / "other.cellseek"
    ReferenceStore.create(store, {"classical": 7}).close()
    with pytest.raises(IncompatibleStoreError):
        embed_many(sorted(images.rglob("*.jpg"))[:1], store, scheduler="sync", progress=False)


@needs_data
def test_suggest_many_writes_csv(images, all_shards, tmp_path):
    inputs = collect_inputs(images)
    store = tmp_path / "ref.cellseek"
    kw = {"scheduler": "sync", "progress": False, "shard_dir": all_shards[0]}
    embed_many(inputs[:3], store, **kw)
    with Session.open(store) as s:
        ids = [c["id"] for c in s.store.cells()]
        s.label(ids, ["neutrophil", "lymphocyte", "neutrophil"][: len(ids)])
    out = suggest_many(inputs, store, csv_path=tmp_path / "sugg.csv", **kw)
    import csv

    rows = list(csv.DictReader(open(out["csv"])))
    assert len(rows) == out["n_suggested"] == 2  # two new images, one cell each; dup skipped
    assert {r["best_guess"] for r in rows} <= {"neutrophil", "lymphocyte"}


def test_suggestions_csv_never_holds_a_formula(tmp_path):
    """A class named like a spreadsheet formula is written as text (it was written raw)."""
    import csv

    from cellseek.data import sample_fields

    fields = sample_fields()[:2]
    store = tmp_path / "ref.cellseek"
    kw = {"scheduler": "sync", "progress": False}
    embed_many(fields[:1], store, **kw)
    evil = '=HYPERLINK("http://x")'
    with Session.open(store) as s:
        s.label([c["id"] for c in s.store.cells()], [evil])
    out = suggest_many(fields, store, csv_path=tmp_path / "sugg.csv", **kw)
    rows = list(csv.DictReader(open(out["csv"], newline="", encoding="utf-8")))
    assert rows and out["n_suggested"] == len(rows)
    assert {r["best_guess"] for r in rows} == {"'" + evil}
    assert {r["suggestion"] for r in rows} <= {"'" + evil, ""}
    text = [v for r in rows for k, v in r.items() if k in ("input", "suggestion", "best_guess")]
    assert not any(v.startswith(("=", "+", "-", "@")) for v in text)



# ---------------------------------------------------------------------------- atomicity

_KILL_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    args = json.loads(sys.argv[1])
    import cellseek.batch.merge as merge
    import cellseek.store.labels as labels_mod
    from cellseek.batch.runner import resolve_run_config

    marker = Path(args["marker"])

    def stall(*a, **k):
        marker.write_text("in")
        time.sleep(120)

    if args["where"] == "commit":
        # inside merge_from's transaction, after every row was inserted
        original = labels_mod.change_labels
        def change_labels(*a, **k):
            stall()
            return original(*a, **k)
        labels_mod.change_labels = change_labels
    else:
        original_add = merge._add_shard
        calls = []
        def _add_shard(store, shard):
            original_add(store, shard)
            calls.append(1)
            if len(calls) == 2:
                stall()
        merge._add_shard = _add_shard
    config, dims = resolve_run_config(args["store"], None)
    merge.merge_shards(args["shards"], args["store"], config, dims)
    """
)


def _merge_and_kill(store: Path, shards: list[str], where: str, tmp_path: Path) -> None:
    marker = tmp_path / f"marker-{where}"
    args = {"store": str(store), "shards": shards, "where": where, "marker": str(marker)}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, json.dumps(args)])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "the merge subprocess ended before reaching the kill point"
            assert time.monotonic() < deadline, "the merge subprocess never reached the kill point"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _integrity(store: Path) -> str:
    conn = sqlite3.connect(store)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


@needs_data
def test_merge_killed_mid_way_leaves_store_intact(reference, all_shards, tmp_path):
    shards = all_shards[1]
    config, dims = resolve_run_config(tmp_path / "none.cellseek", None)
    # a store that does not exist yet: killed while staging -> still no store
    fresh = tmp_path / "fresh.cellseek"
    _merge_and_kill(fresh, shards, "staging", tmp_path)
    assert not fresh.exists()
    assert remove_stale_temporaries(fresh) >= 1
    # an existing store with two images: killed inside the merge transaction
    store = tmp_path / "store.cellseek"
    merge_shards(shards[:2], store, config, dims)
    before = dump_store(store)
    _merge_and_kill(store, shards, "commit", tmp_path)
    assert _integrity(store) == "ok"
    after = dump_store(store)
    assert after["cells"] == before["cells"] and after["images"] == before["images"]
    # the next merge cleans the stale staging files up and completes
    assert remove_stale_temporaries(store) >= 1
    merge_shards(shards, store, config, dims)
    assert _integrity(store) == "ok"
    assert_same_store(dump_store(store), reference)
    assert not [p for p in tmp_path.iterdir() if ".merge-" in p.name]
