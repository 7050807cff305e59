"""The neighbour gallery of a clicked cell reads the store a constant number of times,
whatever the number of neighbours it shows (issue 23: three reads per neighbour before)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from cellseek.annotation.gallery import neighbour_gallery
from cellseek.config import Config
from cellseek.session import Session
from cellseek.types import Cell
from cellseek.zoo import get_spec


def _png(value: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def session(tmp_path):
    rng = np.random.default_rng(0)
    dim = get_spec("classical").dim
    s = Session.create(tmp_path / "g.cellseek", Config(), overwrite=True)
    n = 60
    classes = np.arange(n) % 2
    emb = np.eye(2, dim)[classes] * 3 + rng.normal(size=(n, dim))
    image_id = s.store.add_image("field.tif", "hash-field", shape=(n, 32, 32))
    cells = [Cell(label=i + 1, t=i, bbox=(0, 0, 8, 8), centroid=(4.0, 4.0), area=40)
             for i in range(n)]
    ids = list(s.store.add_cells(image_id, cells, {"classical": emb.astype(np.float32)},
                                 thumbnails=[_png(i) for i in range(n)]))
    s.label(ids[:50], [["a", "b"][c] for c in classes[:50]], source="import")
    s.index()
    yield s, ids[50:]
    s.close()


def _statements(session, call) -> list[str]:
    seen: list[str] = []
    conn = session.store._conn  # the store's own connection (tests and diagnostics only)
    conn.set_trace_callback(seen.append)
    try:
        call()
    finally:
        conn.set_trace_callback(None)
    return seen


def test_the_gallery_reads_the_store_a_constant_number_of_times(session):
    s, queries = session
    neighbour_gallery(s, queries[2], k=5)  # the first click reads the class sizes once
    galleries, counts = {}, {}
    for k, query in ((3, queries[0]), (25, queries[1])):
        statements = _statements(s, lambda k=k, q=query: galleries.setdefault(
            k, neighbour_gallery(s, q, k=k)))
        counts[k] = len(statements)
    assert [len(galleries[k].tiles) for k in (3, 25)] == [3, 25]
    # constant in k; the size flag of the suggestion reads the cell, its image's cells and the
    # label stamp, the rest is the suggestion and one batched read
    assert counts[3] == counts[25] <= 22, counts
    # what the tiles show comes from the store: each neighbour's own image, plane, thumbnail
    for tile in galleries[25].tiles:
        stored = s.store.cell(tile.cell_id)
        assert (tile.t, tile.z, tile.image_id) == (stored["t"], stored["z"], stored["image_id"])
        assert tile.thumbnail == s.store.thumbnail(tile.cell_id) and tile.image_name == "field.tif"
        assert tile.label == stored["label"]
    g = galleries[3]
    assert g.cell["id"] == queries[0] and g.thumbnail == s.store.thumbnail(queries[0])
    assert "thumbnail" not in g.cell and g.cell == s.store.cell(queries[0])
