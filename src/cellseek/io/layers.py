"""Turn an :class:`~cellseek.types.ImageData` into napari layer-data tuples.

napari is not imported: the tuples are plain data.
"""

from __future__ import annotations

import re
from pathlib import Path

from cellseek.types import ImageData

_GREY = re.compile(
    r"(bright|phase|\bbf\b|\bri\b|refractive|\bdic\b|trans|holo|\bpc\b|tomo|\btl\b)", re.IGNORECASE
)
_BY_NAME = (
    (re.compile(r"(dapi|hoechst|\b405\b|bfp|\buv\b)", re.I), "blue"),
    (re.compile(r"(gfp|fitc|\b488\b|alexa ?488|\bgreen\b|yfp|calcein)", re.I), "green"),
    (
        re.compile(
            r"(rfp|mcherry|tritc|texas|\bcy3\b|\b561\b|\b594\b|tdtomato|\bred\b|\bpi\b)", re.I
        ),
        "magenta",
    ),
    (re.compile(r"(cy5|\b640\b|\b647\b|far.?red|cy7)", re.I), "red"),
)
_CYCLE = ("green", "magenta", "cyan", "yellow", "red", "blue")


def colormap_for(name: str, index: int = 0, wavelength_nm: float | None = None) -> str:
    """A napari colormap name for a channel.

    Grey for brightfield, phase contrast, DIC and refractive index; by dye name or emission
    wavelength for fluorescence (blue < 490 nm <= green < 560 nm <= magenta < 620 nm <= red);
    otherwise a colour cycle by channel index.
    """
    name = name or ""
    if _GREY.search(name):
        return "gray"
    for pattern, colour in _BY_NAME:
        if pattern.search(name):
            return colour
    if wavelength_nm:
        if wavelength_nm < 490:
            return "blue"
        if wavelength_nm < 560:
            return "green"
        if wavelength_nm < 620:
            return "magenta"
        return "red"
    return _CYCLE[index % len(_CYCLE)] if name and not re.fullmatch(r"C\d+", name) else "gray"


def display_name(img: ImageData) -> str:
    """Base layer name: the reader's ``metadata["name"]`` or the file name without extension."""
    if img.metadata.get("name"):
        return str(img.metadata["name"])
    name = Path(img.path).name if img.path else "image"
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png", ".jpeg", ".jpg", ".bmp"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


#: World scale of a lead axis along which a stack has a single plane (or which it does not
#: have at all, see :func:`layer_geometry`): large, so
#: that napari, which steps each slider by the smallest scale of any layer, keeps one step per
#: plane of the layers that do have that axis (a 3-frame time-lapse beside a z-stack must not
#: get a slider of thousands of steps).
SINGLE_PLANE_SCALE = 1e6


def layer_geometry(img: ImageData) -> dict:
    """Axes, scale, axis labels and units of the napari layers of an image.

    Every stack gets both lead axes ``T`` and ``Z`` (a singleton where it has none), so the
    time axis of a time-lapse and the z axis of a z-stack opened side by side land on separate
    sliders; 2-D images stay 2-D.

    Returns
    -------
    dict
        ``image_axes`` (the image's axes without ``C``), ``layer_axes`` (with the padded lead
        axes), ``index`` (the index that adds the singleton axes to the data), ``scale``,
        ``axis_labels`` (``t``, ``z``, ``y``, ``x``) and ``units`` (``s``, ``um`` or ``pixel``
        where the size is unknown), one entry per non-``S`` layer axis.
    """
    image_axes = img.axes.replace("C", "")
    lead = "TZ" if ("T" in image_axes or "Z" in image_axes) else ""
    layer_axes = lead + image_axes.replace("T", "").replace("Z", "")
    index = tuple(slice(None) if a in image_axes else None for a in layer_axes)
    pixel = img.pixel_size_um
    known = {
        "T": (img.time_interval_s, "s"),
        "Z": (img.z_step_um or pixel, "um"),
        "Y": (pixel, "um"),
        "X": (pixel, "um"),
    }
    scale, labels, units = [], [], []
    for a in layer_axes.replace("S", ""):
        size, unit = known[a]
        if a in "TZ" and (a not in image_axes or img.shape[img.axes.index(a)] == 1):
            size = SINGLE_PLANE_SCALE  # one plane along this axis: it has no step
        elif not size:
            size, unit = 1.0, "pixel"
        scale.append(float(size))
        labels.append(a.lower())
        units.append(unit)
    return {"image_axes": image_axes, "layer_axes": layer_axes, "index": index,
            "scale": tuple(scale), "axis_labels": tuple(labels), "units": tuple(units)}


