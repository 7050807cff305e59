"""Reference set panel: create/open a store, classes (colour, count), import and export."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cellseek._napari.notify import guarded
from cellseek.annotation.colours import hex_colour
from cellseek.text import cells_text

STORE_FILTER = "cellseek reference sets (*.cellseek);;All files (*)"
#: The class table asks for room for this many rows (more scroll): keys 1-9 and a few more.
ROWS_SHOWN = 12


class ClassTable(QTableWidget):
    """The class table, compact, asking for the height of its rows (up to :data:`ROWS_SHOWN`)
    so that every class with a key is in sight."""

    def __init__(self, rows: int, columns: int) -> None:
        super().__init__(rows, columns)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)

    def _height(self) -> int:
        rows = min(max(self.rowCount(), 3), ROWS_SHOWN)
        return (self.horizontalHeader().sizeHint().height() + 2 * self.frameWidth() + 2
                + rows * self.verticalHeader().defaultSectionSize())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt name
        return QSize(super().sizeHint().width(), self._height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt name
        return QSize(super().minimumSizeHint().width(), self._height())


class ReferencePanel(QWidget):
    """The reference set and its classes.

    Parameters
    ----------
    controller : AnnotationController
    models_panel : ModelsPanel
        Gives the model choice for a new reference set.
    """

    def __init__(self, controller, models_panel, parent=None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.models_panel = models_panel
        self.path_label = QLabel("No reference set open.")
        self.path_label.setWordWrap(True)
        buttons = QHBoxLayout()
        for text, slot in (("New…", self._new_dialog), ("Open…", self._open_dialog)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            buttons.addWidget(b)
        self.table = ClassTable(0, 4)
        self.table.setHorizontalHeaderLabels(["key", "", "class", "cells"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setColumnWidth(0, 34)
        self.table.setColumnWidth(1, 18)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setToolTip("Key n gives the selected cell class n; adding a class never "
                              "changes the other keys")
        self.name_edit = QLineEdit(placeholderText="class name")
        edit = QHBoxLayout()
        edit.addWidget(self.name_edit, 1)
        for text, slot, tip in (
            ("Add", self._add, "Add a class with this name"),
            ("Rename", self._rename, "Rename the selected class to this name"),
            ("Merge", self._merge, "Merge the selected classes into this name"),
        ):
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            edit.addWidget(b)
        io_row = QGridLayout()
        for i, (text, slot, tip) in enumerate((
            ("Import set…", self._import_dialog, "Merge another reference set into this one"),
            ("Import crops…", self._crops_dialog,
             "Single-cell images with their classes (a CSV: path,class)"),
            ("Bundled crops", self.add_bundled_crops,
             "Add 30 bundled blood-cell crops, confirmed with their classes"),
            ("Export…", self._export_dialog, "Store copy, cells CSV and label images"),
        )):
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            io_row.addWidget(b, i // 2, i % 2)
        layout = QVBoxLayout(self)
        layout.addWidget(self.path_label)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        layout.addLayout(edit)
        layout.addLayout(io_row)
        controller.session_changed.connect(self.refresh)
        controller.classes_changed.connect(self.refresh)
        controller.cells_changed.connect(self.refresh)
        self.refresh()

    # ------------------------------------------------------------------ actions (testable)
    @guarded("Creating the reference set")
    def new_store(self, path) -> None:
        """Create a reference set for the models chosen in the Models tab."""
        preset, models = self.models_panel.selection()
        self.controller.sets.create(path, preset=preset, models=models)

    @guarded("Opening the reference set")
    def open_store(self, path) -> None:
        """Open an existing reference set."""
        self.controller.sets.open(path)

    @guarded("Import")
    def import_store(self, path):
        """Merge another reference set into the open one."""
        return self.controller.sets.import_store(path)

    @guarded("Import of crops")
    def import_crops(self, csv_path):
        """Add single-cell images listed with their classes in a CSV (confirmed cells)."""
        return self.controller.sets.import_labelled_csv(csv_path)

    def add_bundled_crops(self):
        """Add the bundled blood-cell crops (a starting reference set for smears)."""
        from cellseek.data import sample_reference_csv

        return self.import_crops(sample_reference_csv())

    @guarded("Export")
    def export(self, folder):
        """Export into a folder."""
        return self.controller.sets.export(folder)

    def selected_classes(self) -> list[str]:
        """Names of the selected rows."""
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self.table.item(r, 2).text() for r in rows]

    @guarded("Adding a class")
    def _add(self, *args) -> None:
        self.controller.sets.add_class(self.name_edit.text())
        self.name_edit.clear()

    @guarded("Renaming a class")
    def _rename(self, *args) -> None:
        sel = self.selected_classes()
        if len(sel) != 1:
            raise ValueError("select exactly one class to rename")
        self.controller.sets.rename_class(sel[0], self.name_edit.text())

    @guarded("Merging classes")
    def _merge(self, *args) -> None:
        sel = self.selected_classes()
        into = self.name_edit.text().strip() or (sel[0] if sel else "")
        if len(sel) < 2 and into in sel:
            raise ValueError("select the classes to merge (two or more)")
        self.controller.sets.merge_classes(sel, into)

    # ------------------------------------------------------------------ dialogs
    def _new_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New reference set", "reference.cellseek",
                                              STORE_FILTER)
        if path:
            self.new_store(path if Path(path).suffix else path + ".cellseek")

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open reference set", "", STORE_FILTER)
        if path:
            self.open_store(path)

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import reference set", "", STORE_FILTER)
        if path:
            self.import_store(path)

    def _crops_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Labelled cells CSV", "", "CSV (*.csv)")
        if path:
            self.import_crops(path)

    def _export_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export into folder")
        if folder:
            self.export(folder)

    # ------------------------------------------------------------------ view
    def refresh(self) -> None:
        """Show the store path and its classes with their keys, colours and counts."""
        c = self.controller
        if c.session is None:
            self.path_label.setText("No reference set open.")
            self.table.setRowCount(0)
            return
        info = c.session.summary()
        self.path_label.setText(f"{info['path'].name}: {cells_text(info['n_cells'])}, "
                                f"{info['n_labelled']} confirmed; models "
                                f"{', '.join(info['models'])}")
        self.path_label.setToolTip(str(info["path"]))
        if self.table.rowCount() != len(c.classes):
            self.table.setRowCount(len(c.classes))
            self.table.updateGeometry()  # it asks for the room of its rows
        for row, cls in enumerate(c.classes):
            key = QTableWidgetItem(str(cls.key) if cls.key else "")
            key.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            swatch = QTableWidgetItem("")
            swatch.setBackground(QColor(hex_colour(cls.colour)))
            self.table.setItem(row, 0, key)
            self.table.setItem(row, 1, swatch)
            self.table.setItem(row, 2, QTableWidgetItem(cls.name))
            self.table.setItem(row, 3, QTableWidgetItem(str(cls.count)))
