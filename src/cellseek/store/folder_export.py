"""Export a store into a folder: a copy of the store, ``cells.csv`` and the label images.

Works through the public :class:`~cellseek.store.ReferenceStore` API. All or nothing: every file
is written into a hidden temporary folder beside the target, which is then put in place with
one ``rename``; a killed export leaves no partial folder (the next export removes its temporary
folder). Label image names come from the source image's file name and the plane
(:mod:`cellseek.store.label_files`), built only from safe characters and checked to lie inside
the folder, so a crafted store cannot make the export write anywhere else. Files get the
user's umask.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

from cellseek.errors import StoreError, StoreExistsError
from cellseek.store import files
from cellseek.store.label_files import label_file, label_stems

logger = logging.getLogger(__name__)

#: Name of the cells table in an export folder.
CELLS_CSV = "cells.csv"


def _inside(folder: Path, name: str) -> Path:
    target = folder / name
    if target.resolve().parent != folder.resolve():
        raise StoreError(f"{folder}: refused to write {name!r} outside the export folder")
    return target


def _prepare(folder: Path, overwrite: bool) -> list[str]:
    """Create the parent, remove what killed exports left, refuse a non-empty folder."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        files.remove_stale_temps(folder)
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    except OSError as err:
        raise StoreError(f"{folder}: cannot create the export folder ({err.strerror or err})") \
            from err
    if folder.exists() and not folder.is_dir():
        raise StoreExistsError(f"{folder}: a file (not a folder) already exists here; choose "
                               "another export folder")
    if present and not overwrite:
        raise StoreExistsError(
            f"{folder}: the export folder is not empty ({len(present)} entries, e.g. "
            f"{present[0]!r}); choose an empty folder or allow overwriting (--overwrite)"
        )
    return present


def _write(store, stage: Path, label_images: bool) -> list[str]:
    """Write everything into ``stage``; returns the file names, the cells table last."""
    from cellseek.io import write_labels

    names = []
    if label_images:
        images = store.images()
        stems = label_stems((image["id"], image["path"]) for image in images)
        for image in images:
            image_id = int(image["id"])
            for (t, z), labels in store.plane_labels(image_id).items():
                path = _inside(stage, label_file(stems[image_id], t, z))
                # a full disk: one CellseekError naming the file
                write_labels(path, labels, pixel_size_um=image["pixel_size_um"])
                names.append(path.name)
    store_name = _inside(stage, Path(store.path).name).name
    store.backup(stage / store_name)
    store.export_cells_csv(_inside(stage, CELLS_CSV))
    return [*names, store_name, CELLS_CSV]


def _publish(stage: Path, folder: Path, names: list[str], present: list[str]) -> None:
    """Put the finished ``stage`` in place: one rename when the folder is new or empty, else
    (``--overwrite`` into a folder with files) file by file, the cells table last."""
    for name in names:  # the data reach the disk before the rename makes them visible
        files.fsync_file(stage / name)
    files.fsync_dir(stage)
    if not present:
        try:
            os.rename(stage, folder)  # replaces an empty folder too
            files.fsync_dir(folder.parent)
            return
        except OSError as err:
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise StoreExistsError(f"{folder}: another program wrote into the export "
                                       "folder meanwhile; nothing was exported") from None
            if err.errno not in (errno.EXDEV, errno.EBUSY, errno.EPERM, errno.EACCES,
                                 errno.ENOTDIR):
                raise
    folder.mkdir(exist_ok=True)
    for name in names:
        os.replace(stage / name, folder / name)
    files.fsync_dir(folder)
    shutil.rmtree(stage, ignore_errors=True)


def export_folder(store, folder, *, label_images: bool = True,
                  overwrite: bool = False) -> dict[str, Path]:
    """Write the store copy, the cells table and the label images into ``folder``.

    Parameters
    ----------
    store : ReferenceStore
        An open store (read-only is enough).
    folder : str or Path
        Created when missing. Must be empty unless ``overwrite``.
    label_images : bool
        Also write one TIFF per stored plane label image, named after the image's file and
        the plane (``smear01_t0_z0_labels.tif``; :mod:`cellseek.store.label_files`), with
        the image's pixel size; napari opens it as a Labels layer. The rows of ``cells.csv``
        name their file in the ``label_image`` column, and a cell's pixels there have the
        value ``label_value``.
    overwrite : bool
        Write into a folder that already holds files (files of the same name are replaced,
        others are left alone).

    Returns
    -------
    dict of str to Path
        ``store``, ``cells`` and one entry per label image (its file stem).

    Raises
    ------
    StoreExistsError
        The folder is not empty and ``overwrite`` is false (nothing is written).
    StoreError
        Anything failed; nothing was written into ``folder``.
    """
    folder = Path(folder).expanduser().absolute()
    present = _prepare(folder, overwrite)
    stage = files.temp_next_to(folder)
    try:
        stage.mkdir()
    except OSError as err:
        raise StoreError(f"{folder}: cannot write beside the export folder "
                         f"({err.strerror or err}); nothing was exported") from err
    try:
        names = _write(store, stage, label_images)
        _publish(stage, folder, names, present)
    except OSError as err:
        raise StoreError(f"{folder}: the export failed ({err.strerror or err}); nothing was "
                         "exported") from err
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    out = {"store": folder / names[-2], "cells": folder / CELLS_CSV}
    out.update({Path(name).stem: folder / name for name in names[:-2]})
    logger.info("exported %s to %s (%d files)", store.path, folder, len(out))
    return out
