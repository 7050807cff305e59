"""Open a file or folder: pick the reader, group plane files, validate, collect warnings."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from cellseek.errors import ImageReadError
from cellseek.io import lionheart, nanolive
from cellseek.io._axes import expand_to
from cellseek.io.fileseries import PlaneFile, assemble, natural_key
from cellseek.io.pictures import PICTURE_SUFFIXES, read_picture
from cellseek.io.tiff import TIFF_SUFFIXES, open_tiff, page_text, read_page, read_tiff
from cellseek.types import ImageData

logger = logging.getLogger(__name__)

#: File name endings the readers accept (case-insensitive).
SUPPORTED_SUFFIXES = TIFF_SUFFIXES + PICTURE_SUFFIXES


def is_supported(path) -> bool:
    """True for a file with a supported ending, or a folder."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in SUPPORTED_SUFFIXES


def read_image(path, *, lazy="auto") -> ImageData:
    """Read an image file or a folder of plane files.

    Parameters
    ----------
    path : str or Path
        A TIFF / OME-TIFF / ImageJ TIFF / PNG / JPEG / BMP file, one file of a Lionheart or
        Nanolive one-file-per-plane series, or a folder.
    lazy : {"auto", True, False}
        Return a Dask array built per plane (``"auto"``: when larger than 1 GiB).

    Returns
    -------
    ImageData
        For a folder or a file with several series: the first stack (see :func:`read_all`).

    Raises
    ------
    cellseek.errors.ImageReadError
        Missing file, unsupported type, corrupt or truncated file, empty or all-NaN image,
        wrong number of dimensions, a folder with nothing readable.
    """
    return read_all(path, lazy=lazy)[0]


