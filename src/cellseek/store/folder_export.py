"""Export a store into a folder: a copy of the store, ``cells.csv`` and the label images.

Works through the public :class:`~cellseek.store.ReferenceStore` API. Every output name is
built from integers the store validated on open and checked to lie inside the folder, so a
crafted store cannot make the export write anywhere else. Files get the user's umask.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cellseek.errors import StoreError, StoreExistsError
from cellseek.store.exchange import LABEL_IMAGE_NAME

logger = logging.getLogger(__name__)

#: Name of the cells table in an export folder.
CELLS_CSV = "cells.csv"


def _inside(folder: Path, name: str) -> Path:
    target = folder / name
    if target.resolve().parent != folder.resolve():
        raise StoreError(f"{folder}: refused to write {name!r} outside the export folder")
    return target


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
        Also write one TIFF per stored plane label image, named :data:`LABEL_IMAGE_NAME`
        (``labels_image{image_id}_t{t}_z{z}.tif``): the rows of ``cells.csv`` join to it by
        ``image_id``, ``t`` and ``z`` (its ``label_image`` column), and a cell's pixels there
        have the value ``label_value``.
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
    """
    from cellseek.io import write_labels

    folder = Path(folder).expanduser().absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        present = sorted(p.name for p in folder.iterdir())
    except OSError as err:
        raise StoreError(f"{folder}: cannot create the export folder ({err.strerror or err})") \
            from err
    if present and not overwrite:
        raise StoreExistsError(
            f"{folder}: the export folder is not empty ({len(present)} entries, e.g. "
            f"{present[0]!r}); choose an empty folder or allow overwriting (--overwrite)"
        )
    out = {"store": _inside(folder, Path(store.path).name), "cells": _inside(folder, CELLS_CSV)}
    store.backup(out["store"])
    store.export_cells_csv(out["cells"])
    if label_images:
        for image in store.images():
            image_id = int(image["id"])
            for (t, z), labels in store.plane_labels(image_id).items():
                path = _inside(folder, LABEL_IMAGE_NAME.format(image_id=image_id, t=int(t),
                                                               z=int(z)))
                write_labels(path, labels)  # a full disk: one CellseekError naming the file
                out[path.stem] = path
    logger.info("exported %s to %s (%d files)", store.path, folder, len(out))
    return out
