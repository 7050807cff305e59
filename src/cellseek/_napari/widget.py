"""The cellseek dock widget: composes the panels and wires them to one annotation session."""

from __future__ import annotations

import logging
import time

from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ._controller import AnnotationController
from ._keys import KeyFilter, shortcuts_html
from ._models_panel import ModelsPanel
from ._neighbours_panel import NeighboursPanel
from ._plots_panel import PlotsPanel
from ._reference_panel import ReferencePanel
from ._segment_panel import SegmentPanel
from ._suggest_panel import SuggestPanel
from ._workers import guarded

logger = logging.getLogger(__name__)

#: A job's progress bar and Cancel button show once it has run this long (ms).
PROGRESS_DELAY_MS = 300
#: The progress bar and status follow a job's progress at most this often (s).
PROGRESS_EVERY_S = 0.15


class _StatusLine(QLabel):
    """One line of status text: elided when too long (the whole text in its tooltip), so it
    never changes the height of the widget."""

    def __init__(self) -> None:
        super().__init__("")
        self._full = ""
        self.setMinimumWidth(50)
        self.setFixedHeight(self.fontMetrics().height() + 4)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt name
        self._full = text
        self.setToolTip(text)
        width = max(self.width() - 4, 50)
        super().setText(self.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, width))

    def text(self) -> str:
        """The whole status text (not the elided one on screen)."""
        return self._full

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(event)
        self.setText(self._full)


