"""Keyboard shortcuts of the annotator, caught before napari's own layer shortcuts.

napari looks a key up in the selected layer's key map before the viewer's, so a key bound on
the viewer loses to the selected layer (``2`` on an image layer enters transform mode). The
annotator's keys are therefore caught by an event filter on the application, for key presses in
the napari window that holds the widget, before napari sees them: they work whichever layer is
selected and whichever part of the window has the focus, except text fields.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QLineEdit,
    QMainWindow,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)

#: (key, what it does) as shown in the widget and the user guide.
SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("A", "accept the suggestion of the selected cell, then go to the next uncertain cell"),
    ("1 … 9", "give the selected cell class 1 … 9 (the key column of the class table)"),
    ("N", "next uncertain cell of the review queue"),
    ("Shift-N", "previous uncertain cell"),
    ("U", "undo the last labelling step"),
)

_TEXT_INPUTS = (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox)
_DIGITS = {getattr(Qt.Key, f"Key_{i}"): i for i in range(1, 10)}
_MODIFIERS = (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
              | Qt.KeyboardModifier.MetaModifier)


def shortcuts_html() -> str:
    """The shortcuts as one compact line of HTML."""
    return " &nbsp;·&nbsp; ".join(f"<b>{k}</b> {v.split(',')[0]}" for k, v in SHORTCUTS)


def action_of(key: int, modifiers) -> tuple[str, int | None] | None:
    """``(action, number)`` of a key press, or None when it is not an annotator key."""
    if modifiers & _MODIFIERS:
        return None
    shift = bool(modifiers & Qt.KeyboardModifier.ShiftModifier)
    if key in _DIGITS and not shift:
        return "class", _DIGITS[key]
    if key == Qt.Key.Key_N:
        return ("previous" if shift else "next"), None
    if shift:
        return None
    return {Qt.Key.Key_A: ("accept", None), Qt.Key.Key_U: ("undo", None)}.get(key)


def main_window_of(widget: QWidget) -> QMainWindow | None:
    """The main window a (docked or floating) widget belongs to."""
    w = widget
    while w is not None and not isinstance(w, QMainWindow):
        w = w.parentWidget()
    return w


class KeyFilter(QObject):
    """Catches the annotator's keys in one napari window.

    Parameters
    ----------
    widget : QWidget
        The dock widget; its main window is where keys are caught.
    actions : mapping
        ``"accept"``, ``"next"``, ``"previous"``, ``"undo"`` -> callables without arguments,
        ``"class"`` -> callable taking the number.
    """

    def __init__(self, widget: QWidget, actions: dict[str, Callable]) -> None:
        super().__init__(widget)
        self.widget = widget
        self.actions = actions
        self.installed = False

    def install(self) -> None:
        """Start catching keys (once)."""
        if not self.installed:
            QApplication.instance().installEventFilter(self)
            self.installed = True

    def remove(self) -> None:
        """Stop catching keys."""
        if self.installed:
            app = QApplication.instance()
            if app is not None:
                app.removeEventFilter(self)
            self.installed = False

    def _ours(self, obj) -> bool:
        if not isinstance(obj, QWidget) or isinstance(obj, _TEXT_INPUTS):
            return False
        window = main_window_of(self.widget)
        return window is not None and (obj.window() is window or main_window_of(obj) is window)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt name
        kind = event.type()
        if kind not in (QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride):
            return False
        found = action_of(event.key(), event.modifiers())
        if found is None or not self._ours(obj):
            return False
        if kind == QEvent.Type.ShortcutOverride:
            event.accept()  # deliver it as a key press, not to a menu shortcut
            return True
        if event.isAutoRepeat():
            return True
        action, number = found
        if number is None:
            self.actions[action]()
        else:
            self.actions[action](number)
        return True
