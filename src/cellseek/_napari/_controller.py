"""The annotation state of one widget: one Session, the open images, suggestions, selection.

Panels call the controller's methods and listen to its signals. The controller runs every step
that touches the :class:`~cellseek.session.Session` as a job of its :class:`WorkRunner` (one
at a time, off the GUI thread, in the order asked) and keeps the plugin's layers in step with
the results. The rules (classes and keys, accept, re-segmentation, restore) are Session
methods; the array work on label stacks is in :mod:`cellseek.annotation.cells`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from cellseek.annotation.cells import CellTable, largest_value, relabel_planes, stack_from_planes
from cellseek.annotation.review import ReviewQueue, shown_label, uncertain_first
from cellseek.config import Config, SegmentConfig
from cellseek.errors import CellseekError
from cellseek.types import Progress

from ._layers import LayerRegistry, OpenImage
from ._workers import WorkRunner, notify_error

logger = logging.getLogger(__name__)


def _info(text: str) -> None:
    from napari.utils.notifications import show_info

    show_info(text)


def _warn(text: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(text)


@dataclass
class Segmented:
    """What a segmentation job hands back to the GUI thread."""

    planes: dict          # (t, z) -> stack-unique labels, ready to write into the layer
    stack: np.ndarray | None  # the whole new cells stack when most planes changed
    kept: list            # planes left as they were (they hold confirmed labels)
    n_cells: int
    table: CellTable | None  # the image's cells after the re-segmented planes were cleared


class AnnotationController(QObject):
    """State and actions behind :class:`~cellseek._napari.widget.CellseekWidget`.

    Parameters
    ----------
    viewer : napari.Viewer
    """

    session_changed = Signal()
    cells_changed = Signal()
    labels_changed = Signal()
    classes_changed = Signal()
    selection_changed = Signal(object)  # cell id or None
    current_changed = Signal(object)  # OpenImage or None
    message = Signal(str)  # a line for the widget's status

    def __init__(self, viewer, parent=None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.config = Config()
        self.runner = WorkRunner(self)
        self.registry = LayerRegistry(viewer)
        self.registry.on_plane_changed = self._recolour
        self.session = None
        self._store_jobs: list = []
        self.current: OpenImage | None = None
        self.suggestions: dict = {}
        self.queue = ReviewQueue()
        self.selected: int | None = None
        self.threshold = self.config.suggest.threshold
        self.classes: list = []  # ClassInfo rows of the open store, in key order
        self.colours: dict[str, tuple] = {}
        self._sam = None
        for item in self.registry.adopt_all():  # cells layers an earlier widget left behind
            self._recolour(item)

    # ------------------------------------------------------------------ images
    def set_image_layer(self, layer) -> OpenImage | None:
        """Make ``layer`` the image under annotation (None: no image)."""
        item = None if layer is None else self.registry.for_image_layer(layer)
        if item is not self.current:
            self.current = item
            self.current_changed.emit(item)
        if item is not None and self.session is not None and item.image_id is None:
            self.link_images([item])
        return item

    def current_plane(self):
        """``(t, z)`` of the plane on screen in the current image."""
        return self._need_image().current_key(self.viewer)

    def show_image(self, item: OpenImage) -> None:
        """Make an open image the current one and show it (its layers on, the other images'
        layers that overlap it off), so that nothing is drawn over the wrong image."""
        for other in self.registry.images:
            if other is not item and other.contains(_centre(item)):
                for layer in (other.image_layer, other.cells_layer):
                    if layer is not None:
                        layer.visible = False
        for layer in (item.image_layer, item.cells_layer):
            if layer is not None:
                layer.visible = True
        if item is not self.current:
            self.current = item
            self.current_changed.emit(item)

    # ------------------------------------------------------------------ segmentation
    def segment(self, config: SegmentConfig, *, whole_stack: bool = False):
        """Segment the current plane (or every plane) of the current image (a job)."""
        item = self._need_image()
        keys = item.planes() if whole_stack else [self.current_plane()]
        made = item.cells_layer is None
        self.registry.ensure_cells_layer(item)  # now, so that the result only fills planes

        def failed(_exc=None):
            if made and item.cells_layer is not None and not item.cells_layer.data.any():
                self.viewer.layers.remove(item.cells_layer)

        return self.runner.run(
            "Segmentation", lambda: self._segment_work(item, keys, config),
            on_returned=lambda result: self._apply_segmentation(item, result), on_error=failed,
            on_cancel=failed)

    def _segment_work(self, item: OpenImage, keys, config: SegmentConfig):
        from cellseek.segment import segment_plane

        raw = {}
        for i, key in enumerate(keys):
            yield Progress(i, len(keys) + 1, "segment", f"plane t={key[0]} z={key[1]}")
            raw[key] = yield from segment_plane(item.plane(key), config)
        yield Progress(len(keys), len(keys) + 1, "segment", "numbering the cells")
        kept, table = [], None
        if self.session is not None and item.image_id is not None:
            kept = self.session.clear_planes(item.image_id, keys)
            table = CellTable(self.session.image_cells(item.image_id))
            for key in kept:
                raw.pop(key, None)
        layer = item.cells_layer
        taken = largest_value(layer.data, [item.index_of(k) for k in raw]) if layer else 0
        planes, top = relabel_planes(raw, taken)
        stack = item.stack_with(planes)
        yield Progress(len(keys) + 1, len(keys) + 1, "segment", "done")
        return Segmented(planes, stack, kept, top - taken, table)

    def _apply_segmentation(self, item: OpenImage, result: Segmented) -> None:
        self.registry.write_planes(item, result.planes, result.stack)
        if result.table is not None:
            item.table = result.table
        if result.kept:
            _warn(f"{len(result.kept)} plane(s) already hold confirmed labels in the reference "
                  "set; their cells were kept as they are.")
        self.message.emit(f"Segmentation found {result.n_cells} cells in "
                          f"{len(result.planes)} plane(s).")
        self._show(item)
        self.cells_changed.emit()
        if self.session is not None and result.planes:
            self.embed(item, result.planes)

    def embed(self, item: OpenImage | None = None, planes: dict | None = None):
        """Crop and embed the segmented cells of an image into the store (a job)."""
        item = item or self._need_image()
        if item.cells_layer is None:
            raise CellseekError("segment the image first: it has no cells yet")

        def work(session):
            labels = planes
            if labels is None:  # read from the layer in the worker (a stack can be large)
                labels = {k: np.array(item.labels_of(k)) for k in item.planes()}
                labels = {k: v for k, v in labels.items() if v.any()}
            image_id = yield from session.add_image(item.image, labels=labels)
            return image_id, CellTable(session.image_cells(image_id))

        return self._session_job("Embedding cells", work,
                                 on_returned=lambda r: self._embedded(item, *r))

    def _embedded(self, item: OpenImage, image_id: int, table: CellTable) -> None:
        item.image_id = int(image_id)
        item.table = table
        self._keep_suggestions(item, table.ids())
        self.message.emit(f"{len(table)} cells of {item.image_layer.name} are in the reference "
                          "set.")
        self._show(item)
        self.cells_changed.emit()
        self.refresh_classes()

    def add_cell_mask(self, item: OpenImage, mask: np.ndarray, key) -> int | None:
        """Add one segmented cell (a boolean plane mask) to an image's cells layer."""
        layer = self.registry.ensure_cells_layer(item)
        plane = layer.data[item.index_of(key)]
        free = np.asarray(mask, bool) & (plane == 0)
        if free.sum() < 10:
            _warn("No new cell found at that spot.")
            return None
        label_value = int(largest_value(layer.data)) + 1
        plane[free] = label_value
        layer.refresh()
        self.cells_changed.emit()
        if self.session is not None and item.image_id is not None:
            image_id = item.image_id
            only = np.where(plane == label_value, label_value, 0).astype(np.int32)

            def work(session):
                yield from session.add_cells(image_id, item.plane(key), only, t=key[0], z=key[1],
                                             pixel_size_um=item.image.pixel_size_um)
                return image_id, CellTable(session.image_cells(image_id))

            self._session_job("Embedding the new cell", work,
                              on_returned=lambda r: self._embedded(item, *r))
        return label_value

    def segment_at(self, item: OpenImage, key, point, config: SegmentConfig):
        """Segment the cell at ``point`` (row, col) of a plane with a SAM point prompt (a job)."""
        from cellseek.zoo import weights_available

        ok, hint = weights_available(f"sam_{config.sam_model}")
        if not ok:
            raise CellseekError(
                f"click-to-segment needs the SAM {config.sam_model} weights. {hint}")
        plane = item.plane(key)
        return self.runner.run("Click-to-segment", self._sam_point_work(plane, point, config),
                               on_returned=lambda mask: self.add_cell_mask(item, mask, key))

    def _sam_point_work(self, plane, point, config: SegmentConfig):
        """SAM point prompt; the segmenter (and its cached image embedding) is kept."""
        yield Progress(0, 1, "sam", "point prompt")
        from cellseek.segment.sam import SamSegmenter

        if self._sam is None:
            self._sam = SamSegmenter(config.sam_model, weights_dir=self.config.embed.weights_dir)
        mask = self._sam.segment_point(plane, point)
        yield Progress(1, 1, "sam", "done")
        return mask

    # ------------------------------------------------------------------ store / session
    def create_store(self, path, *, preset: str | None = None, models=()):
        """Create a reference set at ``path`` for the chosen models and open it (a job).

        A set already open is closed first, so a new set over the same file starts clean.
        """
        embed = replace(self.config.embed, preset=preset or self.config.embed.preset,
                        models=tuple(models))
        self.config = config = replace(self.config, embed=embed)
        old = self._detach_session()

        def work():
            yield Progress(0, 1, "store", "creating the reference set")
            from cellseek.session import Session  # imports scipy and skimage: not on the GUI

            if old is not None:
                old.close()
            return Session.create(path, config, overwrite=True)

        return self._store_job("Creating the reference set", work)

    def open_store(self, path):
        """Open an existing reference set (a job)."""
        config = self.config
        old = self._detach_session()

        def work():
            yield Progress(0, 1, "store", "opening the reference set")
            from cellseek.session import Session  # imports scipy and skimage: not on the GUI

            if old is not None:
                old.close()
            return Session.open(path, config)

        return self._store_job("Opening the reference set", work)

    def _store_job(self, what, work):
        job = self.runner.run(what, work, on_returned=self._set_session)
        if job is not None:
            self._store_jobs = [j for j in self._store_jobs if j.state in ("queued", "running")]
            self._store_jobs.append(job)
        return job

    def _store_pending(self) -> bool:
        """Whether a reference set is being created or opened (or waits to be)."""
        return any(j.state in ("queued", "running") for j in self._store_jobs)

    def _session_job(self, what: str, work, on_returned=None, **kwargs):
        """Queue a job on the open reference set, or on the one being created or opened.

        ``work(session)`` makes the job's generator when the job starts.
        """
        if self.session is None and not self._store_pending():
            raise CellseekError("create or open a reference set first (Reference set tab)")
        return self.runner.run(what, lambda: work(self._need_session()), on_returned, **kwargs)

    def _detach_session(self):
        """Forget the open session (the job that replaces it closes it)."""
        old, self.session = self.session, None
        for item in self.registry.images:
            item.image_id, item.table = None, CellTable()
        if old is not None:
            self.session_changed.emit()
        return old

    def _set_session(self, session) -> None:
        self.session = session
        self.suggestions = {}
        self.queue = ReviewQueue()
        self.selected = None
        self.threshold = session.config.suggest.threshold
        self.refresh_classes()
        self.session_changed.emit()
        self.link_images()
        self.warm_up()

    def link_images(self, items=None):
        """Link open images to the store (a job): images it knows get their cells back
        (a cells layer from the stored label images), segmented images it does not know are
        embedded. Every image layer of the viewer is looked at when ``items`` is None."""
        if items is None:
            items = [self.registry.for_image_layer(ly) for ly in self.registry.image_layers()]
        items = [i for i in items if i.image_id is None]
        if not items:
            return None

        def work(session):
            found = []
            for n, item in enumerate(items):
                yield Progress(n, len(items), "restore", item.image_layer.name)
                restored = session.restore_image(item.image)
                if restored is None:
                    found.append((item, None))
                    continue
                if item.cells_layer is None:
                    stack = stack_from_planes(item.labels_shape, item.index_of, restored.planes)
                else:  # the store holds the cells of this image: its label images win
                    stack = item.stack_with(restored.planes)
                found.append((item, (restored, CellTable(restored.cells), stack)))
            return found

        return self._session_job("Looking for open images in the reference set", work,
                                 on_returned=self._linked)

    def _linked(self, found) -> None:
        restored = 0
        for item, known in found:
            if known is not None:
                stored, table, stack = known
                self.registry.write_planes(item, stored.planes, stack)
                item.image_id, item.table = stored.image_id, table
                restored += len(table)
                self._show(item)
            elif item.cells_layer is not None and item.cells_layer.data.any():
                self.embed(item)
        if restored:
            _info(f"Restored {restored} cells of the open images from the reference set.")
            self.cells_changed.emit()

    def warm_up(self):
        """Build the reference index in a job (imports FAISS off the GUI thread)."""
        def work(session):
            yield Progress(0, 1, "index", "building the reference index")
            session.index()
            yield Progress(1, 1, "index", "ready")

        return self._session_job("Preparing the index", work)

    def export(self, folder):
        """Export the store copy, the cells CSV and the label images (a job)."""
        return self._session_job(
            "Export", lambda s: _call_work(s.export, folder),
            on_returned=lambda paths: _info(f"Exported {len(paths)} files to {folder}"))

    def import_store(self, path):
        """Merge another reference set into this one (a job)."""
        return self._session_job("Import", lambda s: _call_work(s.import_reference, path),
                                 on_returned=self._after_import)

    def import_labelled_csv(self, path):
        """Add labelled single-cell images (``path,label[,source]`` CSV) as reference cells."""

        def work(session):
            from cellseek.reference import add_labelled_csv  # in the worker: heavy imports

            return (yield from add_labelled_csv(session, path))

        return self._session_job("Import of labelled cells", work, on_returned=self._after_import)

    def _after_import(self, result) -> None:
        if isinstance(result, dict):
            _info("Imported: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.items()))
        else:
            _info(f"Imported {result} labelled cells.")
        self.reload_tables()

    def reload_tables(self):
        """Read the cells of every open image from the store again (a job), e.g. after an
        import or a class change."""
        def work(session):
            items = [i for i in self.registry.images if i.image_id is not None]
            yield Progress(0, 1, "store", "reading the cells")
            session.refresh()
            return [(i, CellTable(session.image_cells(i.image_id))) for i in items]

        def done(tables):
            for item, table in tables:
                item.table = table
                self._keep_suggestions(item, table.ids())
            self.refresh_classes()
            self.refresh_layers()
            self.labels_changed.emit()
            self.warm_up()

        return self._session_job("Reading the reference set", work, on_returned=done,
                                 quiet=True)

    # ------------------------------------------------------------------ classes
    def refresh_classes(self) -> None:
        """Read the classes (creation order, keys, colours, counts) of the open store."""
        self.classes = self.session.classes() if self.session is not None else []
        self.colours = {c.name: c.colour for c in self.classes}
        self.classes_changed.emit()

    def class_names(self) -> list[str]:
        """Class names in key order."""
        return [c.name for c in self.classes]

    def class_counts(self) -> dict[str, int]:
        """Confirmed cells per class (0 for classes without cells)."""
        return {c.name: c.count for c in self.classes}

    def class_of_key(self, number: int) -> str:
        """The class number key ``number`` gives (as the class table shows it)."""
        self._need_session()
        for info in self.classes:
            if info.key == number:
                return info.name
        raise CellseekError(f"there is no class {number}; add classes in the Reference set tab")

    def add_class(self, name: str):
        """Add a class (it appears in the list, with the next key, before any cell has it)."""
        return self._session_job("Adding a class", lambda s: _call_work(s.add_class, name),
                                 on_returned=lambda _: self.refresh_classes(), quiet=True)

    def rename_class(self, old: str, new: str):
        """Rename a class everywhere (a job)."""
        return self._session_job("Renaming a class",
                                 lambda s: _call_work(s.rename_class, old, new),
                                 on_returned=lambda _: self.reload_tables())

    def merge_classes(self, sources, into: str):
        """Merge classes into one (a job)."""
        sources = list(sources)
        return self._session_job("Merging classes",
                                 lambda s: _call_work(s.merge_classes, sources, into),
                                 on_returned=lambda _: self.reload_tables())

    # ------------------------------------------------------------------ labels
    def label_cells(self, cell_ids, label: str, *, source: str = "user"):
        """Confirm one class for cells (one undoable step; a short job)."""
        ids = [int(c) for c in cell_ids]
        if not ids:
            return None

        def work(session):
            session.label(ids, [label] * len(ids), source=source)
            return [session.cell(c) for c in ids]
            yield  # a generator

        return self._session_job(f"Labelling as {label}", work, on_returned=self._labels_done,
                                 quiet=True)

    def accept(self, cell_ids=None, *, then_next: bool = False):
        """Confirm the current best guess for cells (default: the selected cell)."""
        ids = [int(c) for c in (cell_ids if cell_ids is not None else
                                [self.selected] if self.selected is not None else [])]
        if not ids:
            raise CellseekError("click a cell first")

        def work(session):
            accepted = session.accept_best(ids)
            return [session.cell(c) for c in accepted]
            yield  # a generator

        def done(cells):
            if not cells:
                _warn("No suggestion to accept for this cell (the reference set has no labelled "
                      "cells yet); give it a class with the keys 1-9.")
                return
            self._labels_done(cells)
            if then_next and self.queue.order:
                self.review_step(1)

        return self._session_job("Accepting the suggestion", work, on_returned=done, quiet=True)

    def accept_all_above(self):
        """Confirm every shown suggestion whose confidence reaches the threshold (a job)."""
        suggestions, threshold = dict(self.suggestions), self.threshold

        def work(session):
            yield Progress(0, 1, "accept", f"{len(suggestions)} suggestions")
            accepted = session.accept_suggestions(suggestions, threshold=threshold)
            return [session.cell(c) for c in accepted]

        def done(cells):
            self._labels_done(cells)
            _info(f"Accepted {len(cells)} suggestions at confidence >= {threshold:.2f}.")

        return self._session_job("Accepting suggestions", work, on_returned=done)

    def undo(self):
        """Undo the last labelling step (a job)."""
        def work(session):
            restored = session.undo() or []
            return [session.cell(c) for c, _ in restored], [c for c, lab in restored if lab is None]
            yield  # a generator

        def done(result):
            cells, cleared = result
            if not cells:
                _info("Nothing to undo.")
                return
            self.queue.unmark(cleared)
            self._labels_done(cells, mark=False)

        return self._session_job("Undo", work, on_returned=done, quiet=True)

    def _labels_done(self, cells, *, mark: bool = True) -> None:
        ids = [int(c["id"]) for c in cells]
        for item in self.registry.images:
            hit = [c for c in cells if c["id"] in item.table]
            if hit:
                item.table.update(hit)
                self._keep_suggestions(item, [c["id"] for c in hit])
                self._recolour(item)
                self.registry.refresh_features(item, threshold=self.threshold,
                                               cell_ids=[c["id"] for c in hit])
        if mark:
            self.queue.mark_done(ids)
        self.refresh_classes()
        self.labels_changed.emit()
        if self.selected in ids:
            self.selection_changed.emit(self.selected)

    def _keep_suggestions(self, item: OpenImage, ids) -> None:
        for cid in ids:
            sugg = self.suggestions.get(cid)
            if sugg is not None:
                item.table.set_state(cid, suggestion=sugg.best_label, confidence=sugg.confidence)

    # ------------------------------------------------------------------ suggestions
    def suggest(self, *, scope: str = "plane"):
        """Suggest classes for the unconfirmed cells of the plane, the stack or the store.

        The cells are chosen when the job starts, so a suggestion asked for while the cells
        are still being embedded covers them.
        """
        item = None if scope == "store" else self._need_image()
        plane = self.current_plane() if scope == "plane" else None

        def work(session):
            if item is None:
                return session.suggest(None)
            if item.image_id is None:
                raise CellseekError("the cells of this image are not in the reference set yet: "
                                    "segment it first")
            planes = [plane] if plane is not None else item.planes()
            ids = [c for c in item.table.ids_in_planes(planes) if not item.table.cell(c)["label"]]
            return session.suggest(ids)

        return self._session_job("Suggestion", work, on_returned=self._after_suggest)

    def _after_suggest(self, result: dict) -> None:
        self.suggestions.update({int(k): v for k, v in result.items()})
        for item in self.registry.images:
            hit = [c for c in result if c in item.table]
            if hit:
                self._keep_suggestions(item, hit)
                self._show(item, cell_ids=hit)
        self._rebuild_queue()
        self.labels_changed.emit()
        n_unc = sum(1 for s in result.values() if shown_label(s, self.threshold) is None)
        _info(f"Suggested classes for {len(result)} cells; {n_unc} need review.")

    def set_threshold(self, value: float) -> None:
        """Set the confidence threshold of the suggestions shown and accepted."""
        self.threshold = float(value)
        if self.session is not None:
            cfg = self.session.config
            self.session.config = replace(cfg, suggest=replace(cfg.suggest,
                                                               threshold=self.threshold))
        self._rebuild_queue()
        self.refresh_layers()
        self.labels_changed.emit()

    def _rebuild_queue(self) -> None:
        labelled = {c for i in self.registry.images for c in i.table.ids()
                    if i.table.cell(c)["label"]}
        pending = {k: v for k, v in self.suggestions.items() if k not in labelled}
        order = [c for c in uncertain_first(pending, self.threshold)
                 if shown_label(pending[c], self.threshold) is None]
        self.queue = ReviewQueue(order)

    def review_step(self, direction: int = 1) -> int | None:
        """Select the next (or previous) uncertain cell and show it."""
        cid = self.queue.next() if direction > 0 else self.queue.previous()
        if cid is None:
            self.message.emit("No more uncertain cells in the review queue." if direction > 0
                              else "This is the first uncertain cell.")
            return None
        self.select(cid, jump=True)
        return cid

    # ------------------------------------------------------------------ selection
    def select(self, cell_id: int | None, *, jump: bool = False) -> None:
        """Select a cell (the Neighbours panel shows it); ``jump`` moves the view to it."""
        self.selected = None if cell_id is None else int(cell_id)
        if jump and cell_id is not None:
            self.jump_to(cell_id)
        self.selection_changed.emit(self.selected)

    def neighbours(self, cell_id: int, on_returned):
        """Look up a cell's neighbour gallery (a short job; only the last one asked runs)."""
        from cellseek.annotation.gallery import neighbour_gallery

        return self._session_job("Looking up the nearest cells",
                                 lambda s: _call_work(neighbour_gallery, s, int(cell_id)),
                                 on_returned=on_returned, quiet=True, key="gallery")

    def cell_at(self, position):
        """``(OpenImage, cell id or None, label value, plane key)`` under a world position.

        The top visible cells layer with a cell there wins; with no cell there, the top image
        under the position (for click-to-segment).
        """
        first = None
        for item in self.registry.at(position):
            cells = item.cells_layer
            data = np.asarray(cells.world_to_data(tuple(position)[-cells.ndim:]))
            idx = tuple(int(round(v)) for v in data)
            if any(i < 0 or i >= n for i, n in zip(idx, cells.data.shape)):
                continue
            label_value = int(cells.data[idx])
            key = item.key_of(idx[: len(item.lead_axes)])
            hit = (item, item.table.id_of(label_value) if label_value else None, label_value, key)
            if label_value:
                return hit
            first = first or hit
        return first or (None, None, 0, None)

    def jump_to(self, cell_id: int) -> bool:
        """Show a stored cell: its image, its plane, the camera centred on it."""
        cell = self._need_session().cell(int(cell_id))
        item = self.registry.for_image_id(int(cell["image_id"]))
        if item is None or item.cells_layer is None:
            name = self.session.image_path(int(cell["image_id"]))
            self.message.emit(f"That cell lies in {name}, which is not open in the viewer.")
            return False
        self.show_image(item)
        layer = item.cells_layer
        lead = list(item.index_of((int(cell["t"]), int(cell["z"]))))
        world = np.asarray(layer.data_to_world([*lead, *cell["centroid"]]))
        ndim = self.viewer.dims.ndim
        axes = list(range(ndim - len(world), ndim))
        for ax, value in zip(axes[: len(lead)], world[: len(lead)]):
            self.viewer.dims.set_point(ax, float(value))
        scene = getattr(self.viewer, "scene", None)  # napari >= 0.9 moved the camera there
        camera = scene.camera if scene is not None else self.viewer.camera
        camera.center = tuple(float(v) for v in world[-2:])
        self._recolour(item)  # its plane's colours now (several axes moved at once)
        return True

    # ------------------------------------------------------------------ plots
    def embedding_map(self, method: str, on_returned):
        """2-D map of the cells in the session's search space (a job)."""
        from cellseek.annotation.embedding_map import session_map

        return self._session_job("Embedding map",
                                 lambda s: _call_work(session_map, s, method=method),
                                 on_returned=on_returned)

    def recompute_weights(self, on_returned):
        """Recompute the entropy-guided model weights and rebuild the index (a job)."""
        def work(session):
            yield Progress(0, 2, "weights", "entropy of each model's neighbourhoods")
            weights = session.model_weights(refresh=True)
            yield Progress(1, 2, "index", "rebuilding the index")
            session.rebuild_index()
            yield Progress(2, 2, "index", "done")
            return weights

        return self._session_job("Recomputing the model weights", work,
                                 on_returned=on_returned)

    # ------------------------------------------------------------------ layers
    def _recolour(self, item: OpenImage) -> None:
        self.registry.refresh_colours(item, self.colours, threshold=self.threshold)

    def _show(self, item: OpenImage, *, cell_ids=None) -> None:
        """Recolour an image's cells, then update its hover table, each in its own turn of the
        event loop: each costs one napari redraw (or table rebuild), and one after the other in
        the same turn they would freeze the window twice as long."""
        def features():
            self.registry.refresh_features(item, threshold=self.threshold, cell_ids=cell_ids)

        def colours():
            self._recolour(item)
            QTimer.singleShot(0, features)  # the next turn: the window repaints in between

        QTimer.singleShot(0, colours)

    def refresh_layers(self) -> None:
        """Recolour every cells layer and rebuild its hover table."""
        for item in self.registry.images:
            self._show(item)

    # ------------------------------------------------------------------ helpers
    def _need_session(self):
        if self.session is None:
            raise CellseekError("create or open a reference set first (Reference set tab)")
        return self.session

    def _need_image(self) -> OpenImage:
        if self.current is None:
            raise CellseekError("choose an image layer first (Segment tab)")
        return self.current

    def close(self) -> None:
        """Stop listening, stop the jobs, and close the store once the running one stopped
        (also a store the running job was opening)."""
        session, self.session = self.session, None
        running = self.runner.running

        def release():
            if session is not None:
                session.close()
            opened = getattr(running, "result", None)
            if running in self._store_jobs and opened is not None and opened is not session:
                opened.close()

        self.registry.close()
        self.runner.close(then=release)


def _centre(item: OpenImage):
    """World position of the middle of an image."""
    layer = item.cells_layer or item.image_layer
    n = len(item.labels_shape)
    data = [0] * (n - 2) + [s / 2 for s in item.plane_shape]
    return tuple(layer.data_to_world(data))


def _call_work(func, *args, **kwargs):
    yield Progress(0, 1, "", "")
    result = func(*args, **kwargs)
    yield Progress(1, 1, "", "done")
    return result


__all__ = ["AnnotationController", "notify_error"]
