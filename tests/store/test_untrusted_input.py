"""Issue 24, second hardening pass: what a received store (or folder) can no longer do.

Each test crafts the input the way an attacker would, with plain SQL or plain files on a real
store, and checks what cellseek does with it.
"""

from __future__ import annotations

import io
import sqlite3
import zlib
from pathlib import Path

import numpy as np
import pytest

from cellseek.cli.main import main
from cellseek.errors import StoreError
from cellseek.store import ReferenceStore
from cellseek.types import Cell

MODELS = {"alpha": 8, "beta": 4}


def _cells(n: int) -> list[Cell]:
    return [Cell(label=i + 1, bbox=(i, i, i + 4, i + 4), centroid=(i + 2.0, i + 2.0), area=16)
            for i in range(n)]


def make_store(path: Path, *, image_hash: str = "hash-a", labels=("x", "y", None)) -> Path:
    """A small valid store: one image, one plane label image, cells with two labels."""
    rng = np.random.default_rng(0)
    with ReferenceStore.create(path, MODELS) as s:
        image_id = s.add_image("a.tif", image_hash)
        ids = s.add_cells(image_id, _cells(len(labels)),
                          {m: rng.normal(size=(len(labels), d)).astype(np.float32)
                           for m, d in MODELS.items()})
        s.set_plane_labels(image_id, 0, 0, np.arange(1, 17, dtype=np.int32).reshape(4, 4) % 4)
        for cid, lab in zip(ids, labels):
            if lab is not None:
                s.set_label(int(cid), lab)
    return path


def sql(path: Path, *statements, params=()) -> None:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement, params)
    conn.commit()
    conn.close()


def _npy_zeros(shape, dtype: str) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + bytes(int(np.prod(shape)) * np.dtype(dtype).itemsize)


# ------------------------------------------------------------------ 1. label-image bombs


def test_an_eight_byte_label_image_is_refused_by_export_and_merge(tmp_path, capsys):
    store = make_store(tmp_path / "received.cellseek")
    sql(store, "UPDATE planes SET labels = ?", params=(zlib.compress(_npy_zeros((512, 512),
                                                                                "<i8"), 9),))
    out = tmp_path / "out"
    assert main(["export", "--store", str(store), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "at most 4 bytes" in err and len(err.strip().splitlines()) == 1
    mine = make_store(tmp_path / "mine.cellseek", image_hash="hash-b")
    with ReferenceStore.open(mine) as s, pytest.raises(StoreError, match="nothing was merged"):
        s.merge_from(store)
    with ReferenceStore.open(mine, readonly=True) as s:
        assert len(s.images()) == 1
