"""Labelling, accepting, undoing and suggesting (a part of the controller).

Each step runs as a short job on the session (label, accept, undo) or a longer one (accept all,
suggest); the result updates the cell tables, the colours and the review queue.
"""

from __future__ import annotations

from dataclasses import replace

from cellseek._napari.notify import info, warn
from cellseek.annotation.review import ReviewQueue, shown_label, uncertain_first
from cellseek.errors import CellseekError
from cellseek.text import cells_text, count_text
from cellseek.types import Progress


class Labelling:
    """Labels and suggestions: a part of the controller.

    Parameters
    ----------
    jobs : SessionJobs
        Jobs on the open reference set.
    state : AnnotationState
    signals : Signals
    registry : LayerRegistry
    view : CellsView
    select : callable
        ``select(cell_id, jump=...)``: selects a cell (the controller shows it and its gallery).
    refresh_classes : callable
        Reads the classes (and their counts) again.
    current_plane : callable
        ``(t, z)`` of the plane on screen of the current image.
    """

    def __init__(self, jobs, state, signals, registry, view, *, select, refresh_classes,
                 current_plane) -> None:
        self.jobs = jobs
        self.state = state
        self.signals = signals
        self.registry = registry
        self.view = view
        self.select = select
        self.refresh_classes = refresh_classes
        self.current_plane = current_plane

    # ------------------------------------------------------------------ labels
    def label_cells(self, cell_ids, label: str, *, source: str = "user"):
        """Confirm one class for cells (one undoable step; a short job)."""
        ids = [int(c) for c in cell_ids]
        if not ids:
            return None

        def work(session):
            session.label(ids, [label] * len(ids), source=source)
            return [session.cell(c) for c in ids]
            yield  # a generator

        def done(cells):
            self._labels_done(cells)
            self._say_labelled(cells, "confirmed as")

        return self.jobs.run(f"Labelling as {label}", work, on_returned=done, quiet=True)

    def accept(self, cell_ids=None, *, then_next: bool = False):
        """Confirm the current best guess for cells (default: the selected cell)."""
        ids = [int(c) for c in (cell_ids if cell_ids is not None else
                                [self.state.selected] if self.state.selected is not None else [])]
        if not ids:
            raise CellseekError("click a cell first")

        def work(session):
            accepted = session.accept_best(ids)
            return [session.cell(c) for c in accepted]
            yield  # a generator

        def done(cells):
            if not cells:
                warn("No suggestion to accept for this cell (the reference set has no confirmed "
                     "cells yet); give it a class with the keys 1-9.")
                return
            self._labels_done(cells)
            self._say_labelled(cells, "accepted as")
            if then_next and self.state.queue.order:
                self.review_step(1)

        return self.jobs.run("Accepting the suggestion", work, on_returned=done, quiet=True)

    def accept_all_above(self):
        """Confirm every shown suggestion whose confidence reaches the threshold (a job)."""
        suggestions, threshold = dict(self.state.suggestions), self.state.threshold

        def work(session):
            yield Progress(0, 1, "accept", f"{len(suggestions)} suggestions")
            accepted, skipped = session.accept_above(suggestions, threshold)
            return [session.cell(c) for c in accepted], skipped

        def done(result):
            cells, skipped = result
            self._labels_done(cells)
            left = (f"; left out {count_text(len(skipped), 'object')} far from a cell's size "
                    "(fragments or clumps: check them one by one)") if skipped else ""
            info(f"Accepted {len(cells)} suggestions at confidence >= {threshold:.2f}{left}.")

        return self.jobs.run("Accepting suggestions", work, on_returned=done)

    def undo(self):
        """Undo the last labelling step (a job)."""
        def work(session):
            restored = session.undo() or []
            return [session.cell(c) for c, _ in restored], [c for c, lab in restored if lab is None]
            yield  # a generator

        def done(result):
            cells, cleared = result
            if not cells:
                info("Nothing to undo.")
                return
            self.state.queue.unmark(cleared)
            self._labels_done(cells, mark=False)
            if len(cells) == 1:
                cell = cells[0]
                now = f"is {cell['label']} again" if cell["label"] else "has no class again"
                self.signals.message.emit(f"Undone: cell {cell['id']} {now}.")
            else:
                self.signals.message.emit(f"Undone: {cells_text(len(cells))} as before.")

        return self.jobs.run("Undo", work, on_returned=done, quiet=True)

    def _say_labelled(self, cells, how: str) -> None:
        """One status line for a labelling step ("Cell 12 confirmed as HT1080.")."""
        if len(cells) == 1:
            self.signals.message.emit(f"Cell {cells[0]['id']} {how} {cells[0]['label']}.")
        elif cells:
            self.signals.message.emit(f"{cells_text(len(cells)).capitalize()} {how} "
                                      f"{', '.join(sorted({c['label'] for c in cells}))}.")

    def _labels_done(self, cells, *, mark: bool = True) -> None:
        ids = self.view.update_cells(cells)
        if mark:
            self.state.queue.mark_done(ids)
        self.refresh_classes()
        self.signals.labels_changed.emit()
        if self.state.selected in ids:
            self.select(self.state.selected)  # its panel and gallery show the new class

    # ------------------------------------------------------------------ suggestions
    def suggest(self, *, scope: str = "plane"):
        """Suggest classes for the unconfirmed cells of the plane, the stack or the store.

        The cells are chosen when the job starts, so a suggestion asked for while the cells
        are still being embedded covers them.
        """
        if scope != "store" and self.state.current is None:
            raise CellseekError("choose an image layer first (Segment tab)")
        item = None if scope == "store" else self.state.current
        plane = self.current_plane() if scope == "plane" else None

        def work(session):
            if item is None:
                return session.suggest(None)
            if item.image_id is None:
                raise CellseekError("the cells of this image are not in the reference set yet: "
                                    "segment it first")
            planes = [plane] if plane is not None else item.planes()
            ids = [c for c in item.table.ids_in_planes(planes) if not item.table.cell(c)["label"]]
            return session.suggest(ids)

        return self.jobs.run("Suggestion", work, on_returned=self._after_suggest)

    def _after_suggest(self, result: dict) -> None:
        self.state.suggestions.update({int(k): v for k, v in result.items()})
        for item in self.registry.images:
            hit = [c for c in result if c in item.table]
            if hit:
                self.view.keep_suggestions(item, hit)
                self.view.show(item, cell_ids=hit)
        self._rebuild_queue()
        self.signals.labels_changed.emit()
        n_unc = sum(1 for s in result.values() if shown_label(s, self.state.threshold) is None)
        said = (f"Suggested classes for {cells_text(len(result))}; {n_unc} uncertain "
                f"{'needs' if n_unc == 1 else 'need'} review.")
        info(said)
        self.signals.message.emit(said)

    def set_threshold(self, value: float) -> None:
        """Set the confidence threshold of the suggestions shown and accepted."""
        self.state.threshold = float(value)
        if self.state.session is not None:
            cfg = self.state.session.config
            self.state.session.config = replace(
                cfg, suggest=replace(cfg.suggest, threshold=self.state.threshold))
        self._rebuild_queue()
        self.view.refresh_all()
        self.signals.labels_changed.emit()

    def _rebuild_queue(self) -> None:
        labelled = {c for i in self.registry.images for c in i.table.ids()
                    if i.table.cell(c)["label"]}
        pending = {k: v for k, v in self.state.suggestions.items() if k not in labelled}
        order = [c for c in uncertain_first(pending, self.state.threshold)
                 if shown_label(pending[c], self.state.threshold) is None]
        self.state.queue = ReviewQueue(order)

    def review_step(self, direction: int = 1) -> int | None:
        """Select the next (or previous) uncertain cell and show it."""
        cid = self.state.queue.next() if direction > 0 else self.state.queue.previous()
        if cid is None:
            self.signals.message.emit("No more uncertain cells in the review queue."
                                      if direction > 0 else "This is the first uncertain cell.")
            return None
        self.select(cid, jump=True)
        return cid

