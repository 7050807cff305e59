"""Merge two objects into one cell, or split one by a SAM click: the store in one transaction.

A segmenter sometimes cuts one cell into pieces or joins two cells; the user repairs it.
:class:`CellEdits` (held by :class:`cellseek.session.Session`, which exposes
:meth:`~cellseek.session.Session.merge_cells` and :meth:`~cellseek.session.Session.split_cell`)
changes the plane's label image, re-crops and re-embeds the new objects through the session's one
:class:`~cellseek.pipeline.Pipeline`, and replaces the old cells by the new ones in one store
transaction (:meth:`cellseek.store.ReferenceStore.replace_cells`): either everything is saved or
nothing is. Cells not involved keep their rows, embeddings and labels.

Confirmed labels: a merge keeps the one class its parts share (parts with two different
confirmed classes are refused: relabel one first); a split gives both parts the class the object
had.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage as ndi

from cellseek.errors import CellseekError
from cellseek.text import cells_text
from cellseek.types import run_work

logger = logging.getLogger(__name__)

__all__ = ["CellEdits"]


class CellEdits:
    """Merge and split objects of a reference store.

    Parameters
    ----------
    store : ReferenceStore
    pipeline : Pipeline
        Crops and embeds the new objects (the session's settings and models).
    plane_labels : callable
        ``image_id -> {(t, z): label image}`` (the session's cached view).
    on_change : callable
        ``on_change(image_id, removed, added)`` after a change: ``{cell id: class or None}`` of
        the cells removed and added.
    """

    def __init__(self, store, pipeline, *, plane_labels: Callable, on_change: Callable) -> None:
        self.store = store
        self.pipeline = pipeline
        self.plane_labels = plane_labels
        self.on_change = on_change

    def _cells(self, cell_ids: Sequence[int]) -> list[dict]:
        cells = [self.store.cell(int(c)) for c in dict.fromkeys(int(c) for c in cell_ids)]
        where = {(c["image_id"], c["t"], c["z"]) for c in cells}
        if len(where) > 1:
            raise CellseekError(f"cells {', '.join(str(c['id']) for c in cells)} lie on "
                                "different planes; only objects of one plane can be merged")
        return cells

    def _plane(self, cell: dict, plane: np.ndarray) -> np.ndarray:
        labels = self.plane_labels(cell["image_id"]).get((cell["t"], cell["z"]))
        if labels is None:
            raise CellseekError(f"cell {cell['id']}: its plane has no saved label image")
        if np.shape(plane)[:2] != labels.shape:
            raise CellseekError(f"the plane given has shape {np.shape(plane)[:2]}, but cell "
                                f"{cell['id']}'s label image {labels.shape}; give its own plane")
        return np.array(labels, np.int32)

    def _replace(self, cell: dict, plane, labels, removed: list[dict], values: list[int],
                 classes: dict[int, str]) -> list[int]:
        """Embed the objects ``values`` of ``labels`` and swap them in for ``removed``."""
        only = np.where(np.isin(labels, values), labels, 0)
        image = self.store.image(cell["image_id"])
        done = run_work(self.pipeline.embed_plane(plane, only, t=cell["t"], z=cell["z"],
                                                  pixel_size_um=image.get("pixel_size_um")))
        order = [int(c.label) for c in done.cells]
        confirmed = {order.index(v): cls for v, cls in classes.items() if v in order}
        new = self.store.replace_cells(cell["image_id"], (cell["t"], cell["z"]), labels,
                                       [c["id"] for c in removed], done.cells, done.embeddings,
                                       thumbnails=done.thumbnails, confirmed=confirmed)
        added = {int(i): classes.get(v) for i, v in zip(new.tolist(), order)}
        self.on_change(cell["image_id"], {c["id"]: c["label"] for c in removed}, added)
        return [int(i) for i in new]

    def merge(self, cell_ids: Sequence[int], plane: np.ndarray) -> int:
        """Merge objects of one plane into one cell.

        Parameters
        ----------
        cell_ids : sequence of int
            Two or more cells of one plane.
        plane : ndarray
            That plane's pixels (crops are cut from it).

        Returns
        -------
        int
            The merged cell's id (its label value is the first cell's).

        Raises
        ------
        CellseekError
            Fewer than two cells, cells of different planes or with different confirmed
            classes; nothing is changed then.
        """
        cells = self._cells(cell_ids)
        if len(cells) < 2:
            raise CellseekError("merging needs two or more different cells")
        classes = {c["label"] for c in cells if c["label"]}
        if len(classes) > 1:
            raise CellseekError(f"cells {', '.join(str(c['id']) for c in cells)} are confirmed "
                                f"as different classes ({', '.join(sorted(classes))}); relabel "
                                "one of them before merging")
        labels = self._plane(cells[0], plane)
        keep = int(cells[0]["label_value"])
        labels[np.isin(labels, [int(c["label_value"]) for c in cells])] = keep
        new = self._replace(cells[0], plane, labels, cells, [keep],
                            {keep: classes.pop()} if classes else {})
        logger.info("merged %s into cell %d", cells_text(len(cells)), new[0])
        return new[0]

    def split(self, cell_id: int, plane: np.ndarray, point_rc=None, *, mask=None,
              segmenter=None) -> list[int]:
        """Split one object by a SAM click inside it (or by a given mask).

        Parameters
        ----------
        cell_id : int
        plane : ndarray
            The object's plane.
        point_rc : (float, float), optional
            A click inside the object: SAM's mask of the cell under it
            (:meth:`cellseek.segment.sam.SamSegmenter.segment_point`) becomes one part.
        mask : ndarray, optional
            bool ``(Y, X)`` instead of a click: the part to cut out.
        segmenter : SamSegmenter, optional
            Default: the process's shared segmenter for the session's SAM settings.

        Returns
        -------
        list of int
            The ids of the two (or more) new cells: the part under the click first.

        Raises
        ------
        CellseekError
            The click lies outside the object, or the mask leaves nothing on one side.
        """
        cell = self.store.cell(int(cell_id))
        labels = self._plane(cell, plane)
        value = int(cell["label_value"])
        inside = labels == value
        if mask is None:
            if point_rc is None:
                raise CellseekError("give the click inside the object (point_rc) or a mask")
            r, c = (int(round(v)) for v in point_rc)
            if not (0 <= r < labels.shape[0] and 0 <= c < labels.shape[1]) or not inside[r, c]:
                raise CellseekError(f"the click {tuple(point_rc)} lies outside cell {cell_id}")
            mask = self._click_mask(self._sam(segmenter), plane, (r, c), inside)
        part = inside & np.asarray(mask, bool)
        min_area = max(int(self.pipeline.config.segment.min_area) // 4, 1)
        pieces, n = ndi.label(inside & ~part)
        sizes = np.bincount(pieces.ravel(), minlength=n + 1)[1:]
        part |= np.isin(pieces, 1 + np.flatnonzero(sizes < min_area))  # slivers join the part
        big = [k + 1 for k in np.argsort(-sizes) if sizes[k] >= min_area]
        if part.sum() < min_area or not big:
            raise CellseekError(f"the mask does not split cell {cell_id}: it leaves "
                                f"{int(part.sum())} px on one side and "
                                f"{int(sizes[sizes >= min_area].sum())} on the other")
        # label values are unique across the image's planes (a napari stack shows them as one)
        new_value = max(int(v.max()) for v in self.plane_labels(cell["image_id"]).values()) + 1
        labels[part] = new_value
        values = [new_value, value]
        for k in big[1:]:  # the rest fell apart: each large piece is its own object
            new_value += 1
            labels[pieces == k] = new_value
            values.append(new_value)
        classes = {v: cell["label"] for v in values} if cell["label"] else {}
        new = self._replace(cell, plane, labels, [cell], values, classes)
        by_value = dict(zip(sorted(values), sorted(new)))  # insert order follows label values
        return [by_value[v] for v in values]

    @staticmethod
    def _click_mask(segmenter, plane, point, inside: np.ndarray) -> np.ndarray:
        """SAM's mask for a click inside an object that is to be split.

        A box-prompted model takes the box of the detector's object under the click, which may
        be the whole joined object; when its mask covers most of the object, the click is
        prompted again with a box of half the object's area (times 1.5) centred on it.
        """
        mask = segmenter.segment_point(plane, point)
        if not getattr(segmenter, "box_prompts", False) or \
                (mask & inside).sum() < 0.85 * inside.sum():
            return mask
        side = 1.5 * 2 * np.sqrt(inside.sum() / 2 / np.pi)
        r, c = point
        return segmenter.segment_box(plane, (r - side / 2, c - side / 2, r + side / 2,
                                             c + side / 2))

    def _sam(self, segmenter):
        if segmenter is not None:
            return segmenter
        from cellseek.segment.sam import shared_segmenter

        config = self.pipeline.config
        return shared_segmenter(config.segment.sam_model, weights_dir=config.embed.weights_dir,
                                device=config.embed.device)
