"""The annotation controller of one widget: its state, its signals and three parts.

Panels call the controller and listen to its signals. It holds the
:class:`~cellseek._napari.controller.state.AnnotationState` and composes three parts with named
dependencies (no part reaches into another): :class:`ReferenceSets` (create, open, import,
export, classes), :class:`Segmenting` (segment, embed, click-to-segment, link open images to the
set) and :class:`Labelling` (label, accept, undo, suggest, the review queue). Every step that
touches the :class:`~cellseek.session.Session` runs as a job of the :class:`Runner`. The rules
(classes and keys, accept, re-segmentation, restore) are Session methods; the array work on
label stacks is in :mod:`cellseek.annotation.cells`.
"""

from __future__ import annotations

import logging

import numpy as np

from cellseek._napari.runner import Runner, call_work

from .editing import Editing
from .images import same_layer
from .jobs import SessionJobs
from .labelling import Labelling
from .layers import LayerRegistry
from .marker import SelectionMarker
from .segmenting import Segmenting
from .sets import ReferenceSets
from .state import AnnotationState, Signals
from .view import CellsView

logger = logging.getLogger(__name__)

#: Key of the gallery look-up in the runner's queue (only the last clicked cell's matters).
GALLERY = "gallery"


def _state_attribute(name: str):
    """A property that reads and writes ``self.state.<name>``."""
    return property(lambda self: getattr(self.state, name),
                    lambda self, value: setattr(self.state, name, value),
                    doc=f"``state.{name}``")


