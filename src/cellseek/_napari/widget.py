"""The cellseek dock widget: composes the panels and wires them to one annotation session."""

from __future__ import annotations

import logging

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ._controller import AnnotationController
from ._keys import KeyBindings, shortcuts_html
from ._models_panel import ModelsPanel
from ._neighbours_panel import NeighboursPanel
from ._plots_panel import PlotsPanel
from ._reference_panel import ReferencePanel
from ._segment_panel import SegmentPanel
from ._suggest_panel import SuggestPanel
from ._workers import guarded

logger = logging.getLogger(__name__)


class CellseekWidget(QWidget):
    """Annotate cells by similarity search.

    Tabs: Segment, Models, Reference set, Suggest, Plots; below them the selected cell and its
    nearest reference cells, a progress bar and the keyboard shortcuts. One
    :class:`~cellseek.session.Session` per widget (``widget.controller.session``).

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    """

    def __init__(self, viewer: napari.viewer.Viewer, parent=None) -> None:  # noqa: F821
        super().__init__(parent)
        self.viewer = viewer
        self.controller = c = AnnotationController(viewer, self)
        self.segment = SegmentPanel(c)
        self.models = ModelsPanel(c)
        self.reference = ReferencePanel(c, self.models)
        self.suggest = SuggestPanel(c)
        self.plots = PlotsPanel(c)
        self.neighbours = NeighboursPanel(c)
        self.tabs = QTabWidget()
        for panel, name in ((self.segment, "Segment"), (self.models, "Models"),
                            (self.reference, "Reference set"), (self.suggest, "Suggest"),
                            (self.plots, "Plots")):
            self.tabs.addTab(panel, name)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(c.runner.cancel)
        bar = QHBoxLayout()
        bar.addWidget(self.progress, 1)
        bar.addWidget(self.cancel_button)
        keys = QLabel(shortcuts_html())
        keys.setWordWrap(True)
        lower = QWidget()
        low = QVBoxLayout(lower)
        low.setContentsMargins(0, 0, 0, 0)
        low.addWidget(self.status)
        low.addLayout(bar)
        low.addWidget(self.neighbours, 1)
        low.addWidget(keys)
        split = QSplitter(Qt.Vertical)  # the user decides how much room the gallery gets
        split.addWidget(self.tabs)
        split.addWidget(lower)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([300, 500])
        layout = QVBoxLayout(self)
        layout.addWidget(split)
        c.runner.started.connect(self._on_started)
        c.runner.progress.connect(self._on_progress)
        c.runner.finished.connect(self._on_finished)
        self.keys = KeyBindings({
            "accept": self.accept, "class": self.assign_class, "next": lambda: self.step(1),
            "previous": lambda: self.step(-1), "undo": self.undo,
        })
        self.keys.bind(viewer)
        c.cells_changed.connect(self._bind_layers)
        viewer.mouse_drag_callbacks.append(self._on_mouse)
        self._closed = False

    # ------------------------------------------------------------------ actions (keys, tests)
    @guarded("Accepting the suggestion")
    def accept(self) -> int:
        """Accept the suggestion of the selected cell (key A), then go to the next one."""
        n = self.controller.accept()
        if n and self.controller.queue.order:
            self.controller.review_step(1)
        return n

    @guarded("Labelling")
    def assign_class(self, number: int) -> None:
        """Give the selected cell class ``number`` (1-based) of the class list (keys 1-9)."""
        c = self.controller
        names = c.class_names()
        if c.selected is None:
            raise ValueError("click a cell first")
        if not 1 <= number <= len(names):
            raise ValueError(f"there is no class {number}; add classes in the Reference set tab")
        c.label_cells([c.selected], names[number - 1])

    @guarded("Review")
    def step(self, direction: int):
        """Next (+1) or previous (-1) uncertain cell (keys N, Shift-N)."""
        return self.controller.review_step(direction)

    @guarded("Undo")
    def undo(self):
        """Undo the last labelling step (key U)."""
        return self.controller.undo()

    @guarded("Selecting a cell")
    def handle_click(self, position, layer=None):
        """Select the cell under a world ``position`` (or segment one there in SAM click mode)."""
        c = self.controller
        layer = layer if layer is not None else self.viewer.layers.selection.active
        item, cell_id, value, key = c.cell_at(layer, position)
        if item is None or key is None:
            return None
        if value == 0 and self.segment.click_mode.isChecked():
            data = item.cells_layer.world_to_data(position[-item.cells_layer.ndim:])
            return c.segment_at(item, key, (float(data[-2]), float(data[-1])),
                                self.segment.config())
        if cell_id is None and value:
            self.status.setText("This cell is not in the reference set yet: create or open one.")
        c.select(cell_id)
        return cell_id

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

    def _bind_layers(self) -> None:
        for item in self.controller.registry.images:
            if item.cells_layer is not None:
                self.keys.bind(item.cells_layer)

    def _on_started(self, what: str) -> None:
        self.status.setText(what + " …")
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)

    def _on_progress(self, p) -> None:
        if p.total:
            self.progress.setRange(0, p.total)
            self.progress.setValue(p.done)
        self.status.setText(" ".join(x for x in (self.controller.runner.what, p.stage,
                                                 p.message) if x))

    def _on_finished(self, what: str) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self.status.setText(f"{what}: done")

    def cleanup(self) -> None:
        """Unbind keys and mouse, stop workers, close the store (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.keys.unbind()
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)
        self.segment.close_panel()
        self.controller.close()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt name
        self.cleanup()
        super().closeEvent(event)

    def __del__(self) -> None:
        try:
            self.cleanup()
        except Exception:  # noqa: BLE001 - interpreter shutdown / Qt object gone
            pass