class CellseekWidget(QWidget):
    """Annotate cells by similarity search.

    Tabs: Segment, Models, Reference set, Suggest, Plots; below them (in a splitter the user can
    drag) the selected cell and the gallery of its nearest reference cells; at the bottom the
    status line with the progress bar, Cancel, and the keyboard shortcuts. One
    :class:`~cellseek.session.Session` per widget (``widget.controller.session``).

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    """

    def __init__(self, viewer: napari.viewer.Viewer, parent=None) -> None:  # noqa: F821
        super().__init__(parent)
        self.viewer = viewer
        self._closed = False
        self._said = False
        self.controller = c = AnnotationController(viewer, self)
        self.segment = SegmentPanel(c)
        self.models = ModelsPanel(c)
        self.reference = ReferencePanel(c, self.models)
        self.suggest = SuggestPanel(c)
        self.plots = PlotsPanel(c)
        self.neighbours = NeighboursPanel(c)
        self.tabs = QTabWidget()
        self.tabs.setUsesScrollButtons(True)
        for panel, name in ((self.segment, "Segment"), (self.models, "Models"),
                            (self.reference, "Reference set"), (self.suggest, "Suggest"),
                            (self.plots, "Plots")):
            self.tabs.addTab(panel, name)
        self.split = QSplitter(Qt.Orientation.Vertical)  # the user decides the gallery's room
        self.split.addWidget(self.tabs)
        self.split.addWidget(self.neighbours)
        self.split.setStretchFactor(0, 0)
        self.split.setStretchFactor(1, 1)
        self.split.setChildrenCollapsible(False)
        self._split_by_user = False
        self.split.splitterMoved.connect(self._on_split_moved)
        self.tabs.currentChanged.connect(self._fit_tabs)
        self._fit_tabs(self.tabs.currentIndex())
        # The status line, the progress bar and Cancel keep their size whatever they show: a
        # layout change would resize (and redraw) the whole window, canvas included.
        self.status = _StatusLine()
        self.progress = QProgressBar()
        self.cancel_button = QPushButton("Cancel")
        for w in (self.progress, self.cancel_button):
            policy = w.sizePolicy()
            policy.setRetainSizeWhenHidden(True)
            w.setSizePolicy(policy)
            w.setVisible(False)
        self.cancel_button.setToolTip("Stop the work in progress and the work waiting after it")
        self.cancel_button.clicked.connect(lambda: self.cancel())
        bar = QHBoxLayout()
        bar.addWidget(self.progress, 1)
        bar.addWidget(self.cancel_button)
        keys = QLabel(shortcuts_html())
        keys.setWordWrap(True)
        keys.setToolTip("Keys work whichever layer is selected (not while typing in a field)")
        layout = QVBoxLayout(self)
        layout.addWidget(self.split, 1)
        layout.addWidget(self.status)
        layout.addLayout(bar)
        layout.addWidget(keys)
        self._last_progress = 0.0
        self._progress_timer = QTimer(self)
        self._progress_timer.setSingleShot(True)
        self._progress_timer.timeout.connect(self._show_progress)
        c.runner.started.connect(self._on_started)
        c.runner.progress.connect(self._on_progress)
        c.runner.finished.connect(self._on_finished)
        c.runner.queued.connect(self._on_queued)
        c.message.connect(self.say)
        self.keys = KeyFilter(self, {
            "accept": self.accept, "class": self.assign_class, "next": lambda: self.step(1),
            "previous": lambda: self.step(-1), "undo": self.undo,
        })
        self.keys.install()
        viewer.mouse_drag_callbacks.append(self._on_mouse)
        self.destroyed.connect(lambda *_: _teardown(self))

    # ------------------------------------------------------------------ actions (keys, tests)
    def say(self, text: str) -> None:
        """Show a line in the widget's status and in napari's status bar."""
        self._said = True
        self.status.setText(text)
        try:
            self.viewer.status = text
        except (AttributeError, RuntimeError):  # a viewer model without a status
            pass

    def _selected_or_say(self, what: str) -> int | None:
        c = self.controller
        if c.session is None:
            self.say("Open or create a reference set first (Reference set tab).")
            return None
        if c.selected is None:
            self.say(f"No cell selected: click a cell first, then press {what}.")
            return None
        return c.selected

    @guarded("Accepting the suggestion")
    def accept(self):
        """Accept the suggestion of the selected cell (key A), then go to the next one."""
        if self._selected_or_say("A") is None:
            return None
        return self.controller.accept(then_next=True)

    @guarded("Labelling")
    def assign_class(self, number: int):
        """Give the selected cell the class of key ``number`` (keys 1-9)."""
        cell = self._selected_or_say(str(number))
        if cell is None:
            return None
        c = self.controller
        if not any(info.key == number for info in c.classes):
            self.say(f"There is no class {number}: the reference set has {len(c.classes)} "
                     "classes. Add classes in the Reference set tab.")
            return None
        return c.label_cells([cell], c.class_of_key(number))

    @guarded("Review")
    def step(self, direction: int):
        """Next (+1) or previous (-1) uncertain cell (keys N, Shift-N)."""
        return self.controller.review_step(direction)

    @guarded("Undo")
    def undo(self):
        """Undo the last labelling step (key U)."""
        if self.controller.session is None:
            self.say("Nothing to undo: no reference set is open.")
            return None
        return self.controller.undo()

    @guarded("Cancelling")
    def cancel(self) -> list:
        """Stop the running job and drop the waiting ones (the Cancel button)."""
        stopped = self.controller.runner.cancel()
        if stopped:
            rest = f"; dropped {len(stopped) - 1} waiting" if len(stopped) > 1 else ""
            self.say(f"Cancelling {stopped[0].what.lower()} (it stops at its next step; a "
                     f"single step such as a merge or an export finishes){rest}.")
        return stopped

    @guarded("Selecting a cell")
    def handle_click(self, position):
        """Select the cell under a world ``position`` (or segment one there in SAM click mode)."""
        c = self.controller
        item, cell_id, label_value, key = c.cell_at(position)
        if item is None or key is None:
            return None
        if label_value == 0 and self.segment.click_mode.isChecked():
            data = item.cells_layer.world_to_data(position[-item.cells_layer.ndim:])
            return c.segment_at(item, key, (float(data[-2]), float(data[-1])),
                                self.segment.config())
        if item is not c.current:
            c.show_image(item)
        if cell_id is None and label_value:
            self.say("This cell is not in the reference set yet: create or open one (Reference "
                     "set tab); its cells are embedded then.")
        c.select(cell_id)
        return cell_id

    # ------------------------------------------------------------------ layout
    def _fit_tabs(self, index: int) -> None:
        """Give the tabs the height of the page on show and the gallery the rest (until the
        user drags the divider: then their choice stays)."""
        for i in range(self.tabs.count()):
            page = self.tabs.widget(i)
            page.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred
                               if i == index else QSizePolicy.Policy.Ignored)
        if self._split_by_user:
            return
        page = self.tabs.widget(index)
        wanted = page.sizeHint().height() + self.tabs.tabBar().sizeHint().height() + 12
        total = max(sum(self.split.sizes()), 800)
        self.split.setSizes([wanted, max(total - wanted, 200)])

    def _on_split_moved(self, *args) -> None:
        self._split_by_user = True

    # ------------------------------------------------------------------ wiring
    def _on_mouse(self, viewer, event):
        if self._closed or event.button != 1 or event.modifiers:
            return
        yield
        dragged = False
        while event.type == "mouse_move":
            dragged = True
            yield
        if not dragged:
            self.handle_click(tuple(event.position))

    def _on_started(self, job) -> None:
        self._said = False
        if not job.quiet:
            self.status.setText(job.what + " …")
        self.progress.setRange(0, 0)
        self._progress_timer.start(PROGRESS_DELAY_MS)

    def _show_progress(self) -> None:
        if self.controller.runner.running is not None:
            self.progress.setVisible(True)
            self.cancel_button.setVisible(True)

    def _on_progress(self, p) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_S and p.done != p.total:
            return  # a few updates a second are enough to read
        self._last_progress = now
        if p.total:
            # QProgressBar.setValue repaints at once (17-46 ms beside napari's OpenGL canvas on
            # a software renderer); painted with the next regular update instead
            self.progress.setUpdatesEnabled(False)
            self.progress.setRange(0, p.total)
            self.progress.setValue(p.done)
            self.progress.setUpdatesEnabled(True)
            self.progress.update()
        job = self.controller.runner.running
        if job is not None and not job.quiet:
            self.status.setText(" ".join(x for x in (job.what, p.stage, p.message) if x))

    def _on_queued(self, job) -> None:
        runner = self.controller.runner
        self.say(f"{job.what} waits until {runner.what.lower()} has finished "
                 f"({len(runner.waiting)} waiting).")

    def _on_finished(self, job) -> None:
        runner = self.controller.runner
        if not runner.busy:
            self._progress_timer.stop()
            self.progress.setVisible(False)
            self.cancel_button.setVisible(False)
        if job.state == "done" and self._said:
            return  # the job's result said something more useful than "done"
        if not job.quiet or job.state != "done":
            words = {"done": "done", "failed": "failed", "cancelled": "cancelled"}
            self.status.setText(f"{job.what}: {words.get(job.state, job.state)}")

    def event(self, event) -> bool:  # noqa: D102 - Qt
        # napari's dock close button (x) takes the widget out of its dock: clean up then
        if (event.type() == QEvent.Type.ParentChange and self.parent() is None
                and getattr(self, "_was_docked", False)):
            self.cleanup()
        elif event.type() == QEvent.Type.ParentChange and self.parent() is not None:
            self._was_docked = True
        return super().event(event)

    def cleanup(self) -> None:
        """Unbind keys and mouse, stop jobs, close the store (idempotent)."""
        _teardown(self)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt name
        self.cleanup()
        super().closeEvent(event)


def _teardown(widget: CellseekWidget) -> None:
    """Release everything the widget holds in the viewer; safe when Qt objects are gone."""
    if widget._closed:
        return
    widget._closed = True
    steps = (
        widget.keys.remove,
        lambda: widget.viewer.mouse_drag_callbacks.remove(widget._on_mouse)
        if widget._on_mouse in widget.viewer.mouse_drag_callbacks else None,
        widget.segment.close_panel,
        widget.controller.close,
    )
    for step in steps:
        try:
            step()
        except (RuntimeError, ValueError, TypeError) as exc:  # Qt object already deleted
            logger.debug("cleanup step failed: %s", exc)
