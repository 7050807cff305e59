"""Label values of a stack <-> cell ids of the store, and stack-unique label values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from cellseek.types import cell_state

PlaneKey = tuple[int, int]


def unique_offset(labels: np.ndarray, taken_max: int) -> np.ndarray:
    """Shift the non-zero values of a label image above ``taken_max`` (a new array).

    The values keep their order and become ``taken_max + 1 ...``, so every cell of a stack has
    its own value and one colour table can colour the whole stack.

    Parameters
    ----------
    labels : ndarray
        Integer instance labels, 0 = background. Not modified.
    taken_max : int
        Largest value already used elsewhere in the stack.

    Returns
    -------
    ndarray
        int32 labels, values consecutive from ``taken_max + 1``.
    """
    labels = np.asarray(labels)
    values, inverse = np.unique(labels, return_inverse=True)
    new = np.zeros(values.shape, np.int64)
    fg = values > 0
    new[fg] = np.arange(1, int(fg.sum()) + 1) + int(taken_max)
    out = new[inverse.reshape(labels.shape)]
    if out.max(initial=0) > np.iinfo(np.int32).max:
        raise ValueError("too many cells in the stack for 32-bit labels")
    return out.astype(np.int32)


def relabel_planes(
    planes: Mapping[PlaneKey, np.ndarray], taken_max: int
) -> tuple[dict[PlaneKey, np.ndarray], int]:
    """Give the cells of several planes stack-unique values above ``taken_max``.

    Parameters
    ----------
    planes : mapping
        ``(t, z)`` -> instance labels (0 = background). Not modified.
    taken_max : int
        Largest value the stack already uses outside these planes.

    Returns
    -------
    (dict, int)
        ``(t, z)`` -> int32 labels with consecutive values, and the new largest value.
    """
    out = {}
    top = int(taken_max)
    for key in sorted(planes):
        out[key] = unique_offset(planes[key], top)
        top = max(top, int(out[key].max(initial=0)))
    return out, top


def largest_value(data, skip_planes: Iterable[tuple[int, ...]] = ()) -> int:
    """Largest label value of a stack, leaving out the planes at the given lead indices."""
    data = np.asarray(data)
    skip = {tuple(int(v) for v in index) for index in skip_planes}
    return max((int(data[idx].max(initial=0)) for idx in np.ndindex(*data.shape[:-2])
                if idx not in skip), default=0)


def stack_from_planes(
    shape: tuple[int, ...], index_of, planes: Mapping[PlaneKey, np.ndarray]
) -> np.ndarray:
    """A label stack of ``shape`` holding each plane at ``index_of(key)`` (zeros elsewhere)."""
    out = np.zeros(shape, np.int32)
    for key, labels in planes.items():
        out[index_of(key)] = labels
    return out


class CellTable:
    """The cells of one image: label value <-> store cell id, with their stored state.

    Parameters
    ----------
    cells : iterable of mapping
        Store cell dicts (``id``, ``label_value``, ``t``, ``z``, ``label``, ``suggestion``,
        ``confidence``, ``centroid`` ...), see :meth:`cellseek.store.ReferenceStore.cells`.
    """

    def __init__(self, cells: Iterable[Mapping] = ()) -> None:
        self._by_id: dict[int, dict] = {}
        self._by_value: dict[int, int] = {}
        self._by_plane: dict[PlaneKey, set[int]] = {}
        self.update(cells)

    def update(self, cells: Iterable[Mapping]) -> None:
        """Add or refresh cells (matched by id)."""
        for cell in cells:
            cell = dict(cell)
            cid = int(cell["id"])
            old = self._by_id.get(cid)
            if old is not None:
                self._by_plane.get((old["t"], old["z"]), set()).discard(cid)
            self._by_id[cid] = cell
            self._by_value[int(cell["label_value"])] = cid
            self._by_plane.setdefault((cell["t"], cell["z"]), set()).add(cid)

    def set_state(self, cell_id: int, **fields) -> None:
        """Change stored fields of one cell (``label``, ``suggestion``, ``confidence``)."""
        self._by_id[int(cell_id)].update(fields)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, cell_id: object) -> bool:
        return cell_id in self._by_id

    def ids(self) -> list[int]:
        """All cell ids, in store order."""
        return sorted(self._by_id)

    def cell(self, cell_id: int) -> dict:
        """The stored dict of a cell."""
        return self._by_id[int(cell_id)]

    def cells(self) -> list[dict]:
        """All cell dicts, in store order."""
        return [self._by_id[i] for i in self.ids()]

    def id_of(self, label_value: int) -> int | None:
        """Cell id of a label value, or None (background, or not in the store)."""
        return self._by_value.get(int(label_value))

    def ids_in_planes(self, planes: Iterable[PlaneKey]) -> list[int]:
        """Ids of the cells lying in the given ``(t, z)`` planes."""
        return sorted(i for plane in set(planes) for i in self._by_plane.get(tuple(plane), ()))

    def ids_in_plane(self, plane: PlaneKey) -> list[int]:
        """Ids of the cells of one ``(t, z)`` plane, in store order."""
        return sorted(self._by_plane.get(tuple(plane), ()))

    def planes(self) -> set[PlaneKey]:
        """The ``(t, z)`` planes holding at least one cell."""
        return {k for k, ids in self._by_plane.items() if ids}

    def features(
        self, states: Mapping[int, Mapping] | None = None, *, cell_ids: Iterable[int] | None = None
    ) -> dict[str, list]:
        """A features table (one row per cell) for a napari Labels layer: what hovering a cell
        shows, in the words of the user guide's glossary.

        The ``index`` column holds label values so napari shows a row on hover (row 0 is the
        background). ``class`` is the confirmed or suggested class, ``state`` one of
        :data:`CELL_STATES`, ``best_guess`` the class with the largest vote share (also for an
        uncertain cell). ``states`` may override ``label``/``suggestion``/``confidence`` per cell
        id (a suggestion below the threshold is hidden with ``{"suggestion": None}``: the cell is
        then uncertain); ``cell_ids`` limits the rows to those cells.
        """
        cols: dict[str, list] = {
            "index": [0], "cell_id": [-1], "class": [""], "state": ["background"],
            "confidence": [np.nan], "best_guess": [""],
        }
        cells = self.cells() if cell_ids is None else [self._by_id[int(i)] for i in cell_ids]
        for cell in cells:
            state = dict(cell) | dict((states or {}).get(cell["id"], {}))
            conf = state.get("confidence")
            name = cell_state(state.get("label"), state.get("suggestion"), conf)
            cols["index"].append(int(cell["label_value"]))
            cols["cell_id"].append(int(cell["id"]))
            cols["class"].append(state.get("label") or state.get("suggestion") or "")
            cols["state"].append(name)
            cols["confidence"].append(float(conf) if conf is not None else np.nan)
            cols["best_guess"].append(
                "" if name in ("confirmed", "unlabelled")
                else cell.get("suggestion") or cell.get("best_label") or "")
        return cols

