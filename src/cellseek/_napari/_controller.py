"""The annotation state of one widget: one Session, the open images, suggestions, selection.

Panels call the controller's methods and listen to its signals. The controller runs every step
that touches the :class:`~cellseek.session.Session` as a job of its :class:`WorkRunner` (one
at a time, off the GUI thread, in the order asked) and keeps the plugin's layers in step with
the results. The rules (classes and keys, accept, re-segmentation, restore) are Session
methods; the array work on label stacks is in :mod:`cellseek.annotation.cells`.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from cellseek.annotation.cells import CellTable
from cellseek.annotation.review import ReviewQueue
from cellseek.config import Config
from cellseek.errors import CellseekError
from cellseek.text import count_text
from cellseek.types import Progress

from ._jobs import call_work, info
from ._labelling import LabellingMixin
from ._layers import LayerRegistry, OpenImage
from ._segmenting import SegmentingMixin
from ._workers import WorkRunner, notify_error

logger = logging.getLogger(__name__)


class AnnotationController(SegmentingMixin, LabellingMixin, QObject):
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
    sam_reason = Signal(str)  # which SAM model segmented and why

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
        self._precompute = None
        self.viewer.dims.events.current_step.connect(self._on_step)
        self.registry.on_shown = self._on_image_shown
        for item in self.registry.adopt_all():  # cells layers an earlier widget left behind
            self._recolour(item)

    def _on_step(self, event=None) -> None:
        """The user moved through the stack: SAM pre-computation restarts from the new plane."""
        if self._sam is not None:
            self.precompute_sam()

    def _on_image_shown(self, item: OpenImage) -> None:
        """The user made an open image visible: it becomes the image under annotation, so the
        panels (the composition plot, the Segment tab) follow the image on screen."""
        if item is not self.current:
            self.set_image_layer(item.image_layer)

    # ------------------------------------------------------------------ images
    def set_image_layer(self, layer) -> OpenImage | None:
        """Make ``layer`` the image under annotation (None: no image)."""
        item = None if layer is None else self.registry.for_image_layer(layer)
        if item is not self.current:
            self.current = item
            self.current_changed.emit(item)
        if item is not None and self.session is not None and item.image_id is None:
            self.link_images([item])
        if item is not None and self._sam is not None:
            self.precompute_sam()  # SAM is in use: the new image's planes next
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
        ran_on = []

        def start():
            ran_on.append(self._need_session())
            return work(ran_on[0])

        def returned(result):
            # A result belongs to the reference set the job ran on: once another set replaced
            # it (New... or Open... while the job ran), applying it would write that set's cell
            # ids into the images of the new one.
            if not ran_on or ran_on[0] is not self.session:
                logger.info("%s finished on a reference set closed meanwhile; result dropped",
                            what)
                return
            if on_returned is not None:
                on_returned(result)

        return self.runner.run(what, start, returned, **kwargs)

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

    def warm_up(self):
        """Build the reference index in a job (imports FAISS off the GUI thread)."""
        def work(session):
            yield Progress(0, 1, "index", "preparing the reference index")
            # one step (Cancel cannot stop it midway, see call_work); a rebuild reports its
            # progress through the runner's signal, which Qt delivers on the GUI thread
            session.index(progress=self.runner.progress.emit)

        return self._session_job("Preparing the index", work)

    def export(self, folder):
        """Export the store copy, the cells CSV and the label images (a job)."""
        return self._session_job(
            "Export", lambda s: call_work(s.export, folder),
            on_returned=lambda paths: info(
                f"Exported {count_text(len(paths), 'file')} to {folder}"))

    def import_store(self, path):
        """Merge another reference set into this one (a job)."""
        return self._session_job("Import", lambda s: call_work(s.import_reference, path),
                                 on_returned=self._after_import)

    def import_labelled_csv(self, path):
        """Add labelled single-cell images (``path,label[,source]`` CSV) as reference cells."""

        def work(session):
            from cellseek.reference import add_labelled_csv  # in the worker: heavy imports

            return (yield from add_labelled_csv(session, path))

        return self._session_job("Import of labelled cells", work, on_returned=self._after_import)

    def _after_import(self, result) -> None:
        if isinstance(result, dict):
            info("Imported: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.items()))
        else:
            info(f"Imported {count_text(result, 'labelled cell')}.")
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
        for cls in self.classes:
            if cls.key == number:
                return cls.name
        raise CellseekError(f"there is no class {number}; add classes in the Reference set tab")

    def add_class(self, name: str):
        """Add a class (it appears in the list, with the next key, before any cell has it)."""
        return self._session_job("Adding a class", lambda s: call_work(s.add_class, name),
                                 on_returned=lambda _: self.refresh_classes(), quiet=True)

    def rename_class(self, old: str, new: str):
        """Rename a class everywhere (a job)."""
        return self._session_job("Renaming a class",
                                 lambda s: call_work(s.rename_class, old, new),
                                 on_returned=lambda _: self.reload_tables())

    def merge_classes(self, sources, into: str):
        """Merge classes into one (a job)."""
        sources = list(sources)
        return self._session_job("Merging classes",
                                 lambda s: call_work(s.merge_classes, sources, into),
                                 on_returned=lambda _: self.reload_tables())

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
                                 lambda s: call_work(neighbour_gallery, s, int(cell_id)),
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
                                 lambda s: call_work(session_map, s, method=method),
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

        self.viewer.dims.events.current_step.disconnect(self._on_step)
        self.stop_precompute()
        self.registry.close()
        self.runner.close(then=release)


def _centre(item: OpenImage):
    """World position of the middle of an image."""
    layer = item.cells_layer or item.image_layer
    n = len(item.labels_shape)
    data = [0] * (n - 2) + [s / 2 for s in item.plane_shape]
    return tuple(layer.data_to_world(data))


__all__ = ["AnnotationController", "notify_error"]
