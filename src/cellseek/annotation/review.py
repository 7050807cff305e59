"""The review queue and the threshold decisions of the Suggest panel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cellseek.types import Suggestion


def shown_label(suggestion: Suggestion, threshold: float) -> str | None:
    """The class a suggestion shows at a confidence threshold (None when it abstains)."""
    if suggestion.best_label is None or suggestion.confidence < threshold:
        return None
    return suggestion.best_label


def above_threshold(
    suggestions: Mapping[int, Suggestion], threshold: float, *, skip: set[int] | None = None
) -> tuple[list[int], list[str]]:
    """Cells whose suggestion reaches ``threshold``, with the class to confirm.

    Parameters
    ----------
    suggestions : mapping
        Cell id -> Suggestion.
    threshold : float
        Minimum confidence.
    skip : set of int, optional
        Cell ids to leave out (e.g. already confirmed).

    Returns
    -------
    (list of int, list of str)
    """
    ids, labels = [], []
    for cell_id, sugg in suggestions.items():
        label = shown_label(sugg, threshold)
        if label is not None and cell_id not in (skip or ()):
            ids.append(int(cell_id))
            labels.append(label)
    return ids, labels


def uncertain_first(suggestions: Mapping[int, Suggestion], threshold: float) -> list[int]:
    """Cell ids below ``threshold`` first (lowest confidence first), then the others."""
    items = sorted(suggestions.items(), key=lambda kv: (shown_label(kv[1], threshold) is not None,
                                                         kv[1].confidence, -kv[1].entropy))
    return [int(k) for k, _ in items]


class ReviewQueue:
    """A cursor over cells to review that skips cells already done.

    Parameters
    ----------
    order : sequence of int
        Cell ids in review order.
    """

    def __init__(self, order: Sequence[int] = ()) -> None:
        self.order = [int(i) for i in order]
        self.done: set[int] = set()
        self.pos = -1

    def __len__(self) -> int:
        return len(self.remaining())

    def remaining(self) -> list[int]:
        """Cell ids not yet done, in order."""
        return [i for i in self.order if i not in self.done]

    def current(self) -> int | None:
        """The cell at the cursor, or None."""
        return self.order[self.pos] if 0 <= self.pos < len(self.order) else None

    def _step(self, direction: int) -> int | None:
        n = len(self.order)
        pos = self.pos
        for _ in range(n):
            pos += direction
            if pos < 0 or pos >= n:
                return None
            if self.order[pos] not in self.done:
                self.pos = pos
                return self.order[pos]
        return None

    def next(self) -> int | None:
        """Move to the next cell not done; None at the end (the cursor stays)."""
        return self._step(+1)

    def previous(self) -> int | None:
        """Move to the previous cell not done; None at the start (the cursor stays)."""
        return self._step(-1)

    def mark_done(self, cell_ids) -> None:
        """Mark cells as reviewed (they are skipped from now on)."""
        self.done.update(int(i) for i in cell_ids)

    def unmark(self, cell_ids) -> None:
        """Put cells back in the queue (after an undo)."""
        self.done.difference_update(int(i) for i in cell_ids)

    def goto(self, cell_id: int) -> bool:
        """Put the cursor on a cell; False when it is not in the queue."""
        try:
            self.pos = self.order.index(int(cell_id))
        except ValueError:
            return False
        return True
