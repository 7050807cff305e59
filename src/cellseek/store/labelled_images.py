"""Labelled images (e.g. single-cell crops of a labelled CSV) added with their labels at once.

:func:`add_labelled_images` writes image rows, label images, cells, embeddings, thumbnails and
the confirmed labels with their audit rows inside the caller's ONE transaction, so an import
that is killed loses nothing it reported and a rerun completes it: an image already stored
keeps its cells and gets its label when it has none (also when an older cellseek stored the
image but was killed before the label).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cellseek.errors import StoreError
from cellseek.store.cells import check_embeddings, insert_cells
from cellseek.store.images import check_plane_labels, insert_image, save_plane_labels
from cellseek.store.labels import change_labels
from cellseek.store.rules import check_label, check_text
from cellseek.text import cells_text, count_text
from cellseek.types import Cell

#: Keys of the dict :func:`add_labelled_images` returns.
COUNT_KEYS = ("images_added", "images_matched", "cells_added", "labels_added",
              "labels_unchanged", "label_conflicts")


@dataclass(frozen=True)
class LabelledImage:
    """An image whose cells all carry one confirmed label.

    Parameters
    ----------
    path : str
        Where the image was read from (informative).
    content_hash : str
        The image's identity (see :func:`cellseek.io.content_hash`).
    label : str
        The confirmed class of its cells.
    cells : sequence of Cell
        Its cells; may be empty when the image and its cells are already in the store (see
        :meth:`ReferenceStore.cell_counts_by_hash`): then only the label is added.
    embeddings : mapping of str to ndarray, optional
        One ``(len(cells), dim)`` array per model of the store (required with ``cells``).
    thumbnails : sequence of bytes, optional
        One encoded image (or None) per cell.
    plane_labels : mapping, optional
        ``(t, z) -> label image`` of the planes the cells come from.
    device, source : str
        Acquisition device and provenance (the source groups cells for alignment).
    pixel_size_um : float, optional
    shape : sequence of int
    """

    path: str
    content_hash: str
    label: str
    cells: Sequence[Cell] = ()
    embeddings: Mapping[str, np.ndarray] | None = None
    thumbnails: Sequence[bytes | None] | None = None
    plane_labels: Mapping[tuple[int, int], np.ndarray] | None = None
    device: str = "unknown"
    source: str = ""
    pixel_size_um: float | None = None
    shape: Sequence[int] = ()


def prepare(items: Sequence[LabelledImage], models: Mapping[str, int], where) -> list[tuple]:
    """Check every item before anything is written: ``[(item, label, float16 vectors)]``."""
    out = []
    for item in items:
        if not item.content_hash:
            raise ValueError(f"{item.path}: content_hash must be a non-empty string")
        label = check_label(item.label)
        for what, text in (("the image path", str(item.path)), ("the content hash",
                           item.content_hash), ("the device", item.device),
                           ("the source", item.source)):
            check_text(text, f"{what} of {str(item.path)[:200]!r}:")
        vectors = None
        if item.cells:
            if item.embeddings is None:
                raise StoreError(f"{where}: {item.path}: cells given without embeddings; "
                                 "nothing was saved")
            vectors = check_embeddings(models, item.embeddings, len(item.cells), where)
            if item.thumbnails is not None and len(item.thumbnails) != len(item.cells):
                raise StoreError(f"{where}: {item.path}: "
                                 f"{count_text(len(item.thumbnails), 'thumbnail')} for "
                                 f"{cells_text(len(item.cells))}; nothing was saved")
        for labels in (item.plane_labels or {}).values():
            check_plane_labels(labels)
        out.append((item, label, vectors))
    return out


def add_labelled_images(
    conn: sqlite3.Connection, prepared: Sequence[tuple], where, *, source: str = "import",
    note: str = "",
) -> dict:
    """Write :func:`prepare`'d items inside the caller's transaction; returns the counts.

    Labels go onto cells without a label (one audit batch, action ``import``, not undoable);
    a cell already labelled the same is counted unchanged; one labelled differently keeps its
    label (a person may have corrected it) and is counted as a conflict.
    """
    counts = dict.fromkeys(COUNT_KEYS, 0)
    changes: list[tuple[int, str, str]] = []
    claimed: dict[int, str] = {}  # cell id -> label given earlier in this call
    for item, label, vectors in prepared:
        known = conn.execute("SELECT 1 FROM images WHERE content_hash = ?",
                             (item.content_hash,)).fetchone() is not None
        image_id = insert_image(conn, item.path, item.content_hash, device=item.device,
                                source=item.source, pixel_size_um=item.pixel_size_um,
                                shape=item.shape)
        counts["images_matched" if known else "images_added"] += 1
        stored = conn.execute(
            "SELECT id, t, z, label_value, label FROM cells WHERE image_id = ? ORDER BY id",
            (image_id,),
        ).fetchall()
        if stored:
            keys = {(c.t, c.z, c.label) for c in item.cells}
            targets = [(r[0], r[4]) for r in stored if not keys or (r[1], r[2], r[3]) in keys]
        elif item.cells:
            for (t, z), labels in (item.plane_labels or {}).items():
                save_plane_labels(conn, image_id, t, z, labels, where)
            ids = insert_cells(conn, image_id, item.cells, vectors, item.thumbnails, where)
            counts["cells_added"] += len(ids)
            targets = [(int(i), None) for i in ids]
        else:
            raise StoreError(f"{where}: {item.path} has no cells in the store and none were "
                             "given; nothing was saved")
        for cell_id, here in targets:
            here = claimed.get(cell_id, here)
            if here is None:
                changes.append((cell_id, label, source))
                claimed[cell_id] = label
            elif here == label:
                counts["labels_unchanged"] += 1
            else:
                counts["label_conflicts"] += 1
    change_labels(conn, "import", changes, where, undoable=False, note=note)
    counts["labels_added"] = len(changes)
    return counts
