"""Where the napari window's freezes go: the plugin's work, napari's redraw, the GIL, the machine.

Used by ``scripts/bench_napari.py loop``. A 10 ms QTimer on the GUI thread records its ticks
(:class:`GapMeter`) with the GUI thread's CPU time and the process's; the longest gap between
two ticks is the longest the window froze. Every method of the plugin's classes
(``cellseek._napari``) and the paint of napari's canvas are wrapped to record when they ran on
the GUI thread (:class:`Attribution`). Inside a gap:

- *plugin*: CPU time of the GUI thread in the plugin's own code;
- *napari*: CPU time of napari updating layers for the plugin (re-slicing a layer and its
  outlines after new data or colours, adding and removing layers), not painting;
- *redraw*: CPU time of the GUI thread painting napari's canvas;
- *GUI CPU*: the GUI thread computed (plugin, redraw, and the rest of napari and Qt);
- *waiting*: the gap less the GUI thread's CPU: it waited for the GIL (held by a worker, whose
  CPU time over the gap is *workers*) or for a CPU core (the machine is busy).
"""

from __future__ import annotations

import functools
import inspect
import threading
import time

#: A tick this late (s) records where the other threads are (``--verbose``).
LATE_S = 0.05


def worker_stacks(depth: int = 6) -> list[str]:
    """The innermost frames of every thread but the GUI thread, one line each."""
    import sys
    from pathlib import Path

    main = threading.main_thread().ident
    out = []
    for ident, frame in sys._current_frames().items():
        if ident == main:
            continue
        where = []
        while frame is not None and len(where) < depth:
            where.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}")
            frame = frame.f_back
        out.append(" < ".join(where))
    return out


class GapMeter:
    """A 10 ms QTimer on the GUI thread; the longest gap between ticks is the longest freeze."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = [time.perf_counter()]
        self.cpu: dict[float, tuple[float, float]] = {}  # tick -> (GUI thread, process) CPU s
        self.late: dict[float, list[str]] = {}  # a late tick -> the other threads' stacks
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        self.mark()
        if self.ticks[-1] - self.ticks[-2] > LATE_S:  # where the other threads are now
            self.late[self.ticks[-1]] = worker_stacks()

    def mark(self) -> float:
        """Record the time and the CPU times now (a tick; also the edges of a phase)."""
        now = time.perf_counter()
        self.ticks.append(now)
        self.cpu[now] = (time.thread_time(), time.process_time())
        return now

    def cpu_in(self, a: float, b: float) -> tuple[float, float]:
        """``(GUI thread, other threads)`` CPU milliseconds between two ticks or marks."""
        if a not in self.cpu or b not in self.cpu:
            return 0.0, 0.0
        gui = self.cpu[b][0] - self.cpu[a][0]
        return 1000 * gui, 1000 * (self.cpu[b][1] - self.cpu[a][1] - gui)

    def gaps(self, start: float, stop: float) -> list[tuple[float, float]]:
        """``(from, to)`` of the gaps between ticks in a window, its edges included."""
        inside = [start] + [t for t in self.ticks if start < t < stop] + [stop]
        return list(zip(inside, inside[1:]))

    def longest(self, start: float, stop: float) -> float:
        """Longest gap (ms) between ticks in a time window, the window's edges included."""
        return 1000 * max(b - a for a, b in self.gaps(start, stop))


#: What the GUI thread's time is attributed to.
KINDS = ("plugin", "napari", "redraw")


