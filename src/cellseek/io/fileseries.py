"""Stacks made of one TIFF file per plane (Lionheart/Gen5 and Nanolive exports).

A vendor module turns file names into :class:`PlaneFile` records (group, time, z and channel
keys); :func:`assemble` checks every file's header, sorts the keys numerically, fills the
``T``/``Z``/``C`` grid and builds the array eagerly or lazily. Problems (unreadable file, other
image size, missing or duplicate plane) become ``"file: problem"`` warnings; the rest opens.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cellseek.errors import ImageReadError
from cellseek.io._stack import stack_planes, want_lazy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlaneFile:
    """One file holding one plane of a stack.

    Parameters
    ----------
    path : Path
    group : tuple
        Sortable key of the stack the plane belongs to (e.g. well, site, channel).
    t, z : tuple of int
        Sortable time / z keys; empty when the file name carries no such index.
    channel : str
        Channel within the stack (Nanolive: ``"RI"``, ``"FL1"`` ...); ``""`` for one channel.
    """

    path: Path
    group: tuple
    t: tuple = ()
    z: tuple = ()
    channel: str = ""


@dataclass(frozen=True)
class Probe:
    """What the header of a plane file says (no pixels read)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    text: str
    page_tags: dict = field(default_factory=dict)


@dataclass
class Group:
    """An assembled stack."""

    data: object
    axes: str
    channel_names: tuple[str, ...]
    files: list[str]
    probes: dict
    t_keys: list
    z_keys: list
    first: Path


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers numerically (``a2`` before ``a10``)."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part.lower())
        for part in re.split(r"(\d+)", str(text))
        if part
    )


def probe(path: Path) -> Probe:
    """Read a plane file's header: shape, dtype and every text tag (no pixel data)."""
    from cellseek.io.tiff import open_tiff

    with open_tiff(path) as tif:
        page = tif.pages[0]
        texts = [
            tag.value for tag in page.tags.values() if isinstance(tag.value, str) and tag.value
        ]
        tags = {}
        for name in ("XResolution", "ResolutionUnit"):
            tag = page.tags.get(name)
            if tag is not None:
                tags[name] = tag.value
        return Probe(tuple(page.shape), np.dtype(page.dtype), "\n".join(texts), tags)


def _warn(warnings: list[str], where, problem: str) -> None:
    message = f"{Path(where).name if isinstance(where, Path) else where}: {problem}"
    warnings.append(message)
    logger.warning("%s", message)


def assemble(
    files: list[PlaneFile],
    *,
    name: str,
    keep: str,
    lazy,
    warnings: list[str],
    channel_order: Callable[[str], tuple] | None = None,
    transform: Callable[[str, np.ndarray], np.ndarray] | None = None,
    out_dtype=None,
) -> Group:
    """Build one stack from its plane files.

    Parameters
    ----------
    files : list of PlaneFile
        All files of one group.
    name : str
        Group name used in warnings for problems that concern no single file.
    keep : str
        Axes kept even when they have one entry (e.g. ``"T"`` or ``"TZC"``); other ``T``, ``Z``,
        ``C`` axes appear only with more than one entry.
    lazy : {"auto", True, False}
    warnings : list of str
        Problems are appended here (and logged).
    channel_order : callable, optional
        Sort key for channel names (default: natural order).
    transform : callable, optional
        ``transform(channel, plane) -> plane`` applied after reading (e.g. RI scaling).
    out_dtype : dtype, optional
        Data type of the result (default: the files' common type).

    Returns
    -------
    Group

    Raises
    ------
    ImageReadError
        When no file of the group can be read.
    """
    probes: dict[Path, Probe] = {}
    for plane in files:
        try:
            probes[plane.path] = probe(plane.path)
        except ImageReadError as exc:
            _warn(warnings, plane.path, f"could not be read ({exc.problem})")
    if not probes:
        raise ImageReadError(name, "none of its files could be read")
    shapes = Counter(p.shape for p in probes.values())
    shape = max(shapes, key=lambda s: (shapes[s], -sum(s)))
    usable = []
    for plane in files:
        found = probes.get(plane.path)
        if found is None:
            continue
        if found.shape != shape:
            _warn(warnings, plane.path, f"image size {found.shape} differs from {shape}; left out")
            continue
        usable.append(plane)
    dtype = np.result_type(*{probes[p.path].dtype for p in usable})
    out_dtype = np.dtype(out_dtype) if out_dtype is not None else dtype

    t_keys = sorted({p.t for p in usable})
    z_keys = sorted({p.z for p in usable})
    channels = sorted({p.channel for p in usable}, key=channel_order or natural_key)
    sizes = {"T": len(t_keys), "Z": len(z_keys), "C": len(channels)}
    axes_lead = "".join(a for a in "TZC" if a in keep or sizes[a] > 1)

    where: dict[tuple, Path] = {}
    for plane in usable:
        full = (t_keys.index(plane.t), z_keys.index(plane.z), channels.index(plane.channel))
        if full in where:
            _warn(
                warnings,
                plane.path,
                f"duplicate plane (same indices as {where[full].name}); left out",
            )
            continue
        where[full] = plane.path
    grid = tuple(sizes[a] for a in axes_lead)
    for full in np.ndindex(sizes["T"], sizes["Z"], sizes["C"]):
        if full not in where:
            label = ", ".join(
                f"{a}={k}" for a, k, n in zip("TZC", full, (t_keys, z_keys, channels)) if len(n) > 1
            )
            _warn(warnings, name, f"missing plane ({label}); filled with zeros")

    def full_index(index: tuple[int, ...]) -> tuple[int, int, int]:
        lookup = dict(zip(axes_lead, index))
        return (lookup.get("T", 0), lookup.get("Z", 0), lookup.get("C", 0))

    def load(index):
        full = full_index(index)
        path = where.get(full)
        if path is None:
            return np.zeros(shape, out_dtype)
        try:
            plane = read_plane(path, shape)
        except ImageReadError as exc:
            _warn(warnings, path, f"{exc.problem}; filled with zeros")
            return np.zeros(shape, out_dtype)
        if transform is not None:
            plane = transform(channels[full[2]], plane)
        return plane

    nbytes = math.prod(grid) * math.prod(shape) * out_dtype.itemsize
    data = stack_planes(grid, shape, out_dtype, load, lazy=want_lazy(lazy, nbytes))
    ordered = [str(where[k]) for k in sorted(where)]
    first = where[min(where)]
    names = tuple(channels) if "C" in axes_lead else ()
    return Group(data, axes_lead, names, ordered, probes, t_keys, z_keys, first)


def read_plane(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Read the first page of a plane file and check its shape."""
    from cellseek.io.tiff import read_page

    plane = read_page(path, 0)
    if plane.shape != shape:
        raise ImageReadError(path, f"image size {plane.shape} differs from {shape}")
    return plane
