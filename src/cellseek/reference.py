"""Labelled sets of single-cell images (e.g. CellaVision crops) -> reference cells.

Each image holds one cell of interest near its centre. Its mask is the segmented object nearest
the centre (:func:`cellseek.segment.classical.central_cell_mask`); the crop is then cut exactly as
for cells found in whole fields (:func:`cellseek.crops.extract_crops`), so reference cells and
query cells are embedded the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class CheckedCsv:
    """A labelled CSV whose rows were all checked (see :func:`check_labelled_csv`).

    Parameters
    ----------
    lset : LabelledSet
        The rows of the CSV.
    hashes : tuple of str
        The content hash of every row's image.
    rows : tuple of int
        The rows to add (indices into ``lset``): the first of rows with the same pixels.
    repeats : int
        Rows left out because an earlier row holds the same pixels with the same label.
    """

    lset: object
    hashes: tuple[str, ...]
    rows: tuple[int, ...]
    repeats: int


def check_labelled_csv(csv_path) -> Work[CheckedCsv]:
    """Check every row of a labelled CSV before anything is written.

    Refused, with one line naming the CSV and the rows: a missing column, an empty path or
    label, a missing file (:func:`~cellseek.io.labelled_set.load_labelled_set`), the same image
    path twice, an image that cannot be read, and two images with the same pixels but
    different labels. Two images with the same pixels and the same label are added once (the
    repeat is counted and logged).
    """
    from cellseek.io import content_hash, read_image
    from cellseek.io.labelled_set import load_labelled_set

    lset = load_labelled_set(csv_path)
    where = lset.csv_path
    first_row: dict[Path, int] = {}
    for i, path in enumerate(lset.paths):
        if path in first_row:
            raise CellseekError(
                f"{where}, rows {first_row[path] + 2} and {i + 2}: the same image {path} twice; "
                "nothing was saved. Remove one of the rows."
            )
        first_row[path] = i
    hashes: list[str] = []
    by_hash: dict[str, int] = {}
    rows, repeats = [], 0
    for i, path in enumerate(lset.paths):
        if i % 50 == 0:
            yield Progress(i, len(lset.paths), "check", path.name)
        try:
            digest = content_hash(read_image(path))
        except CellseekError as err:
            raise CellseekError(f"{where}, row {i + 2}: {err}; nothing was saved") from None
        hashes.append(digest)
        if digest not in by_hash:
            by_hash[digest] = i
            rows.append(i)
            continue
        j = by_hash[digest]
        if lset.labels[j] != lset.labels[i]:
            raise CellseekError(
                f"{where}, rows {j + 2} and {i + 2}: {lset.paths[j].name} and {path.name} hold "
                f"the same pixels but are labelled {lset.labels[j]!r} and {lset.labels[i]!r}; "
                "nothing was saved. Fix one of the labels."
            )
        repeats += 1
        logger.warning("%s, row %d: %s holds the same pixels as row %d (%s); added once",
                       where, i + 2, path.name, j + 2, lset.paths[j].name)
    yield Progress(len(lset.paths), len(lset.paths), "check", "done")
    return CheckedCsv(lset, tuple(hashes), tuple(rows), repeats)


def add_labelled_csv(session, csv_path, *, batch: int = 64,
                     checked: CheckedCsv | None = None) -> Work[int]:
    """Add every image of a labelled CSV (``path,label[,source]``) as a confirmed reference cell.

    Every row is checked first (:func:`check_labelled_csv`; pass ``checked`` when that was
    done already): a CSV with a bad row saves nothing. Then each batch of images is written
    with its labels in one transaction (:meth:`ReferenceStore.add_labelled_images`), so an
    import that is killed keeps whole batches, and running it again completes it: images
    already stored are not embedded again, and their cells get the CSV's label when they have
    none.

    Returns
    -------
    int
        Labels added by this call (0 when every row was already in the store).
    """
    from cellseek.io import read_image
    from cellseek.store import LabelledImage
    from cellseek.zoo.embed import embed_all

    if checked is None:
        checked = yield from check_labelled_csv(csv_path)
    lset, hashes, rows = checked.lset, checked.hashes, list(checked.rows)
    totals: dict[str, int] = {}
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        stored = session.store.cell_counts_by_hash([hashes[i] for i in chunk])
        todo = [i for i in chunk if not stored.get(hashes[i])]
        yield Progress(start, len(rows), "reference", f"{len(todo)} new images")
        images = {i: read_image(lset.paths[i]) for i in todo}
        made: dict[int, tuple] = {}
        if todo:
            crops, masks, label_images = yield from single_cell_crops(
                [images[i] for i in todo], session.config.crop
            )
            embs = yield from embed_all(session.embedders(), crops, masks,
                                        batch_size=session.config.embed.batch_size)
            for n, i in enumerate(todo):
                made[i] = (cells_from_labels(label_images[n]),
                           {m: e[n : n + 1] for m, e in embs.items()}, [thumbnail_png(crops[n])])
        items = []
        for i in chunk:
            source = lset.sources[i] if lset.sources and lset.sources[i] else None
            if i in made:
                img = images[i]
                cells, embeddings, thumbs = made[i]
                items.append(LabelledImage(
                    str(img.path), hashes[i], lset.labels[i], cells=cells, embeddings=embeddings,
                    thumbnails=thumbs, device=img.device, source=source or img.device,
                    pixel_size_um=img.pixel_size_um, shape=img.shape))
            else:
                items.append(LabelledImage(str(lset.paths[i]), hashes[i], lset.labels[i]))
        counts = session.store.add_labelled_images(items, source="import",
                                                   note=f"from {lset.csv_path}")
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
    session.refresh()
    if totals.get("label_conflicts"):
        logger.warning("%s: %d cells already carry another label in %s; their labels were kept",
                       lset.csv_path, totals["label_conflicts"], session.store.path)
    logger.info("%s: %s (%d repeated rows)", lset.csv_path, totals, checked.repeats)
    yield Progress(len(rows), len(rows), "reference", "done")
    return totals.get("labels_added", 0)
