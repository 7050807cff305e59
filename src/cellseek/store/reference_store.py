"""The reference store: one SQLite file per reference set, the single source of truth.

A store holds the images, their segmented cells, per-model embeddings (float16), the confirmed
labels with their source, suggestions, the model set and its weights, free metadata and an audit
log of every label change with undo. Every write is one SQLite transaction in WAL mode with
``synchronous=FULL``: a crash, a kill or a full disk never loses or corrupts a confirmed label.
See ``docs/store.md`` for the schema and the guarantees.

Examples
--------
>>> store = ReferenceStore.create("refs.cellseek", {"classical": 64})  # doctest: +SKIP
>>> image_id = store.add_image("a.tif", "sha256:...")                   # doctest: +SKIP
>>> ids = store.add_cells(image_id, cells, {"classical": emb})          # doctest: +SKIP
>>> store.set_label(int(ids[0]), "neutrophil")                          # doctest: +SKIP
>>> store.undo()                                                         # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from cellseek.errors import IncompatibleStoreError, StoreError
from cellseek.store import exchange as _exchange
from cellseek.store import schema
from cellseek.store.schema import (
    APPLICATION_ID,
    FORMAT_NAME,
    LABEL_SOURCES,
    SCHEMA_SQL,
    SCHEMA_VERSION,
    UNDOABLE_ACTIONS,
    is_cellseek_store,
    translate_error,
)
from cellseek.types import Cell

logger = logging.getLogger(__name__)

__all__ = ["ReferenceStore", "SCHEMA_VERSION", "LABEL_SOURCES"]

_CELL_COLUMNS = (
    "id, image_id, label_value, t, z, bbox_row_min, bbox_col_min, bbox_row_max, bbox_col_max, "
    "centroid_row, centroid_col, area, touches_border, label, label_source, suggestion, "
    "confidence, labelled_at"
)
_IMAGE_COLUMNS = "id, path, content_hash, device, source, pixel_size_um, shape, added_at"
_CHUNK = 900  # bound parameters per IN (...) query, below SQLite's historic limit of 999


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _chunks(values: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _format_models(models: dict[str, int]) -> str:
    return "{" + ", ".join(f"{name}: {dim}" for name, dim in sorted(models.items())) + "}"


def _check_models(models: dict[str, int]) -> dict[str, int]:
    if not models:
        raise ValueError("a reference store needs at least one model (name -> embedding dim)")
    out = {}
    for name, dim in models.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"model names must be non-empty strings, got {name!r}")
        if int(dim) <= 0:
            raise ValueError(f"model {name!r}: embedding dim must be positive, got {dim}")
        out[name] = int(dim)
    return out


def _check_label(label) -> str:
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"a label must be a non-empty string, got {label!r}")
    return label.strip()


def _cell_dict(row: sqlite3.Row) -> dict:
    return {
        "id": row["id"],
        "image_id": row["image_id"],
        "label_value": row["label_value"],
        "t": row["t"],
        "z": row["z"],
        "bbox": (
            row["bbox_row_min"],
            row["bbox_col_min"],
            row["bbox_row_max"],
            row["bbox_col_max"],
        ),
        "centroid": (row["centroid_row"], row["centroid_col"]),
        "area": row["area"],
        "touches_border": bool(row["touches_border"]),
        "label": row["label"],
        "label_source": row["label_source"],
        "suggestion": row["suggestion"],
        "confidence": row["confidence"],
        "labelled_at": row["labelled_at"],
    }


def _image_dict(row: sqlite3.Row, n_cells: int) -> dict:
    return {
        "id": row["id"],
        "path": row["path"],
        "content_hash": row["content_hash"],
        "device": row["device"],
        "source": row["source"],
        "pixel_size_um": row["pixel_size_um"],
        "shape": tuple(json.loads(row["shape"])),
        "added_at": row["added_at"],
        "n_cells": n_cells,
    }


class ReferenceStore:
    """A labelled reference set of cells in one SQLite file.

    Make one with :meth:`create` or :meth:`open`, not with the constructor. A store is safe to use
    from several threads (calls are serialised) and by several processes (SQLite locks; a writer
    waits up to ``schema.BUSY_TIMEOUT_S`` seconds for another).

    Attributes
    ----------
    path : Path
        The store file.
    models : dict of str to int
        Model name -> embedding dim; fixed for the store's life.
    schema_version : int
        Schema version of the file (always the current one once opened writable).
    readonly : bool
        Whether the store was opened read-only.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, *, readonly: bool) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.RLock()
        self.readonly = readonly
        conn.row_factory = sqlite3.Row
        self.schema_version = conn.execute("PRAGMA user_version").fetchone()[0]
        rows = conn.execute("SELECT name, dim FROM models ORDER BY name").fetchall()
        self.models: dict[str, int] = {r["name"]: r["dim"] for r in rows}

    # ------------------------------------------------------------------ opening and closing

    @classmethod
    def create(cls, path, models: dict[str, int], *, overwrite: bool = False) -> ReferenceStore:
        """Create a new, empty store.

        The file is built under a temporary name next to ``path`` and renamed into place, so a
        failure never leaves a half-written store behind.

        Parameters
        ----------
        path : str or Path
            The store file; missing parent folders are created.
        models : dict of str to int
            Model name -> embedding dim. Fixed for the store's life.
        overwrite : bool
            Replace an existing file at ``path``.

        Returns
        -------
        ReferenceStore
            The new store, open for writing.

        Raises
        ------
        StoreError
            ``path`` exists and ``overwrite`` is false, or the folder cannot be written.
        """
        path = Path(path).expanduser().absolute()
        models = _check_models(models)
        if path.exists() and not overwrite:
            raise StoreError(
                f"{path}: a file already exists here. Open it with ReferenceStore.open, or pass "
                "overwrite=True to replace it."
            )
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "xb"):  # an OSError here names the real cause (read-only, full)
                pass
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                # The file is private until renamed into place and fsynced as a whole below,
                # so building it needs no per-statement syncs.
                conn.execute("PRAGMA synchronous=OFF")
                conn.execute("BEGIN IMMEDIATE")
                for statement in SCHEMA_SQL.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                from cellseek import __version__

                meta = {
                    "format": FORMAT_NAME,
                    "created_by": f"cellseek {__version__}",
                    "created_at": _now(),
                }
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [(k, json.dumps(v)) for k, v in meta.items()],
                )
                conn.executemany(
                    "INSERT INTO models (name, dim) VALUES (?, ?)", sorted(models.items())
                )
                conn.execute("COMMIT")
                conn.execute("PRAGMA journal_mode=WAL")
            finally:
                conn.close()
            schema.fsync_file(tmp)
            # -wal/-shm files left at this path (by the store replaced here, or by one deleted
            # without them) would be read into the new file: they go, whether or not it exists
            schema.remove_quietly(*schema.sidecars(path))
            os.replace(tmp, path)
            schema.fsync_dir(path.parent)
        except (sqlite3.Error, OSError) as exc:
            schema.remove_quietly(tmp, *schema.sidecars(tmp))
            raise translate_error(exc, path, "creating the store") from exc
        logger.info("created reference store %s with models %s", path, _format_models(models))
        return cls.open(path)

    @classmethod
    def open(
        cls, path, *, models: dict[str, int] | None = None, readonly: bool = False
    ) -> ReferenceStore:
        """Open an existing store, migrating an older schema.

        Parameters
        ----------
        path : str or Path
            The store file.
        models : dict of str to int, optional
            The model set the caller expects; must equal the stored one exactly.
        readonly : bool
            Open read-only: every write raises :class:`StoreError`; no migration is done.

        Returns
        -------
        ReferenceStore

        Raises
        ------
        IncompatibleStoreError
            The model set differs from ``models``, or the file was made by a newer cellseek.
        StoreError
            The file is missing, is not a cellseek store, is damaged, or needs a migration but
            was opened read-only.
        """
        path = Path(path).expanduser().absolute()
        if path.is_dir():
            raise StoreError(f"{path}: this is a folder; give the path of a reference store file")
        if not path.is_file():
            raise StoreError(f"{path}: no such reference store (the file does not exist)")
        conn = None
        try:
            conn = schema.connect(path, readonly)
            if not is_cellseek_store(conn):
                raise StoreError(f"{path}: this file is not a cellseek reference store")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise IncompatibleStoreError(
                    f"{path}: made by a newer cellseek (schema {version} > {SCHEMA_VERSION}); "
                    "upgrade cellseek"
                )
            if not readonly:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":  # pragma: no cover - e.g. some network file systems
                    logger.warning("%s: WAL mode unavailable, using %s journal", path, mode)
            conn.execute("PRAGMA synchronous=FULL")
            if version < SCHEMA_VERSION:
                if readonly:
                    raise StoreError(
                        f"{path}: the store has schema {version} and needs an upgrade to schema "
                        f"{SCHEMA_VERSION}; open it once without readonly (a backup is made first)"
                    )
                schema.migrate(conn, path, version)
            store = cls(path, conn, readonly=readonly)
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise StoreError(
                    f"{path}: this file is not a cellseek reference store, or it is damaged "
                    f"({exc}). Restore it from a backup."
                ) from exc
            raise translate_error(exc, path, "opening the store") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if models is not None and _check_models(models) != store.models:
            store.close()
            raise IncompatibleStoreError(
                f"{path}: the store was made with another model set: the store has "
                f"{_format_models(store.models)}, asked for {_format_models(models)}"
            )
        return store

    def close(self) -> None:
        """Close the store (idempotent). Everything confirmed is already on disk."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ReferenceStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else ("read-only" if self.readonly else "open")
        return f"ReferenceStore({str(self.path)!r}, models={_format_models(self.models)}, {state})"

    # ------------------------------------------------------------------ transactions

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._conn

    @contextmanager
    def _write(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT); rolled back on any error."""
        if self.readonly:
            raise StoreError(
                f"{self.path}: {doing} failed: the store was opened read-only; open it without "
                "readonly=True to change it"
            )
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:  # pragma: no cover - SQLite already rolled back
                        logger.exception("%s: rollback failed", self.path)
                if isinstance(exc, (sqlite3.Error, OSError)):
                    raise translate_error(exc, self.path, doing) from exc
                raise

    @contextmanager
    def _read(self, doing: str = "reading the store") -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several queries (a deferred read transaction)."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN")
                yield conn
            except (sqlite3.Error, OSError) as exc:
                raise translate_error(exc, self.path, doing) from exc
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _new_batch(
        self, conn: sqlite3.Connection, action: str, *, undoable: bool, note: str = ""
    ) -> int:
        cur = conn.execute(
            "INSERT INTO batches (action, time, note, undoable) VALUES (?, ?, ?, ?)",
            (action, _now(), note, int(undoable)),
        )
        return cur.lastrowid

    def _change_labels(
        self,
        conn: sqlite3.Connection,
        action: str,
        changes: Iterable[tuple[int, str | None, str | None]],
        *,
        batch_id: int | None = None,
        undoable: bool = True,
        note: str = "",
        skip_missing: bool = False,
    ) -> int | None:
        """Apply ``(cell_id, new_label, new_source)`` changes with one audit row each.

        A batch is created on the first real change (unless ``batch_id`` is given); changes that
        change nothing are skipped. Returns the batch id, or None when nothing changed.
        """
        now = _now()
        for cell_id, new_label, new_source in changes:
            row = conn.execute(
                "SELECT label, label_source FROM cells WHERE id = ?", (cell_id,)
            ).fetchone()
            if row is None:
                if skip_missing:
                    continue
                raise StoreError(f"{self.path}: there is no cell with id {cell_id} in this store")
            old_label, old_source = row[0], row[1]
            if old_label == new_label and old_source == new_source:
                continue
            if batch_id is None:
                batch_id = self._new_batch(conn, action, undoable=undoable, note=note)
            conn.execute(
                "UPDATE cells SET label = ?, label_source = ?, labelled_at = ? WHERE id = ?",
                (new_label, new_source, now if new_label is not None else None, cell_id),
            )
            conn.execute(
                "INSERT INTO audit (batch_id, cell_id, action, old_label, new_label, old_source, "
                "new_source, note, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    batch_id,
                    cell_id,
                    action,
                    old_label,
                    new_label,
                    old_source,
                    new_source,
                    note,
                    now,
                ),
            )
        return batch_id

    # ------------------------------------------------------------------ images

    def add_image(
        self,
        path: str,
        content_hash: str,
        *,
        device: str = "unknown",
        source: str = "",
        pixel_size_um: float | None = None,
        shape: Sequence[int] = (),
    ) -> int:
        """Register an image; idempotent on ``content_hash``.

        Parameters
        ----------
        path : str
            Where the image was read from (informative; images are found by hash).
        content_hash : str
            Hash of the image content, the image's identity across stores.
        device, source : str
            Acquisition device (``"nanolive"``, ``"lionheart"`` ...) and free provenance text.
        pixel_size_um : float, optional
            Lateral pixel size in micrometres.
        shape : sequence of int
            Shape of the image data.

        Returns
        -------
        int
            The image id (the existing one when the hash is already known).
        """
        if not content_hash:
            raise ValueError("content_hash must be a non-empty string")
        existing = self.image_by_hash(content_hash)
        if existing is not None:
            return existing["id"]
        with self._write(f"adding image {path}") as conn:
            row = conn.execute(
                "SELECT id FROM images WHERE content_hash = ?", (content_hash,)
            ).fetchone()
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
                    _now(),
                ),
            )
            return cur.lastrowid

    def image(self, image_id: int) -> dict:
        """One image as a dict (id, path, content_hash, device, source, pixel_size_um, shape,
        added_at, n_cells)."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id = ?", (int(image_id),)
            ).fetchone()
            if row is None:
                raise StoreError(f"{self.path}: there is no image with id {image_id}")
            n = conn.execute("SELECT COUNT(*) FROM cells WHERE image_id = ?", (row["id"],))
            return _image_dict(row, n.fetchone()[0])

    def images(self) -> list[dict]:
        """All images, ordered by id."""
        with self._read() as conn:
            counts = dict(conn.execute("SELECT image_id, COUNT(*) FROM cells GROUP BY image_id"))
            rows = conn.execute(f"SELECT {_IMAGE_COLUMNS} FROM images ORDER BY id").fetchall()
        return [_image_dict(r, counts.get(r["id"], 0)) for r in rows]

    def set_plane_labels(self, image_id: int, t: int, z: int, labels: np.ndarray) -> None:
        """Save (or replace) the instance label image of one plane of an image.

        Parameters
        ----------
        image_id : int
            The image.
        t, z : int
            The plane.
        labels : ndarray
            Integer ``(Y, X)`` label image; its values are the cells' ``label_value``.
        """
        labels = np.asarray(labels)
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be a 2-D integer array, got {labels.dtype} "
                             f"{labels.shape}")
        blob = _encode_labels(labels)
        with self._write("saving a label image") as conn:
            if conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is None:
                raise StoreError(f"{self.path}: there is no image with id {image_id}")
            conn.execute(
                "INSERT OR REPLACE INTO planes (image_id, t, z, labels) VALUES (?, ?, ?, ?)",
                (int(image_id), int(t), int(z), blob),
            )

    def plane_labels(self, image_id: int) -> dict[tuple[int, int], np.ndarray]:
        """Every saved label image of an image: ``(t, z) -> labels``."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT t, z, labels FROM planes WHERE image_id = ? ORDER BY t, z", (image_id,)
            ).fetchall()
        return {(r[0], r[1]): _decode_labels(r[2]) for r in rows}

    def image_by_hash(self, content_hash: str) -> dict | None:
        """The image with this content hash, or None."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT id FROM images WHERE content_hash = ?", (content_hash,)
            ).fetchone()
        return None if row is None else self.image(row[0])

    # ------------------------------------------------------------------ cells

    def add_cells(
        self,
        image_id: int,
        cells: Sequence[Cell],
        embeddings: dict[str, np.ndarray],
        *,
        thumbnails: Sequence[bytes | None] | None = None,
    ) -> np.ndarray:
        """Add cells of one image with their embeddings, in one transaction.

        Parameters
        ----------
        image_id : int
            An image of this store.
        cells : sequence of Cell
            The cells; ``(t, z, label)`` must be new for this image.
        embeddings : dict of str to ndarray
            One ``(len(cells), dim)`` finite array for every model of the store, stored as
            float16 (relative error about 1e-3).
        thumbnails : sequence of bytes, optional
            One encoded image (e.g. PNG) per cell, or None entries.

        Returns
        -------
        ndarray of int64
            The new cell ids, in the order of ``cells``.

        Raises
        ------
        StoreError
            A model is missing or unknown, a shape is wrong, values are not finite or too large
            for float16, or a cell already exists. Nothing is saved then.
        """
        n = len(cells)
        vectors = self._check_embeddings(embeddings, n)
        if thumbnails is not None and len(thumbnails) != n:
            raise StoreError(
                f"{self.path}: {len(thumbnails)} thumbnails given for {n} cells; give one per cell"
            )
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        ids = np.empty(n, dtype=np.int64)
        with self._write(f"saving {n} cells") as conn:
            if (
                conn.execute("SELECT 1 FROM images WHERE id = ?", (int(image_id),)).fetchone()
                is None
            ):
                raise StoreError(f"{self.path}: there is no image with id {image_id}")
            for i, cell in enumerate(cells):
                try:
                    cur = conn.execute(
                        "INSERT INTO cells (image_id, label_value, t, z, bbox_row_min, "
                        "bbox_col_min, bbox_row_max, bbox_col_max, centroid_row, centroid_col, "
                        "area, touches_border) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            int(image_id),
                            int(cell.label),
                            int(cell.t),
                            int(cell.z),
                            *(int(b) for b in cell.bbox),
                            *(float(c) for c in cell.centroid),
                            int(cell.area),
                            int(bool(cell.touches_border)),
                        ),
                    )
                except sqlite3.IntegrityError as exc:
                    raise StoreError(
                        f"{self.path}: image {image_id} already has a cell with label value "
                        f"{cell.label} at t={cell.t}, z={cell.z}; delete the old cells first. "
                        "Nothing was saved."
                    ) from exc
                ids[i] = cur.lastrowid
            id_list = ids.tolist()
            for model, arr in vectors.items():
                conn.executemany(
                    "INSERT INTO embeddings (cell_id, model, vector) VALUES (?, ?, ?)",
                    ((cid, model, arr[i].tobytes()) for i, cid in enumerate(id_list)),
                )
            if thumbnails is not None:
                conn.executemany(
                    "INSERT INTO thumbnails (cell_id, data) VALUES (?, ?)",
                    ((cid, bytes(th)) for cid, th in zip(id_list, thumbnails) if th is not None),
                )
        return ids

    def _check_embeddings(self, embeddings: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        missing = sorted(set(self.models) - set(embeddings))
        unknown = sorted(set(embeddings) - set(self.models))
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"embeddings for model(s) {', '.join(missing)} are missing")
            if unknown:
                parts.append(f"model(s) {', '.join(unknown)} are not part of this store")
            raise StoreError(
                f"{self.path}: {'; '.join(parts)}. This store holds "
                f"{_format_models(self.models)}. Nothing was saved."
            )
        out = {}
        for model, dim in self.models.items():
            arr = np.asarray(embeddings[model])
            if arr.shape != (n, dim):
                raise StoreError(
                    f"{self.path}: embeddings of model {model!r} have shape {arr.shape}, expected "
                    f"({n}, {dim}). Nothing was saved."
                )
            if not np.isfinite(arr).all():
                bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
                raise StoreError(
                    f"{self.path}: embeddings of model {model!r} contain NaN or infinite values "
                    f"(rows {bad[:10].tolist()}{' ...' if bad.size > 10 else ''}). "
                    "Nothing was saved."
                )
            with np.errstate(over="ignore"):
                half = np.ascontiguousarray(arr, dtype="<f2")
            if not np.isfinite(half).all():
                raise StoreError(
                    f"{self.path}: embeddings of model {model!r} hold values too large for float16 "
                    "(|x| > 65504); normalise them. Nothing was saved."
                )
            out[model] = half
        return out

    def cells(self, image_id: int | None = None, *, labelled: bool | None = None) -> list[dict]:
        """Cells as dicts, ordered by id.

        Parameters
        ----------
        image_id : int, optional
            Only the cells of this image.
        labelled : bool, optional
            True: only confirmed cells; False: only unconfirmed ones; None: all.

        Returns
        -------
        list of dict
            Keys: id, image_id, label_value, t, z, bbox, centroid, area, touches_border, label,
            label_source, suggestion, confidence, labelled_at.
        """
        where, params = [], []
        if image_id is not None:
            where.append("image_id = ?")
            params.append(int(image_id))
        if labelled is not None:
            where.append("label IS NOT NULL" if labelled else "label IS NULL")
        sql = f"SELECT {_CELL_COLUMNS} FROM cells"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY id", params).fetchall()
        return [_cell_dict(r) for r in rows]

    def cell(self, cell_id: int) -> dict:
        """One cell as a dict (see :meth:`cells`)."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_CELL_COLUMNS} FROM cells WHERE id = ?", (int(cell_id),)
            ).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: there is no cell with id {cell_id} in this store")
        return _cell_dict(row)

    def n_cells(self, *, labelled: bool | None = None) -> int:
        """Number of cells (only confirmed ones when ``labelled`` is True, unconfirmed ones when
        False)."""
        sql = "SELECT COUNT(*) FROM cells"
        if labelled is not None:
            sql += " WHERE label IS NOT NULL" if labelled else " WHERE label IS NULL"
        with self._read() as conn:
            return conn.execute(sql).fetchone()[0]

    def embeddings(self, model: str, cell_ids: Sequence[int] | None = None) -> np.ndarray:
        """Embeddings of one model as float32.

        Parameters
        ----------
        model : str
            A model of the store.
        cell_ids : sequence of int, optional
            Rows in this order (repeats allowed); all cells ordered by id when None.

        Returns
        -------
        ndarray of float32, shape (n, dim)
        """
        if model not in self.models:
            raise StoreError(
                f"{self.path}: model {model!r} is not part of this store; it holds "
                f"{_format_models(self.models)}"
            )
        dim = self.models[model]
        with self._read("reading embeddings") as conn:
            if cell_ids is None:
                blobs = [
                    r[0]
                    for r in conn.execute(
                        "SELECT vector FROM embeddings WHERE model = ? ORDER BY cell_id", (model,)
                    )
                ]
            else:
                wanted = [int(i) for i in np.asarray(cell_ids, dtype=np.int64).ravel()]
                found: dict[int, bytes] = {}
                unique = sorted(set(wanted))
                for chunk in _chunks(unique):
                    marks = ",".join("?" * len(chunk))
                    found.update(
                        conn.execute(
                            "SELECT cell_id, vector FROM embeddings "
                            f"WHERE model = ? AND cell_id IN ({marks})",
                            (model, *chunk),
                        ).fetchall()
                    )
                absent = [i for i in unique if i not in found]
                if absent:
                    raise StoreError(
                        f"{self.path}: no {model!r} embedding for cell id(s) {absent[:10]}"
                        f"{' ...' if len(absent) > 10 else ''} (unknown or deleted cells)"
                    )
                blobs = [found[i] for i in wanted]
        if not blobs:
            return np.zeros((0, dim), dtype=np.float32)
        flat = np.frombuffer(b"".join(blobs), dtype="<f2")
        return flat.reshape(len(blobs), dim).astype(np.float32)

    def thumbnail(self, cell_id: int) -> bytes | None:
        """The thumbnail stored with a cell, or None."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT data FROM thumbnails WHERE cell_id = ?", (int(cell_id),)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def delete_cells(self, cell_ids: Sequence[int]) -> None:
        """Delete cells with their embeddings and thumbnails (audit-logged, not undoable).

        Raises
        ------
        StoreError
            A cell id is unknown (nothing is deleted then).
        """
        ids = list(dict.fromkeys(int(i) for i in np.asarray(cell_ids, dtype=np.int64).ravel()))
        if not ids:
            return
        with self._write(f"deleting {len(ids)} cells") as conn:
            batch_id = self._new_batch(conn, "delete", undoable=False)
            now = _now()
            for cid in ids:
                row = conn.execute(
                    "SELECT label, label_source FROM cells WHERE id = ?", (cid,)
                ).fetchone()
                if row is None:
                    raise StoreError(
                        f"{self.path}: there is no cell with id {cid}; nothing was deleted"
                    )
                conn.execute(
                    "INSERT INTO audit (batch_id, cell_id, action, old_label, new_label, "
                    "old_source, new_source, time) VALUES (?, ?, 'delete', ?, NULL, ?, NULL, ?)",
                    (batch_id, cid, row[0], row[1], now),
                )
            for chunk in _chunks(ids):
                conn.execute(f"DELETE FROM cells WHERE id IN ({','.join('?' * len(chunk))})", chunk)

    # ------------------------------------------------------------------ labels

    def set_label(self, cell_id: int, label: str, *, source: str = "user", note: str = "") -> None:
        """Confirm the label of one cell (one transaction, one undo step).

        Parameters
        ----------
        cell_id : int
        label : str
            Class name (surrounding white space is stripped).
        source : {"user", "accepted", "import"}
            ``"user"``: typed or corrected by a person; ``"accepted"``: a suggestion the user
            accepted; ``"import"``: merged from another store.
        note : str
            Free text kept in the audit log.
        """
        self._set(
            [int(cell_id)],
            [label],
            source=source,
            note=note,
            doing=f"saving the label of cell {cell_id}",
        )

    def set_labels(
        self, cell_ids: Sequence[int], labels: Sequence[str] | str, *, source: str = "user"
    ) -> None:
        """Confirm the labels of many cells in one transaction; one undo step.

        ``labels`` is one label per cell, or a single string for all of them.
        """
        ids = [int(i) for i in np.asarray(cell_ids, dtype=np.int64).ravel()]
        if isinstance(labels, str):
            labels = [labels] * len(ids)
        if len(labels) != len(ids):
            raise ValueError(f"{len(labels)} labels given for {len(ids)} cells")
        self._set(ids, list(labels), source=source, note="", doing=f"saving {len(ids)} labels")

    def _set(self, ids: list[int], labels: list[str], *, source: str, note: str, doing: str):
        if source not in LABEL_SOURCES:
            raise ValueError(f"label source must be one of {LABEL_SOURCES}, got {source!r}")
        labels = [_check_label(lab) for lab in labels]
        if not ids:
            return
        with self._write(doing) as conn:
            self._change_labels(
                conn, "label", [(i, lab, source) for i, lab in zip(ids, labels)], note=note
            )

    def clear_label(self, cell_id: int) -> None:
        """Remove the confirmed label of a cell (audited, undoable)."""
        with self._write(f"clearing the label of cell {cell_id}") as conn:
            self._change_labels(conn, "clear", [(int(cell_id), None, None)])

    def undo(self) -> list[tuple[int, str | None]] | None:
        """Revert the last label change that is not yet undone.

        One :meth:`set_label`, :meth:`set_labels`, :meth:`clear_label`, :meth:`rename_class` or
        :meth:`merge_classes` call is one step. Deletions and merges from other stores are not
        undoable and are skipped; cells deleted since are skipped. The undo is itself audited.
        Suggestions are not touched.

        Returns
        -------
        list of (int, str or None) or None
            ``(cell_id, restored label)`` for every reverted cell that still exists, or None when
            there is nothing to undo.
        """
        with self._write("undoing the last label change") as conn:
            marks = ",".join("?" * len(UNDOABLE_ACTIONS))
            row = conn.execute(
                f"SELECT id, action FROM batches WHERE undoable = 1 AND undone_by IS NULL AND "
                f"action IN ({marks}) ORDER BY id DESC LIMIT 1",
                UNDOABLE_ACTIONS,
            ).fetchone()
            if row is None:
                return None
            target = row[0]
            first: dict[int, tuple[str | None, str | None]] = {}
            for cid, old_label, old_source in conn.execute(
                "SELECT cell_id, old_label, old_source FROM audit WHERE batch_id = ? ORDER BY id",
                (target,),
            ):
                first.setdefault(cid, (old_label, old_source))
            alive = {
                r[0]
                for chunk in _chunks(list(first))
                for r in conn.execute(
                    f"SELECT id FROM cells WHERE id IN ({','.join('?' * len(chunk))})", chunk
                )
            }
            changes = [(cid, lab, src) for cid, (lab, src) in first.items() if cid in alive]
            undo_batch = self._new_batch(
                conn, "undo", undoable=False, note=f"undo of batch {target} ({row[1]})"
            )
            self._change_labels(
                conn, "undo", changes, batch_id=undo_batch, note=f"undo of batch {target}"
            )
            conn.execute("UPDATE batches SET undone_by = ? WHERE id = ?", (undo_batch, target))
        return [(cid, lab) for cid, lab, _ in changes]

    def labelled(self) -> tuple[np.ndarray, list[str]]:
        """``(cell ids as int64, labels)`` of all confirmed cells, ordered by id."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, label FROM cells WHERE label IS NOT NULL ORDER BY id"
            ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def set_suggestions(
        self,
        cell_ids: Sequence[int],
        labels: Sequence[str | None],
        confidences: Sequence[float | None],
    ) -> None:
        """Store suggestions (not labels: not audited, not in the undo stack), one transaction.

        A None label (an abstaining vote) or a NaN/None confidence is stored as NULL.
        """
        ids = [int(i) for i in np.asarray(cell_ids, dtype=np.int64).ravel()]
        if not (len(ids) == len(labels) == len(confidences)):
            raise ValueError(
                f"{len(ids)} cell ids, {len(labels)} labels and {len(confidences)} confidences; "
                "give one of each per cell"
            )

        def _conf(c):
            if c is None or not math.isfinite(float(c)):
                return None
            return float(c)

        rows = [
            (None if lab is None else str(lab), _conf(c), cid)
            for cid, lab, c in zip(ids, labels, confidences)
        ]
        with self._write(f"saving {len(ids)} suggestions") as conn:
            missing = []
            for row in rows:
                if (
                    conn.execute(
                        "UPDATE cells SET suggestion = ?, confidence = ? WHERE id = ?", row
                    ).rowcount
                    == 0
                ):
                    missing.append(row[2])
            if missing:
                raise StoreError(
                    f"{self.path}: no cell with id(s) {missing[:10]}; no suggestion was saved"
                )

    def classes(self) -> dict[str, int]:
        """Confirmed class -> number of cells, ordered by class name."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT label, COUNT(*) FROM cells WHERE label IS NOT NULL GROUP BY label "
                "ORDER BY label"
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def rename_class(self, old: str, new: str) -> None:
        """Rename a class on every confirmed cell; one undo step. Suggestions are left alone.

        Raises
        ------
        StoreError
            ``old`` is not a class, or ``new`` already is one (use :meth:`merge_classes`).
        """
        new = _check_label(new)
        if old == new:
            return
        with self._write(f"renaming class {old!r} to {new!r}") as conn:
            names = {
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT label FROM cells WHERE label IN (?, ?)", (old, new)
                )
            }
            if old not in names:
                raise StoreError(f"{self.path}: there is no class {old!r} to rename")
            if new in names:
                raise StoreError(
                    f"{self.path}: class {new!r} already exists; use merge_classes to join "
                    f"{old!r} into it"
                )
            rows = conn.execute(
                "SELECT id, label_source FROM cells WHERE label = ? ORDER BY id", (old,)
            ).fetchall()
            self._change_labels(
                conn, "rename", [(r[0], new, r[1]) for r in rows], note=f"rename {old!r} -> {new!r}"
            )

    def merge_classes(self, sources: Sequence[str], into: str) -> None:
        """Relabel every cell of the ``sources`` classes as ``into``; one undo step.

        Raises
        ------
        StoreError
            One of ``sources`` is not a class.
        """
        into = _check_label(into)
        sources = [s for s in dict.fromkeys(sources) if s != into]
        if not sources:
            return
        with self._write(f"merging classes {sources} into {into!r}") as conn:
            marks = ",".join("?" * len(sources))
            present = {
                r[0]
                for r in conn.execute(
                    f"SELECT DISTINCT label FROM cells WHERE label IN ({marks})", sources
                )
            }
            unknown = [s for s in sources if s not in present]
            if unknown:
                raise StoreError(f"{self.path}: there is no class {unknown[0]!r} to merge")
            rows = conn.execute(
                f"SELECT id, label_source FROM cells WHERE label IN ({marks}) ORDER BY id", sources
            ).fetchall()
            self._change_labels(
                conn,
                "merge_classes",
                [(r[0], into, r[1]) for r in rows],
                note=f"merge {sources} -> {into!r}",
            )

    def audit_log(self, cell_id: int | None = None) -> list[dict]:
        """Every label change (of one cell, or of all), oldest first.

        Returns
        -------
        list of dict
            Keys: id, batch_id, time, action (label, clear, rename, merge_classes, delete,
            import, undo), cell_id, old_label, new_label, old_source, source (of the new
            label), note, undone (whether the batch was undone since).
        """
        sql = (
            "SELECT a.id, a.batch_id, a.time, a.action, a.cell_id, a.old_label, a.new_label, "
            "a.old_source, a.new_source, a.note, b.undone_by FROM audit a "
            "JOIN batches b ON b.id = a.batch_id"
        )
        params: tuple = ()
        if cell_id is not None:
            sql += " WHERE a.cell_id = ?"
            params = (int(cell_id),)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY a.id", params).fetchall()
        return [
            {
                "id": r[0],
                "batch_id": r[1],
                "time": r[2],
                "action": r[3],
                "cell_id": r[4],
                "old_label": r[5],
                "new_label": r[6],
                "old_source": r[7],
                "source": r[8],
                "note": r[9],
                "undone": r[10] is not None,
            }
            for r in rows
        ]

    # ------------------------------------------------------------------ weights and metadata

    def set_model_weights(self, weights: dict[str, float]) -> None:
        """Store the fusion weight of every model (finite, >= 0; not normalised here)."""
        if set(weights) != set(self.models):
            raise StoreError(
                f"{self.path}: weights given for {sorted(weights)}, but this store holds "
                f"{_format_models(self.models)}; give one weight per model"
            )
        values = {}
        for name, w in weights.items():
            w = float(w)
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"weight of model {name!r} must be finite and >= 0, got {w}")
            values[name] = w
        with self._write("saving model weights") as conn:
            conn.executemany(
                "UPDATE models SET weight = ? WHERE name = ?",
                [(w, name) for name, w in values.items()],
            )

    def model_weights(self) -> dict[str, float] | None:
        """Model -> weight, or None while no weights were stored."""
        with self._read() as conn:
            rows = conn.execute("SELECT name, weight FROM models ORDER BY name").fetchall()
        if any(r[1] is None for r in rows):
            return None
        return {r[0]: r[1] for r in rows}

    def set_meta(self, key: str, value_json) -> None:
        """Store a JSON-serialisable value under ``key`` (e.g. the crop config)."""
        if key == "format":
            raise ValueError("the 'format' meta key is reserved")
        text = json.dumps(value_json)
        with self._write(f"saving metadata {key!r}") as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, text),
            )

    def meta(self, key: str, default=None):
        """The value stored under ``key``, or ``default``."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # ------------------------------------------------------------------ merge and export

    def merge_from(
        self, other: ReferenceStore | str | os.PathLike, *, labels_only: bool = False
    ) -> dict:
        """Merge another store into this one, in one transaction.

        Images are matched by content hash, cells by (image hash, t, z, label value). New
        images and cells are copied with their embeddings and thumbnails; labels are copied
        with source ``"import"`` onto cells without a label here. A cell labelled differently
        in both stores keeps its label here (counted as a conflict). With ``labels_only`` only
        labels are copied onto cells that already exist here; nothing else is added.

        Returns
        -------
        dict
            Counts: images_added, images_matched, cells_added, cells_matched, labels_added,
            labels_unchanged, label_conflicts.

        Raises
        ------
        IncompatibleStoreError
            The other store lacks one of this store's models or has another dim for it.
        """
        return _exchange.merge(self, other, labels_only=labels_only)

    def export_cells_csv(self, path, *, image_id: int | None = None) -> int:
        """Write one CSV row per cell; atomic (temp file + rename). Returns the row count.

        Columns: cell_id, image, image_hash, t, z, label_value, centroid_row, centroid_col,
        area, label, label_source, suggestion, confidence.
        """
        return _exchange.export_cells_csv(self, path, image_id=image_id)

    def backup(self, path) -> Path:
        """Write a consistent copy of the store to ``path`` (SQLite backup API), atomically.

        Safe while the store is open and in use. Returns the backup path.
        """
        return _exchange.backup(self, path)


def _encode_labels(labels: np.ndarray) -> bytes:
    """zlib-compressed ``.npy`` bytes of a label image (the smallest fitting unsigned dtype)."""
    import io
    import zlib

    top = int(labels.max()) if labels.size else 0
    dtype = np.uint16 if top < 2**16 else np.uint32 if top < 2**32 else np.int64
    buf = io.BytesIO()
    np.save(buf, labels.astype(dtype), allow_pickle=False)
    return zlib.compress(buf.getvalue(), 6)


def _decode_labels(blob: bytes) -> np.ndarray:
    """Inverse of :func:`_encode_labels` (as int32)."""
    import io
    import zlib

    return np.load(io.BytesIO(zlib.decompress(blob)), allow_pickle=False).astype(np.int32)
