"""The layers the plugin made, kept by reference (never looked up by name).

:class:`LayerRegistry` makes, adopts and colours the cells layers of the open images
(:class:`~cellseek._napari.controller.images.OpenImage`): outlines coloured by class and state,
with the colours of the cells of the plane on screen only (napari draws one plane; a colour
table of every cell of a large stack would cost a tenth of a second per key press).
"""

from __future__ import annotations

import time

import numpy as np
from qtpy.QtCore import QTimer

from cellseek.annotation.colours import UNLABELLED_ALPHA, cell_colour, unlabelled_colour

from .images import OpenImage, image_data_from_layer, layer_axes, meta_of, same_layer

#: Default outline width (data pixels) of the cells layers; 0 draws filled cells.
OUTLINE_WIDTH = 2
#: Default opacity of the cells layers.
CELLS_OPACITY = 0.9
#: Up to this many changed cells update their rows of the hover table; more rebuild it.
FEATURE_ROWS_IN_PLACE = 64
#: Slider steps closer than this (ms) are a drag: the colours follow once it pauses.
SCRUB_PAUSE_MS = 150


class LayerRegistry:
    """The open images and the layers the plugin created, by reference.

    Parameters
    ----------
    viewer : napari.Viewer
    """

    def __init__(self, viewer) -> None:
        self.viewer = viewer
        self.images: list[OpenImage] = []
        self.outline_width = OUTLINE_WIDTH
        self.opacity = CELLS_OPACITY
        #: Called with an :class:`OpenImage` to recolour it (set by the controller).
        self.on_plane_changed = None
        #: Called with an :class:`OpenImage` whose image layer the user made visible.
        self.on_shown = None
        self._visible_hooks: list = []  # (layer, callback) to disconnect at close
        self._last_step = 0.0
        self._recolour_timer = QTimer()
        self._recolour_timer.setSingleShot(True)
        self._recolour_timer.setInterval(SCRUB_PAUSE_MS)
        self._recolour_timer.timeout.connect(self._recolour_visible)
        viewer.layers.events.removed.connect(self._on_removed)
        viewer.dims.events.current_step.connect(self._on_dims)
        viewer.dims.events.ndisplay.connect(self._on_dims)

    def close(self) -> None:
        """Stop listening to the viewer."""
        self._recolour_timer.stop()
        for layer, callback in self._visible_hooks:
            layer.events.visible.disconnect(callback)
        self._visible_hooks = []
        self.on_shown = None
        self.viewer.layers.events.removed.disconnect(self._on_removed)
        self.viewer.dims.events.current_step.disconnect(self._on_dims)
        self.viewer.dims.events.ndisplay.disconnect(self._on_dims)

    def _on_removed(self, event) -> None:
        layer = event.value
        for item in list(self.images):
            if same_layer(item.image_layer, layer):
                self.images.remove(item)
                for hook in [h for h in self._visible_hooks if same_layer(h[0], layer)]:
                    layer.events.visible.disconnect(hook[1])
                    self._visible_hooks.remove(hook)
            elif same_layer(item.cells_layer, layer):
                item.cells_layer = None
                item.coloured_plane, item.colour_cache = None, {}

    def _on_dims(self, event=None) -> None:
        """The plane on screen changed. Its cells already have their colours when it is next
        to the plane coloured last (the colour table covers the neighbours): the table then
        follows once the slider pauses. A jump further recolours at once, except while the
        slider is being dragged (steps closer than SCRUB_PAUSE_MS): each step then costs napari
        one redraw, not two, and the colours follow when it stops."""
        now = time.monotonic()
        dragging = now - self._last_step < SCRUB_PAUSE_MS / 1000
        self._last_step = now
        jumped = [i for i in self.images if i.cells_layer is not None
                  and self._visible_planes(i) not in i.covered]
        if jumped and not dragging:
            for item in jumped:
                self.on_plane_changed(item)
        self._recolour_timer.start()

    def _recolour_visible(self) -> None:
        for item in self.images:
            if item.cells_layer is not None and self.on_plane_changed is not None:
                if self._visible_planes(item) != item.coloured_plane:
                    self.on_plane_changed(item)

    # ------------------------------------------------------------------ lookup
    def image_layers(self) -> list:
        """The viewer's image layers (the user's), top first."""
        from napari.layers import Image

        return [ly for ly in reversed(self.viewer.layers) if isinstance(ly, Image)]

    def for_image_layer(self, layer, *, create: bool = True) -> OpenImage | None:
        """The entry of an image layer (made on first use when ``create``)."""
        for item in self.images:
            if same_layer(item.image_layer, layer):
                return item
        if not create:
            return None
        item = OpenImage(layer, image_data_from_layer(layer), layer_axes(layer))
        item.cells_layer = self._adopt(layer)
        self.images.append(item)

        def shown(event=None, item=item):
            if item.image_layer.visible and self.on_shown is not None and item in self.images:
                self.on_shown(item)

        layer.events.visible.connect(shown)
        self._visible_hooks.append((layer, shown))
        return item

    def _adopt(self, image_layer):
        """A cells layer an earlier widget made for this image layer, or None."""
        from napari.layers import Labels

        token = str(image_layer.unique_id)
        for layer in self.viewer.layers:
            if isinstance(layer, Labels) and meta_of(layer).get("cells_of_layer") == token:
                return layer
        return None

    def adopt_all(self) -> list[OpenImage]:
        """Entries for every image layer that already has a cellseek cells layer."""
        return [self.for_image_layer(ly) for ly in self.image_layers() if self._adopt(ly)]

    def for_image_id(self, image_id: int) -> OpenImage | None:
        """The open image with this store id, or None."""
        return next((i for i in self.images if i.image_id == image_id), None)

    def at(self, world) -> list[OpenImage]:
        """Open images with a visible cells layer under a world position, top layer first."""
        order = {ly.unique_id: i for i, ly in enumerate(self.viewer.layers)}
        hits = [i for i in self.images if i.cells_layer is not None and i.cells_layer.visible
                and i.contains(world)]
        return sorted(hits, key=lambda i: -order.get(i.cells_layer.unique_id, -1))

    # ------------------------------------------------------------------ cells layers
    def ensure_cells_layer(self, item: OpenImage, data: np.ndarray | None = None):
        """The cells layer of an image, made when missing (empty, or holding ``data``)."""
        if item.cells_layer is not None and item.cells_layer not in self.viewer.layers:
            item.cells_layer = None  # removed by the user (or by napari) meanwhile
        if item.cells_layer is None:
            src = item.image_layer
            n = len(item.labels_shape)
            if data is None:
                data = np.zeros(item.labels_shape, np.int32)
            item.cells_layer = self.viewer.add_labels(
                data,
                name=f"{src.name} cells",
                scale=tuple(src.scale)[-n:],
                translate=tuple(src.translate)[-n:],
                axis_labels=tuple(src.axis_labels)[-n:],
                units=tuple(src.units)[-n:],
                opacity=self.opacity,
                metadata={"cellseek": {"cells_of": src.name,
                                       "cells_of_layer": str(src.unique_id),
                                       "layer_axes": item.layer_axes.replace("S", "")}},
            )
            item.cells_layer.contour = self.outline_width
            item.coloured_plane, item.colour_cache = None, {}
            layers = self.viewer.layers  # right above its image: an image on top hides both
            here, target = layers.index(item.cells_layer), layers.index(src) + 1
            if here != target:
                layers.move(here, target)
        elif data is not None:
            item.cells_layer.data = data
        return item.cells_layer

    def write_planes(self, item: OpenImage, planes: dict, stack=None) -> None:
        """Put label planes (already stack-unique) into the cells layer: the whole ``stack``
        when given (see :meth:`OpenImage.stack_with`), else the planes in place."""
        item.neutral = None  # the outline colour follows the cells under it
        if stack is not None:
            self.ensure_cells_layer(item, stack)
            return
        layer = self.ensure_cells_layer(item)
        data = layer.data
        for key, labels in planes.items():
            data[item.index_of(key)] = labels
        layer.refresh()

    def set_style(self, *, outline_width: int | None = None, opacity: float | None = None) -> None:
        """Outline width (0: filled) and opacity of every cells layer."""
        if outline_width is not None:
            self.outline_width = int(outline_width)
        if opacity is not None:
            self.opacity = float(opacity)
        for item in self.images:
            if item.cells_layer is not None:
                item.cells_layer.contour = self.outline_width
                item.cells_layer.opacity = self.opacity

    def _visible_planes(self, item: OpenImage):
        """The plane on screen, or ``"all"`` in 3-D display."""
        if self.viewer.dims.ndisplay == 3 and item.lead_axes:
            return "all"
        return item.current_key(self.viewer)

    def refresh_colours(self, item: OpenImage, colours, *, threshold=None) -> None:
        """Colour the cells of the plane on screen (and of its neighbours) by class and state.

        napari redraws only when a colour changed since the last call. The colour table holds
        the cells of the plane on screen and of the planes one step away, so a step of the
        slider finds its colours ready; other cells take the unlabelled colour, the table's
        default. (A table of every cell of a large stack costs napari a tenth of a second per
        change.)
        """
        from napari.utils.colormaps import DirectLabelColormap

        layer = item.cells_layer
        if layer is None:
            return
        planes = self._visible_planes(item)
        covered = {"all"} if planes == "all" else set(item.neighbours(planes))
        ids = item.table.ids() if planes == "all" else item.table.ids_in_planes(covered)
        if planes != item.coloured_plane or item.neutral is None:
            item.neutral = unlabelled_colour(self._brightness(item, planes))
        default = (*item.neutral, UNLABELLED_ALPHA)  # every cell without a class
        color_dict = {None: default, 0: (0.0, 0.0, 0.0, 0.0)}
        for cid in ids:
            cell = item.table.cell(cid)
            colour = cell_colour(cell, colours, threshold=threshold, unlabelled=item.neutral)
            if colour != default:  # a cell without a class takes the default: no entry, so
                color_dict[int(cell["label_value"])] = colour  # embedding one changes nothing
        item.coloured_plane = planes
        item.covered = covered
        if item.colour_cache == color_dict:
            return  # napari would re-slice the layer (its outlines) for the same colours
        item.colour_cache = color_dict
        layer.colormap = DirectLabelColormap(color_dict=color_dict)

    def _brightness(self, item: OpenImage, planes) -> float:
        """Mean brightness, scaled to the contrast limits, of the image under the cells of the
        plane on screen (outlines are drawn on the cells' edge pixels: dark cells on a bright
        background need light outlines); the whole plane's when it has no cells."""
        layer = item.image_layer
        key = planes if planes != "all" else (0, 0)
        plane = np.asarray(item.plane(key))[::4, ::4]
        cells = np.asarray(item.labels_of(key))[::4, ::4] > 0 if item.cells_layer is not None \
            else None
        values = plane[cells] if cells is not None and cells.any() else plane
        if getattr(layer, "rgb", False):
            lo, hi = 0.0, 255.0 if plane.dtype == np.uint8 else float(plane.max() or 1)
        else:
            lo, hi = (float(v) for v in layer.contrast_limits)
        return float(np.clip((values.mean() - lo) / max(hi - lo, 1e-12), 0, 1))

    def refresh_features(self, item: OpenImage, *, threshold=None, cell_ids=None) -> None:
        """The hover table of a cells layer (class, state, confidence, best guess: see
        :meth:`CellTable.features`); only the rows of ``cell_ids`` when given and the table is
        already there. A suggestion below ``threshold`` shows as an uncertain cell."""
        layer = item.cells_layer
        if layer is None:
            return
        states = {}
        if threshold is not None:
            for c in item.table.cells() if cell_ids is None else \
                    (item.table.cell(i) for i in cell_ids if i in item.table):
                if c.get("label") is None and (c.get("confidence") or 0) < threshold:
                    states[c["id"]] = {"suggestion": None}
        features = layer.features
        few = cell_ids is not None and len(cell_ids) <= FEATURE_ROWS_IN_PLACE
        columns = ("class", "state", "confidence", "best_guess")
        if few and len(features) == len(item.table) + 1 and \
                all(c in features for c in ("cell_id", *columns)):
            rows = {int(v): r for r, v in enumerate(features["cell_id"].to_numpy())}
            part = item.table.features(states, cell_ids=[i for i in cell_ids if i in rows])
            for col in columns:
                position = features.columns.get_loc(col)
                for cid, value in zip(part["cell_id"][1:], part[col][1:]):
                    features.iat[rows[int(cid)], position] = value
            return
        layer.features = item.table.features(states)

    def close_cells(self) -> None:
        """Forget the images (the layers stay in the viewer for the user)."""
        self.images = []
