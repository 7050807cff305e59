"""The mark on the selected cell: the cell the next key labels.

A thick two-tone ring (black under yellow, so it shows on dark and bright images) drawn a few
pixels outside the cell's outline, in a Shapes layer of the plugin on the cell's own plane; it
follows the selection across planes and images. The ring is a closed path, not a polygon: a
polygon's face is triangulated even when it is transparent (200 ms for a 400-vertex ring on the
GUI thread), a path's edge costs napari a few milliseconds.
"""

from __future__ import annotations

import numpy as np

from .images import meta_of, same_layer

#: Name of the marker layer.
NAME = "selected cell"
#: Pixels between the cell's edge and the ring.
GAP = 3
#: Ring widths (data pixels): the dark under-stroke and the bright stroke on it.
WIDTHS = (6.0, 3.0)
COLOURS = ("black", "yellow")
#: Most vertices of the ring (longer outlines are thinned).
MAX_VERTICES = 120


def ring(mask: np.ndarray, gap: int = GAP) -> np.ndarray:
    """The closed outline, ``gap`` pixels outside a boolean mask, as ``(n, 2)`` row/col
    vertices in the mask's coordinates (the longest contour when the cell has several parts)."""
    from skimage.measure import find_contours

    grown = np.pad(np.asarray(mask, bool), gap + 1)
    for _ in range(gap):  # a 4-neighbour dilation, one pixel per step
        g = grown.copy()
        g[1:] |= grown[:-1]
        g[:-1] |= grown[1:]
        g[:, 1:] |= grown[:, :-1]
        g[:, :-1] |= grown[:, 1:]
        grown = g
    contours = find_contours(grown.astype(np.float32), 0.5)
    if not contours:
        return np.zeros((0, 2))
    path = max(contours, key=len) - (gap + 1)
    step = -(-len(path) // MAX_VERTICES)
    path = path[::step]
    return np.vstack([path, path[:1]])  # closed: back to the first vertex


class SelectionMarker:
    """Marks one cell of one open image.

    Parameters
    ----------
    viewer : napari.Viewer
    """

    def __init__(self, viewer) -> None:
        self.viewer = viewer
        # the marker an earlier widget left behind (napari closed with it open) is taken over
        self.layer = next((ly for ly in viewer.layers if is_marker(ly)), None)
        #: ``(cell id, plane index)`` marked now, or None.
        self.marked = None

    def show(self, item, cell: dict) -> bool:
        """Mark a stored cell of an open image; False when its pixels are not in the layer."""
        cells = item.cells_layer
        if cells is None:
            self.clear()
            return False
        r0, c0, r1, c1 = (int(v) for v in cell["bbox"])
        lead = item.index_of((int(cell["t"]), int(cell["z"])))
        if self.marked == (int(cell["id"]), tuple(lead)) and self._alive() and \
                self.layer.visible:
            return True  # marked already (its class changed, not its pixels)
        crop = np.asarray(cells.data[(*lead, slice(r0, r1), slice(c0, c1))])
        outline = ring(crop == int(cell["label_value"]))
        if not len(outline):
            self.clear()
            return False
        vertices = np.column_stack([np.tile(np.asarray(lead, float), (len(outline), 1)),
                                    outline + (r0, c0)])
        layer = self._layer_for(cells, vertices)
        layer.visible = True
        self.marked = (int(cell["id"]), tuple(lead))
        return True

    def clear(self) -> None:
        """Mark nothing."""
        self.marked = None
        if self._alive() and self.layer.visible:
            self.layer.visible = False

    def close(self) -> None:
        """Take the marker layer out of the viewer (the widget closes)."""
        self.marked = None
        if self._alive():
            self.viewer.layers.remove(self.layer)
        self.layer = None

    def _alive(self) -> bool:
        return self.layer is not None and self.layer in self.viewer.layers

    def _layer_for(self, cells, vertices: np.ndarray):
        """The marker layer ringing ``vertices``, in the geometry of a cells layer (made, or
        made again for another number of dimensions), on top of the layers; the active layer
        stays as it was."""
        layer = self.layer if self._alive() else None
        if layer is not None and layer.ndim != cells.ndim:
            self.viewer.layers.remove(layer)
            layer = None
        if layer is None:
            selection = self.viewer.layers.selection
            active = selection.active
            layer = self.viewer.add_shapes(
                [vertices, vertices], shape_type="path", edge_width=list(WIDTHS),
                edge_color=list(COLOURS), name=NAME, opacity=1.0,
                scale=tuple(cells.scale), translate=tuple(cells.translate),
                metadata={"cellseek": {"selection_marker": True}})
            if active is not None and not same_layer(active, layer):
                selection.active = active
            self.layer = layer
        else:
            layer.data = [vertices, vertices]  # two shapes: their types and colours stay
            if tuple(layer.scale) != tuple(cells.scale):
                layer.scale = tuple(cells.scale)
            if tuple(layer.translate) != tuple(cells.translate):
                layer.translate = tuple(cells.translate)
        layers = self.viewer.layers
        here = layers.index(layer)
        if here != len(layers) - 1:
            layers.move(here, len(layers))
        return layer


def is_marker(layer) -> bool:
    """Whether a layer is a selection marker of the plugin."""
    return bool(meta_of(layer).get("selection_marker"))
