"""Plots panel: class composition per frame / z slice and a clickable embedding map.

The composition follows the image on screen; the map shows the cells in the space the
suggestions search (:func:`cellseek.annotation.embedding_map.session_map`).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from cellseek._napari.notify import guarded
from cellseek.annotation.composition import UNLABELLED, composition
from cellseek.annotation.embedding_map import umap_available


class PlotsPanel(QWidget):
    """Two matplotlib plots on one canvas, drawn on demand.

    Parameters
    ----------
    controller : AnnotationController
    """

    def __init__(self, controller, parent=None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.axis = QComboBox()
        self.axis.addItem("per frame (t)", "t")
        self.axis.addItem("per z slice", "z")
        self.kind = QComboBox()
        self.kind.addItems(["counts", "fractions"])
        self.method = QComboBox()
        self.method.addItem("PCA", "pca")
        if umap_available():
            self.method.addItem("UMAP", "umap")
        self.update_button = QPushButton("Update")
        self.update_button.clicked.connect(lambda: self.update_plots())
        row = QHBoxLayout()
        for w in (self.axis, self.kind, self.method, self.update_button):
            row.addWidget(w)
        self._layout = QVBoxLayout(self)
        self._layout.addLayout(row)
        self.canvas = None
        self.map_ids = np.zeros(0, np.int64)
        self.comp = None
        controller.current_changed.connect(self._follow_image)
        controller.labels_changed.connect(self._follow_image)

    def _follow_image(self, *args) -> None:
        """Redraw the composition when the image on screen (or its labels) changed; while the
        panel is hidden, once it is shown again."""
        if self.canvas is None:
            return
        if not self.isVisible():
            self._stale = True
            return
        self._stale = False
        self.ax_comp.clear()
        self._draw_composition()
        self.canvas.draw_idle()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if getattr(self, "_stale", False):
            self._follow_image()

    def _ensure_canvas(self):
        if self.canvas is None:
            from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
            from matplotlib.figure import Figure

            self.figure = Figure(figsize=(4, 6), tight_layout=True)
            self.canvas = FigureCanvasQTAgg(self.figure)
            self.canvas.setMinimumHeight(380)
            self.canvas.mpl_connect("pick_event", self._on_pick)
            self._layout.addWidget(self.canvas, 1)
        return self.canvas

    @guarded("Drawing the plots")
    def update_plots(self) -> None:
        """Draw the composition of the current image and start the embedding map (worker)."""
        self._ensure_canvas()
        self.figure.clear()
        self.ax_comp = self.figure.add_subplot(2, 1, 1)
        self.ax_map = self.figure.add_subplot(2, 1, 2)
        self._draw_composition()
        self.canvas.draw_idle()
        if self.controller.session is None:
            return None
        return self.controller.sets.embedding_map(self.method.currentData(), self._draw_map)

    def _draw_composition(self) -> None:
        ax = self.ax_comp
        item = self.controller.current
        if item is None or not len(item.table):
            ax.set_title("Class composition: no cells in the reference set yet", fontsize=9)
            return
        ax.set_title(f"{item.image_layer.name}: classes (confirmed + suggested)", fontsize=9)
        self.comp = comp = composition(item.table.cells(), axis=self.axis.currentData(),
                                       threshold=self.controller.threshold)
        values = comp.fractions if self.kind.currentText() == "fractions" else comp.counts
        bottom = np.zeros(len(comp.frames))
        x = np.arange(len(comp.frames))
        for j, name in enumerate(comp.classes):
            colour = (0.75, 0.75, 0.75) if name == UNLABELLED else self.controller.colours.get(
                name, (0.5, 0.5, 0.5))
            ax.bar(x, values[:, j], bottom=bottom, color=colour, label=name)
            bottom += values[:, j]
        ax.set_xticks(x, [str(f) for f in comp.frames])
        ax.set_xlabel(self.axis.currentText().split(" (")[0].replace("per ", ""), fontsize=8)
        ax.set_ylabel(self.kind.currentText(), fontsize=8)
        ax.legend(fontsize=7, loc="upper right", framealpha=0.6)
        ax.tick_params(labelsize=7)

    def _draw_map(self, data) -> None:
        ids, xy, labels, suggestions = data.ids, data.xy, data.labels, data.suggestions
        self.map_ids = ids
        ax = self.ax_map
        ax.clear()
        colours = self.controller.colours
        grey = (0.7, 0.7, 0.7)
        lab_c = [colours.get(lab, grey) if lab else grey for lab in labels]
        ref = np.array([lab is not None for lab in labels], bool)
        sug_c = [colours.get(s, grey) if s else grey for s in suggestions]
        if len(ids):
            ax.scatter(xy[~ref, 0], xy[~ref, 1], s=18, facecolors="none",
                       edgecolors=[c for c, r in zip(sug_c, ref) if not r], linewidths=1,
                       label="query (suggested)")
            ax.scatter(xy[ref, 0], xy[ref, 1], s=14, c=[c for c, r in zip(lab_c, ref) if r],
                       label="reference (confirmed)")
            # one invisible pickable layer in id order so the index maps back to a cell
            ax.scatter(xy[:, 0], xy[:, 1], s=20, alpha=0.0, picker=True, pickradius=4)
        ax.set_title(f"Embedding map ({self.method.currentText()}); click a point", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="best", framealpha=0.6)
        self.canvas.draw_idle()

    def _on_pick(self, event) -> None:
        if not len(getattr(event, "ind", [])):
            return
        self.select_point(int(event.ind[0]))

    @guarded("Selecting a cell")
    def select_point(self, index: int) -> None:
        """Select the cell of a map point (and go there when its image is open)."""
        c = self.controller
        cid = int(self.map_ids[index])
        c.select(cid, jump=c.registry.for_image_id(int(c.session.cell(cid)["image_id"]))
                 is not None)
