"""Labelled sets of single-cell images (e.g. CellaVision crops) -> confirmed reference cells.

Each image holds one cell of interest near its centre;
:meth:`cellseek.pipeline.Pipeline.single_cells` segments, crops and embeds it exactly as cells found
in whole fields, so reference cells and query cells compare. Every row is checked before anything
is written, and each batch of images is written with its labels in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cellseek.errors import CellseekError
from cellseek.text import count_text
from cellseek.types import Progress, Work

logger = logging.getLogger(__name__)

#: Smallest height and width of a single-cell image (a smaller one cannot hold a cell; the
#: cell-finding step finds nothing in it and an import would stop there).
MIN_SINGLE_CELL_SIDE = 8


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
    path twice, an image that cannot be read, a constant image or one smaller than
    :data:`MIN_SINGLE_CELL_SIDE` pixels a side (no cell to find), and two images with the same
    pixels but different labels. Two images with the same pixels and the same label are added
    once (the repeat is counted and logged).
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
            image = read_image(path)
            digest = content_hash(image)
        except CellseekError as err:
            raise CellseekError(f"{where}, row {i + 2}: {err}; nothing was saved") from None
        if "constant" in image.metadata:
            raise CellseekError(f"{where}, row {i + 2}: {image.metadata['constant']}: it shows "
                                "no cell to keep as a reference; nothing was saved. Remove the "
                                "row.")
        height, width = (image.shape[image.axes.index(a)] for a in "YX")
        if min(height, width) < MIN_SINGLE_CELL_SIDE:
            raise CellseekError(
                f"{where}, row {i + 2}: {path.name} is {width} x {height} pixels, too small to "
                f"hold a cell (at least {MIN_SINGLE_CELL_SIDE} x {MIN_SINGLE_CELL_SIDE}); nothing "
                "was saved. Remove the row.")
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


def _stopped(err: CellseekError, lset, todo: list[int], saved: int, total: int) -> CellseekError:
    """The error of an import that stopped at one image: its row and what was saved."""
    row = next((i for i in todo if str(lset.paths[i]) in str(err)), None)
    where = f"{lset.csv_path}, row {row + 2}" if row is not None else f"{lset.csv_path}"
    return CellseekError(
        f"{where}: {err}. The import stopped there: {saved} of {total} images were saved "
        "before it (in whole batches with their labels); fix or remove the row and run the "
        "command again, which adds the rest without adding the saved ones twice")


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

    if checked is None:
        checked = yield from check_labelled_csv(csv_path)
    lset, hashes, rows = checked.lset, checked.hashes, list(checked.rows)
    totals: dict[str, int] = {}
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        stored = session.store.cell_counts_by_hash([hashes[i] for i in chunk])
        todo = [i for i in chunk if not stored.get(hashes[i])]
        yield Progress(start, len(rows), "reference", count_text(len(todo), "new image"))
        images = {i: read_image(lset.paths[i]) for i in todo}
        made: dict[int, tuple] = {}
        if todo:
            try:
                planes = yield from session.pipeline.single_cells([images[i] for i in todo])
            except CellseekError as err:
                raise _stopped(err, lset, todo, start, len(rows)) from None
            for plane, i in zip(planes, todo):
                made[i] = (plane.cells, plane.embeddings, plane.thumbnails)
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
