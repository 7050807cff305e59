"""Neighbours panel: the selected cell, its suggestion and a gallery of its nearest references.

The gallery takes the room the user gives it (the widget's splitter): tiles reflow into as many
columns as fit, and the tile size slider makes them larger or smaller. Each tile shows the
reference cell framed in its class colour, its class and its similarity.
"""

from __future__ import annotations

from html import escape

from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QColor, QIcon, QPainter, QPen, QPixmap
from qtpy.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from cellseek._napari.notify import guarded
from cellseek._napari.status import lower_first
from cellseek.annotation.colours import hex_colour

#: Who confirmed a cell, by its stored source.
BY = {"user": "by you", "accepted": "accepted", "import": "imported"}
#: Size (px) of the selected cell's crop beside its description.
CROP = 144
#: Default tile size (px) and its range.
TILE = 96
TILE_RANGE = (48, 224)


def pixmap(png: bytes | None, size: int = TILE) -> QPixmap:
    """A QPixmap from PNG bytes (grey when there is none)."""
    pm = QPixmap()
    if not png or not pm.loadFromData(png, "PNG"):
        pm = QPixmap(size, size)
        pm.fill(Qt.GlobalColor.lightGray)
    return pm.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                     Qt.TransformationMode.SmoothTransformation)


def framed(pm: QPixmap, colour: str, width: int = 4) -> QPixmap:
    """The pixmap with a frame in a class colour (cheaper than a style sheet per tile)."""
    painter = QPainter(pm)
    pen = QPen(QColor(colour))
    pen.setWidth(width)
    painter.setPen(pen)
    painter.drawRect(width // 2, width // 2, pm.width() - width, pm.height() - width)
    painter.end()
    return pm


class _Gallery(QScrollArea):
    """A scroll area whose tiles reflow when it is resized."""

    def __init__(self, panel) -> None:
        super().__init__()
        self.panel = panel
        self.setWidgetResizable(True)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(event)
        self.panel.reflow()


class NeighboursPanel(QWidget):
    """Shows the selected cell and its k nearest reference cells.

    Parameters
    ----------
    controller : AnnotationController
    """

    def __init__(self, controller, parent=None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.gallery = None
        self.tile_size = TILE
        self.crop = QLabel()
        self.crop.setFixedSize(CROP, CROP)
        self.crop.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.info = QLabel("Click a cell to see its nearest reference cells.")
        self.info.setWordWrap(True)
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self.info.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setRange(*TILE_RANGE)
        self.size_slider.setValue(TILE)
        self.size_slider.setToolTip("Size of the gallery tiles")
        self.size_slider.valueChanged.connect(self.set_tile_size)
        side = QVBoxLayout()
        side.addWidget(self.info, 1)
        zoom = QHBoxLayout()
        zoom.addWidget(QLabel("Tiles"))
        zoom.addWidget(self.size_slider, 1)
        side.addLayout(zoom)
        head = QHBoxLayout()
        head.addWidget(self.crop)
        head.addLayout(side, 1)
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setSpacing(4)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.scroll = _Gallery(self)
        self.scroll.setWidget(self.grid_host)
        self.scroll.setMinimumHeight(TILE + 50)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(head)
        layout.addWidget(self.scroll, 1)
        self.tiles: list[QToolButton] = []
        self._pool: list[QToolButton] = []
        controller.selection_changed.connect(self.show_cell)
        controller.gallery.connect(self.draw)

    def show_cell(self, cell_id) -> None:
        """A cell was selected (None clears the panel); its gallery follows (:meth:`draw`)."""
        self._clear()
        if cell_id is None or self.controller.session is None:
            self.crop.clear()
            self.info.setText("Click a cell to see its nearest reference cells.")
            return
        runner = self.controller.runner
        waiting = f" (after {lower_first(runner.what)})" \
            if runner.running is not None and not runner.running.quiet else ""
        self.info.setText(f"cell {cell_id}: looking up its nearest reference cells{waiting} …")

    def draw(self, g) -> None:
        """Draw the gallery of the selected cell."""
        self._clear()
        self.gallery = g
        self.crop.setPixmap(pixmap(g.thumbnail, CROP))
        self.info.setText(self._describe(g))
        for i, tile in enumerate(g.tiles):
            b = self._tile(i)
            b.png = tile.thumbnail
            b.colour = hex_colour(self.controller.colours.get(tile.label, (.6, .6, .6)))
            b.setText(f"{tile.label}\n{tile.similarity:.3f}")
            b.setToolTip(f"{tile.label}, similarity {tile.similarity:.3f}\n{tile.image_name} "
                         f"(t={tile.t}, z={tile.z}); click to go there when it is open")
            b.cell_id = tile.cell_id
            self._paint(b)
            b.setVisible(True)
        self.tiles = self._pool[: len(g.tiles)]
        self.reflow()

    def _paint(self, b: QToolButton) -> None:
        b.setIconSize(QSize(self.tile_size, self.tile_size))
        b.setIcon(QIcon(framed(pixmap(b.png, self.tile_size), b.colour)))

    def set_tile_size(self, size: int) -> None:
        """Draw the tiles at ``size`` pixels."""
        self.tile_size = int(size)
        for b in self.tiles:
            self._paint(b)
        self.reflow()

    def columns(self) -> int:
        """How many tiles fit side by side."""
        width = self.scroll.viewport().width()
        return max(1, width // (self.tile_size + 12))

    def reflow(self) -> None:
        """Lay the tiles out in as many columns as fit."""
        n = self.columns()
        for i, b in enumerate(self.tiles):
            self.grid.addWidget(b, i // n, i % n)

    def _tile(self, i: int) -> QToolButton:
        """The i-th tile button (made once, reused on every click)."""
        while len(self._pool) <= i:
            b = QToolButton()
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
            b.setAutoRaise(True)
            b.cell_id = None
            b.png, b.colour = None, "#999999"
            b.clicked.connect(lambda _=False, b=b: self.jump(b.cell_id))
            self.grid.addWidget(b, len(self._pool), 0)
            self._pool.append(b)
        return self._pool[i]

    def _describe(self, g) -> str:
        """The cell's state in the glossary's words, and what its neighbours say."""
        cell, s = g.cell, g.suggestion
        thr = self.controller.threshold
        lines = [f"<b>cell {cell['id']}</b> (t={cell['t']}, z={cell['z']}, {cell['area']} px)"]
        if cell["label"]:
            by = BY.get(cell["label_source"], cell["label_source"])
            lines.append(f"confirmed: <b>{escape(cell['label'])}</b> ({by})")
        elif s.best_label is None:
            lines.append("unlabelled: the reference set has no confirmed cells yet")
        else:
            state, rel = ("suggested", "≥") if s.confidence >= thr else ("uncertain", "&lt;")
            lines.append(f"{state}: best guess <b>{escape(s.best_label)}</b>, confidence "
                         f"{s.confidence:.2f} {rel} threshold {thr:.2f}")
        if s.best_label is not None:
            share = s.votes.get(s.best_label, 0.0)
            votes = sorted(s.votes.items(), key=lambda kv: -kv[1])[:4]
            lines.append("vote shares: " + ", ".join(f"{escape(k)} {v:.0%}" for k, v in votes))
            lines.append(f"confidence {s.confidence:.2f} = share {share:.2f} × familiarity "
                         f"{s.familiarity:.2f}")
        if s.size_flag and not cell["label"]:
            size = "smaller" if s.size_flag == "fragment" else "larger"
            lines.append(f"<b>{s.size_flag}?</b> far {size} than a cell of its class or "
                         "image: never accepted in bulk (merge or split it in the Segment tab)")
        return "<br>".join(lines)

    @guarded("Going to the cell")
    def jump(self, cell_id: int) -> None:
        """Go to a neighbour when its image is open."""
        self.controller.jump_to(cell_id)

    def _clear(self) -> None:
        for b in self._pool:
            b.setVisible(False)
        self.tiles = []
        self.gallery = None
