"""Turn what a user points at into the list of images to process, in a stable order.

Accepted specs (:func:`collect_inputs`):

- a folder: every supported image file below it, recursively (folders of label images written
  by ``cellseek segment``, marked by :data:`LABELS_MARKER`, are skipped); one-file-per-plane series
  (Lionheart / Gen5 plate exports, Nanolive) count once per stack (their first file, which
  :func:`cellseek.io.read_image` opens as the whole stack);
- a list file (``.txt``, ``.lst``, ``.list``): one path per line, relative to the list file's
  folder; blank lines and lines starting with ``#`` are ignored;
- a glob pattern (``/data/plate1/**/*.tif``);
- a single image file;
- a sequence of any of these (concatenated, duplicates dropped).

Files are ordered by folder, then naturally by name (``A2`` before ``A10``); that order is the
canonical insertion order of :mod:`cellseek.batch.merge`.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from cellseek.errors import CellseekError

logger = logging.getLogger(__name__)

#: File that marks a folder of label images written by ``cellseek segment``: folder scans skip
#: it, so label images are never read back as images.
LABELS_MARKER = ".cellseek-labels"
#: Endings of list files.
LIST_SUFFIXES = (".txt", ".lst", ".list")
_GLOB_CHARS = set("*?[")


def _natural(path: Path) -> tuple:
    from cellseek.io.fileseries import natural_key

    return tuple(natural_key(part) for part in path.parent.parts), natural_key(path.name)


def _series_key(path: Path):
    """Key of the plane-file stack ``path`` belongs to, or None for a standalone file."""
    from cellseek.io import lionheart, nanolive
    from cellseek.io.tiff import TIFF_SUFFIXES

    if path.suffix.lower() not in TIFF_SUFFIXES:
        return None
    for vendor, module in (("lionheart", lionheart), ("nanolive", nanolive)):
        plane = module.parse_name(path)
        if plane is not None:
            return (str(path.parent), vendor, plane.group)
    return None


def _dedupe_series(files: Iterable[Path]) -> list[Path]:
    """Keep one file per plane-file stack (the first in natural order) and every other file."""
    out, stacks = [], set()
    for f in sorted(files, key=_natural):
        key = _series_key(f)
        if key is not None:
            if key in stacks:
                continue
            stacks.add(key)
        out.append(f)
    return out


def _scan_folder(folder: Path) -> list[Path]:
    from cellseek.io import SUPPORTED_SUFFIXES

    files = []
    for root, dirs, names in os.walk(folder):
        if LABELS_MARKER in names:
            dirs[:] = []
            logger.info("%s: skipped (label images written by cellseek segment)", root)
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith(".") and Path(name).suffix.lower() in SUPPORTED_SUFFIXES:
                files.append(Path(root) / name)
    return _dedupe_series(files)


def _read_list(list_file: Path) -> list[Path]:
    out = []
    for n, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        p = p if p.is_absolute() else list_file.parent / p
        if not p.exists():
            raise CellseekError(f"{list_file}, line {n}: {p} does not exist")
        out.append(p)
    return out


def collect_inputs(spec) -> list[Path]:
    """Image paths named by a folder, plate export, list file, glob, file or a list of these.

    Parameters
    ----------
    spec : str, Path or sequence of them
        See the module docstring.

    Returns
    -------
    list of Path
        Absolute paths, in canonical order, without duplicates.

    Raises
    ------
    CellseekError
        A path that does not exist, a glob that matches nothing, or no image at all.
    """
    if isinstance(spec, (str, os.PathLike)):
        specs = [spec]
    else:
        specs = list(spec)
    out: list[Path] = []
    for item in specs:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_dir():
            found = _scan_folder(path)
            if not found:
                raise CellseekError(f"{path}: the folder holds no supported image files")
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            found = _read_list(path)
        elif path.is_file():
            found = [path]
        elif _GLOB_CHARS & set(text):
            found = _dedupe_series(
                Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True)
                if Path(p).is_file()
            )
            if not found:
                raise CellseekError(f"{text}: the pattern matches no file")
        else:
            raise CellseekError(f"{path}: no such file or folder")
        out.extend(found)
    seen: set[Path] = set()
    unique = []
    for p in out:
        p = p.absolute()
        if p not in seen:
            seen.add(p)
            unique.append(p)
    if not unique:
        raise CellseekError(f"{spec}: no image to process")
    logger.info("%d images to process", len(unique))
    return unique
