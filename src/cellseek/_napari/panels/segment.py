"""Segment panel: image layer, method and parameters, plane or stack, click-to-segment, and how
the cells are drawn (outline width, opacity)."""

from __future__ import annotations

from dataclasses import fields, replace

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from cellseek._napari.controller.images import same_layer
from cellseek._napari.notify import guarded
from cellseek.config import SegmentConfig
from cellseek.errors import CellseekError


class SegmentPanel(QWidget):
    """Choose the image, segment it, add single cells by clicking (SAM).

    Parameters
    ----------
    controller : AnnotationController
    """

    def __init__(self, controller, parent=None) -> None:
        super().__init__(parent)
        from cellseek.segment import METHODS
        from cellseek.segment.classical import STAINS, TARGETS

        self.controller = controller
        self._layers: list = []
        names = {f.name for f in fields(SegmentConfig)}
        self.image_combo = QComboBox()
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.image_combo.activated.connect(self._on_image_chosen)  # by the user
        self.method = QComboBox()
        self.method.addItems(list(METHODS))
        self.stain = QComboBox()
        self.stain.addItems(list(STAINS))
        self.target = QComboBox()  # shown only when SegmentConfig has a ``target`` field
        self.target.addItems(list(TARGETS))
        self.target.setVisible("target" in names)
        self.min_area = QSpinBox(maximum=10_000_000)
        self.max_area = QSpinBox(maximum=100_000_000, specialValueText="no limit")
        self.exclude_border = QCheckBox("drop cells touching the border")
        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Method", self.method)
        form.addRow("Stain", self.stain)
        if "target" in names:
            form.addRow("Target", self.target)
        form.addRow("Min area (px)", self.min_area)
        form.addRow("Max area (px)", self.max_area)
        form.addRow("", self.exclude_border)
        self.plane_button = QPushButton("Segment plane")
        self.plane_button.setToolTip("Segment the plane on screen")
        self.stack_button = QPushButton("Segment stack")
        self.stack_button.setToolTip("Segment every time point and z slice")
        self.defaults_button = QPushButton("Defaults")
        self.plane_button.clicked.connect(lambda: self.run(whole_stack=False))
        self.stack_button.clicked.connect(lambda: self.run(whole_stack=True))
        self.defaults_button.clicked.connect(self.reset)
        row = QHBoxLayout()
        for b in (self.plane_button, self.stack_button, self.defaults_button):
            row.addWidget(b)
        self.click_mode = QPushButton("Click to add a cell (SAM)")
        self.click_mode.setCheckable(True)
        self.click_mode.setToolTip(
            "Click an unsegmented cell to segment it with a SAM point prompt")
        self.click_mode.toggled.connect(self._on_click_mode)
        self.merge_button = QPushButton("Merge with…")
        self.merge_button.setToolTip("Merge the selected cell with the next object you click "
                                     "(a cell cut into pieces)")
        self.split_button = QPushButton("Split at…")
        self.split_button.setToolTip("Split the selected cell: click inside it on the part to "
                                     "cut off (SAM segments that part)")
        edits = QHBoxLayout()
        for kind, b in (("merge", self.merge_button), ("split", self.split_button)):
            b.setCheckable(True)
            b.toggled.connect(lambda on, kind=kind: self._on_edit(kind, on))
            edits.addWidget(b)
        controller.edit_armed.connect(self._show_armed)
        self.sam_model = QLabel()  # which SAM model clicks use, and why (once switched on: the
        self.sam_model.setWordWrap(True)  # choice looks for a GPU, which loads torch)
        self.sam_model.setVisible(False)
        registry = controller.registry
        self.outline = QSpinBox(minimum=0, maximum=10, value=registry.outline_width)
        self.outline.setSpecialValueText("filled")
        self.outline.setSuffix(" px")
        self.outline.setToolTip("Outline width of the cells (0: filled)")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(round(100 * registry.opacity))
        self.opacity.setToolTip("Opacity of the cells layers")
        self.outline.valueChanged.connect(lambda v: registry.set_style(outline_width=v))
        self.opacity.valueChanged.connect(lambda v: registry.set_style(opacity=v / 100))
        look = QHBoxLayout()
        look.addWidget(self.outline)
        look.addWidget(self.opacity, 1)
        shown = QFormLayout()
        shown.addRow("Cells drawn", look)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(row)
        layout.addWidget(self.click_mode)
        layout.addLayout(edits)
        layout.addWidget(self.sam_model)
        layout.addLayout(shown)
        layout.addStretch(1)
        self.reset()
        events = controller.viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self.refresh_layers)
        controller.current_changed.connect(self._follow_current)
        controller.sam_reason.connect(self._show_sam_reason)
        self.refresh_layers()

    def close_panel(self) -> None:
        """Stop listening to the viewer."""
        events = self.controller.viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.disconnect(self.refresh_layers)

    def reset(self) -> None:
        """Put every parameter back to the :class:`SegmentConfig` default."""
        d = SegmentConfig()
        self.method.setCurrentText(d.method)
        self.stain.setCurrentText(d.stain)
        self.target.setCurrentText(getattr(d, "target", "auto"))
        self.min_area.setValue(d.min_area)
        self.max_area.setValue(d.max_area)
        self.exclude_border.setChecked(d.exclude_border)

    def config(self) -> SegmentConfig:
        """The settings shown, as a :class:`SegmentConfig`."""
        kw = dict(method=self.method.currentText(), stain=self.stain.currentText(),
                  min_area=self.min_area.value(), max_area=self.max_area.value(),
                  exclude_border=self.exclude_border.isChecked())
        if "target" in {f.name for f in fields(SegmentConfig)}:
            kw["target"] = self.target.currentText()
        return replace(SegmentConfig(), **kw)

    def refresh_layers(self, event=None) -> None:
        """List the viewer's image layers (the plugin's own layers are left out)."""
        from napari.layers import Image

        chosen = self.image_layer()
        self._layers = [ly for ly in self.controller.viewer.layers if isinstance(ly, Image)]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems([ly.name for ly in self._layers])
        if chosen in self._layers:
            self.image_combo.setCurrentIndex(self._layers.index(chosen))
        self.image_combo.blockSignals(False)
        self._on_image_changed()

    def image_layer(self):
        """The chosen image layer, or None."""
        i = self.image_combo.currentIndex()
        return self._layers[i] if 0 <= i < len(self._layers) else None

    def select_layer(self, layer) -> None:
        """Choose an image layer programmatically."""
        self.image_combo.setCurrentIndex(self._layers.index(layer))

    def _follow_current(self, item) -> None:
        """Show the image the controller works on (after a click or a jump to another image)."""
        if item is not None and item.image_layer in self._layers:
            self.image_combo.blockSignals(True)
            self.image_combo.setCurrentIndex(self._layers.index(item.image_layer))
            self.image_combo.blockSignals(False)

    @guarded("Choosing the image")
    def _on_image_changed(self, *args) -> None:
        layer = self.image_layer()
        current = self.controller.current
        if not same_layer(layer, current.image_layer if current is not None else None):
            self.controller.set_image_layer(layer)

    @guarded("Choosing the image")
    def _on_image_chosen(self, *args) -> None:
        """The user picked an image: it is shown (also when N hid it) and becomes active."""
        layer = self.image_layer()
        if layer is not None:
            self.controller.choose_image(layer)

    @guarded("Segmentation")
    def run(self, *, whole_stack: bool = False):
        """Segment the current plane or the whole stack."""
        return self.controller.segmenting.segment(self.config(), whole_stack=whole_stack)

    def _show_sam_reason(self, reason: str) -> None:
        """Say which SAM model segments and why (after a SAM segmentation, or clicks on)."""
        self.sam_model.setText(reason)
        self.sam_model.setVisible(bool(reason))

    def _on_click_mode(self, on: bool) -> None:
        if not on:
            return
        from cellseek._napari.controller.segmenting import sam_missing

        missing = sam_missing(self.config().sam_model, self.controller.config.embed.weights_dir)
        if missing is not None:
            from cellseek._napari.notify import warn

            warn(f"Click-to-segment needs SAM, but {missing}.")
            self.click_mode.setChecked(False)
            self.click_mode.setEnabled(False)
            self.click_mode.setToolTip("SAM weights missing: " + missing)
            return
        self._show_sam_reason(self.controller.segmenting.sam_choice()[1])
        self.controller.segmenting.precompute_sam(self.config())

    def _on_edit(self, kind: str, on: bool) -> None:
        """Arm (or cancel) a merge or a split for the next click."""
        editing = self.controller.editing
        if on and editing.armed != kind:
            try:
                editing.arm(kind)
            except CellseekError as exc:  # said in one line, the button goes back
                from cellseek._napari.notify import warn

                warn(f"Cannot {kind}: {exc}")
                self._show_armed(editing.armed)
        elif not on and editing.armed == kind:
            editing.arm(None)

    def _show_armed(self, kind) -> None:
        """Check the button of the armed edit only (the click was used, or the other armed)."""
        for name, b in (("merge", self.merge_button), ("split", self.split_button)):
            b.blockSignals(True)
            b.setChecked(kind == name)
            b.blockSignals(False)
