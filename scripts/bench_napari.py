"""Click -> neighbour gallery latency of the napari plugin with a synthetic 20,000-cell store.

Builds a store of N labelled reference cells (random unit embeddings of the offline
``classical`` model, 5 classes, a 64 px PNG thumbnail each) plus query cells, warms the index
(as the widget does in a worker after opening a store), then times what a click does on the GUI
thread: the kNN query with its suggestion (``neighbour_gallery``) and the gallery drawing
(``NeighboursPanel.show_cell``: thumbnails decoded, tiles laid out).

Run: ``QT_QPA_PLATFORM=offscreen python scripts/bench_napari.py [--cells 20000]``
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _png(rng) -> bytes:
    from PIL import Image

    arr = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def build_store(path: Path, n_ref: int, n_query: int, seed: int = 0):
    """A session over a synthetic store; returns (session, query cell ids)."""
    from cellseek.config import Config
    from cellseek.session import Session
    from cellseek.types import Cell
    from cellseek.zoo import get_spec

    rng = np.random.default_rng(seed)
    session = Session.create(path, Config(), overwrite=True)
    dim = get_spec("classical").dim
    n = n_ref + n_query
    centres = rng.normal(size=(5, dim))
    cls = rng.integers(0, 5, n)
    emb = centres[cls] + rng.normal(scale=1.5, size=(n, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    thumbs = [_png(rng) for _ in range(64)]
    image_id = session.store.add_image("synthetic.tif", "synthetic-hash", shape=(n, 64, 64))
    ids = []
    for start in range(0, n, 5000):
        stop = min(n, start + 5000)
        cells = [Cell(label=i + 1, t=i, bbox=(0, 0, 10, 10), centroid=(5.0, 5.0), area=80)
                 for i in range(start, stop)]
        ids += list(session.store.add_cells(
            image_id, cells, {"classical": emb[start:stop].astype(np.float32)},
            thumbnails=[thumbs[i % 64] for i in range(start, stop)]))
    names = [f"class_{k}" for k in range(5)]
    session.label(ids[:n_ref], [names[k] for k in cls[:n_ref]], source="import")
    return session, ids[n_ref:]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20_000, help="labelled reference cells")
    parser.add_argument("--clicks", type=int, default=50)
    args = parser.parse_args(argv)
    from qtpy.QtWidgets import QApplication

    from cellseek._napari._neighbours_panel import NeighboursPanel
    from cellseek.annotation.colours import class_colours
    from cellseek.annotation.gallery import neighbour_gallery

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        session, queries = build_store(Path(tmp) / "bench.cellseek", args.cells, args.clicks)
        t1 = time.perf_counter()
        session.index()  # the widget builds it in a worker right after opening the store
        t2 = time.perf_counter()
        print(f"store with {args.cells} labelled cells built in {t1 - t0:.1f} s; "
              f"index ({session.index().kind}) warmed in {t2 - t1:.2f} s")

        class _Controller:  # the panel only needs these from the controller
            from qtpy.QtCore import QObject, Signal

            class _S(QObject):
                selection_changed = __import__("qtpy.QtCore").QtCore.Signal(object)

            def __init__(self, session):
                self._s = self._S()
                self.selection_changed = self._s.selection_changed
                self.session = session
                self.threshold = session.config.suggest.threshold
                self.colours = class_colours(sorted(session.store.classes()))

            def jump_to(self, cell_id):
                return False

        panel = NeighboursPanel(_Controller(session))
        panel.resize(420, 400)
        panel.show()
        query_ms, total_ms = [], []
        for cid in queries:
            a = time.perf_counter()
            neighbour_gallery(session, cid)
            b = time.perf_counter()
            panel.show_cell(cid)  # what a click runs: the query again, then the drawing
            app.processEvents()
            c = time.perf_counter()
            query_ms.append(1000 * (b - a))
            total_ms.append(1000 * (c - b))
        k = len(panel.gallery.tiles)
        print(f"k = {k} neighbours per click, {args.clicks} clicks")
        print(f"kNN query + suggestion + thumbnails: median {statistics.median(query_ms):.1f} ms, "
              f"p95 {np.percentile(query_ms, 95):.1f} ms")
        print(f"click -> gallery drawn (query + Qt):  median {statistics.median(total_ms):.1f} ms, "
              f"p95 {np.percentile(total_ms, 95):.1f} ms")
        session.close()


if __name__ == "__main__":
    main()
