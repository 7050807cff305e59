"""Models panel: preset or individual models, weight presence, model weights, recompute."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cellseek._napari.notify import guarded
from cellseek._napari.runner import call_work
from cellseek.config import EmbedConfig


def _weight_report() -> dict[str, tuple[bool, str]]:
    """Weight presence of every registered model (runs in a worker: it touches caches)."""
    from cellseek.zoo import list_models, weights_available

    return {m: weights_available(m) for m in list_models()}


class ModelsPanel(QWidget):
    """Which models embed the cells (chosen when a reference set is created) and their weights.

    Parameters
    ----------
    controller : AnnotationController
    """

    def __init__(self, controller, parent=None) -> None:
        super().__init__(parent)
        from cellseek.zoo import PRESETS, list_models

        self.controller = controller
        self.presence: dict[str, tuple[bool, str]] = {}
        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS))
        self.preset.setCurrentText(EmbedConfig().preset)
        self.preset.currentTextChanged.connect(self._show_preset)
        self.models = QListWidget()
        for name in list_models():
            item = QListWidgetItem(name)
            item.setData(Qt.UserRole, name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Unchecked)
            self.models.addItem(item)
        self.models.setToolTip("Tick models to use them instead of the preset")
        self.check_button = QPushButton("Check weights")
        self.check_button.clicked.connect(self.check_weights)
        choose = QGroupBox("For a new reference set")
        form = QFormLayout(choose)
        form.addRow("Preset", self.preset)
        form.addRow("or models", self.models)
        form.addRow(self.check_button)
        self.weights_box = QGroupBox("Model weights of the open reference set")
        self.weights_grid = QGridLayout(self.weights_box)
        self.recompute = QPushButton("Recompute weights")
        self.recompute.setToolTip(
            "Entropy-guided weights from the confirmed cells; rebuilds the index")
        self.recompute.clicked.connect(self.recompute_weights)
        layout = QVBoxLayout(self)
        layout.addWidget(choose)
        layout.addWidget(self.weights_box)
        layout.addWidget(self.recompute)
        layout.addStretch(1)
        self._bars: dict[str, QProgressBar] = {}
        self._show_preset()
        controller.session_changed.connect(self.show_weights)
        controller.labels_changed.connect(self.show_weights)
        self.show_weights()

    def selection(self) -> tuple[str, tuple[str, ...]]:
        """``(preset, models)`` for :meth:`AnnotationController.create_store`."""
        ticked = tuple(self.models.item(i).data(Qt.UserRole) for i in range(self.models.count())
                       if self.models.item(i).checkState() == Qt.Checked)
        return self.preset.currentText(), ticked

    def _show_preset(self, *args) -> None:
        from cellseek.zoo import PRESETS

        members = set(PRESETS.get(self.preset.currentText(), ()))
        for i in range(self.models.count()):
            item = self.models.item(i)
            font = item.font()
            font.setBold(item.data(Qt.UserRole) in members)
            item.setFont(font)

    def check_weights(self) -> None:
        """Look up which model weights are on this machine (in a worker)."""
        self.check_button.setEnabled(False)
        self.controller.runner.run("Checking model weights", call_work(_weight_report),
                                   self._show_presence, lane="side")

    def _show_presence(self, presence: dict) -> None:
        self.presence = presence
        self.check_button.setEnabled(True)
        for i in range(self.models.count()):
            item = self.models.item(i)
            name = item.data(Qt.UserRole)
            ok, where = presence.get(name, (None, ""))
            if ok is None:
                continue
            item.setText(name + ("" if ok else "  (weights missing)"))
            item.setToolTip(where)
            item.setForeground(Qt.black if ok else Qt.gray)
        self.models.sortItems()

    def show_weights(self) -> None:
        """Draw the current model weights as horizontal bars."""
        session = self.controller.session
        models = tuple(session.models) if session is not None else ()
        if tuple(self._bars) != models or session is None:
            while self.weights_grid.count():
                w = self.weights_grid.takeAt(0).widget()
                if w is not None:
                    w.deleteLater()
            self._bars = {}
        self.recompute.setEnabled(session is not None)
        if session is None:
            self.weights_grid.addWidget(QLabel("No reference set open."), 0, 0)
            return
        weights = session.summary()["weights"]
        for row, name in enumerate(models):
            bar = self._bars.get(name)
            if bar is None:
                bar = QProgressBar()
                bar.setRange(0, 1000)
                self.weights_grid.addWidget(QLabel(name), row, 0)
                self.weights_grid.addWidget(bar, row, 1)
                self._bars[name] = bar
            bar.setValue(int(round(1000 * weights.get(name, 0.0))))
            bar.setFormat(f"{weights.get(name, 0.0):.3f}")

    @guarded("Recomputing the model weights")
    def recompute_weights(self):
        """Recompute the entropy-guided weights and rebuild the index (a job)."""
        return self.controller.sets.recompute_weights(lambda weights: self.show_weights())