class Attribution:
    """Records when the plugin's code and napari's redraw ran on the GUI thread."""

    def __init__(self) -> None:
        # kind -> (wall start, wall end, CPU seconds of the GUI thread) of each outermost call
        self.intervals: dict[str, list[tuple[float, float, float]]] = {k: [] for k in KINDS}
        self.names: dict[str, list[str]] = {k: [] for k in KINDS}
        self._depth = dict.fromkeys(KINDS, 0)
        self._main = threading.main_thread()

    def _wrap(self, func, kind: str):
        @functools.wraps(func)
        def timed(*args, **kwargs):
            if threading.current_thread() is not self._main or self._depth[kind]:
                return func(*args, **kwargs)
            self._depth[kind] += 1
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                self.intervals[kind].append((start, time.perf_counter(),
                                             time.thread_time() - cpu))
                self.names[kind].append(func.__qualname__)
                self._depth[kind] -= 1

        return timed

    def install(self, canvas) -> None:
        """Wrap the plugin's methods (before the widget is made) and the paint of napari's
        canvas (its Qt widget, ``canvas``)."""
        import importlib
        import pkgutil

        import cellseek._napari as plugin

        for info in pkgutil.walk_packages(plugin.__path__, plugin.__name__ + "."):
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__ != module.__name__:
                    continue
                for name, attr in list(vars(cls).items()):
                    if inspect.isfunction(attr) and not name.startswith("__"):
                        setattr(cls, name, self._wrap(attr, "plugin"))
        backend = type(canvas)
        backend.paintGL = self._wrap(backend.paintGL, "redraw")
        # what napari does when the plugin changes a layer (re-slicing, outlines, new layers)
        from napari.components import LayerList, ViewerModel
        from napari.layers import Labels, Layer

        for cls, name in ((Layer, "refresh"), (Labels, "_set_colormap"),
                          (ViewerModel, "add_labels"), (ViewerModel, "add_shapes"),
                          (LayerList, "remove")):
            setattr(cls, name, self._wrap(getattr(cls, name), "napari"))

    def _inside(self, kind: str, start: float, stop: float):
        """``(CPU ms inside [start, stop], name)`` of the calls of ``kind`` there (a call's
        CPU time prorated by the part of it inside)."""
        for (a, b, cpu), name in zip(self.intervals[kind], self.names[kind]):
            if b > start and a < stop:
                share = (min(b, stop) - max(a, start)) / (b - a) if b > a else 1.0
                yield 1000 * cpu * share, name

    def top(self, kind: str, start: float, stop: float, n: int = 3) -> str:
        """The ``n`` costliest calls of ``kind`` inside ``[start, stop]`` (CPU ms, name)."""
        inside = sorted(self._inside(kind, start, stop), reverse=True)[:n]
        return ", ".join(f"{name} {ms:.0f}" for ms, name in inside)

    def within(self, kind: str, start: float, stop: float) -> float:
        """CPU milliseconds the GUI thread spent in ``kind`` inside ``[start, stop]``: the
        time a call waited (for the GIL, for a core) is not counted."""
        return sum(ms for ms, _ in self._inside(kind, start, stop))


class CollectorLog:
    """The garbage collector's full (generation 2) collections: CPU time and thread."""

    def __init__(self) -> None:
        import gc

        self.full: list[tuple[float, bool]] = []  # (CPU ms, on the GUI thread)
        self._cpu = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._cpu = time.thread_time()
        elif info["generation"] == 2:
            self.full.append((1000 * (time.thread_time() - self._cpu),
                              threading.current_thread() is threading.main_thread()))

    def summary(self) -> str:
        """``"n full collections, total and longest CPU ms, how many on the GUI thread"``."""
        if not self.full:
            return "no full collection"
        cpu = [ms for ms, _ in self.full]
        return (f"{len(cpu)} full collections, {sum(cpu):.0f} ms CPU in all, longest "
                f"{max(cpu):.0f} ms, {sum(gui for _, gui in self.full)} on the GUI thread")


def pump(app, until, timeout_s: float = 3600.0) -> None:
    """Process events until ``until()`` holds."""
    end = time.perf_counter() + timeout_s
    while not until():
        app.processEvents()
        time.sleep(0.002)
        if time.perf_counter() > end:
            raise TimeoutError("the plugin did not finish in time")