def read_all(path, *, lazy="auto") -> list[ImageData]:
    """Read every stack of a file or folder.

    A Lionheart / Nanolive plane file gives the one stack it belongs to (found among its
    siblings); a TIFF with several series gives one image per series; a folder gives every
    Lionheart group (well, site, channel), every Nanolive stack and every other readable file,
    in natural order. Problems with single files of a folder are reported in each image's
    ``metadata["warnings"]`` and logged; they only raise when nothing is readable.

    Parameters
    ----------
    path : str or Path
    lazy : {"auto", True, False}

    Returns
    -------
    list of ImageData
        Never empty.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file or folder does not exist")
    if path.is_dir():
        return _read_folder(path, lazy)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ImageReadError(
            path,
            f"unsupported file type {suffix or '(no extension)'!r}; supported: "
            + ", ".join(SUPPORTED_SUFFIXES),
        )
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    if suffix in TIFF_SUFFIXES:
        if lionheart.parse_name(path) or nanolive.parse_name(path):
            images = _read_siblings(path, lazy)
        else:
            images = _read_tiff_file(path, lazy)
    else:
        images = [read_picture(path)]
    return [_validate(image) for image in images]


# -- single files -------------------------------------------------------------------------------


def _read_tiff_file(path: Path, lazy) -> list[ImageData]:
    with open_tiff(path) as tif:
        first_text = page_text(tif)
    if nanolive.has_ri_token(path) or nanolive.mentions_nanolive(first_text):
        images = read_tiff(path, lazy=lazy, unknown_as="Z")
        return [_as_nanolive(image) for image in images]
    images = read_tiff(path, lazy=lazy)
    if lionheart.MARKER in first_text:
        return [_as_lionheart_single(image, first_text) for image in images]
    return images


def _as_nanolive(image: ImageData) -> ImageData:
    """Give a multi-page Nanolive image TZCYX axes and convert scaled-integer RI."""
    data, axes = expand_to(image.data, image.axes, "TZC")
    meta = dict(image.metadata)
    names = image.channel_names if "C" in image.axes else ()
    n_channels = data.shape[axes.index("C")]
    if not names:
        names = ("RI",) if n_channels == 1 else tuple(f"C{i}" for i in range(n_channels))
    c_axis = axes.index("C")
    ri_channels = [i for i, name in enumerate(names) if name.upper() == "RI"]
    if ri_channels and data.dtype.kind in "uif":
        c = ri_channels[0]
        sample = np.asarray(data[(0, data.shape[1] // 2, c)])
        scale = nanolive.ri_scale_of(sample)
        if scale is not None:
            meta["ri_scale"] = scale
            if scale != 1.0:
                data = data.astype(np.float32)
                index = (slice(None),) * c_axis + (c,)
                if isinstance(data, np.ndarray):
                    data[index] = data[index] / scale
                else:
                    data = _dask_scale_channel(data, c_axis, c, scale)
    return dataclasses.replace(
        image, data=data, axes=axes, channel_names=tuple(names), device="nanolive", metadata=meta
    )


def _dask_scale_channel(data, c_axis: int, c: int, scale: float):
    import dask.array as da

    parts = [data[(slice(None),) * c_axis + (slice(i, i + 1),)] for i in range(data.shape[c_axis])]
    parts[c] = parts[c] / np.float32(scale)
    return da.concatenate(parts, axis=c_axis).astype(np.float32)


def _as_lionheart_single(image: ImageData, text: str) -> ImageData:
    warnings: list[str] = []
    width_px = image.data.shape[image.axes.index("X")]
    meta = dict(image.metadata)
    xml = lionheart.read_xml_metadata(text, Path(image.path).name, warnings, width_px)
    meta["lionheart"] = xml
    meta["warnings"] = meta.get("warnings", []) + warnings
    return dataclasses.replace(
        image,
        pixel_size_um=xml.get("pixel_size_um", image.pixel_size_um),
        device="lionheart",
        metadata=meta,
    )


# -- plane-file series --------------------------------------------------------------------------


def _read_siblings(path: Path, lazy) -> list[ImageData]:
    """The stack a Lionheart / Nanolive plane file belongs to."""
    own = lionheart.parse_name(path)
    vendor = "lionheart" if own is not None else "nanolive"
    own = own or nanolive.parse_name(path)
    parse = lionheart.parse_name if vendor == "lionheart" else nanolive.parse_name
    siblings = []
    for candidate in sorted(path.parent.iterdir(), key=lambda p: natural_key(p.name)):
        if candidate.is_file() and candidate.suffix.lower() in TIFF_SUFFIXES:
            plane = parse(candidate)
            if plane is not None and plane.group == own.group:
                siblings.append(plane)
    warnings: list[str] = []
    build = _lionheart_group if vendor == "lionheart" else _nanolive_group
    image = build(siblings, path.parent, lazy, warnings)
    image.metadata["warnings"] = warnings + image.metadata.get("warnings", [])
    return [image]


def _lionheart_group(files: list[PlaneFile], folder: Path, lazy, warnings: list[str]) -> ImageData:
    group = files[0].group
    name = lionheart.group_name(group)
    built = assemble(files, name=name, keep="T", lazy=lazy, warnings=warnings)
    shape = built.data.shape
    axes = built.axes + ("YXS" if len(shape) - len(built.axes) == 3 else "YX")
    first_probe = built.probes[built.first]
    xml = lionheart.read_xml_metadata(
        first_probe.text, built.first.name, warnings, shape[axes.index("X")]
    )
    stamps = []
    for t_key in built.t_keys:
        plane = next((f for f in files if f.t == t_key and f.path in built.probes), None)
        text = built.probes[plane.path].text if plane is not None else ""
        found = lionheart.find_xml(text)
        try:
            stamps.append(
                lionheart.timestamp(lionheart.xml_metadata(lionheart.parse_xml(found)))
                if found
                else None
            )
        except Exception:  # noqa: BLE001 - a bad stamp only loses the interval
            stamps.append(None)
    meta = {
        "name": f"{folder.name}_{name}",
        "well": group[4],
        "site": group[2],
        "channel": group[5],
        "files": built.files,
        "lionheart": xml,
        "t_keys": [list(k) for k in built.t_keys],
    }
    for key in ("emission_nm", "excitation_nm", "objective"):
        if key in xml:
            meta[key] = xml[key]
    return ImageData(
        data=built.data,
        axes=axes,
        path=str(built.first if len(built.files) == 1 else folder),
        pixel_size_um=xml.get("pixel_size_um"),
        z_step_um=xml.get("z_step_um") if "Z" in axes else None,
        time_interval_s=lionheart.time_interval_s(stamps) if "T" in axes else None,
        channel_names=built.channel_names,
        device="lionheart",
        metadata=meta,
    )


def _nanolive_group(files: list[PlaneFile], folder: Path, lazy, warnings: list[str]) -> ImageData:
    stem = files[0].group[1]
    scales: dict[str, float] = {}
    for plane in sorted(files, key=lambda f: (f.t, f.z)):
        if plane.channel in scales or plane.channel != "RI":
            continue
        try:
            scale = nanolive.ri_scale_of(read_page(plane.path, 0))
        except ImageReadError:
            continue
        if scale is not None:
            scales["RI"] = scale
    out_dtype = np.float32 if scales else None

    def transform(channel: str, plane: np.ndarray) -> np.ndarray:
        scale = scales.get(channel)
        return nanolive.scale_ri(plane, scale) if scale else plane

    built = assemble(
        files,
        name=stem,
        keep="TZC",
        lazy=lazy,
        warnings=warnings,
        channel_order=nanolive.channel_order,
        transform=transform,
        out_dtype=out_dtype,
    )
    shape = built.data.shape
    axes = built.axes + ("YXS" if len(shape) - len(built.axes) == 3 else "YX")
    physical = _physical_from_probe(built.first)
    meta = {"name": stem, "files": built.files}
    if scales:
        meta["ri_scale"] = scales["RI"]
    return ImageData(
        data=built.data,
        axes=axes,
        path=str(folder),
        pixel_size_um=physical.get("pixel_size_um"),
        z_step_um=physical.get("z_step_um"),
        time_interval_s=physical.get("time_interval_s"),
        channel_names=built.channel_names,
        device="nanolive",
        metadata=meta,
    )


def _physical_from_probe(path: Path) -> dict:
    """Voxel size stated by one plane file (ImageJ / OME metadata or resolution tags)."""
    try:
        image = read_tiff(path, lazy=True)[0]
    except ImageReadError:
        return {}
    out = {
        "pixel_size_um": image.pixel_size_um,
        "z_step_um": image.z_step_um,
        "time_interval_s": image.time_interval_s,
    }
    return {k: v for k, v in out.items() if v is not None}


# -- folders ------------------------------------------------------------------------------------


def _read_folder(folder: Path, lazy) -> list[ImageData]:
    entries = sorted(
        (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )
    candidates = [p for p in entries if p.suffix.lower() in SUPPORTED_SUFFIXES]
    ignored = len(entries) - len(candidates)
    if ignored:
        logger.debug("%s: %d files with other endings ignored", folder, ignored)
    if not candidates:
        raise ImageReadError(
            folder, "folder holds no image files (" + ", ".join(SUPPORTED_SUFFIXES) + ")"
        )
    warnings: list[str] = []
    lion: dict[tuple, list[PlaneFile]] = {}
    nano: dict[tuple, list[PlaneFile]] = {}
    singles: list[Path] = []
    for path in candidates:
        if path.suffix.lower() in TIFF_SUFFIXES:
            if plane := lionheart.parse_name(path):
                lion.setdefault(plane.group, []).append(plane)
                continue
            if plane := nanolive.parse_name(path):
                nano.setdefault(plane.group, []).append(plane)
                continue
        singles.append(path)

    results: list[tuple[tuple, ImageData, list[str]]] = []
    for builder, groups in ((_lionheart_group, lion), (_nanolive_group, nano)):
        for key in sorted(groups):
            own: list[str] = []
            try:
                image = _validate(builder(groups[key], folder, lazy, own))
            except ImageReadError as exc:
                _folder_warning(warnings, exc)
                continue
            results.append((natural_key(Path(image.metadata["files"][0]).name), image, own))
    for path in singles:
        try:
            images = read_all(path, lazy=lazy)
        except ImageReadError as exc:
            _folder_warning(warnings, exc)
            continue
        for image in images:
            results.append((natural_key(path.name), image, image.metadata.get("warnings", [])))
    if not results:
        raise ImageReadError(
            folder,
            f"no readable image among {len(candidates)} files: " + "; ".join(warnings[:3]),
        )
    # Lionheart groups first (well, site, channel order), then Nanolive stacks, then files
    out = []
    for _, image, own in results:
        image.metadata["warnings"] = warnings + [w for w in own if w not in warnings]
        out.append(image)
    return out


def _folder_warning(warnings: list[str], exc: ImageReadError) -> None:
    message = f"{Path(exc.path).name}: {exc.problem}"
    warnings.append(message)
    logger.warning("%s", message)


# -- validation ---------------------------------------------------------------------------------


def _validate(image: ImageData) -> ImageData:
    """Reject empty, all-NaN and complex-valued images; warn about constant ones
    (``metadata["constant"]``).

    For lazy (Dask) data only the first plane is checked, so nothing big is loaded.
    """
    meta = image.metadata
    meta.setdefault("warnings", [])
    shape = image.shape
    if 0 in shape:
        raise ImageReadError(image.path, f"image is empty (shape {shape})")
    if not 2 <= len(shape) <= 6 or "Y" not in image.axes or "X" not in image.axes:
        raise ImageReadError(
            image.path, f"image has {len(shape)} dimensions {shape}; expected 2 to 6 (TZCYXS)"
        )
    kind = np.dtype(image.data.dtype).kind
    if kind not in "uifb":  # complex (c), object, strings ...: no pixel values to use as such
        what = "complex numbers" if kind == "c" else f"values of type {image.data.dtype}"
        raise ImageReadError(image.path, f"the image holds {what}, not intensities; convert it "
                             "to real values (e.g. the magnitude or the phase) first")
    data = image.data
    if not isinstance(data, np.ndarray):
        lead = image.axes.index("Y")
        data = np.asarray(data[(0,) * lead])
    if data.dtype.kind == "f" and not np.isfinite(data).any():
        if np.isnan(data).all():
            raise ImageReadError(image.path, "image holds only NaN values (no data)")
    if data.size and data.dtype.kind in "uifb":
        first = data.flat[0]
        if (data == first).all():
            message = f"{Path(image.path).name}: image is constant (every pixel is {first})"
            logger.warning("%s", message)
            meta["warnings"].append(message)
            meta["constant"] = message  # (first plane only for lazy data)
    return image
