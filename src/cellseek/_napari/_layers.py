"""The layers the plugin made, kept by reference (never looked up by name).

An :class:`OpenImage` ties a user's image layer (given to the plugin in the Segment panel) to the
cells layer the plugin made for it, the image's id in the store and its cell table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cellseek.annotation.cells import CellTable
from cellseek.annotation.colours import cell_colour_table
from cellseek.types import ImageData

PlaneKey = tuple[int, int]


def layer_axes(layer) -> str:
    """cellseek axes (``TZYX`` + ``S``) of an image layer's data.

    Uses the axes the cellseek reader stored in the layer metadata; otherwise one leading axis
    is time (``T``), two are ``TZ``.
    """
    meta = (layer.metadata or {}).get("cellseek", {}) if hasattr(layer, "metadata") else {}
    axes = meta.get("layer_axes") or meta.get("axes")
    ndim = np.ndim(layer.data) if not hasattr(layer.data, "ndim") else layer.data.ndim
    if axes and len(axes) == ndim and axes.endswith(("YX", "YXS")) and set(axes) <= set("TZYXS"):
        return axes
    rgb = bool(getattr(layer, "rgb", False))
    lead = ndim - 2 - int(rgb)
    if lead < 0 or lead > 2:
        raise ValueError(
            f"layer {layer.name!r} has {ndim} dimensions; cellseek handles (time, z,) Y, X "
            "images (split channels into separate layers first)"
        )
    return "TZ"[:lead] + "YX" + ("S" if rgb else "")


def image_data_from_layer(layer) -> ImageData:
    """An :class:`~cellseek.types.ImageData` view of an image layer (the data is not copied)."""
    meta = (layer.metadata or {}).get("cellseek", {})
    path = meta.get("path") or (str(layer.source.path) if layer.source.path else layer.name)
    return ImageData(
        layer.data,
        layer_axes(layer),
        path=str(path),
        pixel_size_um=meta.get("pixel_size_um"),
        device=meta.get("device") or ("rgb" if layer.rgb else "unknown"),
    )


@dataclass
class OpenImage:
    """One image under annotation.

    Attributes
    ----------
    image_layer : napari.layers.Image
        The user's layer (read, never changed).
    image : ImageData
        Its data with cellseek axes.
    cells_layer : napari.layers.Labels or None
        The plugin's cells layer (stack-unique label values).
    image_id : int or None
        Id in the store once the cells are embedded.
    table : CellTable
        Store cells of this image by label value.
    """

    image_layer: object
    image: ImageData
    cells_layer: object = None
    image_id: int | None = None
    table: CellTable = field(default_factory=CellTable)

    @property
    def lead_axes(self) -> str:
        """The non-spatial axes of the layer (``""``, ``"T"``, ``"Z"`` or ``"TZ"``)."""
        return self.image.axes.replace("Y", "").replace("X", "").replace("S", "")

    @property
    def plane_shape(self) -> tuple[int, int]:
        """``(Y, X)``."""
        a = self.image.axes
        return (self.image.shape[a.index("Y")], self.image.shape[a.index("X")])

    @property
    def labels_shape(self) -> tuple[int, ...]:
        """Shape of the cells layer: the image shape without ``S``."""
        return tuple(n for n, a in zip(self.image.shape, self.image.axes) if a != "S")

    def planes(self) -> list[PlaneKey]:
        """Every ``(t, z)`` plane."""
        a, s = self.image.axes, self.image.shape
        n_t = s[a.index("T")] if "T" in a else 1
        n_z = s[a.index("Z")] if "Z" in a else 1
        return [(t, z) for t in range(n_t) for z in range(n_z)]

    def index_of(self, key: PlaneKey) -> tuple[int, ...]:
        """Index of a plane in the cells layer's leading axes."""
        t, z = key
        return tuple(t if ax == "T" else z for ax in self.lead_axes)

    def key_of(self, lead_index) -> PlaneKey:
        """``(t, z)`` of a leading-axes index (e.g. from ``viewer.dims.current_step``)."""
        lead = dict(zip(self.lead_axes, (int(i) for i in lead_index)))
        return lead.get("T", 0), lead.get("Z", 0)

    def plane(self, key: PlaneKey) -> np.ndarray:
        """The image plane ``(Y, X)`` or ``(Y, X, 3)`` as a NumPy array."""
        from cellseek.io import get_plane

        return get_plane(self.image, *key)

    def labels_of(self, key: PlaneKey) -> np.ndarray:
        """The cells layer's labels of one plane (a view)."""
        return self.cells_layer.data[self.index_of(key)]

    def current_key(self, viewer) -> PlaneKey:
        """The plane shown in the viewer."""
        n_lead = len(self.lead_axes)
        layer = self.cells_layer or self.image_layer
        point = viewer.dims.point
        data = layer.world_to_data(point[-layer.ndim:]) if len(point) >= layer.ndim else point
        lead = [int(round(v)) for v in list(data)[:n_lead]]
        shape = self.labels_shape
        lead = [min(max(v, 0), shape[i] - 1) for i, v in enumerate(lead)]
        return self.key_of(lead)


