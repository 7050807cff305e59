"""The annotation state of one widget: one Session, the open images, suggestions, selection.

Panels call the controller's methods and listen to its signals; the controller drives the
:class:`~cellseek.session.Session` (long steps through the :class:`WorkRunner`) and keeps the
plugin's layers in step. No algorithm lives here.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
from qtpy.QtCore import QObject, Signal

from cellseek.annotation.cells import CellTable, unique_offset
from cellseek.annotation.colours import class_colours
from cellseek.annotation.review import ReviewQueue, above_threshold, shown_label, uncertain_first
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

    def __init__(self, viewer, parent=None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.config = Config()
        self.runner = WorkRunner(self)
        self.registry = LayerRegistry(viewer)
        self.session = None
        self.current: OpenImage | None = None
        self.suggestions: dict = {}
        self.queue = ReviewQueue()
        self.selected: int | None = None
        self.threshold = self.config.suggest.threshold
        self.colours: dict[str, tuple] = {}
        self.extra_classes: list[str] = []

    # ------------------------------------------------------------------ images and segmentation
    def set_image_layer(self, layer) -> OpenImage | None:
        """Make ``layer`` the image under annotation (None: no image)."""
        self.current = None if layer is None else self.registry.for_image_layer(layer)
        if self.current is not None and self.session is not None:
            self._restore_from_store(self.current)
        return self.current

    def _restore_from_store(self, item: OpenImage) -> bool:
        """Rebuild the cells layer of an image the open store already holds (its saved labels)."""
        from cellseek.io import content_hash

        if item.cells_layer is not None:
            return False
        known = self.session.store.image_by_hash(content_hash(item.image))
        planes = self.session.plane_labels(int(known["id"])) if known else {}
        if not planes:
            return False
        layer = self.registry.ensure_cells_layer(item)
        data = np.asarray(layer.data)
        for key, labels in planes.items():
            data[item.index_of(key)] = labels  # stored with the layer's stack-unique values
        layer.data = data
        item.image_id = int(known["id"])
        item.table = CellTable(self.session.store.cells(item.image_id))
        _info(f"Restored {len(item.table.ids_in_planes(list(planes)))} cells of this image from "
              "the reference set.")
        self.refresh_layers()
        self.cells_changed.emit()
        return True

    def current_plane(self):
        """``(t, z)`` of the plane on screen in the current image."""
        return self.current.current_key(self.viewer)

    def segment(self, config: SegmentConfig, *, whole_stack: bool = False):
        """Segment the current plane (or every plane) of the current image in a worker."""
        item = self._need_image()
        keys = item.planes() if whole_stack else [self.current_plane()]
        return self.runner.run(
            "Segmentation", _segment_work(item, keys, config),
            on_returned=lambda result: self._apply_segmentation(item, result),
        )

    def _apply_segmentation(self, item: OpenImage, result: dict) -> None:
        layer = self.registry.ensure_cells_layer(item)
        kept = []
        for key in list(result):
            ids = item.table.ids_in_planes([key])
            if ids and self.session is not None:
                if any(item.table.cell(i)["label"] for i in ids):
                    kept.append(key)
                    del result[key]
                    continue
                self.session.store.delete_cells(ids)
                item.table = CellTable(self.session.store.cells(item.image_id))
        if kept:
            _warn(f"{len(kept)} plane(s) already hold confirmed labels in the reference set; "
                  "their cells were kept as they are.")
        data = np.asarray(layer.data)
        for key, labels in result.items():
            idx = item.index_of(key)
            data[idx] = 0
            data[idx] = unique_offset(labels, int(data.max(initial=0)))
        layer.data = data
        self.viewer.layers.selection.active = layer
        n = sum(int((np.unique(lab) > 0).sum()) for lab in result.values())
        _info(f"Segmentation found {n} cells in {len(result)} plane(s).")
        self.refresh_layers()
        self.cells_changed.emit()
        if self.session is not None and result:
            self.embed(item, list(result))

    def add_cell_mask(self, mask: np.ndarray, key) -> int | None:
        """Add one segmented cell (a boolean plane mask) to the current image's cells layer."""
        item = self._need_image()
        layer = self.registry.ensure_cells_layer(item)
        plane = layer.data[item.index_of(key)]
        free = np.asarray(mask, bool) & (plane == 0)
        if free.sum() < 10:
            _warn("No new cell found at that spot.")
            return None
        value = int(np.asarray(layer.data).max(initial=0)) + 1
        plane[free] = value
        layer.refresh()
        self.refresh_layers()
        self.cells_changed.emit()
        if self.session is not None and item.image_id is not None:
            only = np.where(plane == value, value, 0).astype(np.int32)
            gen = self.session.add_cells(item.image_id, item.plane(key), only, t=key[0], z=key[1],
                                         pixel_size_um=item.image.pixel_size_um)
            self.runner.run("Embedding the new cell", gen,
                            on_returned=lambda ids: self._after_embed(item))
        return value

    def segment_at(self, item: OpenImage, key, point, config: SegmentConfig):
        """Segment the cell at ``point`` (row, col) of a plane with a SAM point prompt (worker)."""
        from cellseek.zoo import weights_available

        ok, hint = weights_available(f"sam_{config.sam_model}")
        if not ok:
            raise CellseekError(
                f"click-to-segment needs the SAM {config.sam_model} weights. {hint}")
        plane = item.plane(key)
        return self.runner.run("Click-to-segment", _sam_point_work(self, plane, point, config),
                               on_returned=lambda mask: self.add_cell_mask(mask, key))

    # ------------------------------------------------------------------ store / session
    def create_store(self, path, *, preset: str | None = None, models=()) -> None:
        """Create a reference set at ``path`` for the chosen models and open it."""
        from cellseek.session import Session

        embed = replace(self.config.embed, preset=preset or self.config.embed.preset,
                        models=tuple(models))
        self.config = replace(self.config, embed=embed)
        self._set_session(Session.create(path, self.config, overwrite=True))

    def open_store(self, path) -> None:
        """Open an existing reference set."""
        from cellseek.session import Session

        self._set_session(Session.open(path, self.config))

    def _set_session(self, session) -> None:
        if self.session is not None:
            self.session.close()
        self.session = session
        self.suggestions = {}
        self.queue = ReviewQueue()
        self.selected = None
        self.extra_classes = list(session.store.meta("gui_classes", []) or [])
        self.colours = class_colours([], session.store.meta("class_colours", {}) or {})
        self._update_colours()
        self.threshold = session.config.suggest.threshold
        self.session_changed.emit()
        self.classes_changed.emit()
        for item in list(self.registry.images):
            if item.cells_layer is None:
                self._restore_from_store(item)
            else:
                self._attach(item)
        self.warm_up()

    def _attach(self, item: OpenImage) -> None:
        """Link an image already segmented to the store (embedding its cells when new)."""
        from cellseek.io import content_hash

        known = self.session.store.image_by_hash(content_hash(item.image))
        if known is not None and self.session.store.cells(known["id"]):
            item.image_id = int(known["id"])
            item.table = CellTable(self.session.store.cells(item.image_id))
            self.refresh_layers()
            self.cells_changed.emit()
        else:
            planes = [k for k in item.planes() if item.labels_of(k).any()]
            if planes:
                self.embed(item, planes)

    def embed(self, item: OpenImage | None = None, planes=None):
        """Crop and embed the segmented cells of an image into the store (worker)."""
        item = item or self._need_image()
        self._need_session()
        if item.cells_layer is None:
            raise CellseekError("segment the image first: it has no cells yet")
        planes = planes or [k for k in item.planes() if item.labels_of(k).any()]
        labels = {k: np.array(item.labels_of(k)) for k in planes}
        gen = self.session.add_image(item.image, labels=labels)
        return self.runner.run("Embedding cells", gen,
                               on_returned=lambda image_id: self._after_embed(item, image_id))

    def _after_embed(self, item: OpenImage, image_id: int | None = None) -> None:
        if image_id is not None:
            item.image_id = int(image_id)
        item.table = CellTable(self.session.store.cells(item.image_id))
        self.refresh_layers()
        self.cells_changed.emit()
        self.classes_changed.emit()

    def warm_up(self):
        """Build the reference index in a worker (imports FAISS off the GUI thread)."""
        if self.session is None:
            return None
        return self.runner.run("Preparing the index", _warm_work(self.session))

    def export(self, folder):
        """Export the store copy, the cells CSV and the label images (worker)."""
        self._need_session()
        return self.runner.run("Export", _call_work(self.session.export, folder),
                               on_returned=lambda paths: _info(
                                   f"Exported {len(paths)} files to {folder}"))

    def import_store(self, path):
        """Merge another reference set into this one (worker)."""
        self._need_session()
        gen = _call_work(self.session.store.merge_from, str(path))
        return self.runner.run("Import", gen, on_returned=self._after_import)

    def import_labelled_csv(self, path):
        """Add labelled single-cell images (``path,label[,source]`` CSV) as reference cells."""
        from cellseek.reference import add_labelled_csv

        self._need_session()
        return self.runner.run("Import of labelled cells", add_labelled_csv(self.session, path),
                               on_returned=self._after_import)

    def _after_import(self, result) -> None:
        self.session.refresh()
        for item in self.registry.images:
            if item.image_id is not None:
                item.table = CellTable(self.session.store.cells(item.image_id))
        if isinstance(result, dict):
            _info("Imported: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.items()))
        else:
            _info(f"Imported {result} labelled cells.")
        self._update_colours()
        self.refresh_layers()
        self.labels_changed.emit()
        self.classes_changed.emit()
        self.warm_up()

    # ------------------------------------------------------------------ classes
    def class_names(self) -> list[str]:
        """Classes of the store, then classes added in the widget that have no cell yet."""
        names = sorted(self.session.store.classes()) if self.session else []
        return names + [c for c in self.extra_classes if c not in names]

    def class_counts(self) -> dict[str, int]:
        """Confirmed cells per class (0 for classes without cells)."""
        counts = self.session.store.classes() if self.session else {}
        return {c: int(counts.get(c, 0)) for c in self.class_names()}

    def _update_colours(self) -> None:
        self.colours = class_colours(self.class_names(), self.colours)
        if self.session is not None and not self.session.store.readonly:
            self.session.store.set_meta(
                "class_colours", {k: list(v) for k, v in self.colours.items()})
            self.session.store.set_meta("gui_classes", self.extra_classes)

    def add_class(self, name: str) -> None:
        """Add a class (it appears in the list before any cell has it)."""
        self._need_session()
        name = name.strip()
        if not name:
            raise CellseekError("a class needs a name")
        if name not in self.class_names():
            self.extra_classes.append(name)
        self._update_colours()
        self.classes_changed.emit()

    def rename_class(self, old: str, new: str) -> None:
        """Rename a class everywhere in the store."""
        self._need_session()
        new = new.strip()
        if old in self.session.store.classes():
            self.session.store.rename_class(old, new)
        self.extra_classes = [new if c == old else c for c in self.extra_classes]
        if old in self.colours:
            self.colours[new] = self.colours.pop(old)
        self._after_class_change()

    def merge_classes(self, sources, into: str) -> None:
        """Merge classes into one."""
        self._need_session()
        stored = [s for s in sources if s in self.session.store.classes() and s != into]
        if stored:
            self.session.store.merge_classes(stored, into)
        self.extra_classes = [c for c in self.extra_classes if c not in sources or c == into]
        if into not in self.class_names():
            self.extra_classes.append(into)
        self._after_class_change()

    def _after_class_change(self) -> None:
        self.session.refresh()
        for item in self.registry.images:
            if item.image_id is not None:
                item.table = CellTable(self.session.store.cells(item.image_id))
        self._update_colours()
        self.refresh_layers()
        self.classes_changed.emit()
        self.labels_changed.emit()

    # ------------------------------------------------------------------ labels
    def label_cells(self, cell_ids, label: str, *, source: str = "user") -> None:
        """Confirm one class for cells (one undoable step)."""
        self._need_idle_session()
        ids = [int(c) for c in cell_ids]
        if not ids:
            return
        self.session.label(ids, [label] * len(ids), source=source)
        self._labels_done(ids)

    def accept(self, cell_ids=None) -> int:
        """Confirm the suggestion shown for cells (default: the selected cell)."""
        self._need_idle_session()
        ids = [self.selected] if cell_ids is None and self.selected is not None else cell_ids or []
        pairs = []
        for cid in ids:
            sugg = self.suggestions.get(int(cid))
            label = shown_label(sugg, self.threshold) if sugg is not None else None
            if label is None:
                label = self.session.store.cell(int(cid))["suggestion"]
            if label:
                pairs.append((int(cid), label))
        if not pairs:
            _warn("No suggestion to accept for this cell; give it a class with the keys 1-9.")
            return 0
        self.session.label([c for c, _ in pairs], [lab for _, lab in pairs], source="accepted")
        self._labels_done([c for c, _ in pairs])
        return len(pairs)

    def accept_all_above(self) -> int:
        """Confirm every suggestion whose confidence reaches the threshold."""
        self._need_idle_session()
        labelled = {c for i in self.registry.images for c in i.table.ids()
                    if i.table.cell(c)["label"]}
        ids, labels = above_threshold(self.suggestions, self.threshold, skip=labelled)
        if ids:
            self.session.label(ids, labels, source="accepted")
            self._labels_done(ids)
        _info(f"Accepted {len(ids)} suggestions at confidence >= {self.threshold:.2f}.")
        return len(ids)

    def undo(self):
        """Undo the last labelling step."""
        self._need_idle_session()
        restored = self.session.undo()
        if not restored:
            _info("Nothing to undo.")
            return None
        ids = [int(c) for c, _ in restored]
        self.queue.unmark([c for c, lab in restored if lab is None])
        self._labels_done(ids, mark=False)
        return restored

    def _labels_done(self, ids, *, mark: bool = True) -> None:
        for item in self.registry.images:
            hit = [c for c in ids if c in item.table]
            if hit:
                item.table.update(self.session.store.cell(c) for c in hit)
                self._keep_suggestions(item, hit)
        if mark:
            self.queue.mark_done(ids)
        self._update_colours()
        self.refresh_layers()
        self.labels_changed.emit()
        self.classes_changed.emit()
        if self.selected in ids:
            self.selection_changed.emit(self.selected)

    def _keep_suggestions(self, item: OpenImage, ids) -> None:
        for cid in ids:
            sugg = self.suggestions.get(cid)
            if sugg is not None:
                item.table.set_state(cid, suggestion=sugg.best_label, confidence=sugg.confidence)

    # ------------------------------------------------------------------ suggestions
    def suggest(self, *, scope: str = "plane"):
        """Suggest classes for the unconfirmed cells of the plane, the stack or the store."""
        self._need_session()
        if scope == "store":
            ids = None
        else:
            item = self._need_image()
            if item.image_id is None:
                raise CellseekError("the cells of this image are not in the reference set yet")
            planes = [self.current_plane()] if scope == "plane" else item.planes()
            ids = [c for c in item.table.ids_in_planes(planes) if not item.table.cell(c)["label"]]
        return self.runner.run("Suggestion", self.session.suggest(ids),
                               on_returned=self._after_suggest)

    def _after_suggest(self, result: dict) -> None:
        self.suggestions.update({int(k): v for k, v in result.items()})
        for item in self.registry.images:
            self._keep_suggestions(item, [c for c in result if c in item.table])
        self._rebuild_queue()
        self.refresh_layers()
        self.labels_changed.emit()
        n_unc = sum(1 for s in result.values() if shown_label(s, self.threshold) is None)
        _info(f"Suggested classes for {len(result)} cells; {n_unc} need review.")

    def set_threshold(self, value: float) -> None:
        """Set the confidence threshold of the suggestions shown and accepted."""
        self.threshold = float(value)
        if self.session is not None:
            cfg = self.session.config
            suggest = replace(cfg.suggest, threshold=self.threshold)
            self.session.config = replace(cfg, suggest=suggest)
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
            _info("No more uncertain cells in the review queue." if direction > 0
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

    def cell_at(self, layer, position):
        """``(OpenImage, cell id or None, label value, plane key)`` under a world position."""
        item = self.registry.for_cells_layer(layer) or self.current
        if item is None or item.cells_layer is None:
            return None, None, 0, None
        cells = item.cells_layer
        data = np.asarray(cells.world_to_data(position[-cells.ndim:]))
        idx = tuple(int(round(v)) for v in data)
        if any(i < 0 or i >= n for i, n in zip(idx, cells.data.shape)):
            return item, None, 0, None
        value = int(cells.data[idx])
        key = item.key_of(idx[: len(item.lead_axes)])
        return item, item.table.id_of(value) if value else None, value, key

    def jump_to(self, cell_id: int) -> bool:
        """Show a stored cell: set the dims to its plane and centre the camera on it."""
        cell = self.session.store.cell(int(cell_id))
        item = self.registry.for_image_id(int(cell["image_id"]))
        if item is None or item.cells_layer is None:
            name = self.session.store.image(int(cell["image_id"]))["path"]
            _info(f"That cell lies in {name}, which is not open in the viewer.")
            return False
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
        layer.visible = True
        return True

    # ------------------------------------------------------------------ layers
    def refresh_layers(self) -> None:
        """Recolour every cells layer from the current state."""
        for item in self.registry.images:
            self.registry.refresh_colours(item, self.colours, threshold=self.threshold)

    # ------------------------------------------------------------------ helpers
    def _need_session(self):
        if self.session is None:
            raise CellseekError("create or open a reference set first (Reference set tab)")
        return self.session

    def _need_idle_session(self):
        self._need_session()
        if self.runner.busy:
            raise CellseekError(f"wait until {self.runner.what.lower()} has finished")
        return self.session

    def _need_image(self) -> OpenImage:
        if self.current is None:
            raise CellseekError("choose an image layer first (Segment tab)")
        return self.current

    def close(self) -> None:
        """Stop workers and close the store once they have stopped."""
        session, self.session = self.session, None
        self.registry.close()
        self.runner.close(then=session.close if session is not None else None)


def _segment_work(item: OpenImage, keys, config: SegmentConfig):
    from cellseek.segment import segment_plane

    out = {}
    for i, key in enumerate(keys):
        yield Progress(i, len(keys), "segment", f"plane t={key[0]} z={key[1]}")
        out[key] = yield from segment_plane(item.plane(key), config)
    yield Progress(len(keys), len(keys), "segment", "done")
    return out


def _sam_point_work(controller, plane, point, config: SegmentConfig):
    """SAM point prompt; the segmenter (and its cached image embedding) lives on the controller."""
    yield Progress(0, 1, "sam", "point prompt")
    from cellseek.segment.sam import SamSegmenter

    sam = getattr(controller, "_sam", None)
    if sam is None:
        sam = controller._sam = SamSegmenter(config.sam_model,
                                             weights_dir=controller.config.embed.weights_dir)
    mask = sam.segment_point(plane, point)
    yield Progress(1, 1, "sam", "done")
    return mask


def _warm_work(session):
    yield Progress(0, 1, "index", "building the reference index")
    session.index()
    yield Progress(1, 1, "index", "ready")


def _call_work(func, *args, **kwargs):
    yield Progress(0, 1, "", "")
    result = func(*args, **kwargs)
    yield Progress(1, 1, "", "done")
    return result


__all__ = ["AnnotationController", "notify_error"]