def image_to_layer_data(img: ImageData) -> list[tuple]:
    """napari LayerData tuples ``(data, kwargs, "image")``, one per channel; one
    ``(data, kwargs, "labels")`` for a label image cellseek wrote (``metadata["labels"]``).

    Parameters
    ----------
    img : ImageData

    Returns
    -------
    list of tuple
        One tuple per C entry (one in all when there is no C axis). The data of a stack has
        both lead axes ``T`` and ``Z`` (see :func:`layer_geometry`). ``kwargs`` hold ``name``
        (``"<file> [<channel>]"``; Lionheart names keep the well and site), ``scale`` (T: frame
        interval in s; Z: z step in µm, else the pixel size; Y, X: pixel size in µm; 1 where
        unknown), ``axis_labels`` and ``units``, ``colormap`` and ``blending`` (not for RGB),
        ``rgb``, and ``metadata`` with every ImageData field under ``"cellseek"`` (plus
        ``image_axes`` and ``layer_axes``).
    """
    base = display_name(img)
    geometry = layer_geometry(img)
    fields = {
        "path": img.path,
        "axes": img.axes,
        "image_axes": geometry["image_axes"],
        "layer_axes": geometry["layer_axes"],
        "pixel_size_um": img.pixel_size_um,
        "z_step_um": img.z_step_um,
        "time_interval_s": img.time_interval_s,
        "channel_names": tuple(img.channel_names),
        "device": img.device,
        "metadata": img.metadata,
    }
    shared = {k: geometry[k] for k in ("scale", "axis_labels", "units")}
    index = geometry["index"]
    if img.metadata.get("labels") and "C" not in img.axes and not img.is_rgb:
        # a label image cellseek wrote (segment, export): a Labels layer at its pixel size
        kwargs = {"name": base, **shared, "metadata": {"cellseek": fields}}
        return [(img.data[index] if index else img.data, kwargs, "labels")]
    if "C" not in img.axes:
        channel = img.metadata.get("channel")
        kwargs = {
            "name": f"{base} [{channel}]" if channel and channel not in base else base,
            **shared,
            "rgb": img.is_rgb,
            "metadata": {"cellseek": {**fields, "channel": channel}},
        }
        if not img.is_rgb:
            kwargs["colormap"] = colormap_for(channel or "", 0, img.metadata.get("emission_nm"))
        return [(img.data[index] if index else img.data, kwargs, "image")]

    c_axis = img.axes.index("C")
    wavelengths = img.metadata.get("wavelengths_nm") or []
    layers = []
    n = img.shape[c_axis]
    for c in range(n):
        name = img.channel_names[c] if c < len(img.channel_names) else f"C{c}"
        data = img.data[(slice(None),) * c_axis + (c,)]
        kwargs = {
            "name": f"{base} [{name}]",
            **shared,
            "rgb": img.is_rgb,
            "blending": "additive" if n > 1 else "translucent",
            "metadata": {"cellseek": {**fields, "channel": name, "channel_index": c}},
        }
        if not img.is_rgb:
            wavelength = wavelengths[c] if c < len(wavelengths) else None
            kwargs["colormap"] = colormap_for(name, c, wavelength)
        layers.append((data[index] if index else data, kwargs, "image"))
    return layers
