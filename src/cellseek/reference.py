"""Labelled sets of single-cell images (e.g. CellaVision crops) -> confirmed reference cells.

Each image holds one cell of interest near its centre;
:meth:`cellseek.pipeline.Pipeline.single_cells` segments, crops and embeds it exactly as cells found
in whole fields, so reference cells and query cells compare.
"""

from __future__ import annotations

import logging

from cellseek.types import Progress, Work

logger = logging.getLogger(__name__)


def add_labelled_csv(session, csv_path, *, batch: int = 64) -> Work[int]:
    """Add every image of a labelled CSV (``path,label[,source]``) as a confirmed reference cell.

    Images already in the store (same pixel content) are skipped. Returns the number added.
    """
    from cellseek.io import content_hash, read_image
    from cellseek.io.labelled_set import load_labelled_set

    lset = load_labelled_set(csv_path)
    added = 0
    for start in range(0, len(lset.paths), batch):
        rows = range(start, min(start + batch, len(lset.paths)))
        images = [read_image(lset.paths[i]) for i in rows]
        hashes = [content_hash(img) for img in images]
        todo = [j for j, h in enumerate(hashes) if session.store.image_by_hash(h) is None]
        yield Progress(start, len(lset.paths), "reference", f"{len(todo)} new images")
        if not todo:
            continue
        planes = yield from session.pipeline.single_cells([images[j] for j in todo])
        new_ids, new_labels = [], []
        for n, j in enumerate(todo):
            i = rows[j]
            img = images[j]
            source = lset.sources[i] if lset.sources and lset.sources[i] else img.device
            image_id = session.store.add_image(
                img.path, hashes[j], device=img.device, source=source,
                pixel_size_um=img.pixel_size_um, shape=img.shape,
            )
            ids = session.store.add_cells(image_id, planes[n].cells, planes[n].embeddings,
                                          thumbnails=planes[n].thumbnails)
            new_ids.extend(int(c) for c in ids)
            new_labels.append(lset.labels[i])
        session.label(new_ids, new_labels, source="import")
        added += len(new_ids)
    yield Progress(len(lset.paths), len(lset.paths), "reference", "done")
    return added
