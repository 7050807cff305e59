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


def image_to_layer_data(img: ImageData) -> list[tuple]:
    """napari LayerData tuples ``(data, kwargs, "image")``, one per channel.

    Parameters
    ----------
    img : ImageData

    Returns
    -------
    list of tuple
        One tuple per C entry (one in all when there is no C axis). ``kwargs`` hold ``name``
        (``"<file> [<channel>]"``), ``scale`` (T: frame interval in s; Z: z step in µm, else
        the pixel size; Y, X: pixel size in µm; 1 where unknown), ``colormap`` and ``blending``
        (not for RGB), ``rgb``, and ``metadata`` with every ImageData field under ``"cellseek"``.
    """
    base = display_name(img)
    axes = img.axes.replace("C", "")
    pixel = img.pixel_size_um or 1.0
    scale_of = {
        "T": img.time_interval_s or 1.0,
        "Z": img.z_step_um or pixel,
        "Y": pixel,
        "X": pixel,
    }
    scale = tuple(float(scale_of[a]) for a in axes if a != "S")
    fields = {
        "path": img.path,
        "axes": img.axes,
        "pixel_size_um": img.pixel_size_um,
        "z_step_um": img.z_step_um,
        "time_interval_s": img.time_interval_s,
        "channel_names": tuple(img.channel_names),
        "device": img.device,
        "metadata": img.metadata,
    }
    if "C" not in img.axes:
        channel = img.metadata.get("channel")
        kwargs = {
            "name": f"{base} [{channel}]" if channel and channel not in base else base,
            "scale": scale,
            "rgb": img.is_rgb,
            "metadata": {"cellseek": {**fields, "channel": channel, "layer_axes": axes}},
        }
        if not img.is_rgb:
            kwargs["colormap"] = colormap_for(channel or "", 0, img.metadata.get("emission_nm"))
        return [(img.data, kwargs, "image")]

    c_axis = img.axes.index("C")
    wavelengths = img.metadata.get("wavelengths_nm") or []
    layers = []
    n = img.shape[c_axis]
    for c in range(n):
        name = img.channel_names[c] if c < len(img.channel_names) else f"C{c}"
        data = img.data[(slice(None),) * c_axis + (c,)]
        kwargs = {
            "name": f"{base} [{name}]",
            "scale": scale,
            "rgb": img.is_rgb,
            "blending": "additive" if n > 1 else "translucent",
            "metadata": {
                "cellseek": {**fields, "channel": name, "channel_index": c, "layer_axes": axes}
            },
        }
        if not img.is_rgb:
            wavelength = wavelengths[c] if c < len(wavelengths) else None
            kwargs["colormap"] = colormap_for(name, c, wavelength)
        layers.append((data, kwargs, "image"))
    return layers
