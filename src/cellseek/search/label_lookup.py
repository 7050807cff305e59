"""Sorted arrays over a suggester's reference labels, kept in step with each change.

A suggestion looks up the class of each of its neighbours and the class counts (for the
adaptive k); at a million reference cells, rebuilding those from the label dictionary cost
about 0.3 s per suggestion. :class:`LabelLookup` holds the cell ids sorted with a class code
each and the count of each class, and is updated in place when cells are added, relabelled or
removed (a few milliseconds at a million cells).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


class LabelLookup:
    """Cell id -> class, as sorted arrays.

    Parameters
    ----------
    labels : mapping of int to str
        The reference cells' labels.
    """

    def __init__(self, labels: Mapping[int, str]) -> None:
        self.names: list[str] = sorted(set(labels.values()))  # codes index this; grows at the end
        self._code = {name: i for i, name in enumerate(self.names)}
        keys = np.fromiter(labels.keys(), np.int64, len(labels))
        codes = np.fromiter((self._code[v] for v in labels.values()), np.int64, len(labels))
        order = np.argsort(keys, kind="stable")
        self.keys, self.codes = keys[order], codes[order]
        self.counts = np.bincount(codes, minlength=len(self.names)).astype(np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    def _code_for(self, name: str) -> int:
        code = self._code.get(name)
        if code is None:
            code = self._code[name] = len(self.names)
            self.names.append(name)
            self.counts = np.append(self.counts, 0)
        return code

    def _find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position of each id in :attr:`keys` and whether it is there."""
        pos = np.searchsorted(self.keys, ids)
        if not len(self.keys):
            return pos, np.zeros(ids.shape, bool)
        return pos, self.keys[np.minimum(pos, len(self.keys) - 1)] == ids

    def set(self, ids: Sequence[int], labels: Sequence[str]) -> None:
        """Give cells a label (new cells are added; the last label of a repeated id wins)."""
        last = dict(zip(map(int, ids), map(str, labels)))
        if not last:
            return
        ids_arr = np.fromiter(last.keys(), np.int64, len(last))
        codes = np.fromiter((self._code_for(v) for v in last.values()), np.int64, len(last))
        pos, present = self._find(ids_arr)
        np.subtract.at(self.counts, self.codes[pos[present]], 1)
        self.codes[pos[present]] = codes[present]
        new = ~present
        if new.any():
            order = np.argsort(ids_arr[new], kind="stable")
            new_ids, new_codes = ids_arr[new][order], codes[new][order]
            at = np.searchsorted(self.keys, new_ids)
            self.keys = np.insert(self.keys, at, new_ids)
            self.codes = np.insert(self.codes, at, new_codes)
        np.add.at(self.counts, codes, 1)

    def drop(self, ids: Sequence[int]) -> None:
        """Forget cells (ids that are not there are ignored)."""
        ids_arr = np.unique(np.asarray(list(ids), np.int64))
        if not ids_arr.size or not len(self.keys):
            return
        pos, present = self._find(ids_arr)
        pos = pos[present]
        np.subtract.at(self.counts, self.codes[pos], 1)
        self.keys = np.delete(self.keys, pos)
        self.codes = np.delete(self.codes, pos)

    def class_counts(self) -> dict[str, int]:
        """Cells per class, for the classes that have any, sorted by name."""
        return {self.names[i]: int(self.counts[i])
                for i in sorted(np.flatnonzero(self.counts), key=lambda i: self.names[i])}

    def codes_of(self, ids: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """The index into ``classes`` of each id's class; -1 for unknown ids or classes."""
        ids = np.asarray(ids, np.int64)
        if not len(self.keys) or not ids.size:
            return np.full(ids.shape, -1, np.int64)
        where = {c: i for i, c in enumerate(classes)}
        to_given = np.array([where.get(name, -1) for name in self.names], np.int64)
        pos, present = self._find(ids)
        found = to_given[self.codes[np.minimum(pos, len(self.keys) - 1)]]
        return np.where(present, found, -1)
