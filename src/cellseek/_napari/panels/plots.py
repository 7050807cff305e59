"""Plots panel: class composition per frame / z slice and a clickable embedding map.

The composition follows the image on screen; the map shows the cells in the space the
suggestions search (:func:`cellseek.annotation.embedding_map.session_map`). Legends sit beside
the axes, never over the data; an image of one plane gets one bar per class.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from cellseek._napari.notify import guarded
from cellseek.annotation.composition import UNCERTAIN, UNLABELLED, composition
from cellseek.annotation.embedding_map import umap_available

#: Colours of the cells without a class shown (light and darker grey).
NO_CLASS = {UNCERTAIN: (0.6, 0.6, 0.6), UNLABELLED: (0.82, 0.82, 0.82)}
#: Longest image name in a plot title (longer ones are shortened in the middle).
TITLE_CHARS = 34


def short(name: str, n: int = TITLE_CHARS) -> str:
    """``name`` shortened in the middle to at most ``n`` characters."""
    return name if len(name) <= n else name[: n // 2 - 1] + "…" + name[-(n - n // 2):]


class PlotsPanel(QWidget):
    """Two matplotlib plots on one canvas, drawn on demand.

    Parameters
    ----------
    controller : AnnotationController

    Signals
    -------
    grew()
        The canvas was made: the panel asks for more height.
    """

    grew = Signal()

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

            # constrained layout keeps titles, tick labels and the legends beside the axes
            # inside the figure
            self.figure = Figure(figsize=(4, 6), layout="constrained")
            self.canvas = FigureCanvasQTAgg(self.figure)
            self.canvas.setMinimumHeight(380)
            self.canvas.mpl_connect("pick_event", self._on_pick)
            self._layout.addWidget(self.canvas, 1)
            self.grew.emit()
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

    def _colour(self, name: str):
        return NO_CLASS.get(name) or self.controller.colours.get(name, (0.5, 0.5, 0.5))

    def _draw_composition(self) -> None:
        ax = self.ax_comp
        item = self.controller.current
        if item is None or not len(item.table):
            ax.set_title("Class composition: no cells in the reference set yet", fontsize=9)
            ax.set_axis_off()
            return
        name = short(item.image_layer.name)
        self.comp = comp = composition(item.table.cells(), axis=self.axis.currentData(),
                                       threshold=self.controller.threshold)
        values = comp.fractions if self.kind.currentText() == "fractions" else comp.counts
        ax.tick_params(labelsize=7)
        if len(comp.frames) == 1:  # one plane: one bar per class, not a one-bar time course
            y = np.arange(len(comp.classes))
            ax.barh(y, values[0], color=[self._colour(c) for c in comp.classes])
            ax.set_yticks(y, list(comp.classes))
            ax.invert_yaxis()
            ax.set_xlabel(self.kind.currentText(), fontsize=8)
            ax.set_title(f"{name}\nclasses (confirmed and suggested)", fontsize=9)
            return
        bottom = np.zeros(len(comp.frames))
        x = np.arange(len(comp.frames))
        for j, cls in enumerate(comp.classes):
            ax.bar(x, values[:, j], bottom=bottom, color=self._colour(cls), label=cls)
            bottom += values[:, j]
        axis = self.axis.currentData()
        ax.set_xticks(x, [str(f) for f in comp.frames])
        ax.set_xlabel("time point (t)" if axis == "t" else "z slice", fontsize=8)
        ax.set_ylabel(self.kind.currentText(), fontsize=8)
        ax.set_title(f"{name}\nclasses per {'frame' if axis == 't' else 'z slice'}",
                     fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)

    def _draw_map(self, data) -> None:
        from matplotlib.lines import Line2D

        ids, xy, labels, suggestions = data.ids, data.xy, data.labels, data.suggestions
        self.map_ids = ids
        ax = self.ax_map
        ax.clear()
        grey = NO_CLASS[UNCERTAIN]
        colours = self.controller.colours
        ref = np.array([lab is not None for lab in labels], bool)
        lab_c = [colours.get(lab, grey) for lab, r in zip(labels, ref) if r]
        sug_c = [colours.get(s, grey) if s else grey for s, r in zip(suggestions, ref) if not r]
        if len(ids):
            ax.scatter(xy[~ref, 0], xy[~ref, 1], s=18, facecolors="none", edgecolors=sug_c,
                       linewidths=1)
            ax.scatter(xy[ref, 0], xy[ref, 1], s=14, c=lab_c)
            # one invisible pickable layer in id order so the index maps back to a cell
            ax.scatter(xy[:, 0], xy[:, 1], s=20, alpha=0.0, picker=True, pickradius=4)
        shown = [c for c in colours if c in set(labels) | set(suggestions)]
        handles = [Line2D([], [], ls="", marker="s", ms=6, color=colours[c], label=c)
                   for c in shown]
        handles += [Line2D([], [], ls="", marker="o", ms=5, color="0.3", label="confirmed"),
                    Line2D([], [], ls="", marker="o", ms=6, mfc="none", mec="0.3",
                           label="suggested")]
        ax.set_title(f"Embedding map ({self.method.currentText()}); click a point", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  frameon=False)
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
