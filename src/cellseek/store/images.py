"""Images and their plane label images, as functions on an open store connection.

Each function runs inside the caller's transaction (see
:class:`cellseek.store.connection.Transactions`); ``where`` is the store path named in errors.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

import numpy as np

from cellseek.errors import StoreError
from cellseek.store import untrusted_json
from cellseek.store.blobs import BlobError, decode_labels, encode_labels
from cellseek.store.common import chunks, marks, now
from cellseek.store.rules import check_text

IMAGE_COLUMNS = "id, path, content_hash, device, source, pixel_size_um, shape, added_at"


def image_dict(row: sqlite3.Row, n_cells: int) -> dict:
    """An ``images`` row as the dict :meth:`ReferenceStore.image` returns."""
    return {
        "id": row["id"],
        "path": row["path"],
        "content_hash": row["content_hash"],
        "device": row["device"],
        "source": row["source"],
        "pixel_size_um": row["pixel_size_um"],
        "shape": tuple(untrusted_json.loads(row["shape"])),
        "added_at": row["added_at"],
        "n_cells": n_cells,
    }


def insert_image(
    conn: sqlite3.Connection,
    path: str,
    content_hash: str,
    *,
    device: str = "unknown",
    source: str = "",
    pixel_size_um: float | None = None,
    shape: Sequence[int] = (),
) -> int:
    """The id of the image with ``content_hash``; a new row when the hash is unknown."""
    if not content_hash:
        raise ValueError("content_hash must be a non-empty string")
    for what, text in (("the image path", str(path)), ("the content hash", content_hash),
                       ("the device", device), ("the source", source)):
        check_text(text, what)
    row = conn.execute("SELECT id FROM images WHERE content_hash = ?", (content_hash,)).fetchone()
    if row is not None:
        return row[0]
    cur = conn.execute(
        "INSERT INTO images (path, content_hash, device, source, pixel_size_um, shape, "
        "added_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            str(path),
            content_hash,
            device,
            source,
            None if pixel_size_um is None else float(pixel_size_um),
            json.dumps([int(s) for s in shape]),
            now(),
        ),
    )
    return cur.lastrowid


def require_image(conn: sqlite3.Connection, image_id: int, where) -> None:
    """Raise :class:`StoreError` when there is no image ``image_id``."""
    if conn.execute("SELECT 1 FROM images WHERE id = ?", (int(image_id),)).fetchone() is None:
        raise StoreError(f"{where}: there is no image with id {image_id}")


def get_image(conn: sqlite3.Connection, image_id: int, where) -> dict:
    """One image as a dict (with its cell count)."""
    row = conn.execute(
        f"SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?", (int(image_id),)
    ).fetchone()
    if row is None:
        raise StoreError(f"{where}: there is no image with id {image_id}")
    n = conn.execute("SELECT COUNT(*) FROM cells WHERE image_id = ?", (row["id"],)).fetchone()[0]
    return image_dict(row, n)


def all_images(conn: sqlite3.Connection) -> list[dict]:
    """Every image, ordered by id."""
    counts = dict(conn.execute("SELECT image_id, COUNT(*) FROM cells GROUP BY image_id"))
    rows = conn.execute(f"SELECT {IMAGE_COLUMNS} FROM images ORDER BY id").fetchall()
    return [image_dict(r, counts.get(r["id"], 0)) for r in rows]


def image_id_by_hash(conn: sqlite3.Connection, content_hash: str) -> int | None:
    """The id of the image with this content hash, or None."""
    row = conn.execute("SELECT id FROM images WHERE content_hash = ?", (content_hash,)).fetchone()
    return None if row is None else row[0]


def cell_counts_by_hash(conn: sqlite3.Connection, hashes: Sequence[str]) -> dict[str, int]:
    """Content hash -> number of stored cells, for the given hashes that are stored images."""
    out: dict[str, int] = {}
    unique = list(dict.fromkeys(hashes))
    for chunk in chunks(unique):
        out.update(conn.execute(
            "SELECT i.content_hash, COUNT(c.id) FROM images i LEFT JOIN cells c "
            f"ON c.image_id = i.id WHERE i.content_hash IN ({marks(len(chunk))}) "
            "GROUP BY i.id",
            tuple(chunk),
        ).fetchall())
    return out


def check_plane_labels(labels) -> np.ndarray:
    """A 2-D integer label image, or ``ValueError``."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 2-D integer array, got {labels.dtype} "
                         f"{labels.shape}")
    return labels


def save_plane_labels(
    conn: sqlite3.Connection, image_id: int, t: int, z: int, labels: np.ndarray, where
) -> None:
    """Save (or replace) the label image of plane ``(t, z)`` of an image."""
    blob = encode_labels(check_plane_labels(labels))
    require_image(conn, image_id, where)
    conn.execute(
        "INSERT OR REPLACE INTO planes (image_id, t, z, labels) VALUES (?, ?, ?, ?)",
        (int(image_id), int(t), int(z), blob),
    )


def read_plane_labels(
    conn: sqlite3.Connection, image_id: int, where
) -> dict[tuple[int, int], np.ndarray]:
    """Every saved label image of an image: ``(t, z) -> int32 labels`` (bounded decoding)."""
    out = {}
    for t, z, blob in conn.execute(
        "SELECT t, z, labels FROM planes WHERE image_id = ? ORDER BY t, z", (int(image_id),)
    ):
        try:
            out[(int(t), int(z))] = decode_labels(blob)
        except BlobError as exc:
            raise StoreError(
                f"{where}: the label image of image {image_id}, plane t={t} z={z} is refused: "
                f"{exc}"
            ) from None
    return out
