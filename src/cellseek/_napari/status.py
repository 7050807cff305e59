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
        self._notice = ""  # the last line a step or an action said
        self._transient = False  # the line says what runs or waits (not a notice)
        #: The last line shown in napari's status bar (on_text), to take back on closing.
        self.mirrored = ""
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
        """Show a line a step or an action said (a result, a notice); it stays until the next
        one, the next user action (:meth:`clear`) or the next work that reports progress."""
        self._notice = text
        self._transient = False
        self._show(text)
        self._mirror(text)

    def clear(self) -> None:
        """A new user action: what the last one said is no longer news."""
        showing = bool(self._notice) and self.line.text() == self._notice
        self._notice = ""
        if showing:
            self._show("")
        if self.mirrored:
            self._mirror("")

    def _show(self, text: str) -> None:
        self.line.setText(text)

    def _mirror(self, text: str) -> None:
        """Notices go to napari's status bar too (what runs or waits does not: it would stay
        there once it stopped being true)."""
        if self.on_text is not None and text != self.mirrored:
            self.mirrored = text
            self.on_text(text)

    def _resting(self) -> str:
        """What the line says when no work reports: the last notice, else nothing."""
        return self._notice

    def _on_started(self, job) -> None:
        if not job.quiet:
            self._notice = ""
            self._show(job.what + " …")
        elif self._transient:  # a "waits" line of a job that started meanwhile
            self._show(self._resting())
        self._transient = not job.quiet
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
        # QProgressBar.setValue repaints at once (17-46 ms beside napari's OpenGL canvas on a
        # software renderer); painted with the next regular update instead
        self.progress.setUpdatesEnabled(False)
        if p.total and p.done < p.total:
            self.progress.setRange(0, p.total)
            self.progress.setValue(p.done)
        else:  # unknown, or a stage finished while the job goes on: busy, not "100 %"
            self.progress.setRange(0, 0)
        self.progress.setUpdatesEnabled(True)
        self.progress.update()
        job = self.runner.running
        if job is not None and not job.quiet:
            self._show(" ".join(x for x in (job.what, p.stage, p.message) if x))
            self._transient = True

    def _on_queued(self, job) -> None:
        """Say that a job waits, when it is one the user waits for (not a key press or a
        gallery look-up behind another) and what it waits for is long work."""
        runner = self.runner
        running = runner.running
        if job.quiet or running is None or running.quiet:
            return
        waiting = [j for j in runner.waiting if not j.quiet]
        self._show(f"{job.what} waits until {lower_first(running.what)} has finished "
                   f"({len(waiting)} waiting).")
        self._transient = True

    def _on_finished(self, job) -> None:
        if not self.runner.busy:
            self._timer.stop()
            self.progress.setVisible(False)
            self.cancel_button.setVisible(False)
        if self._notice and job.state == "done":
            if self._transient and not self.runner.busy:
                self._show(self._notice)  # what the job's result said
                self._transient = False
            return
        if not job.quiet or job.state != "done":
            words = {"done": "done", "failed": "failed", "cancelled": "cancelled"}
            self._notice = f"{job.what}: {words.get(job.state, job.state)}"
            self._show(self._notice)
            if job.state != "done":
                self._mirror(self._notice)
            self._transient = False
        elif self._transient and not self.runner.busy:
            self._show(self._resting())  # nothing runs or waits any more
            self._transient = False