def bench_loop(keys: int = 10, verbose: bool = False) -> list[tuple]:
    """The annotation loop on the bundled sample, each phase through the widget's buttons and
    real keys; per phase the longest freeze and what filled it (see the module docstring), in
    milliseconds. Returns and prints the rows."""
    import tempfile
    from pathlib import Path

    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    import napari

    app = QApplication.instance() or QApplication([])
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    attribution = Attribution()
    attribution.install(viewer.window._qt_viewer.canvas.native)
    try:
        from cellseek._napari.hooks.sample import sample_smear
    except ImportError:  # the layout before issue 23 (the same bench runs against it)
        from cellseek._napari._sample import sample_smear
    from cellseek._napari.widget import CellseekWidget

    (data, kwargs, _), = sample_smear()
    viewer.add_image(data, **kwargs)
    widget = CellseekWidget(viewer)
    viewer.window.add_dock_widget(widget, name="cellseek", area="right")
    c, runner = widget.controller, widget.controller.runner
    canvas = viewer.window._qt_viewer.canvas.native
    for _ in range(20):
        app.processEvents()
    meter = GapMeter()
    collections = CollectorLog()
    rows: dict[str, tuple[float, ...]] = {}

    def phase(name, action):
        start = meter.mark()
        action()
        pump(app, lambda: not runner.busy)
        for _ in range(10):
            app.processEvents()
            time.sleep(0.005)
        a, b = max(meter.gaps(start, meter.mark()), key=lambda g: g[1] - g[0])
        plugin, asked = attribution.within("plugin", a, b), attribution.within("napari", a, b)
        row = (1000 * (b - a), max(plugin - asked, 0.0), asked,
               attribution.within("redraw", a, b), *meter.cpu_in(a, b))
        if row[0] > rows.get(name, (0,))[0]:
            rows[name] = row
            if verbose:
                print(f"  {name} ({row[0]:.0f} ms): {attribution.top('plugin', a, b)}")
                for stack in meter.late.get(b, [])[:3]:
                    print(f"      worker: {stack}")

    click = QTest.mouseClick
    left = Qt.MouseButton.LeftButton
    with tempfile.TemporaryDirectory() as tmp:
        widget.segment.method.setCurrentText("classical")
        phase("New reference set", lambda: widget.reference.new_store(Path(tmp) / "b.cellseek"))
        phase("Bundled crops (import 30)", widget.reference.add_bundled_crops)
        phase("Segment plane (+ embedding)", lambda: click(widget.segment.plane_button, left))
        phase("Segment stack (+ embedding)", lambda: click(widget.segment.stack_button, left))
        widget.suggest.slider.setValue(95)
        phase("Suggest (stack)", lambda: widget.suggest.run("stack"))
        item = c.current
        for n, cid in enumerate((item.table.ids() * keys)[:keys]):
            c.select(int(cid), jump=True)
            pump(app, lambda: not runner.busy)
            key = Qt.Key(Qt.Key.Key_1 + n % 5)
            phase("label key (1-5)", lambda key=key: QTest.keyClick(canvas, key))
        for _ in range(5):
            phase("N (next uncertain)", lambda: QTest.keyClick(canvas, Qt.Key.Key_N))
        for _ in range(5):
            phase("napari alone: redraw of the cells layer", item.cells_layer.refresh)
    widget.cleanup()
    viewer.close()
    head = ("freeze", "plugin", "napari", "redraw", "GUI CPU", "waiting", "workers")
    print(f"{'phase (ms)':<42}" + "".join(f"{h:>9}" for h in head))
    out = []
    for name, (gap, plugin, asked, redraw, gui, workers) in rows.items():
        values = (gap, plugin, asked, redraw, gui, max(gap - gui, 0.0), workers)
        print(f"{name:<42}" + "".join(f"{v:>9.0f}" for v in values))
        out.append((name, *values))
    print(f"garbage collector during the phases: {collections.summary()}")
    return out


def gil_holds(intervals=(0.005, 0.001), late_ms: float = 20.0) -> None:
    """How long the workers' steps hold the GIL, without Qt: a pure-Python loop on the main
    thread (1 ms sleeps) beside a worker thread that imports the bundled crops, embeds a field
    and suggests; a step of the loop later than ``late_ms`` names where the worker was. Run in
    a fresh process (first imports included), once per thread switch interval."""
    import sys
    import tempfile
    from pathlib import Path

    from cellseek.config import Config
    from cellseek.data import sample_fields, sample_reference_csv
    from cellseek.io import read_image
    from cellseek.reference import add_labelled_csv
    from cellseek.session import Session
    from cellseek.types import run_work

    def measure(name, work):
        done = threading.Event()
        worker = threading.Thread(target=lambda: (work(), done.set()))
        late, last = [], time.perf_counter()
        worker.start()
        while not done.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            if now - last > late_ms / 1000:
                stack = [s for s in worker_stacks(4) if "wait" not in s][:1]
                late.append((1000 * (now - last), stack))
            last = now
        worker.join()
        longest = max((ms for ms, _ in late), default=0.0)
        print(f"  {name}: {len(late)} steps later than {late_ms:.0f} ms, longest {longest:.0f} "
              f"ms" + (f" ({max(late)[1][0]})" if late and max(late)[1] else ""))

    for interval in intervals:
        sys.setswitchinterval(interval)
        print(f"thread switch interval {1000 * interval:g} ms")
        with tempfile.TemporaryDirectory() as tmp:
            session = Session.create(Path(tmp) / "gil.cellseek", Config(), overwrite=True)
            image = read_image(sample_fields()[0])
            measure("import 30 crops", lambda s=session: run_work(
                add_labelled_csv(s, sample_reference_csv())))
            measure("add a field (segment, embed)",
                    lambda s=session, i=image: run_work(s.add_image(i)))
            measure("suggest", lambda s=session: run_work(s.suggest(None)))
            session.close()
