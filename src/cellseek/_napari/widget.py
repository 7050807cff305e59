"""The cellseek dock widget: composes the panels and wires them to one annotation session."""

from __future__ import annotations

import gc
import logging
import sys

from qtpy.QtCore import QEvent, Qt
from qtpy.QtWidgets import QLabel, QSizePolicy, QSplitter, QTabWidget, QVBoxLayout, QWidget

from .controller import AnnotationController
from .keys import OWN_HELP, KeyFilter, help_without, shortcuts_html
from .notify import guarded
from .panels import (
    ModelsPanel,
    NeighboursPanel,
    PlotsPanel,
    ReferencePanel,
    SegmentPanel,
    SuggestPanel,
)
from .runner import call_work
from .status import StatusBar, lower_first

logger = logging.getLogger(__name__)


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
        self._helping = False
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
        self.status = StatusBar(c.runner, on_cancel=self.cancel, on_text=self._to_viewer)
        self.progress, self.cancel_button = self.status.progress, self.status.cancel_button
        keys = QLabel(shortcuts_html())
        keys.setWordWrap(True)
        keys.setToolTip("Keys work whichever layer is selected (not while typing in a field)")
        layout = QVBoxLayout(self)
        layout.addWidget(self.split, 1)
        layout.addWidget(self.status)
        layout.addWidget(keys)
        c.message.connect(self.say)
        for grows in (c.classes_changed, self.plots.grew):  # the page on show asks for more
            grows.connect(lambda: self._fit_tabs(self.tabs.currentIndex()))
        self.keys = KeyFilter(self, {
            "accept": self.accept, "class": self.assign_class, "next": lambda: self.step(1),
            "previous": lambda: self.step(-1), "undo": self.undo,
        })
        self.keys.install()
        freeze_new_imports()  # napari's and Qt's objects so far
        self._warm = None
        c.runner.started.connect(self._warm_up)
        c.runner.idle.connect(freeze_new_imports)
        viewer.events.help.connect(self._on_help)
        viewer.mouse_drag_callbacks.append(self._on_mouse)
        self.destroyed.connect(lambda *_: _teardown(self))

    # ------------------------------------------------------------------ actions (keys, tests)
    def say(self, text: str) -> None:
        """Show a line in the widget's status and in napari's status bar."""
        self.status.say(text)

    def _to_viewer(self, text: str) -> None:
        try:
            self.viewer.status = text or "Ready"
        except (AttributeError, RuntimeError):  # a viewer model without a status
            pass

    def _selected_or_say(self, what: str) -> int | None:
        self.status.clear()
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
        return self.controller.labelling.accept(then_next=True)

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
        return c.labelling.label_cells([cell], c.sets.class_of_key(number))

    @guarded("Review")
    def step(self, direction: int):
        """Next (+1) or previous (-1) uncertain cell (keys N, Shift-N)."""
        self.status.clear()
        return self.controller.labelling.review_step(direction)

    @guarded("Undo")
    def undo(self):
        """Undo the last labelling step (key U)."""
        self.status.clear()
        if self.controller.session is None:
            self.say("Nothing to undo: no reference set is open.")
            return None
        return self.controller.labelling.undo()

    @guarded("Cancelling")
    def cancel(self) -> list:
        """Stop the running job and drop the waiting ones (the Cancel button)."""
        stopped = self.controller.runner.cancel()
        if stopped:
            rest = f"; dropped {len(stopped) - 1} waiting" if len(stopped) > 1 else ""
            self.say(f"Cancelling {lower_first(stopped[0].what)} (it stops at its next step; a "
                     f"single step such as a merge or an export finishes){rest}.")
        return stopped

    @guarded("Selecting a cell")
    def handle_click(self, position):
        """Select the cell under a world ``position`` (or segment one there in SAM click mode)."""
        self.status.clear()
        clicks = self.segment.click_mode.isChecked()
        return self.controller.click(position,
                                     segment_config=self.segment.config() if clicks else None)

    def _warm_up(self, *_) -> None:
        """With the first work asked for: import, beside the GUI thread, what its result will
        make the GUI thread import (pandas, for napari's first cells layer: 0.85 s in a
        profile), then take it out of the garbage collector's sight."""
        if self._warm is None:
            self._warm = self.controller.runner.run(
                "Preparing", call_work(_warm_imports), on_returned=freeze_new_imports,
                lane="side")

    # ------------------------------------------------------------------ napari's help line
    def _on_help(self, event=None) -> None:
        """While the keys are ours, napari's help line does not offer its own meaning of them."""
        if self._helping:
            return
        text = self.viewer.help
        if self.keys.active:
            wanted = help_without(text)
        else:
            wanted = text if OWN_HELP not in text else _napari_help(self.viewer)
        if wanted != text:
            self._helping = True
            try:
                self.viewer.help = wanted
            finally:
                self._helping = False

    def showEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().showEvent(event)
        if not self._closed:
            self._on_help()

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().hideEvent(event)
        if not self._closed:
            self._on_help()  # hidden: the keys are napari's again, and so is the help line

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
        lambda: widget.viewer.events.help.disconnect(widget._on_help),
        lambda: setattr(widget.viewer, "help", _napari_help(widget.viewer))
        if OWN_HELP in widget.viewer.help else None,
        lambda: setattr(widget.viewer, "status", "Ready")  # our last line, not napari's
        if widget.status.mirrored and widget.viewer.status == widget.status.mirrored else None,
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


def _napari_help(viewer) -> str:
    """napari's own help line: the active layer's."""
    active = viewer.layers.selection.active
    return active.help if active is not None else ""


def _warm_imports() -> None:
    """Import what the GUI thread would import on first use (napari's layer features need
    pandas; the ring on the selected cell, skimage's contours)."""
    import pandas  # noqa: F401
    import skimage.measure  # noqa: F401


_modules_frozen = [0]


def freeze_new_imports(*_) -> None:
    """Take what was imported since the last call out of the garbage collector's sight.

    A full collection scans every object alive; with napari, Qt, pandas, scipy, scikit-image
    and scikit-learn loaded it took up to 0.19 s of CPU, the GUI thread stopped
    (``scripts/bench_napari.py loop``, docs/benchmarks.md). Modules, their classes and
    functions live as long as the process: ``gc.freeze`` moves everything alive now into a
    generation the collector skips. Called when new modules appeared since the last call, so
    the objects of work in progress are frozen rarely (a frozen object in a reference cycle
    that dies later is not reclaimed).
    """
    n = len(sys.modules)
    if n > _modules_frozen[0]:
        gc.freeze()
        _modules_frozen[0] = n