class LayerRegistry:
    """The open images and the layers the plugin created, by reference.

    Parameters
    ----------
    viewer : napari.Viewer
    """

    def __init__(self, viewer) -> None:
        self.viewer = viewer
        self.images: list[OpenImage] = []
        viewer.layers.events.removed.connect(self._on_removed)

    def close(self) -> None:
        """Stop listening to the viewer."""
        self.viewer.layers.events.removed.disconnect(self._on_removed)

    def _on_removed(self, event) -> None:
        layer = event.value
        for item in list(self.images):
            if item.image_layer is layer:
                self.images.remove(item)
            elif item.cells_layer is layer:
                item.cells_layer = None

    def for_image_layer(self, layer, *, create: bool = True) -> OpenImage | None:
        """The entry of an image layer (made on first use when ``create``)."""
        for item in self.images:
            if item.image_layer is layer:
                return item
        if not create:
            return None
        item = OpenImage(layer, image_data_from_layer(layer))
        self.images.append(item)
        return item

    def for_cells_layer(self, layer) -> OpenImage | None:
        """The entry whose cells layer this is, or None (not ours)."""
        return next((i for i in self.images if i.cells_layer is layer and layer is not None), None)

    def for_image_id(self, image_id: int) -> OpenImage | None:
        """The open image with this store id, or None."""
        return next((i for i in self.images if i.image_id == image_id), None)

    def owns(self, layer) -> bool:
        """Whether the plugin made this layer."""
        return any(i.cells_layer is layer for i in self.images)

    def ensure_cells_layer(self, item: OpenImage):
        """The cells layer of an image, made (empty) when missing."""
        if item.cells_layer is None:
            src = item.image_layer
            n = len(item.labels_shape)
            item.cells_layer = self.viewer.add_labels(
                np.zeros(item.labels_shape, np.int32),
                name=f"{src.name} cells",
                scale=tuple(src.scale)[-n:] if len(src.scale) >= n else None,
                translate=tuple(src.translate)[-n:] if len(src.translate) >= n else None,
                opacity=1.0,
                metadata={"cellseek": {"cells_of": src.name}},
            )
        return item.cells_layer

    def refresh_colours(self, item: OpenImage, colours, *, threshold=None) -> None:
        """Colour the cells layer by class and state, and set its hover table."""
        from napari.utils.colormaps import DirectLabelColormap

        layer = item.cells_layer
        if layer is None:
            return
        cells = item.table.cells()
        table = cell_colour_table(cells, colours, threshold=threshold)
        present = np.unique(layer.data)
        grey = (0.62, 0.62, 0.62, 0.3)
        for v in present[present > 0].tolist():  # segmented but not (yet) in the store
            table.setdefault(int(v), grey)
        color_dict = {None: (0.0, 0.0, 0.0, 0.0), 0: (0.0, 0.0, 0.0, 0.0), **table}
        layer.colormap = DirectLabelColormap(color_dict=color_dict)
        states = {}
        if threshold is not None:
            for c in cells:
                if c.get("label") is None and (c.get("confidence") or 0) < threshold:
                    states[c["id"]] = {"suggestion": None}
        layer.features = item.table.features(states)
