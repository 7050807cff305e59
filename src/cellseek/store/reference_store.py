"""The reference store: one SQLite file per reference set, the single source of truth.

A store holds the images, their segmented cells, per-model embeddings (float16), the confirmed
labels with their source, suggestions, the model set and its weights, free metadata and an audit
log of every label change with undo. Every write is one SQLite transaction in WAL mode with
``synchronous=FULL``: a crash, a kill or a full disk never loses or corrupts a confirmed label.
See ``docs/store.md`` for the schema and the guarantees.

:class:`ReferenceStore` is the public API: it owns the connection and the transactions and
composes the modules of :mod:`cellseek.store` that do the work on a connection.

Examples
--------
>>> store = ReferenceStore.create("refs.cellseek", {"classical": 64})  # doctest: +SKIP
>>> image_id = store.add_image("a.tif", "sha256:...")                   # doctest: +SKIP
>>> ids = store.add_cells(image_id, cells, {"classical": emb})          # doctest: +SKIP
>>> store.set_label(int(ids[0]), "neutrophil"); store.undo()            # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from cellseek.errors import IncompatibleStoreError, StoreError
from cellseek.store import cells as cell_ops
from cellseek.store import classes as class_ops
from cellseek.store import (
    exchange,
    folder_export,
    images,
    integrity,
    lifecycle,
    plane_edits,
    search_state,
)
from cellseek.store import labelled_images as labelled_ops
from cellseek.store import labels as label_ops
from cellseek.store import meta as meta_ops
from cellseek.store.common import check_models, format_models
from cellseek.store.connection import Transactions
from cellseek.store.labelled_images import LabelledImage
from cellseek.store.rules import check_label
from cellseek.store.schema import LABEL_SOURCES, SCHEMA_VERSION
from cellseek.text import cells_text, count_text
from cellseek.types import Cell

logger = logging.getLogger(__name__)

__all__ = ["ReferenceStore", "SCHEMA_VERSION", "LABEL_SOURCES"]


class ReferenceStore:
    """A labelled reference set of cells in one SQLite file.

    Make one with :meth:`create` or :meth:`open`, not with the constructor. A store is safe to use
    from several threads (calls are serialised) and by several processes (SQLite locks; a writer
    waits up to ``connection.BUSY_TIMEOUT_S`` seconds for another).

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
        self.readonly = readonly
        self._tx = Transactions(path, conn, readonly=readonly)
        conn.row_factory = sqlite3.Row
        self.schema_version = conn.execute("PRAGMA user_version").fetchone()[0]
        self.models: dict[str, int] = meta_ops.read_models(conn)
        #: ``(label stamp before, after)`` of this object's latest label change, read in its
        #: transaction: who knew every label at *before* knows them at *after* with its change.
        self.last_label_write: tuple[int, int] | None = None

    @property
    def _conn(self) -> sqlite3.Connection | None:
        """The raw connection (None once closed); for tests and diagnostics only."""
        return None if self._tx.closed else self._tx.connection()

    # ------------------------------------------------------------------ opening and closing

    @classmethod
    def create(cls, path, models: dict[str, int], *, overwrite: bool = False,
               meta: Mapping[str, object] | None = None,
               versions: Mapping[str, int] | None = None) -> ReferenceStore:
        """Create a new, empty store.

        The file is built under a temporary name next to ``path`` and then published in one
        step that is exclusive unless ``overwrite``: two programs creating the same store never
        replace each other's file (one gets :class:`~cellseek.errors.StoreExistsError`), and a
        failure never leaves a half-written store behind.

        Parameters
        ----------
        path : str or Path
            The store file; missing parent folders are created.
        models : dict of str to int
            Model name -> embedding dim. Fixed for the store's life.
        overwrite : bool
            Replace an existing file at ``path``.
        meta : mapping, optional
            Metadata (JSON-serialisable values, see :meth:`set_meta`) written with the new
            store, so nobody ever opens it without them.
        versions : mapping, optional
            Model name -> version of its embedding space (``ModelSpec.version``); models not
            named are version 1. Saved as the meta key ``model_versions``.

        Returns
        -------
        ReferenceStore
            The new store, open for writing.

        Raises
        ------
        StoreExistsError
            ``path`` exists and ``overwrite`` is false.
        StoreError
            The folder cannot be written.
        """
        path = Path(path).expanduser().absolute()
        models = check_models(models)
        meta = {**(meta or {}), "model_versions": meta_ops.check_versions(versions or {}, models)}
        lifecycle.create_file(path, models, overwrite=overwrite, meta=meta)
        return cls.open(path)

    @classmethod
    def open(
        cls, path, *, models: dict[str, int] | None = None, readonly: bool = False,
        repair: bool = False, versions: Mapping[str, int] | None = None,
    ) -> ReferenceStore:
        """Open an existing store, migrating an older schema; check that it can be trusted.

        A store made elsewhere is untrusted input: the file must be a cellseek store whose
        schema holds nothing cellseek does not create (no triggers, no views) and whose values
        have the types and ranges cellseek writes (see ``docs/store.md``), else it is refused.

        Parameters
        ----------
        path : str or Path
            The store file.
        models : dict of str to int, optional
            The model set the caller expects; must equal the stored one exactly.
        readonly : bool
            Open read-only: every write raises :class:`StoreError`; no migration is done (a
            schema-3 store is read as is). Works on read-only folders and media (SQLite's
            ``immutable`` mode) and leaves no ``-wal``/``-shm`` files behind.
        repair : bool
            Drop the triggers, views and other SQL objects cellseek does not create (after a
            backup copy ``<name>.repair.bak``) instead of refusing the store. Needs a writable
            open.

        Returns
        -------
        ReferenceStore

        Raises
        ------
        IncompatibleStoreError
            The model set differs from ``models``, a model's embedding-space version differs
            from ``versions`` (the versions the caller computes; models not named are not
            checked), or the file was made by a newer cellseek.
        StoreError
            The file is missing, is not a cellseek store, is damaged or crafted, or needs a
            migration but was opened read-only.
        """
        path = Path(path).expanduser().absolute()
        conn = lifecycle.open_connection(path, readonly=readonly, repair=repair)
        try:
            store = cls(path, conn, readonly=readonly)
        except BaseException:
            conn.close()
            raise
        if models is not None and check_models(models) != store.models:
            store.close()
            raise IncompatibleStoreError(
                f"{path}: the store was made with another model set: the store has "
                f"{format_models(store.models)}, asked for {format_models(models)}"
            )
        if versions is not None:
            try:
                meta_ops.check_same_versions(store.model_versions, versions, store.path)
            except IncompatibleStoreError:
                store.close()
                raise
        return store

    @property
    def model_versions(self) -> dict[str, int]:
        """Model name -> version of the embedding space its vectors were computed in.

        Stores made before versions were recorded hold version 1 of every model.
        """
        with self._tx.read() as conn:
            return meta_ops.read_versions(conn, self.models, self.path)

    def close(self) -> None:
        """Close the store (idempotent). Everything confirmed is already on disk."""
        self._tx.close()

    def __enter__(self) -> ReferenceStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._tx.closed else ("read-only" if self.readonly else "open")
        return f"ReferenceStore({str(self.path)!r}, models={format_models(self.models)}, {state})"

    def check(self) -> list[str]:
        """Read the whole store and list every problem found (an empty list: intact).

        See :func:`cellseek.store.integrity.integrity_problems` for what is checked.
        """
        with self._tx.read("checking the store") as conn:
            return integrity.integrity_problems(conn, self.schema_version)

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
        with self._tx.write(f"adding image {path}") as conn:
            return images.insert_image(conn, path, content_hash, device=device, source=source,
                                       pixel_size_um=pixel_size_um, shape=shape)

    def image(self, image_id: int) -> dict:
        """One image as a dict (id, path, content_hash, device, source, pixel_size_um, shape,
        added_at, n_cells)."""
        with self._tx.read() as conn:
            return images.get_image(conn, image_id, self.path)

    def images(self) -> list[dict]:
        """All images, ordered by id."""
        with self._tx.read() as conn:
            return images.all_images(conn)

    def image_by_hash(self, content_hash: str) -> dict | None:
        """The image with this content hash, or None."""
        with self._tx.read() as conn:
            image_id = images.image_id_by_hash(conn, content_hash)
            return None if image_id is None else images.get_image(conn, image_id, self.path)

    def cell_counts_by_hash(self, hashes: Sequence[str]) -> dict[str, int]:
        """Content hash -> number of stored cells, for those of ``hashes`` that are stored.

        An image missing from the result is not in the store; one with 0 cells was stored
        without cells (e.g. by a run that was killed).
        """
        with self._tx.read() as conn:
            return images.cell_counts_by_hash(conn, list(hashes))

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
        labels = images.check_plane_labels(labels)
        with self._tx.write("saving a label image") as conn:
            images.save_plane_labels(conn, image_id, t, z, labels, self.path)

    def plane_labels(self, image_id: int) -> dict[tuple[int, int], np.ndarray]:
        """Every saved label image of an image: ``(t, z) -> labels`` (int32)."""
        with self._tx.read() as conn:
            return images.read_plane_labels(conn, image_id, self.path)

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
        vectors = cell_ops.check_embeddings(self.models, embeddings, n, self.path)
        if thumbnails is not None and len(thumbnails) != n:
            raise StoreError(
                f"{self.path}: {count_text(len(thumbnails), 'thumbnail')} given for "
                f"{cells_text(n)}; give one per cell"
            )
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        with self._tx.write(f"saving {cells_text(n)}") as conn:
            images.require_image(conn, image_id, self.path)
            return cell_ops.insert_cells(conn, image_id, cells, vectors, thumbnails, self.path)

    def add_labelled_images(
        self, items: Sequence[LabelledImage], *, source: str = "import", note: str = ""
    ) -> dict:
        """Add labelled images with their cells, embeddings, thumbnails AND confirmed labels
        (``source``, audit rows with ``note``) in ONE transaction; what is already stored is
        completed, not duplicated (see :func:`cellseek.store.labelled_images.add_labelled_images`).

        Returns
        -------
        dict
            images_added, images_matched, cells_added, labels_added, labels_unchanged,
            label_conflicts.
        """
        if source not in LABEL_SOURCES:
            raise ValueError(f"label source must be one of {LABEL_SOURCES}, got {source!r}")
        prepared = labelled_ops.prepare(items, self.models, self.path)
        if not prepared:
            return dict.fromkeys(labelled_ops.COUNT_KEYS, 0)
        with self._tx.write(f"saving {count_text(len(prepared), 'labelled image')}") as conn:
            return labelled_ops.add_labelled_images(conn, prepared, self.path, source=source,
                                                    note=note)

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
            label_source, suggestion, confidence, best_label, labelled_at.
        """
        with self._tx.read() as conn:
            return cell_ops.select_cells(conn, self.schema_version, image_id, labelled)

    def cell(self, cell_id: int) -> dict:
        """One cell as a dict (see :meth:`cells`)."""
        with self._tx.read() as conn:
            return cell_ops.get_cell(conn, self.schema_version, cell_id, self.path)

    def n_cells(self, *, labelled: bool | None = None) -> int:
        """Number of cells (only confirmed ones when ``labelled`` is True, unconfirmed ones when
        False)."""
        with self._tx.read() as conn:
            return cell_ops.count_cells(conn, labelled)

    def embeddings(self, model: str, cell_ids: Sequence[int] | None = None) -> np.ndarray:
        """Embeddings of one ``model`` as float32, shape (n, dim): rows of ``cell_ids`` in that
        order (repeats allowed), or of all cells ordered by id when None.

        Raises
        ------
        StoreError
            Unknown model or cell, or a stored vector that is malformed or not finite.
        """
        if model not in self.models:
            raise StoreError(
                f"{self.path}: model {model!r} is not part of this store; it holds "
                f"{format_models(self.models)}"
            )
        with self._tx.read("reading embeddings") as conn:
            return cell_ops.read_embeddings(conn, model, self.models[model], cell_ids, self.path)

    def thumbnail(self, cell_id: int) -> bytes | None:
        """The thumbnail stored with a cell, or None (also for an oversized one)."""
        with self._tx.read() as conn:
            return cell_ops.read_thumbnail(conn, cell_id, self.path)

    def cells_for_display(self, cell_ids: Sequence[int]) -> dict[int, dict]:
        """Cells with their image's path and thumbnail, read together (a gallery of k cells
        costs one query, whatever k up to 900).

        Returns
        -------
        dict
            Cell id -> the dict of :meth:`cells` plus ``image_path`` and ``thumbnail`` (PNG
            bytes or None); ids the store does not hold are left out.
        """
        with self._tx.read() as conn:
            return cell_ops.select_for_display(conn, self.schema_version, cell_ids, self.path)

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
        with self._tx.write(f"deleting {cells_text(len(ids))}") as conn:
            cell_ops.delete_cells(conn, ids, self.path)

    def replace_cells(self, image_id: int, plane: tuple[int, int], labels: np.ndarray,
                      removed: Sequence[int], cells: Sequence[Cell],
                      embeddings: dict[str, np.ndarray], *,
                      thumbnails: Sequence[bytes | None] | None = None,
                      confirmed: Mapping[int, str] | None = None) -> np.ndarray:
        """Replace cells of one plane by new ones in ONE transaction (merge, split); returns the
        new ids. See :func:`cellseek.store.plane_edits.replace_plane_cells`."""
        vectors = cell_ops.check_embeddings(self.models, embeddings, len(cells), self.path)
        labels = images.check_plane_labels(labels)
        doing = f"replacing {cells_text(len(set(removed)))} by {cells_text(len(cells))}"
        with self._tx.write(doing) as conn:
            return plane_edits.replace_plane_cells(conn, image_id, plane, labels, removed, cells,
                                                   vectors, thumbnails, confirmed, self.path)

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
        self._set([int(cell_id)], [label], source=source, note=note,
                  doing=f"saving the label of cell {cell_id}")

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
            raise ValueError(f"{count_text(len(labels), 'label')} given for {cells_text(len(ids))}")
        self._set(ids, list(labels), source=source, note="", doing=f"saving {len(ids)} labels")

    def _set(self, ids: list[int], labels: list[str], *, source: str, note: str, doing: str):
        if source not in LABEL_SOURCES:
            raise ValueError(f"label source must be one of {LABEL_SOURCES}, got {source!r}")
        labels = [check_label(lab) for lab in labels]
        if not ids:
            return
        with self._label_write(doing) as conn:
            changes = [(i, lab, source) for i, lab in zip(ids, labels)]
            label_ops.change_labels(conn, "label", changes, self.path, note=note)

    @contextmanager
    def _label_write(self, doing: str):
        """A write transaction that records :attr:`last_label_write` once committed."""
        with self._tx.write(doing) as conn:
            before = label_ops.label_stamp(conn)
            yield conn
            stamps = (before, label_ops.label_stamp(conn))
        self.last_label_write = stamps

    def clear_label(self, cell_id: int) -> None:
        """Remove the confirmed label of a cell (audited, undoable)."""
        with self._label_write(f"clearing the label of cell {cell_id}") as conn:
            label_ops.change_labels(conn, "clear", [(int(cell_id), None, None)], self.path)

    def undo(self) -> list[tuple[int, str | None]] | None:
        """Revert the last label change that is not yet undone.

        One :meth:`set_label`, :meth:`set_labels`, :meth:`clear_label`, :meth:`rename_class` or
        :meth:`merge_classes` call is one step. Deletions and imports (merges, labelled images)
        are not undoable and are skipped; cells deleted since are skipped. The undo is itself
        audited. Suggestions are not touched.

        Returns
        -------
        list of (int, str or None) or None
            ``(cell_id, restored label)`` for every reverted cell that still exists, or None when
            there is nothing to undo.
        """
        with self._label_write("undoing the last label change") as conn:
            return label_ops.undo_last(conn, self.path)

    def cell_sources(self, cell_ids: Sequence[int] | None = None) -> dict[int, str]:
        """Cell id -> the source (device / dataset / batch) of its image, for every cell or
        for the cells given."""
        with self._tx.read() as conn:
            ids, sources = cell_ops.cell_sources(conn, cell_ids)
        return dict(zip(ids.tolist(), sources))

    def label_stamp(self) -> int:
        """A number that changes whenever any confirmed label changes (the newest batch id)."""
        with self._tx.read() as conn:
            return label_ops.label_stamp(conn)

    def labelled(self) -> tuple[np.ndarray, list[str]]:
        """``(cell ids as int64, labels)`` of all confirmed cells, ordered by id."""
        with self._tx.read() as conn:
            return label_ops.labelled_cells(conn)

    def label_snapshot(self) -> tuple[int, np.ndarray, list[str]]:
        """``(label stamp, cell ids, labels)`` of all confirmed cells, in one snapshot."""
        with self._tx.read() as conn:
            return (label_ops.label_stamp(conn), *label_ops.labelled_cells(conn))

    def set_suggestions(
        self,
        cell_ids: Sequence[int],
        labels: Sequence[str | None],
        confidences: Sequence[float | None],
        best_labels: Sequence[str | None] | None = None,
    ) -> None:
        """Store suggestions (not labels: not audited, not in the undo stack), one transaction.

        Parameters
        ----------
        cell_ids : sequence of int
        labels : sequence of str or None
            The suggestion; None where the vote abstained (uncertain).
        confidences : sequence of float or None
            Vote share of the winning class; NaN/None is stored as NULL.
        best_labels : sequence of str or None, optional
            The winning class of each vote, also where it abstained (default: ``labels``).
        """
        ids = [int(i) for i in np.asarray(cell_ids, dtype=np.int64).ravel()]
        best_labels = list(labels) if best_labels is None else list(best_labels)
        if not (len(ids) == len(labels) == len(confidences) == len(best_labels)):
            raise ValueError(
                f"{len(ids)} cell ids, {len(labels)} labels, {len(confidences)} confidences and "
                f"{len(best_labels)} best labels; give one of each per cell"
            )
        with self._tx.write(f"saving {len(ids)} suggestions") as conn:
            label_ops.save_suggestions(conn, ids, labels, confidences, best_labels, self.path)

    def classes(self) -> dict[str, int]:
        """Confirmed class -> number of cells, ordered by class name."""
        with self._tx.read() as conn:
            return class_ops.class_counts(conn)

    def rename_class(self, old: str, new: str) -> None:
        """Rename a class on every confirmed cell; one undo step. Suggestions are left alone.

        Raises
        ------
        StoreError
            ``old`` is not a class, or ``new`` already is one (use :meth:`merge_classes`).
        """
        new = check_label(new)
        if old == new:
            return
        with self._tx.write(f"renaming class {old!r} to {new!r}") as conn:
            class_ops.rename(conn, old, new, self.path)

    def merge_classes(self, sources: Sequence[str], into: str) -> None:
        """Relabel every cell of the ``sources`` classes as ``into``; one undo step.

        Raises
        ------
        StoreError
            One of ``sources`` is not a class.
        """
        into = check_label(into)
        sources = [s for s in dict.fromkeys(sources) if s != into]
        if not sources:
            return
        with self._tx.write(f"merging classes {sources} into {into!r}") as conn:
            class_ops.merge(conn, sources, into, self.path)

    def audit_log(self, cell_id: int | None = None) -> list[dict]:
        """Every label change (of one cell, or of all), oldest first.

        Returns
        -------
        list of dict
            Keys: id, batch_id, time, action (label, clear, rename, merge_classes, delete,
            import, undo), cell_id, old_label, new_label, old_source, source (of the new
            label), note, undone (whether the batch was undone since).
        """
        with self._tx.read() as conn:
            return label_ops.audit_rows(conn, cell_id)

    # ------------------------------------------------------------------ weights and metadata

    def set_model_weights(self, weights: dict[str, float]) -> None:
        """Store the fusion weight of every model (finite, >= 0; not normalised here)."""
        with self._tx.write("saving model weights") as conn:
            meta_ops.save_weights(conn, self.models, weights, self.path)

    def model_weights(self) -> dict[str, float] | None:
        """Model -> weight, or None while no weights were stored."""
        with self._tx.read() as conn:
            return meta_ops.read_weights(conn)

    def set_meta(self, key: str, value_json) -> None:
        """Store a JSON-serialisable value under ``key`` (e.g. the crop config)."""
        text = meta_ops.encode_value(key, value_json)
        with self._tx.write(f"saving metadata {key!r}") as conn:
            meta_ops.save_value(conn, key, text)

    def meta(self, key: str, default=None):
        """The value stored under ``key``, or ``default``."""
        with self._tx.read() as conn:
            return meta_ops.read_value(conn, key, default, self.path)

    # ------------------------------------------------------------------ saved search state
    def search_state(self) -> tuple[str, dict, dict] | None:
        """The saved search state ``(key, header, arrays)`` (see :mod:`cellseek.search.saved`),
        or None. Raises :class:`~cellseek.errors.StoreError` when it is malformed."""
        with self._tx.read("reading the saved search index") as conn:
            return search_state.load(conn, self.path)

    def search_state_info(self) -> dict | None:
        """Key, time and size of the saved search state, without loading it (None: none)."""
        with self._tx.read() as conn:
            return search_state.info(conn)

    def save_search_state(self, key: str, header: dict, arrays: dict) -> int:
        """Replace the saved search state, in one transaction; returns the bytes written."""
        with self._tx.write("saving the search index") as conn:
            written = search_state.save(conn, key, header, arrays)
        self._checkpoint()  # now, not at the user's next label (a big state fills the WAL)
        return written

    def update_search_header(self, key: str, header: dict) -> bool:
        """Replace only the header of the saved search state built with ``key`` (e.g. a new
        labels stamp once the labels are known unchanged); whether there was such a state."""
        with self._tx.write("updating the saved search index") as conn:
            return search_state.update_header(conn, key, header)

    def _checkpoint(self) -> None:
        """Copy the write-ahead log into the store file and truncate it (best effort)."""
        with self._tx.lock:
            try:
                self._tx.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:  # another reader holds the log: SQLite does it later
                logger.info("%s: checkpoint postponed (%s)", self.path, exc)

    def drop_search_state(self) -> bool:
        """Delete the saved search state; whether there was one."""
        with self._tx.write("dropping the saved search index") as conn:
            return search_state.drop(conn)

    # ------------------------------------------------------------------ merge and export
    def merge_from(
        self, other: ReferenceStore | str | os.PathLike, *, labels_only: bool = False
    ) -> dict:
        """Merge another store into this one, in one transaction.

        Images are matched by content hash, cells by (image hash, t, z, label value). New
        images and cells are copied with their embeddings, label images and thumbnails (every
        value checked); labels are copied with source ``"import"`` onto cells without a label
        here. A cell labelled differently in both stores keeps its label here (counted as a
        conflict). With ``labels_only`` only labels are copied onto cells that already exist
        here; nothing else is added. Linear in the size of both stores.

        Returns
        -------
        dict
            Counts: images_added, images_matched, cells_added, cells_matched, labels_added,
            labels_unchanged, label_conflicts.

        Raises
        ------
        IncompatibleStoreError
            The other store lacks one of this store's models or has another dim for it, or its
            cells were cropped with other settings.
        """
        other_path = other.path if isinstance(other, ReferenceStore) else other
        other_path = Path(other_path).expanduser().absolute()
        if other_path.exists() and other_path.resolve() == Path(self.path).resolve():
            raise StoreError(f"{self.path}: cannot merge a store into itself")
        owned = not isinstance(other, ReferenceStore)
        if owned:
            other = ReferenceStore.open(other_path, readonly=True)
        try:
            with (
                other._tx.read("reading the store to merge") as src,
                self._tx.write(f"merging {other.path}") as dst,
            ):
                exchange.check_mergeable(src, dst, other.path, self.path,
                                         labels_only=labels_only)
                return exchange.merge(src, dst, src_path=other.path, dst_path=self.path,
                                      labels_only=labels_only)
        finally:
            if owned:
                other.close()

    def export_cells_csv(self, path, *, image_id: int | None = None,
                         suggestions: Mapping | None = None) -> int:
        """Write one CSV row per cell; atomic (temp file + rename). Returns the row count.

        ``suggestions`` (cell id -> :class:`~cellseek.types.Suggestion`) replace the stored
        suggestion of those cells in the table (a read-only store cannot hold them).

        Columns (:data:`cellseek.store.exchange.CSV_COLUMNS`): cell_id, image_id, image,
        image_hash, t, z, label_value, label_image, centroid_row, centroid_col, area, label,
        label_source, state, suggestion, confidence, best_label. Text that a spreadsheet would
        run as a formula is escaped with a leading ``'``.
        """
        with self._tx.read("exporting cells") as conn:
            return exchange.export_cells_csv(conn, self.schema_version, path, image_id=image_id,
                                             suggestions=suggestions)

    def backup(self, path, *, overwrite: bool = True) -> Path:
        """Write a consistent copy of the store to ``path`` (SQLite backup API), atomically.

        Safe while the store is open and in use. With ``overwrite=False`` an existing file (or
        one another program creates at the same moment) is never replaced:
        :class:`~cellseek.errors.StoreExistsError`. Returns the backup path.
        """
        with self._tx.lock:
            return exchange.backup(self._tx.connection(), self.path, path, overwrite=overwrite)

    def export_folder(self, folder, *, label_images: bool = True,
                      overwrite: bool = False) -> dict[str, Path]:
        """Write a store copy, ``cells.csv`` and the label images into a folder.

        See :func:`cellseek.store.folder_export.export_folder`; refuses a non-empty folder
        unless ``overwrite``.
        """
        return folder_export.export_folder(self, folder, label_images=label_images,
                                           overwrite=overwrite)

