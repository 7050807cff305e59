"""A set of cells with per-model embeddings: what the suggester learns from and answers for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from cellseek.text import cells_text


@dataclass
class CellSet:
    """Cells with one embedding per model, a source each and (for reference cells) a label.

    Parameters
    ----------
    ids : ndarray
        int64 ``(N,)`` cell ids (store ids; row numbers for sets that have none).
    embeddings : dict
        Model -> ``(N, dim)`` (float16 or float32).
    sources : list of str
        ``N`` source names (device / dataset / batch).
    labels : list of str or None
        ``N`` class labels (confirmed labels of reference cells; None where unknown).
    name : str
        Where the set came from (for messages and reports).
    """

    ids: np.ndarray
    embeddings: dict[str, np.ndarray]
    sources: list[str] = field(default_factory=list)
    labels: list | None = None
    name: str = ""

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, np.int64).reshape(-1)
        n = len(self.ids)
        if not self.sources:
            self.sources = ["default"] * n
        self.sources = [str(s) for s in self.sources]
        for m, e in self.embeddings.items():
            if np.shape(e)[0] != n:
                raise ValueError(f"{self.name or 'cell set'}: {np.shape(e)[0]} embeddings of "
                                 f"model {m!r} for {cells_text(n)}")
        if len(self.sources) != n or (self.labels is not None and len(self.labels) != n):
            raise ValueError(f"{self.name or 'cell set'}: ids, sources and labels differ in "
                             "length")

    @classmethod
    def from_rows(cls, embeddings: Mapping[str, np.ndarray], labels: Sequence | None = None,
                  sources: Sequence[str] | None = None, name: str = "") -> CellSet:
        """A set whose ids are its row numbers."""
        n = len(next(iter(embeddings.values()))) if embeddings else 0
        return cls(np.arange(n), dict(embeddings), list(sources or []),
                   list(labels) if labels is not None else None, name)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def models(self) -> list[str]:
        """Model names, in the order of :attr:`embeddings`."""
        return list(self.embeddings)

    def subset(self, rows) -> CellSet:
        """The rows given (index or boolean array), as a new set."""
        rows = np.arange(len(self))[np.asarray(rows)] if len(self) else np.zeros(0, np.int64)
        return CellSet(self.ids[rows], {m: e[rows] for m, e in self.embeddings.items()},
                       [self.sources[i] for i in rows],
                       [self.labels[i] for i in rows] if self.labels is not None else None,
                       self.name)

    def select_models(self, models: Sequence[str]) -> CellSet:
        """The same cells with only ``models``."""
        return CellSet(self.ids, {m: self.embeddings[m] for m in models}, self.sources,
                       self.labels, self.name)

    def with_labels(self, labels: Sequence | None) -> CellSet:
        """The same cells with other labels (e.g. none, to hide query labels)."""
        return CellSet(self.ids, self.embeddings, self.sources,
                       list(labels) if labels is not None else None, self.name)


def concat(sets: Sequence[CellSet]) -> CellSet:
    """One set with the rows of every set (same models); labels None where a set has none."""
    sets = [s for s in sets if s is not None]
    models = sets[0].models
    return CellSet(
        np.concatenate([s.ids for s in sets]),
        {m: np.concatenate([np.asarray(s.embeddings[m], np.float32) for s in sets])
         for m in models},
        [src for s in sets for src in s.sources],
        [lab for s in sets for lab in (s.labels if s.labels is not None else [None] * len(s))],
        "+".join(s.name for s in sets if s.name),
    )
