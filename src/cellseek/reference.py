"""Labelled sets of single-cell images (e.g. CellaVision crops) -> reference cells.

Each image holds one cell of interest near its centre. Its mask is the segmented object nearest
the centre (:func:`cellseek.segment.classical.central_cell_mask`); the crop is then cut exactly as
for cells found in whole fields (:func:`cellseek.crops.extract_crops`), so reference cells and
query cells are embedded the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellseek.config import CropConfig
from cellseek.crops import cells_from_labels, extract_crops, thumbnail_png
from cellseek.errors import CellseekError
from cellseek.types import ImageData, Progress, Work

logger = logging.getLogger(__name__)


def single_cell_labels(image: np.ndarray) -> np.ndarray:
    """Label image (0/1) of the cell nearest the centre of a single-cell image."""
    from cellseek.segment.classical import central_cell_mask

    mask = central_cell_mask(np.asarray(image))
    if not mask.any():
        raise CellseekError("no cell found near the image centre")
    return mask.astype(np.int32)


def single_cell_crops(
    images: Sequence[ImageData | Path], config: CropConfig | None = None
) -> Work[tuple[np.ndarray, np.ndarray, list[np.ndarray]]]:
    """Crops, masks and label images of single-cell images (already read, or paths to read).

    Returns
    -------
    crops : ndarray
        float32 ``(N, size, size, 3)``.
    masks : ndarray
        bool ``(N, size, size)``.
    labels : list of ndarray
        The 0/1 label image of each input.
    """
    from cellseek.io import iter_planes, read_image

    config = config or CropConfig()
    crops = np.zeros((len(images), config.size, config.size, 3), np.float32)
    masks = np.zeros((len(images), config.size, config.size), bool)
    label_images = []
    for i, image in enumerate(images):
        if not isinstance(image, ImageData):
            image = read_image(image)
        if i % 25 == 0:
            yield Progress(i, len(images), "crop", Path(image.path).name)
        _, _, plane = next(iter_planes(image))
        plane = np.asarray(plane)
        try:
            labels = single_cell_labels(plane)
        except CellseekError as err:
            raise CellseekError(f"{image.path}: {err}") from None
        c, m = extract_crops(plane, labels, cells_from_labels(labels), config)
        crops[i], masks[i] = c[0], m[0]
        label_images.append(labels)
    yield Progress(len(images), len(images), "crop", "done")
    return crops, masks, label_images


def add_labelled_csv(session, csv_path, *, batch: int = 64) -> Work[int]:
    """Add every image of a labelled CSV (``path,label[,source]``) as a confirmed reference cell.

    Images already in the store (same pixel content) are skipped. Returns the number added.
    """
    from cellseek.io import content_hash, read_image
    from cellseek.io.labelled_set import load_labelled_set
    from cellseek.zoo.embed import embed_all

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
        crops, masks, label_images = yield from single_cell_crops(
            [images[j] for j in todo], session.config.crop
        )
        embs = yield from embed_all(session.embedders(), crops, masks,
                                    batch_size=session.config.embed.batch_size)
        new_ids, new_labels = [], []
        for n, j in enumerate(todo):
            i = rows[j]
            img = images[j]
            source = lset.sources[i] if lset.sources and lset.sources[i] else img.device
            image_id = session.store.add_image(
                img.path, hashes[j], device=img.device, source=source,
                pixel_size_um=img.pixel_size_um, shape=img.shape,
            )
            ids = session.store.add_cells(
                image_id, cells_from_labels(label_images[n]),
                {m: e[n : n + 1] for m, e in embs.items()}, thumbnails=[thumbnail_png(crops[n])],
            )
            new_ids.extend(int(c) for c in ids)
            new_labels.append(lset.labels[i])
        session.label(new_ids, new_labels, source="import")
        added += len(new_ids)
    yield Progress(len(lset.paths), len(lset.paths), "reference", "done")
    return added