class AnnotationController:
    """State and actions behind :class:`~cellseek._napari.widget.CellseekWidget`.

    Parameters
    ----------
    viewer : napari.Viewer
    parent : QObject, optional
        Owner of the runner and the signals (the widget).
    """

    session = _state_attribute("session")
    config = _state_attribute("config")
    current = _state_attribute("current")
    selected = _state_attribute("selected")
    suggestions = _state_attribute("suggestions")
    queue = _state_attribute("queue")
    threshold = _state_attribute("threshold")
    classes = _state_attribute("classes")
    colours = _state_attribute("colours")

    def __init__(self, viewer, parent=None) -> None:
        self.viewer = viewer
        self.state = state = AnnotationState()
        self.signals = signals = Signals(parent)
        for name in ("session_changed", "cells_changed", "labels_changed", "classes_changed",
                     "selection_changed", "current_changed", "gallery", "message",
                     "sam_reason", "edit_armed"):
            setattr(self, name, getattr(signals, name))
        self.runner = Runner(parent)
        self.registry = LayerRegistry(viewer)
        self.view = view = CellsView(self.registry, state)
        self.jobs = jobs = SessionJobs(self.runner, state)
        self.sets = ReferenceSets(jobs, state, signals, self.registry, view,
                                  on_opened=lambda: self.segmenting.link_images())
        self.segmenting = Segmenting(viewer, jobs, state, signals, self.registry, view)
        self.labelling = Labelling(jobs, state, signals, self.registry, view, select=self.select,
                                   refresh_classes=self.sets.refresh_classes,
                                   current_plane=self.segmenting.current_plane)
        self.editing = Editing(jobs, state, signals, self.registry, view, select=self.select)
        self.marker = SelectionMarker(viewer)
        signals.cells_changed.connect(self._mark_selected)
        self.registry.on_plane_changed = view.recolour
        self.registry.on_shown = self._on_image_shown
        viewer.dims.events.current_step.connect(self._on_step)
        for item in self.registry.adopt_all():  # cells layers an earlier widget left behind
            view.recolour(item)

    # ------------------------------------------------------------------ classes
    def class_names(self) -> list[str]:
        """Class names in key order."""
        return [c.name for c in self.state.classes]

    def class_counts(self) -> dict[str, int]:
        """Confirmed cells per class (0 for classes without cells)."""
        return {c.name: c.count for c in self.state.classes}

    # ------------------------------------------------------------------ images
    def _on_step(self, event=None) -> None:
        """The user moved through the stack: SAM pre-computation restarts from the new plane."""
        if self.segmenting.sam is not None:
            self.segmenting.precompute_sam()

    def _on_image_shown(self, item) -> None:
        """The user made an open image visible: it becomes the image under annotation, so the
        panels (the composition plot, the Segment tab) follow the image on screen."""
        if item is not self.state.current:
            self.set_image_layer(item.image_layer)

    def set_image_layer(self, layer):
        """Make ``layer`` the image under annotation (None: no image)."""
        item = None if layer is None else self.registry.for_image_layer(layer)
        if item is not self.state.current:
            self.state.current = item
            self.signals.current_changed.emit(item)
        if item is not None and self.state.session is not None and item.image_id is None:
            self.segmenting.link_images([item])
        if item is not None and self.segmenting.sam is not None:
            self.segmenting.precompute_sam()  # SAM is in use: the new image's planes next
        return item

    def choose_image(self, layer):
        """The user chose an image layer (the Segment tab): it becomes the image under
        annotation, is shown (see :meth:`show_image`) and is the active layer."""
        item = self.set_image_layer(layer)
        if item is not None:
            self.show_image(item)
            self._activate(item)
        return item

    def _activate(self, item) -> None:
        """Make an image's layer the active one, unless one of its layers already is (its
        cells layer, for painting)."""
        selection = self.viewer.layers.selection
        if not any(same_layer(selection.active, ly)
                   for ly in (item.image_layer, item.cells_layer)):
            selection.active = item.image_layer

    def show_image(self, item) -> None:
        """Make an open image the current one and show it (its layers on, the other images'
        layers that overlap it off), so that nothing is drawn over the wrong image; the active
        layer follows when the image changes."""
        for other in self.registry.images:
            if other is not item and other.contains(_centre(item)):
                for layer in (other.image_layer, other.cells_layer):
                    if layer is not None:
                        layer.visible = False
        for layer in (item.image_layer, item.cells_layer):
            if layer is not None:
                layer.visible = True
        if item is not self.state.current:
            self.state.current = item
            self.signals.current_changed.emit(item)
            self._activate(item)

    # ------------------------------------------------------------------ clicks and selection
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

    def click(self, position, *, segment_config=None):
        """A click on the canvas at a world ``position``: select the cell there, or, with
        ``segment_config`` (click-to-segment on) and no cell there, segment one with SAM.

        Returns
        -------
        int or None
            The selected cell's id (None: no cell, or one not in the reference set yet).
        """
        item, cell_id, label_value, key = self.cell_at(position)
        if item is None or key is None:
            return None
        if self.editing.armed is not None:
            self.editing.on_click(item, cell_id, key, _plane_point(item, position))
            return None
        if label_value == 0 and segment_config is not None:
            self.segmenting.segment_at(item, key, _plane_point(item, position), segment_config)
            return None
        if item is not self.state.current:
            self.show_image(item)
        if cell_id is None and label_value:
            self.signals.message.emit(
                "This cell is not in the reference set yet: create or open one (Reference set "
                "tab); its cells are embedded then.")
        self.select(cell_id)
        return cell_id

    def select(self, cell_id: int | None, *, jump: bool = False) -> None:
        """Select a cell (None: no cell); ``jump`` moves the view to it. Its neighbour gallery
        is looked up in a short job and announced by the ``gallery`` signal."""
        self.state.selected = None if cell_id is None else int(cell_id)
        if jump and cell_id is not None:
            self.jump_to(cell_id)
        self._mark_selected()
        self.signals.selection_changed.emit(self.state.selected)
        if self.state.selected is not None and self.state.session is not None:
            self._look_up_gallery(self.state.selected)

    def _mark_selected(self) -> None:
        """Mark the selected cell where it lies in an open image (nothing marked otherwise)."""
        cid = self.state.selected
        item = next((i for i in self.registry.images if cid is not None and cid in i.table),
                    None)
        if item is None or not self.marker.show(item, item.table.cell(cid)):
            self.marker.clear()

    def _look_up_gallery(self, cell_id: int):
        from cellseek.annotation.gallery import neighbour_gallery

        def shown(gallery):
            if gallery.cell["id"] == self.state.selected:  # not clicked another cell since
                self.signals.gallery.emit(gallery)

        return self.jobs.run("Looking up the nearest cells",
                             lambda s: call_work(neighbour_gallery, s, cell_id),
                             on_returned=shown, quiet=True, key=GALLERY)

    def jump_to(self, cell_id: int) -> bool:
        """Show a stored cell: its image, its plane, the camera centred on it."""
        cell = self.jobs.need_session().cell(int(cell_id))
        item = self.registry.for_image_id(int(cell["image_id"]))
        if item is None or item.cells_layer is None:
            name = self.state.session.image_path(int(cell["image_id"]))
            self.signals.message.emit(f"That cell lies in {name}, which is not open in the "
                                      "viewer.")
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
        self.view.recolour(item)  # its plane's colours now (several axes moved at once)
        return True

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """Stop listening, stop the jobs, and close the store once the running one stopped
        (also a store the running job was opening)."""
        session, self.state.session = self.state.session, None
        running = self.runner.running
        jobs = self.jobs

        def release():
            if session is not None:
                session.close()
            opened = getattr(running, "result", None)
            if jobs.is_store_job(running) and opened is not None and opened is not session:
                opened.close()

        self.viewer.dims.events.current_step.disconnect(self._on_step)
        self.segmenting.stop_precompute()
        self.marker.close()
        self.registry.close()
        self.runner.close(then=release)


def _plane_point(item, position) -> tuple[float, float]:
    """``(row, col)`` in an image's plane pixels of a world ``position``."""
    data = item.cells_layer.world_to_data(position[-item.cells_layer.ndim:])
    return float(data[-2]), float(data[-1])


def _centre(item):
    """World position of the middle of an image."""
    layer = item.cells_layer or item.image_layer
    n = len(item.labels_shape)
    data = [0] * (n - 2) + [s / 2 for s in item.plane_shape]
    return tuple(layer.data_to_world(data))
