"""``cellseek bench --merge``: how long merging a large store into another takes.

Two stores are built through the public :class:`~cellseek.store.ReferenceStore` API in a
temporary folder: the *other* store holds ``n_cells`` synthetic cells (100 per image, one
label image per image, a thumbnail per cell, half of them labelled) with the embedding sizes of
``dinobloom_s`` (384) and ``classical`` (64); *this* store already holds a tenth of those images
with their cells, some labelled differently (conflicts). The figure is the wall time of one
``merge_from`` call, which holds the write lock for its whole duration.
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np

from cellseek.types import Cell

#: Embedding sizes of the benchmark stores (those of dinobloom_s and classical).
MODELS = {"dinobloom_s": 384, "classical": 64}
CELLS_PER_IMAGE = 100
CLASSES = ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil")


def _thumbnail() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _image_cells(n: int) -> tuple[list[Cell], np.ndarray]:
    labels = np.zeros((100, 100), np.int32)
    cells = []
    for i in range(n):
        r, c = divmod(i, 10)
        labels[10 * r : 10 * r + 8, 10 * c : 10 * c + 8] = i + 1
        cells.append(Cell(label=i + 1, bbox=(10 * r, 10 * c, 10 * r + 8, 10 * c + 8),
                          centroid=(10 * r + 3.5, 10 * c + 3.5), area=64))
    return cells, labels


def _fill(store, image_numbers, rng, thumb: bytes, *, label_shift: int) -> None:
    cells, labels = _image_cells(CELLS_PER_IMAGE)
    for k in image_numbers:
        image_id = store.add_image(f"field{k:06d}.tif", f"bench-hash-{k:06d}", shape=(100, 100))
        store.set_plane_labels(image_id, 0, 0, labels)
        emb = {m: rng.normal(size=(CELLS_PER_IMAGE, d)).astype(np.float32) / np.sqrt(d)
               for m, d in MODELS.items()}
        ids = store.add_cells(image_id, cells, emb, thumbnails=[thumb] * CELLS_PER_IMAGE)
        keep = ids[::2]
        store.set_labels(keep, [CLASSES[(int(i) + label_shift) % len(CLASSES)] for i in keep])


def bench_merge(n_cells: int = 100_000, *, folder=None, seed: int = 0) -> dict:
    """Build the two stores and time one ``merge_from``.

    Returns
    -------
    dict
        ``n_cells`` (of the other store), ``seconds`` (the merge), ``cells_per_second``,
        ``build_seconds`` (both stores), ``store_mb`` (the other store's file), ``counts``
        (what ``merge_from`` returned) and ``cells_after``.
    """
    from cellseek.store import ReferenceStore

    n_images = max(1, n_cells // CELLS_PER_IMAGE)
    rng = np.random.default_rng(seed)
    thumb = _thumbnail()
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        start = time.perf_counter()
        other_path, target_path = Path(tmp) / "other.cellseek", Path(tmp) / "target.cellseek"
        with ReferenceStore.create(other_path, MODELS) as other:
            _fill(other, range(n_images), rng, thumb, label_shift=0)
        with ReferenceStore.create(target_path, MODELS) as target:
            _fill(target, range(0, n_images, 10), rng, thumb, label_shift=1)
        build = time.perf_counter() - start
        with ReferenceStore.open(target_path) as target:
            start = time.perf_counter()
            counts = target.merge_from(other_path)
            seconds = time.perf_counter() - start
            after = target.n_cells()
        size_mb = other_path.stat().st_size / 1e6
    return {
        "n_cells": n_images * CELLS_PER_IMAGE,
        "models": dict(MODELS),
        "seconds": seconds,
        "cells_per_second": n_images * CELLS_PER_IMAGE / seconds,
        "build_seconds": build,
        "store_mb": size_mb,
        "counts": counts,
        "cells_after": after,
    }


def format_merge(result: dict) -> str:
    """The benchmark result as a few lines of text."""
    c = result["counts"]
    return (
        f"merge of a store of {result['n_cells']:,} cells ({result['store_mb']:.0f} MB; models "
        f"{result['models']}): {result['seconds']:.2f} s "
        f"({result['cells_per_second']:,.0f} cells/s)\n"
        f"  cells added {c['cells_added']:,}, matched {c['cells_matched']:,}; labels added "
        f"{c['labels_added']:,}, unchanged {c['labels_unchanged']:,}, conflicts "
        f"{c['label_conflicts']:,}; building both stores took {result['build_seconds']:.1f} s"
    )
