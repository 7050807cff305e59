"""The widget's status: one line of text, a progress bar and Cancel, following the runner.

The line says what runs (with its stage), what waits behind it, and otherwise the last thing a
step said (a result, a notice). It never keeps saying something that stopped being true: a
"waits" line goes once nothing waits, a notice goes with the next key or click.
"""

from __future__ import annotations

import time

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

#: A job's progress bar and Cancel button show once it has run this long (ms).
PROGRESS_DELAY_MS = 300
#: The progress bar and status follow a job's progress at most this often (s).
PROGRESS_EVERY_S = 0.15


def lower_first(text: str) -> str:
    """``text`` with its first letter in lower case, the rest as it is (class and cell-line
    names are case-sensitive: "Labelling as HT1080" -> "labelling as HT1080")."""
    return text[:1].lower() + text[1:]


class StatusLine(QLabel):
    """One line of status text: elided when too long (the whole text in its tooltip), so it
    never changes the height of the widget."""

    def __init__(self) -> None:
        super().__init__("")
        self._full = ""
        self.setMinimumWidth(50)
        self.setFixedHeight(self.fontMetrics().height() + 4)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt name
        self._full = text
        self.setToolTip(text)
        width = max(self.width() - 4, 50)
        super().setText(self.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, width))

    def text(self) -> str:
        """The whole status text (not the elided one on screen)."""
        return self._full

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(event)
        self.setText(self._full)


class StatusBar(QWidget):
    """The status line, the progress bar and Cancel of one runner.

    Parameters
    ----------
    runner : Runner
    on_cancel : callable
        What Cancel does (the widget's :meth:`~CellseekWidget.cancel`).
    on_text : callable, optional
        Called with every line shown (the widget mirrors it in napari's status bar).
    """

    def __init__(self, runner, on_cancel, on_text=None, parent=None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.on_text = on_text
        self.line = StatusLine()
        self.progress = QProgressBar()
        self.cancel_button = QPushButton("Cancel")
        # the line, the progress bar and Cancel keep their size whatever they show: a layout
        # change would resize (and redraw) the whole window, canvas included
        for w in (self.progress, self.cancel_button):
            policy = w.sizePolicy()
            policy.setRetainSizeWhenHidden(True)
            w.setSizePolicy(policy)
            w.setVisible(False)
        self.cancel_button.setToolTip("Stop the work in progress and the work waiting after it")
        self.cancel_button.clicked.connect(lambda: on_cancel())
        bar = QHBoxLayout()
        bar.addWidget(self.progress, 1)
        bar.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.line)
        layout.addLayout(bar)
        self._said = False
        self._last_progress = 0.0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._show_progress)
        runner.started.connect(self._on_started)
        runner.progress.connect(self._on_progress)
        runner.finished.connect(self._on_finished)
        runner.queued.connect(self._on_queued)

    def text(self) -> str:
        """The whole status text."""
        return self.line.text()

    def say(self, text: str) -> None:
        """Show a line (a result or a notice)."""
        self._said = True
        self._show(text)

    def _show(self, text: str) -> None:
        self.line.setText(text)
        if self.on_text is not None:
            self.on_text(text)

    def _on_started(self, job) -> None:
        self._said = False
        if not job.quiet:
            self.line.setText(job.what + " …")
        self.progress.setRange(0, 0)
        self._timer.start(PROGRESS_DELAY_MS)

    def _show_progress(self) -> None:
        if self.runner.running is not None:
            self.progress.setVisible(True)
            self.cancel_button.setVisible(True)

    def _on_progress(self, p) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_S and p.done != p.total:
            return  # a few updates a second are enough to read
        self._last_progress = now
        if p.total:
            # QProgressBar.setValue repaints at once (17-46 ms beside napari's OpenGL canvas on
            # a software renderer); painted with the next regular update instead
            self.progress.setUpdatesEnabled(False)
            self.progress.setRange(0, p.total)
            self.progress.setValue(p.done)
            self.progress.setUpdatesEnabled(True)
            self.progress.update()
        job = self.runner.running
        if job is not None and not job.quiet:
            self.line.setText(" ".join(x for x in (job.what, p.stage, p.message) if x))

    def _on_queued(self, job) -> None:
        runner = self.runner
        self.say(f"{job.what} waits until {runner.what.lower()} has finished "
                 f"({len(runner.waiting)} waiting).")

    def _on_finished(self, job) -> None:
        if not self.runner.busy:
            self._timer.stop()
            self.progress.setVisible(False)
            self.cancel_button.setVisible(False)
        if job.state == "done" and self._said:
            return  # the job's result said something more useful than "done"
        if not job.quiet or job.state != "done":
            words = {"done": "done", "failed": "failed", "cancelled": "cancelled"}
            self.line.setText(f"{job.what}: {words.get(job.state, job.state)}")
