"""Repairing objects in the window: merge two objects into one cell, split one by a click.

The user selects a cell, presses *Merge with…* or *Split at…* (Segment tab) and clicks: the
other object to merge with, or a point inside the selected cell where one of its parts lies (a
SAM click). The store changes in one transaction (:meth:`cellseek.session.Session.merge_cells`,
:meth:`~cellseek.session.Session.split_cell`); the image's cells layer is then redrawn from the
label images the store holds, so the window shows what was saved.
"""

from __future__ import annotations

from cellseek.annotation.cells import CellTable
from cellseek.errors import CellseekError
from cellseek.types import Progress

#: What the next click does while an edit is armed, as the status line says it.
PROMPTS = {
    "merge": "Click the object to merge into cell {cell} (press the button again to cancel).",
    "split": "Click inside cell {cell} on the part to cut off (press the button again to cancel).",
}


class Editing:
    """Merge and split objects of the open reference set: a part of the controller.

    Parameters
    ----------
    jobs : SessionJobs
    state : AnnotationState
    signals : Signals
    registry : LayerRegistry
    view : CellsView
    select : callable
        ``select(cell_id)``: the controller's selection.
    """

    def __init__(self, jobs, state, signals, registry, view, select) -> None:
        self.jobs = jobs
        self.state = state
        self.signals = signals
        self.registry = registry
        self.view = view
        self.select = select
        #: ``"merge"`` or ``"split"`` while the next click is for an edit, else None.
        self.armed: str | None = None

    def arm(self, kind: str | None) -> None:
        """Make the next click merge or split (``kind``), or cancel that (None)."""
        if kind is not None:
            if kind not in PROMPTS:
                raise ValueError(f"unknown edit {kind!r}")
            self.jobs.need_session()
            if self.state.selected is None:
                raise CellseekError(f"select the cell to {kind} first (click it)")
            self.signals.message.emit(PROMPTS[kind].format(cell=self.state.selected))
        elif self.armed is not None:
            self.signals.message.emit(f"{self.armed.capitalize()} cancelled.")
        self.armed = kind
        self.signals.edit_armed.emit(kind)

    def on_click(self, item, cell_id, key, point_rc):
        """Carry out the armed edit for a click (disarms it); returns the job."""
        kind, self.armed = self.armed, None
        self.signals.edit_armed.emit(None)
        selected = self.state.selected
        if selected is None or selected not in item.table:
            raise CellseekError("the selected cell is not in this image; select it again")
        if kind == "merge":
            if cell_id is None or cell_id == selected:
                raise CellseekError("click another object of the same plane to merge with")
            return self.merge(item, key, [selected, cell_id])
        return self.split(item, key, selected, point_rc)

    def merge(self, item, key, cell_ids):
        """Merge objects of one plane of ``item`` into one cell (a job)."""
        plane = item.plane(key)
        return self._edit(item, "Merging objects", "Merged into", "merge",
                          lambda session: [session.merge_cells(cell_ids, plane)])

    def split(self, item, key, cell_id, point_rc):
        """Split cell ``cell_id`` of ``item`` by a SAM click at ``point_rc`` (a job)."""
        plane = item.plane(key)
        return self._edit(item, "Splitting the object", "Split into", "split",
                          lambda session: session.split_cell(cell_id, plane, point_rc))

    def _edit(self, item, what: str, how: str, step: str, change):
        """A job that runs ``change(session)`` (the new cell ids), then shows what was saved."""
        def work(session):
            yield Progress(0, 1, step, what)
            return change(session), *self._restored(session, item)

        return self.jobs.run(what, work, on_returned=lambda r: self._done(item, *r, how))

    @staticmethod
    def _restored(session, item):
        """The image's cells as saved, with the stack to show (read in the worker)."""
        restored = session.restore_image(item.image)
        return restored, CellTable(restored.cells), item.stack_with(restored.planes)

    def _done(self, item, new_ids, restored, table, stack, how: str) -> None:
        gone = set(item.table.ids()) - set(table.ids())
        for cid in gone:  # removed from the store: no suggestion, nothing left to review
            self.state.suggestions.pop(cid, None)
        self.state.queue.mark_done(gone)
        self.registry.write_planes(item, restored.planes, stack)
        item.image_id, item.table = restored.image_id, table
        self.view.keep_suggestions(item, table.ids())
        self.view.show(item)
        self.signals.cells_changed.emit()
        self.signals.labels_changed.emit()
        cells = ", ".join(str(c) for c in new_ids)
        self.signals.message.emit(f"{how} cell{'s' if len(new_ids) > 1 else ''} {cells} "
                                  "(saved; Suggest again to update the suggestions).")
        self.select(new_ids[0])
