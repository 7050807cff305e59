"""An image under annotation: the user's image layer, the cells layer the plugin made for it,
its id in the reference set and its cell table (:class:`OpenImage`), with the plane geometry
that maps napari's world and slider positions to ``(t, z)`` planes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cellseek.annotation.cells import CellTable
from cellseek.types import ImageData

PlaneKey = tuple[int, int]


def same_layer(a, b) -> bool:
    """Whether two references name the same napari layer.

    napari hands a plugin's widget proxies of its viewer and layers, a new proxy on every
    access, while its events carry the layers themselves: ``is`` tells nothing, the layer's
    ``unique_id`` does.
    """
    if a is None or b is None:
        return a is b
    return a is b or a.unique_id == b.unique_id


def meta_of(layer) -> dict:
    """The cellseek part of a layer's metadata (empty when there is none)."""
    return ((getattr(layer, "metadata", None) or {}).get("cellseek") or {})


def layer_axes(layer) -> str:
    """cellseek axes (``TZYX`` + ``S``) of an image layer's data.

    Uses the axes the cellseek reader stored in the layer metadata; otherwise one leading axis
    is time (``T``), two are ``TZ``.
    """
    meta = meta_of(layer)
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
    """The :class:`~cellseek.types.ImageData` an image layer shows (the data is not copied).

    Singleton lead axes the reader added for napari are taken away again, so the image has the
    same axes, shape and content hash as when the command line reads the file.
    """
    meta = meta_of(layer)
    path = meta.get("path") or (str(layer.source.path) if layer.source.path else layer.name)
    axes = layer_axes(layer)
    data = layer.data
    image_axes = meta.get("image_axes")
    if image_axes and image_axes != axes and set(image_axes) <= set(axes):
        index = tuple(slice(None) if a in image_axes else 0 for a in axes)
        data, axes = data[index], image_axes
    return ImageData(
        data,
        axes,
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
        Its data with the image's own axes (as the command line reads the file).
    layer_axes : str
        Axes of the layer's data (may hold singleton lead axes the reader added).
    cells_layer : napari.layers.Labels or None
        The plugin's cells layer (stack-unique label values, the layer's geometry).
    image_id : int or None
        Id in the store once the cells are embedded.
    table : CellTable
        Store cells of this image by label value.
    """

    image_layer: object
    image: ImageData
    layer_axes: str
    cells_layer: object = None
    image_id: int | None = None
    table: CellTable = field(default_factory=CellTable)
    coloured_plane: object = None
    covered: set = field(default_factory=set)
    neutral: tuple | None = None
    colour_cache: dict = field(default_factory=dict)

    @property
    def lead_axes(self) -> str:
        """The non-spatial axes of the layer (``""``, ``"T"``, ``"Z"`` or ``"TZ"``)."""
        return self.layer_axes.replace("Y", "").replace("X", "").replace("S", "")

    @property
    def plane_shape(self) -> tuple[int, int]:
        """``(Y, X)``."""
        a = self.image.axes
        return (self.image.shape[a.index("Y")], self.image.shape[a.index("X")])

    @property
    def labels_shape(self) -> tuple[int, ...]:
        """Shape of the cells layer: the layer's shape without ``S``."""
        shape = self.image_layer.data.shape
        return tuple(n for n, a in zip(shape, self.layer_axes) if a != "S")

    def neighbours(self, key: PlaneKey) -> list[PlaneKey]:
        """The plane and the planes one step before and after it along ``t`` and ``z``."""
        every = set(self.planes())
        t, z = key
        near = [key, (t - 1, z), (t + 1, z), (t, z - 1), (t, z + 1)]
        return [k for k in near if k in every]

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

    def stack_with(self, planes: dict) -> np.ndarray | None:
        """A new cells stack holding ``planes`` (the other planes copied from the layer), or
        None when only a few planes change (writing those in place is cheaper).

        Runs in a worker: the GUI then only swaps the layer's data, which costs napari one
        redraw whatever the stack's size (writing 24 fresh planes of 904 x 1224 in place cost
        the GUI thread 0.45 s of page faults).
        """
        every = self.planes()
        if 2 * len(planes) < len(every):
            return None
        stack = np.zeros(self.labels_shape, np.int32)
        layer = self.cells_layer
        for key in every:
            index = self.index_of(key)
            if key in planes:
                stack[index] = planes[key]
            elif layer is not None:
                stack[index] = layer.data[index]
        return stack

    def contains(self, world) -> bool:
        """Whether a world position lies inside this image (its Y, X extent)."""
        layer = self.cells_layer or self.image_layer
        n = len(self.labels_shape)
        data = np.asarray(layer.world_to_data(tuple(world)[-n:]))[-2:]
        return bool(np.all(data >= -0.5) and np.all(data < np.asarray(self.plane_shape) - 0.5))


