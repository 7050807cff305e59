"""Keyboard shortcuts of the annotator, caught before napari's own layer shortcuts.

napari looks a key up in the selected layer's key map before the viewer's, so a key bound on
the viewer loses to the selected layer (``2`` on an image layer enters transform mode). The
annotator's keys are therefore caught by an event filter on the application, for key presses in
the napari window that holds the widget, before napari sees them: they work whichever layer is
selected and whichever part of the window has the focus, except text fields. A hidden widget (its
dock hidden, or behind another tab) owns no keys: napari has them back. While the keys are ours,
napari's own meaning of them is left out of its help line (:func:`help_without`).
"""

from __future__ import annotations

import re
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


#: napari's help line names keys as ``use <key> for what``, joined by ", ".
_HELP_ENTRY = re.compile(r"use <([^>]+)> for ")
#: The keys the annotator owns while its widget is shown, as napari's help line writes them.
OWN_KEYS = frozenset([*(str(i) for i in range(1, 10)), "a", "n", "u", "shift+n"])
#: What the help line says about the annotator's keys instead.
OWN_HELP = "cellseek keys: 1-9 class · A accept · N next uncertain · U undo"


def help_without(text: str) -> str:
    """napari's help line without its entries for the annotator's keys, plus the annotator's.

    Parameters
    ----------
    text : str
        napari's help line (``"use <1> for pan/zoom, use <2> for transform"``).
    """
    parts = text.replace(OWN_HELP, "").split(", ")
    kept = [part for part in parts if part.strip()
            and not ((m := _HELP_ENTRY.match(part)) and m.group(1).lower() in OWN_KEYS)]
    return ", ".join([*kept, OWN_HELP])


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

    @property
    def active(self) -> bool:
        """Whether the keys are the annotator's now: installed, and the widget shown in its
        window (not hidden with its dock, nor behind another tab)."""
        if not self.installed:
            return False
        window = main_window_of(self.widget)
        return self.widget.isVisibleTo(window) if window is not None else \
            not self.widget.isHidden()

    def _ours(self, obj) -> bool:
        if not isinstance(obj, QWidget) or isinstance(obj, _TEXT_INPUTS) or not self.active:
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
