"""Read TIFF, OME-TIFF and ImageJ hyperstack files with tifffile.

One :class:`~cellseek.types.ImageData` per TIFF series. Physical sizes come from the OME-XML
(``PhysicalSizeX/Z`` with units, ``TimeIncrement``, channel names), the ImageJ metadata
(``spacing``, ``unit``, ``finterval``, ``Labels``) and the ``XResolution`` tag.
"""

from __future__ import annotations

import logging
import math
import struct
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from cellseek.errors import ImageReadError
from cellseek.io._axes import AxisError, plan_axes
from cellseek.io._stack import stack_planes, want_lazy
from cellseek.io._units import length_to_um, time_to_s
from cellseek.io.bounds import check_plane_pixels
from cellseek.types import ImageData

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")


@contextmanager
def open_tiff(path):
    """Open a TIFF file, turning tifffile's errors into :class:`ImageReadError`."""
    import tifffile

    try:
        tif = tifffile.TiffFile(str(path), _multifile=False)
    except tifffile.TiffFileError as exc:
        raise ImageReadError(
            path, f"not a valid TIFF file (corrupt, truncated or another format): {exc}"
        ) from exc
    except (OSError, ValueError, EOFError, IndexError, KeyError, struct.error) as exc:
        raise ImageReadError(path, f"could not open the TIFF file: {exc}") from exc
    try:
        if len(tif.pages) == 0:
            raise ImageReadError(path, "not a valid TIFF file: it holds no image (corrupt header)")
        _check_page(path, tif.pages[0])
        yield tif
    finally:
        tif.close()


def _check_page(path, page) -> None:
    """Refuse a page that declares more pixels than the limit, before decoding it."""
    height = getattr(page, "imagelength", 0) or 0
    width = getattr(page, "imagewidth", 0) or 0
    check_plane_pixels(path, height, width)


def read_page(path, index: int = 0) -> np.ndarray:
    """Read one page of a TIFF file (page ``index`` of the file, not of a series)."""
    with open_tiff(path) as tif:
        _check_page(path, tif.pages[index])
        try:
            return tif.pages[index].asarray()
        except Exception as exc:  # tifffile raises many types on damaged data
            raise ImageReadError(path, f"file is truncated or damaged: {exc}") from exc


# -- metadata -----------------------------------------------------------------------------------


def resolution_pixel_size_um(page, unit: str | None = None) -> float | None:
    """Pixel size from the ``XResolution`` tag (pixels per unit).

    Parameters
    ----------
    page : tifffile.TiffPage
    unit : str, optional
        Length unit to use (ImageJ's ``unit``) when the ResolutionUnit tag is NONE.

    Returns
    -------
    float or None
        µm per pixel; None for inch units (72 dpi defaults say nothing about a microscope)
        or when the tag is missing.
    """
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    value = tag.value
    try:
        pixels_per_unit = value[0] / value[1] if isinstance(value, tuple) else float(value)
    except (TypeError, ZeroDivisionError, IndexError):
        return None
    if not pixels_per_unit > 0:
        return None
    res_unit = page.tags.get("ResolutionUnit")
    res_unit = int(res_unit.value) if res_unit is not None else 2
    unit_name = {3: "cm", 4: "mm", 5: "um"}.get(res_unit)
    if unit_name is None and res_unit == 1 and unit:
        unit_name = unit
    if unit_name is None:
        return None
    return length_to_um(1.0 / pixels_per_unit, unit_name)


