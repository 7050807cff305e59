"""Suggest panel: run suggestions, confidence threshold, accept above it, the review queue."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from cellseek._napari.notify import guarded
from cellseek.text import cells_text

SCOPES = {"plane": "current plane", "stack": "whole stack", "store": "every unconfirmed cell"}


class SuggestPanel(QWidget):
    """Suggest classes from the reference set and review the uncertain cells.

    Parameters
    ----------
    controller : AnnotationController
    """

    def __init__(self, controller, parent=None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.scope = QComboBox()
        for key, text in SCOPES.items():
            self.scope.addItem(text, key)
        self.run_button = QPushButton("Suggest")
        self.run_button.clicked.connect(lambda: self.run())
        top = QHBoxLayout()
        top.addWidget(self.scope, 1)
        top.addWidget(self.run_button)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setValue(round(100 * controller.threshold))
        self.slider.valueChanged.connect(self._on_slider)
        self.threshold_label = QLabel()
        thr = QHBoxLayout()
        thr.addWidget(QLabel("Confidence ≥"))
        thr.addWidget(self.slider, 1)
        thr.addWidget(self.threshold_label)
        self.accept_all_button = QPushButton("Accept all above threshold")
        self.accept_all_button.clicked.connect(lambda: self.accept_all())
        self.queue_label = QLabel()
        self.queue_label.setWordWrap(True)
        self.prev_button = QPushButton("◀ Previous")
        self.prev_button.setToolTip("Previous uncertain cell (Shift-N)")
        self.next_button = QPushButton("Next uncertain ▶")
        self.next_button.setToolTip("Next uncertain cell of the review queue (N)")
        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(+1))
        nav = QHBoxLayout()
        nav.addWidget(self.prev_button)
        nav.addWidget(self.next_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(thr)
        layout.addWidget(self.accept_all_button)
        layout.addWidget(self.queue_label)
        layout.addLayout(nav)
        layout.addStretch(1)
        controller.labels_changed.connect(self.refresh)
        controller.session_changed.connect(self._sync_threshold)
        self.refresh()

    @guarded("Suggestion")
    def run(self, scope: str | None = None):
        """Suggest classes for the chosen scope (a worker)."""
        return self.controller.labelling.suggest(scope=scope or self.scope.currentData())

    @guarded("Accepting suggestions")
    def accept_all(self) -> int:
        """Confirm every suggestion at or above the threshold."""
        return self.controller.labelling.accept_all_above()

    @guarded("Review")
    def step(self, direction: int):
        """Go to the next (+1) or previous (-1) uncertain cell."""
        return self.controller.labelling.review_step(direction)

    def _on_slider(self, value: int) -> None:
        self.controller.labelling.set_threshold(value / 100)

    def _sync_threshold(self) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(100 * self.controller.threshold))
        self.slider.blockSignals(False)
        self.refresh()

    def refresh(self) -> None:
        """Show the threshold and the size of the review queue."""
        c = self.controller
        self.threshold_label.setText(f"{c.threshold:.2f}")
        n_sugg = len(c.suggestions)
        self.queue_label.setText(
            f"{cells_text(n_sugg)} with a best guess; {len(c.queue)} uncertain left to review"
            if n_sugg else "No suggestions yet: confirm a few cells of each class (keys 1-9), "
            "then Suggest."
        )
