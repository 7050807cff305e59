"""Keyboard shortcuts of the annotator, bound on the viewer and on the plugin's cells layers."""

from __future__ import annotations

#: (key, what it does) as shown in the widget and the user guide.
SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("A", "accept the suggestion of the selected cell"),
    ("1 … 9", "give the selected cell class 1 … 9 (order of the Reference set list)"),
    ("N", "next uncertain cell of the review queue"),
    ("Shift-N", "previous uncertain cell"),
    ("U", "undo the last labelling step"),
)


def shortcuts_html() -> str:
    """The shortcuts as a small HTML table."""
    rows = "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in SHORTCUTS)
    return f"<table>{rows}</table>"


class KeyBindings:
    """Binds the shortcuts (``overwrite=True``) and restores what was there on :meth:`unbind`.

    Parameters
    ----------
    actions : mapping
        ``"accept"``, ``"class"`` (called with 1-9), ``"next"``, ``"previous"``, ``"undo"`` ->
        callables without arguments (``"class"`` takes the number).
    """

    def __init__(self, actions) -> None:
        self.actions = actions
        self._bound: list[tuple[object, str, object]] = []  # (provider, key, previous)

    def keymap(self) -> dict:
        """Key -> handler (napari calls it with the viewer or layer)."""
        a = self.actions
        keys = {
            "A": lambda _: a["accept"](),
            "N": lambda _: a["next"](),
            "Shift-N": lambda _: a["previous"](),
            "U": lambda _: a["undo"](),
        }
        for i in range(1, 10):
            keys[str(i)] = lambda _, i=i: a["class"](i)
        return keys

    def bind(self, provider) -> None:
        """Bind every shortcut on a viewer or layer (once)."""
        if any(p is provider for p, _, _ in self._bound):
            return
        for key, func in self.keymap().items():
            previous = provider.bind_key(key, func, overwrite=True)
            self._bound.append((provider, key, previous))

    def unbind(self) -> None:
        """Remove the shortcuts and put back the bindings they replaced."""
        for provider, key, previous in reversed(self._bound):
            try:
                provider.bind_key(key, previous, overwrite=True)
            except (RuntimeError, ValueError, TypeError):  # provider already gone
                pass
        self._bound = []
