"""Replacing cells of one plane by new ones in one transaction: merging and splitting objects.

Used by :meth:`cellseek.store.ReferenceStore.replace_cells` (and through it by
:mod:`cellseek.cell_edits`): the plane's label image, the removed cells, the new cells with their
embeddings and the labels they keep change together or not at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cellseek.store import cells as cell_ops
from cellseek.store import images
from cellseek.store import labels as label_ops
from cellseek.store.rules import check_label
from cellseek.types import Cell


def replace_plane_cells(
    conn: sqlite3.Connection,
    image_id: int,
    plane: tuple[int, int],
    labels: np.ndarray,
    removed: Sequence[int],
    cells: Sequence[Cell],
    vectors: dict[str, np.ndarray],
    thumbnails: Sequence[bytes | None] | None,
    confirmed: Mapping[int, str] | None,
    where: Path,
) -> np.ndarray:
    """Save the plane's ``labels``, delete ``removed``, add ``cells`` and label the new cells.

    Parameters
    ----------
    conn : sqlite3.Connection
        Inside a write transaction.
    image_id : int
    plane : tuple of int
        ``(t, z)`` of the plane.
    labels : ndarray
        The plane's new label image (checked by :func:`cellseek.store.images.check_plane_labels`).
    removed : sequence of int
        Cell ids to delete (audit-logged).
    cells : sequence of Cell
        The new cells.
    vectors : dict of str to ndarray
        Checked embeddings of the new cells, per model.
    thumbnails : sequence of bytes or None, optional
    confirmed : mapping of int to str, optional
        Index into ``cells`` -> class confirmed for that new cell (source ``"user"``).
    where : Path
        The store file, for messages.

    Returns
    -------
    ndarray of int64
        The new cell ids, in the order of ``cells``.
    """
    t, z = (int(v) for v in plane)
    images.save_plane_labels(conn, image_id, t, z, labels, where)
    ids = list(dict.fromkeys(int(i) for i in removed))
    if ids:
        cell_ops.delete_cells(conn, ids, where)
    new = cell_ops.insert_cells(conn, image_id, cells, vectors, thumbnails, where)
    changes = [(int(new[i]), check_label(lab), "user") for i, lab in (confirmed or {}).items()]
    if changes:
        label_ops.change_labels(conn, "label", changes, where)
    return new