def ome_image_metadata(ome_xml: str, index: int) -> dict:
    """Physical sizes and channel names of OME ``Image`` number ``index``.

    Returns
    -------
    dict
        Keys ``pixel_size_um``, ``z_step_um``, ``time_interval_s``, ``channel_names``,
        ``wavelengths_nm`` (emission, None where missing), ``name``; absent when not stated.
    """
    root = ET.fromstring(ome_xml)
    images = [el for el in root.iter() if _local(el.tag) == "Image"]
    if not images:
        return {}
    image = images[min(index, len(images) - 1)]
    pixels = next((el for el in image if _local(el.tag) == "Pixels"), None)
    out: dict = {}
    if image.get("Name"):
        out["name"] = image.get("Name")
    if pixels is None:
        return out
    pixel = length_to_um(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit"))
    if pixel is not None:
        out["pixel_size_um"] = pixel
    pixel_y = length_to_um(pixels.get("PhysicalSizeY"), pixels.get("PhysicalSizeYUnit"))
    if pixel_y is not None:
        out["pixel_size_y_um"] = pixel_y
    z_step = length_to_um(pixels.get("PhysicalSizeZ"), pixels.get("PhysicalSizeZUnit"))
    if z_step is not None:
        out["z_step_um"] = z_step
    interval = time_to_s(pixels.get("TimeIncrement"), pixels.get("TimeIncrementUnit"))
    if interval is not None:
        out["time_interval_s"] = interval
    channels = [el for el in pixels if _local(el.tag) == "Channel"]
    if channels:
        out["channel_names"] = [
            ch.get("Name") or ch.get("Fluor") or f"C{i}" for i, ch in enumerate(channels)
        ]
        out["wavelengths_nm"] = [
            length_to_um(ch.get("EmissionWavelength"), ch.get("EmissionWavelengthUnit") or "nm")
            for ch in channels
        ]
        out["wavelengths_nm"] = [None if w is None else w * 1e3 for w in out["wavelengths_nm"]]
    return out


def imagej_image_metadata(ij: dict, page, axes: str, shape: tuple[int, ...]) -> dict:
    """Physical sizes and channel names from ImageJ metadata (tifffile's ``imagej_metadata``)."""
    out: dict = {}
    unit = ij.get("unit")
    if isinstance(unit, str):
        unit = unit.encode().decode("unicode_escape") if "\\u" in unit else unit
    pixel = resolution_pixel_size_um(page, unit or None)
    if pixel is not None:
        out["pixel_size_um"] = pixel
    z_step = length_to_um(ij.get("spacing"), unit or "um")
    if z_step is not None:
        out["z_step_um"] = z_step
    interval = time_to_s(ij.get("finterval"), ij.get("tunit") or "s")
    if interval is not None:
        out["time_interval_s"] = interval
    labels = ij.get("Labels")
    if "C" in axes and isinstance(labels, list | tuple):
        names = _channel_labels(list(labels), axes, shape)
        if names:
            out["channel_names"] = names
    return out


def _channel_labels(labels: list, axes: str, shape: tuple[int, ...]) -> list[str] | None:
    """Channel names from ImageJ slice labels, when every channel has one constant label."""
    plane_axes = [(a, n) for a, n in zip(axes, shape) if a in "TZC"]
    n_planes = math.prod(n for _, n in plane_axes)
    if len(labels) != n_planes:
        return None
    grid = np.array(labels, dtype=object).reshape([n for _, n in plane_axes])
    c_pos = [a for a, _ in plane_axes].index("C")
    grid = np.moveaxis(grid, c_pos, 0).reshape(shape[axes.index("C")], -1)
    names = []
    for row in grid:
        if not row[0] or any(label != row[0] for label in row):
            return None
        names.append(str(row[0]).strip())
    return names if len(set(names)) == len(names) else None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def page_text(tif) -> str:
    """Text of the first page's ImageDescription and Software tags (for device detection)."""
    page = tif.pages[0]
    parts = []
    for name in ("ImageDescription", "Software"):
        tag = page.tags.get(name)
        if tag is not None and isinstance(tag.value, str):
            parts.append(tag.value)
    return "\n".join(parts)


# -- pixel data ---------------------------------------------------------------------------------


def _series_array(tif, series, path, lazy: bool):
    """The pixel data of one series in tifffile's axis order (NumPy or lazy Dask)."""
    keyframe = series.keyframe
    page_shape = tuple(keyframe.shape)
    leading = tuple(series.shape[: len(series.shape) - len(page_shape)])
    n_pages = math.prod(leading)
    pages_match = tuple(series.shape[len(leading) :]) == page_shape and n_pages == len(series)
    if lazy and pages_match:
        indices = []
        for k in range(n_pages):
            page = series[k]
            index = getattr(page, "index", None) if page is not None else None
            indices.append(index if isinstance(index, int) else None)
        if all(isinstance(i, int) or i is None for i in indices):
            dtype = series.dtype

            def load(idx, _indices=indices, _leading=leading):
                k = int(np.ravel_multi_index(idx, _leading)) if _leading else 0
                if _indices[k] is None:
                    return np.zeros(page_shape, dtype)
                return read_page(path, _indices[k])

            return stack_planes(leading, page_shape, dtype, load, lazy=True)
    try:
        return series.asarray()
    except Exception as exc:  # tifffile raises many types on damaged data
        raise ImageReadError(path, f"file is truncated or damaged: {exc}") from exc


def _apply_palette(data, page):
    """Expand a palette (indexed colour) image to RGB."""
    colormap = np.asarray(page.colormap)  # (3, 2**bits), uint16
    rgb = np.take(colormap.T, np.asarray(data), axis=0, mode="clip")
    if colormap.max() > 255:
        rgb = (rgb // 257).astype(np.uint8)
    else:
        rgb = rgb.astype(np.uint8)
    return rgb


def read_tiff(path, *, lazy="auto", unknown_as: str = "T") -> list[ImageData]:
    """Read every series of a TIFF / OME-TIFF / ImageJ file.

    Parameters
    ----------
    path : str or Path
        The file.
    lazy : {"auto", True, False}
        Build Dask arrays (one chunk per page) instead of loading.
    unknown_as : {"T", "Z", "C"}
        Axis letter for a stack axis of unknown meaning (plain multi-page TIFF: ``"T"``).

    Returns
    -------
    list of ImageData
        ``device`` is ``"ome-tiff"``, ``"imagej"``, ``"rgb"`` (plain RGB TIFF) or ``"tiff"``;
        ``metadata["tiff_text"]`` holds the first page's description for device detection.
    """
    import tifffile

    path = Path(path)
    images = []
    with open_tiff(path) as tif:
        try:
            all_series = list(tif.series)
        except Exception as exc:  # noqa: BLE001 - tifffile raises many types on bad files
            raise ImageReadError(
                path, f"not a valid TIFF file (corrupt or truncated): {exc}"
            ) from exc
        if not all_series:
            raise ImageReadError(path, "the TIFF file holds no image")
        text = page_text(tif)
        for number, series in enumerate(all_series):
            shape = tuple(series.shape)
            if not shape or 0 in shape:
                raise ImageReadError(path, f"image is empty (shape {shape})")
            keyframe = series.keyframe
            _check_page(path, keyframe)
            photometric = int(keyframe.photometric)
            palette = (
                photometric == int(tifffile.PHOTOMETRIC.PALETTE) and keyframe.colormap is not None
            )
            rgb = photometric in (
                int(tifffile.PHOTOMETRIC.RGB),
                int(tifffile.PHOTOMETRIC.YCBCR),
            )
            source_axes = series.axes
            nbytes = math.prod(shape) * np.dtype(series.dtype).itemsize
            lazy_now = want_lazy(lazy, nbytes) and not palette
            data = _series_array(tif, series, path, lazy_now)
            if palette:
                data = _apply_palette(data, keyframe)
                source_axes, shape, rgb = source_axes + "S", data.shape, True
            try:
                plan = plan_axes(source_axes, tuple(shape), rgb=rgb, unknown_as=unknown_as)
            except AxisError as exc:
                raise ImageReadError(path, str(exc)) from exc
            data = plan.apply(data)
            meta: dict = {"tiff_axes": series.axes, "series": number, "tiff_text": text[:4096]}
            if _is_cellseek_labels(tif, number, series.dtype):
                meta["labels"] = True  # written by cellseek.io.write_labels: a Labels layer
            if keyframe.dtype is not None:
                meta["dtype"] = str(np.dtype(series.dtype))
            physical: dict = {}
            device = "tiff"
            if tif.is_ome and tif.ome_metadata:
                device = "ome-tiff"
                try:
                    physical = ome_image_metadata(tif.ome_metadata, number)
                except ET.ParseError as exc:
                    logger.warning("%s: OME-XML could not be parsed: %s", path, exc)
            elif tif.is_imagej and tif.imagej_metadata is not None:
                device = "imagej"
                physical = imagej_image_metadata(
                    tif.imagej_metadata, keyframe, series.axes, tuple(series.shape)
                )
            else:
                pixel = resolution_pixel_size_um(keyframe)
                if pixel is not None:
                    physical["pixel_size_um"] = pixel
            if device == "tiff" and plan.axes.endswith("S"):
                device = "rgb"
            channel_names = _channel_names(physical.get("channel_names"), plan.axes, data.shape)
            for key in ("pixel_size_y_um", "wavelengths_nm"):
                if key in physical:
                    meta[key] = physical[key]
            if "name" in physical:
                meta["ome_name"] = physical["name"]
            images.append(
                ImageData(
                    data=data,
                    axes=plan.axes,
                    path=str(path),
                    pixel_size_um=physical.get("pixel_size_um"),
                    z_step_um=physical.get("z_step_um"),
                    time_interval_s=physical.get("time_interval_s"),
                    channel_names=channel_names,
                    device=device,
                    metadata=meta,
                )
            )
    return images


#: Key of the TIFF description (tifffile's shaped metadata) that marks a label image
#: :func:`cellseek.io.write_labels` wrote.
LABELS_KEY = "cellseek"


def _is_cellseek_labels(tif, number: int, dtype) -> bool:
    """Whether series ``number`` is a label image :func:`cellseek.io.write_labels` wrote."""
    if np.dtype(dtype).kind not in "iu":
        return False
    try:
        shaped = tif.shaped_metadata if tif.is_shaped else None
    except Exception:  # noqa: BLE001 - a malformed description is simply not ours
        return False
    if not shaped or number >= len(shaped) or not isinstance(shaped[number], dict):
        return False
    return shaped[number].get(LABELS_KEY) == "labels"


def _channel_names(names, axes: str, shape) -> tuple[str, ...]:
    """One name per C entry: the stated names when they fit, else ``C0, C1 ...``."""
    if "C" not in axes:
        return ()
    n = shape[axes.index("C")]
    if names and len(names) == n:
        return tuple(str(name) for name in names)
    return tuple(f"C{i}" for i in range(n))
