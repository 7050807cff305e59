"""Neighbours panel: the selected cell, its suggestion and a gallery of its nearest references."""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QColor, QIcon, QPainter, QPen, QPixmap
from qtpy.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from cellseek.annotation.colours import hex_colour

from ._workers import guarded

TILE = 64
COLUMNS = 4


def pixmap(png: bytes | None, size: int = TILE) -> QPixmap:
    """A QPixmap from PNG bytes (grey when there is none)."""
    pm = QPixmap()
    if not png or not pm.loadFromData(png, "PNG"):
        pm = QPixmap(size, size)
        pm.fill(Qt.lightGray)
    return pm.scaled(size, size, Qt.KeepAspectRatio, Qt.SmoothTransformation)


def framed(pm: QPixmap, colour: str, width: int = 4) -> QPixmap:
    """The pixmap with a frame in a class colour (cheaper than a style sheet per tile)."""
    painter = QPainter(pm)
    pen = QPen(QColor(colour))
    pen.setWidth(width)
    painter.setPen(pen)
    painter.drawRect(width // 2, width // 2, pm.width() - width, pm.height() - width)
    painter.end()
    return pm


class NeighboursPanel(QWidget):
    """Shows the selected cell and its k nearest labelled reference cells.

    Parameters
    ----------
    controller : AnnotationController
    """

    def __init__(self, controller, parent=None) -> None:
        super().__init__(parent)
        from cellseek.annotation.gallery import neighbour_gallery

        self._gallery_of = neighbour_gallery
        self.controller = controller
        self.gallery = None
        self.crop = QLabel()
        self.crop.setFixedSize(2 * TILE, 2 * TILE)
        self.crop.setAlignment(Qt.AlignCenter)
        self.info = QLabel("Click a cell to see its nearest reference cells.")
        self.info.setWordWrap(True)
        self.info.setTextFormat(Qt.RichText)
        head = QHBoxLayout()
        head.addWidget(self.crop)
        head.addWidget(self.info, 1)
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setSpacing(2)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_host)
        scroll.setMinimumHeight(TILE + 60)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(head)
        layout.addWidget(scroll, 1)
        self.tiles: list[QToolButton] = []
        self._pool: list[QToolButton] = []
        controller.selection_changed.connect(self.show_cell)

    @guarded("Looking up the nearest cells")
    def show_cell(self, cell_id) -> None:
        """Show a cell (None clears the panel)."""
        self._clear()
        session = self.controller.session
        runner = getattr(self.controller, "runner", None)
        if cell_id is not None and runner is not None and runner.busy:
            self.info.setText(f"cell {cell_id}: its neighbours show when {runner.what.lower()} "
                              "has finished; click it again then.")
            return
        if cell_id is None or session is None:
            self.crop.clear()
            self.info.setText("Click a cell to see its nearest reference cells.")
            return
        self.gallery = g = self._gallery_of(session, int(cell_id))
        self.crop.setPixmap(pixmap(g.thumbnail, 2 * TILE))
        self.info.setText(self._describe(g))
        for i, tile in enumerate(g.tiles):
            b = self._tile(i)
            colour = hex_colour(self.controller.colours.get(tile.label, (.6, .6, .6)))
            b.setIcon(QIcon(framed(pixmap(tile.thumbnail), colour)))
            b.setText(f"{tile.label}\n{tile.similarity:.3f}")
            b.setToolTip(f"{tile.label}, similarity {tile.similarity:.3f}\n{tile.image_name} "
                         f"(t={tile.t}, z={tile.z}); click to go there when it is open")
            b.cell_id = tile.cell_id
            b.setVisible(True)
        self.tiles = self._pool[: len(g.tiles)]

    def _tile(self, i: int) -> QToolButton:
        """The i-th tile button (made once, reused on every click)."""
        while len(self._pool) <= i:
            b = QToolButton()
            b.setToolButtonStyle(Qt.ToolButtonTextUnderIcon)
            b.setIconSize(QSize(TILE, TILE))
            b.setAutoRaise(True)
            b.cell_id = None
            b.clicked.connect(lambda _=False, b=b: self.jump(b.cell_id))
            n = len(self._pool)
            self.grid.addWidget(b, n // COLUMNS, n % COLUMNS)
            self._pool.append(b)
        return self._pool[i]

    def _describe(self, g) -> str:
        cell, s = g.cell, g.suggestion
        thr = self.controller.threshold
        lines = [f"<b>cell {cell['id']}</b> (t={cell['t']}, z={cell['z']}, {cell['area']} px)"]
        if cell["label"]:
            lines.append(f"confirmed: <b>{cell['label']}</b> ({cell['label_source']})")
        if s.best_label is None:
            lines.append("no suggestion: the reference set has no labelled cells yet")
        else:
            verdict = "suggested" if s.confidence >= thr else "uncertain, best guess"
            lines.append(f"{verdict}: <b>{s.best_label}</b> (confidence {s.confidence:.2f})")
            votes = sorted(s.votes.items(), key=lambda kv: -kv[1])[:4]
            lines.append("votes: " + ", ".join(f"{k} {v:.2f}" for k, v in votes))
        return "<br>".join(lines)

    def jump(self, cell_id: int) -> None:
        """Go to a neighbour when its image is open."""
        self.controller.jump_to(cell_id)

    def _clear(self) -> None:
        for b in self._pool:
            b.setVisible(False)
        self.tiles = []
        self.gallery = None
