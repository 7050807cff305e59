"""How responsive the napari plugin stays, measured in the real threaded window.

Three benchmarks:

``stack`` (default; issue 11 item 6)
    A 24 x 904 x 1224 stack with about 15,000 cells, in a shown napari window with the widget
    docked. A 10 ms QTimer on the GUI thread records every tick; the longest gap between two
    ticks is the longest the UI froze. Phases, each through the widget's own buttons and keys:
    *Segment stack*, three times (the segmenter is replaced by one that returns the prepared
    label planes, so the phase measures what the plugin does with a result: numbering,
    writing the layer, colouring; the first run also makes the cells layer), *New…* reference
    set (embeds all cells with the offline classical model in a worker), the bundled crops,
    *Suggest* for the stack, then label keys: a real key press on the canvas for one cell
    after another. Reported per phase: the longest UI freeze of the press and while the work
    ran; per key: the GUI time of the press itself, the time until the cell shows its new
    colour, and the longest freeze from the press until then. Two "napari alone" lines give
    napari's own cost in the same run (a redraw of the cells layer, a slider step).

``loop``
    The annotation loop on the bundled sample (New, Bundled crops, Segment plane and stack,
    Suggest, label keys, N): per phase the longest freeze and how much of it was the plugin's
    work and napari's redraw (``scripts/napari_gaps.py``).

``gil``
    How long the workers' steps hold the GIL (no window): a pure-Python loop on the main thread
    beside a worker that imports crops, embeds a field and suggests, at two switch intervals.

``gallery``
    Click -> neighbour gallery latency with a synthetic store of N labelled reference cells.

Run: ``xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/bench_napari.py BENCH``, BENCH one
of stack, loop, gil, gallery (``--help`` for sizes). Figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


# ---------------------------------------------------------------------------------- stack
def synthetic_stack(n_planes: int, shape: tuple[int, int], n_cells: int, seed: int = 0):
    """A uint16 stack of dark round cells on a bright background, and its label planes."""
    rng = np.random.default_rng(seed)
    per_plane = max(1, n_cells // n_planes)
    side = int(np.sqrt(shape[0] * shape[1] / per_plane))
    rows, cols = shape[0] // side, shape[1] // side
    yy, xx = np.mgrid[:side, :side]
    image = np.empty((n_planes, *shape), np.uint16)
    labels = []
    for t in range(n_planes):
        plane = np.zeros(shape, np.int32)
        value = 0
        for r in range(rows):
            for c in range(cols):
                if value >= per_plane:
                    break
                radius = rng.uniform(0.28, 0.4) * side
                cy, cx = side / 2 + rng.uniform(-2, 2, 2)
                disc = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
                value += 1
                plane[r * side:(r + 1) * side, c * side:(c + 1) * side][disc] = value
        labels.append(plane)
        noise = rng.normal(0, 40, shape)
        image[t] = np.clip(np.where(plane > 0, 1200.0, 3200.0) + noise, 0, 65535)
    return image, labels


class GapMeter:
    """A 10 ms QTimer on the GUI thread; the longest gap between ticks is the longest freeze."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = [time.perf_counter()]
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.timer.start()

    def longest(self, start: float, stop: float) -> float:
        """Longest gap (ms) between ticks in a time window, the window's edges included."""
        inside = [start] + [t for t in self.ticks if start < t < stop] + [stop]
        return 1000 * max(b - a for a, b in zip(inside, inside[1:]))


def _pump(app, until, timeout_s: float = 3600.0) -> None:
    end = time.perf_counter() + timeout_s
    while not until():
        app.processEvents()
        time.sleep(0.002)
        if time.perf_counter() > end:
            raise TimeoutError("the plugin did not finish in time")


def bench_stack(args) -> None:
    """See the module docstring."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    import cellseek.segment
    import napari
    from cellseek._napari.widget import CellseekWidget
    from cellseek.types import Progress

    shape = (args.height, args.width)
    t0 = time.perf_counter()
    image, planes = synthetic_stack(args.planes, shape, args.cells)
    n_cells = sum(int(p.max()) for p in planes)
    print(f"stack {image.shape} with {n_cells} cells made in {time.perf_counter() - t0:.1f} s")

    def signature(plane) -> bytes:
        return np.ascontiguousarray(np.asarray(plane)[::97, ::89]).tobytes()

    by_signature = {signature(image[i]): planes[i] for i in range(len(image))}

    def prepared(plane, config, **kwargs):  # the segmenter, replaced: the prepared labels
        yield Progress(0, 1, "segment")
        return by_signature[signature(plane)]

    cellseek.segment.segment_plane = prepared
    app = QApplication.instance() or QApplication([])
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    viewer.add_image(image, name="stack")
    widget = CellseekWidget(viewer)
    viewer.window.add_dock_widget(widget, name="cellseek", area="right")
    runner = widget.controller.runner
    for _ in range(20):
        app.processEvents()
    meter = GapMeter()
    report = []

    def phase(name, action):
        start = time.perf_counter()
        action()
        pressed = time.perf_counter()
        _pump(app, lambda: not runner.busy)
        for _ in range(10):  # let the last repaint happen inside the window
            app.processEvents()
            time.sleep(0.005)
        stop = time.perf_counter()
        press, after = meter.longest(start, pressed), meter.longest(pressed, stop)
        report.append((name, stop - start, press, after))
        print(f"{name}: {stop - start:.1f} s; longest UI freeze: {press:.0f} ms on the press, "
              f"{after:.0f} ms while the work ran and its result was applied")

    widget.segment.method.setCurrentText("classical")
    if args.outline is not None:
        widget.segment.outline.setValue(args.outline)
    width = getattr(widget.controller.registry, "outline_width", "(none: filled cells)")
    print(f"cells drawn with outline width {width} (0: filled)")
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.repeat):  # the first makes the cells layer; the others replace it
            phase(f"Segment stack (apply the result), run {n + 1}",
                  lambda: QTest.mouseClick(widget.segment.stack_button,
                                           Qt.MouseButton.LeftButton))
        item = widget.controller.current
        assert len(np.unique(item.cells_layer.data)) - 1 == n_cells
        phase("New reference set (embed every cell)",
              lambda: widget.reference.new_store(Path(tmp) / "bench.cellseek"))
        phase("Bundled crops", widget.reference.add_bundled_crops)
        phase("Suggest (whole stack)", lambda: widget.suggest.run("stack"))
        c = widget.controller
        canvas = viewer.window._qt_viewer.canvas.native

        def napari_alone(name, action, n=5):  # what napari costs without cellseek's work
            gaps = []
            for _ in range(n):
                a = time.perf_counter()
                action()
                end = a + 0.3
                while time.perf_counter() < end:
                    app.processEvents()
                    time.sleep(0.002)
                gaps.append(meter.longest(a, time.perf_counter()))
            print(f"napari alone, {name}: longest UI freeze median {statistics.median(gaps):.0f}"
                  f" ms, max {max(gaps):.0f} ms")

        napari_alone("redraw of the cells layer (re-slice with outlines, repaint)",
                     item.cells_layer.refresh)
        napari_alone("one step of the time slider", lambda: viewer.dims.set_current_step(
            0, (viewer.dims.current_step[0] + 1) % args.planes))
        rng = np.random.default_rng(1)
        ids = rng.choice(item.table.ids(), args.keys, replace=False)
        press_ms, shown_ms, freeze_ms = [], [], []
        for n, cid in enumerate(ids):
            cell = item.table.cell(int(cid))
            c.select(int(cid), jump=True)
            _pump(app, lambda: not runner.busy)
            for _ in range(5):
                app.processEvents()
            key = Qt.Key(Qt.Key.Key_1 + n % 5)
            names = ([i.name for i in c.classes] if isinstance(getattr(c, "classes", None), list)
                     else c.class_names())  # (the same bench runs against older versions)
            want = names[n % 5]
            a = time.perf_counter()
            QTest.keyClick(canvas, key)
            b = time.perf_counter()
            _pump(app, lambda cid=cid, want=want: (
                item.table.cell(int(cid))["label"] == want and not runner.busy))
            app.processEvents()
            d = time.perf_counter()
            press_ms.append(1000 * (b - a))
            shown_ms.append(1000 * (d - a))
            freeze_ms.append(meter.longest(a, d))
            assert c.session.store.cell(int(cid))["label"] == want, cell
        print(f"label key ({args.keys} presses, {len(item.table)} cells in the layer):")
        for name, values in (("GUI time of the key press", press_ms),
                             ("key press -> new colour shown", shown_ms),
                             ("longest UI freeze in between", freeze_ms)):
            print(f"  {name}: median {statistics.median(values):.1f} ms, "
                  f"max {max(values):.1f} ms")
        widget.cleanup()
        viewer.close()


# ---------------------------------------------------------------------------------- gallery
def _png(rng) -> bytes:
    from PIL import Image

    arr = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def build_store(path: Path, n_ref: int, n_query: int, seed: int = 0):
    """A session over a synthetic store; returns (session, query cell ids)."""
    from cellseek.config import Config
    from cellseek.session import Session
    from cellseek.types import Cell
    from cellseek.zoo import get_spec

    rng = np.random.default_rng(seed)
    session = Session.create(path, Config(), overwrite=True)
    dim = get_spec("classical").dim
    n = n_ref + n_query
    centres = rng.normal(size=(5, dim))
    cls = rng.integers(0, 5, n)
    emb = centres[cls] + rng.normal(scale=1.5, size=(n, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    thumbs = [_png(rng) for _ in range(64)]
    image_id = session.store.add_image("synthetic.tif", "synthetic-hash", shape=(n, 64, 64))
    ids = []
    for start in range(0, n, 5000):
        stop = min(n, start + 5000)
        cells = [Cell(label=i + 1, t=i, bbox=(0, 0, 10, 10), centroid=(5.0, 5.0), area=80)
                 for i in range(start, stop)]
        ids += list(session.store.add_cells(
            image_id, cells, {"classical": emb[start:stop].astype(np.float32)},
            thumbnails=[thumbs[i % 64] for i in range(start, stop)]))
    names = [f"class_{k}" for k in range(5)]
    session.label(ids[:n_ref], [names[k] for k in cls[:n_ref]], source="import")
    return session, ids[n_ref:]


def bench_gallery(args) -> None:
    """Click -> gallery: the kNN look-up (now a job) and the drawing of the tiles."""
    from qtpy.QtWidgets import QApplication

    from cellseek._napari.panels.neighbours import NeighboursPanel
    from cellseek.annotation.colours import class_colours
    from cellseek.annotation.gallery import neighbour_gallery

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        session, queries = build_store(Path(tmp) / "bench.cellseek", args.cells, args.clicks)
        t1 = time.perf_counter()
        session.index()  # the widget builds it in a job right after opening the store
        t2 = time.perf_counter()
        print(f"store with {args.cells} labelled cells built in {t1 - t0:.1f} s; "
              f"index ({session.index().kind}) warmed in {t2 - t1:.2f} s")

        class _Controller:  # what the panel needs from the controller
            from qtpy.QtCore import QObject, Signal

            class _S(QObject):
                selection_changed = __import__("qtpy.QtCore").QtCore.Signal(object)
                gallery = __import__("qtpy.QtCore").QtCore.Signal(object)

            def __init__(self, session):
                self._s = self._S()
                self.selection_changed = self._s.selection_changed
                self.gallery = self._s.gallery
                self.session = session
                self.selected = None
                self.threshold = session.config.suggest.threshold
                self.colours = class_colours(sorted(session.store.classes()))

            class runner:  # nothing runs in the background here
                running, what = None, ""

            def jump_to(self, cell_id):
                return False

        controller = _Controller(session)
        panel = NeighboursPanel(controller)
        panel.resize(420, 400)
        panel.show()
        query_ms, total_ms = [], []
        for cid in queries:
            a = time.perf_counter()
            neighbour_gallery(session, cid)
            b = time.perf_counter()
            controller.selected = cid
            panel.show_cell(cid)  # what a click runs: the query again, then the drawing
            panel.draw(neighbour_gallery(session, cid))
            app.processEvents()
            c = time.perf_counter()
            query_ms.append(1000 * (b - a))
            total_ms.append(1000 * (c - b))
        k = len(panel.gallery.tiles)
        print(f"k = {k} neighbours per click, {args.clicks} clicks")
        print(f"kNN query + suggestion + thumbnails: median {statistics.median(query_ms):.1f} ms, "
              f"p95 {np.percentile(query_ms, 95):.1f} ms")
        print(f"click -> gallery drawn (query + Qt):  median {statistics.median(total_ms):.1f} ms, "
              f"p95 {np.percentile(total_ms, 95):.1f} ms")
        session.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", nargs="?", default="stack",
                        choices=("stack", "loop", "gil", "gallery"))
    parser.add_argument("--planes", type=int, default=24, help="stack: planes")
    parser.add_argument("--height", type=int, default=904, help="stack: plane height")
    parser.add_argument("--width", type=int, default=1224, help="stack: plane width")
    parser.add_argument("--cells", type=int, default=None,
                        help="stack: cells in the stack (15,000); gallery: labelled cells "
                             "(20,000)")
    parser.add_argument("--keys", type=int, default=20, help="stack: label key presses")
    parser.add_argument("--repeat", type=int, default=3,
                        help="stack: times the stack is segmented (before the reference set)")
    parser.add_argument("--outline", type=int, default=None,
                        help="stack: outline width of the cells (0: filled; default: the "
                             "widget's)")
    parser.add_argument("--clicks", type=int, default=50, help="gallery: clicks")
    parser.add_argument("--verbose", action="store_true",
                        help="loop: name the plugin's longest steps inside each freeze")
    args = parser.parse_args(argv)
    if args.bench == "stack":
        args.cells = args.cells or 15_000
        bench_stack(args)
    elif args.bench == "loop":
        from napari_gaps import bench_loop  # a sibling of this script

        bench_loop(args.keys, verbose=args.verbose)
    elif args.bench == "gil":
        from napari_gaps import gil_holds

        gil_holds()
    else:
        args.cells = args.cells or 20_000
        bench_gallery(args)


if __name__ == "__main__":
    main()
