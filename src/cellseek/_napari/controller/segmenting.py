"""Segmenting the open images and linking them to the reference set (a part of the controller).

Segmentation runs in a job that also numbers the cells and assembles the new cells stack, so
that the GUI thread only swaps the layer's data; with a reference set open the cells are then
embedded by a follow-up job. Opening a set links every open image it knows to its stored cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellseek._napari.notify import info, warn
from cellseek.annotation.cells import CellTable, largest_value, relabel_planes, stack_from_planes
from cellseek.config import SegmentConfig
from cellseek.errors import CellseekError
from cellseek.text import cells_text, count_text
from cellseek.types import Progress

from .images import OpenImage

#: Key of the SAM pre-computation in the runner's background lane.
PRECOMPUTE = "sam-precompute"


def sam_missing(sam_model: str, weights_dir=None) -> str | None:
    """Why SAM cannot run here, in one line (None when its weights are on this machine).

    Parameters
    ----------
    sam_model : str
        ``SegmentConfig.sam_model``: a SAM model (``"vit_b"``) or ``"auto"`` (any of them).
    weights_dir : path, optional
        The weights folder of the settings.
    """
    from cellseek.zoo import weights_available
    from cellseek.zoo.sam_loader import SAM_MODELS

    ok, _ = weights_available(f"sam_{sam_model}", weights_dir)
    if ok:
        return None
    if sam_model == "auto":
        return ("no SAM weights are on this machine: `cellseek models pull "
                f"sam_{SAM_MODELS[0]}` gets the lightest (for a CPU)")
    return (f"the SAM {sam_model} weights are not on this machine: `cellseek models pull "
            f"sam_{sam_model}` gets them")


@dataclass
class Segmented:
    """What a segmentation job hands back to the GUI thread."""

    planes: dict          # (t, z) -> stack-unique labels, ready to write into the layer
    stack: np.ndarray | None  # the whole new cells stack when most planes changed
    kept: list            # planes left as they were (they hold confirmed labels)
    n_cells: int
    table: CellTable | None  # the image's cells after the re-segmented planes were cleared
    method: str = "classical"  # the segmenter that ran ("sam" or "classical")
    sam_reason: str = ""  # with SAM: which model and why


class Segmenting:
    """Segmentation, embedding and restoring of images: a part of the controller.

    Parameters
    ----------
    viewer : napari.Viewer
    jobs : SessionJobs
        Jobs on the open reference set; ``jobs.runner`` runs the others.
    state : AnnotationState
    signals : Signals
    registry : LayerRegistry
    view : CellsView
    """

    def __init__(self, viewer, jobs, state, signals, registry, view) -> None:
        self.viewer = viewer
        self.jobs = jobs
        self.runner = jobs.runner
        self.state = state
        self.signals = signals
        self.registry = registry
        self.view = view
        self.sam = None  # the shared SAM segmenter, once loaded
        #: The SAM pre-computation started last (a background job), None once stopped.
        self.precompute_job = None

    def need_image(self) -> OpenImage:
        """The image under annotation; a one-line error when there is none."""
        if self.state.current is None:
            raise CellseekError("choose an image layer first (Segment tab)")
        return self.state.current

    def current_plane(self):
        """``(t, z)`` of the plane on screen in the current image."""
        return self.need_image().current_key(self.viewer)

    # ------------------------------------------------------------------ segmentation
    def segment(self, config: SegmentConfig, *, whole_stack: bool = False):
        """Segment the current plane (or every plane) of the current image (a job)."""
        item = self.need_image()
        keys = item.planes() if whole_stack else [self.current_plane()]
        # the cells layer is made (or filled) when the result arrives: a cancelled or failed
        # segmentation leaves nothing behind to clean up
        return self.runner.run(
            "Segmentation", lambda: self._segment_work(item, keys, config),
            on_returned=lambda result: self._apply_segmentation(item, result))

    def _segment_work(self, item: OpenImage, keys, config: SegmentConfig):
        from dataclasses import replace

        from cellseek.pipeline import Pipeline

        if config.method == "sam":  # one line naming what is missing, before any work
            missing = sam_missing(config.sam_model, self.state.config.embed.weights_dir)
            if missing is not None:
                raise CellseekError(f"segmenting with SAM needs its weights, but {missing}")
        # the weights folder and the device of the widget's settings
        pipeline = Pipeline(replace(self.state.config, segment=config), ())
        raw = {}
        total = len(keys) + 1
        for i, key in enumerate(keys):
            where = f"plane t={key[0]} z={key[1]}"
            yield Progress(i, total, "segment", where)
            raw[key] = yield from _at_step(pipeline.segment_plane(item.plane(key)), i, total,
                                           where)
        yield Progress(len(keys), len(keys) + 1, "segment", "numbering the cells")
        kept, table = [], None
        if self.state.session is not None and item.image_id is not None:
            kept = self.state.session.clear_planes(item.image_id, keys)
            table = CellTable(self.state.session.image_cells(item.image_id))
            for key in kept:
                raw.pop(key, None)
        layer = item.cells_layer
        taken = largest_value(layer.data, [item.index_of(k) for k in raw]) if layer else 0
        planes, top = relabel_planes(raw, taken)
        stack = item.stack_with(planes) if layer is not None else \
            stack_from_planes(item.labels_shape, item.index_of, planes)
        yield Progress(len(keys) + 1, len(keys) + 1, "segment", "done")
        method = pipeline.segment_method()
        reason = self.sam_choice()[1] if method == "sam" else ""  # torch is loaded by now
        return Segmented(planes, stack, kept, top - taken, table, method, reason)

    def _apply_segmentation(self, item: OpenImage, result: Segmented) -> None:
        self.registry.write_planes(item, result.planes, result.stack)
        if result.table is not None:
            item.table = result.table
        if result.kept:
            warn(f"{count_text(len(result.kept), 'plane')} already "
                 f"{'holds' if len(result.kept) == 1 else 'hold'} confirmed labels in the "
                 "reference set; their cells were kept as they are.")
        self.signals.message.emit(
            f"Segmentation ({result.method}) found {cells_text(result.n_cells)} "
            f"in {count_text(len(result.planes), 'plane')}.")
        if result.sam_reason:
            self.signals.sam_reason.emit(result.sam_reason)
        self.view.show(item)
        self.signals.cells_changed.emit()
        if self.state.session is not None and result.planes:
            self.embed(item, result.planes)

    def embed(self, item: OpenImage | None = None, planes: dict | None = None):
        """Crop and embed the segmented cells of an image into the store (a job)."""
        item = item or self.need_image()
        if item.cells_layer is None:
            raise CellseekError("segment the image first: it has no cells yet")

        def work(session):
            labels = planes
            if labels is None:  # read from the layer in the worker (a stack can be large)
                labels = {k: np.array(item.labels_of(k)) for k in item.planes()}
                labels = {k: v for k, v in labels.items() if v.any()}
            image_id = yield from session.add_image(item.image, labels=labels)
            return image_id, CellTable(session.image_cells(image_id))

        return self.jobs.run("Embedding cells", work,
                                 on_returned=lambda r: self._embedded(item, *r))

    def _embedded(self, item: OpenImage, image_id: int, table: CellTable) -> None:
        item.image_id = int(image_id)
        item.table = table
        self.view.keep_suggestions(item, table.ids())
        self.signals.message.emit(
            f"Embedded {cells_text(len(table))} of {item.image_layer.name} into the reference "
            "set; confirm a few of each class, then Suggest.")
        self.view.show(item)
        self.signals.cells_changed.emit()

    def add_cell_mask(self, item: OpenImage, mask: np.ndarray, key) -> int | None:
        """Add one segmented cell (a boolean plane mask) to an image's cells layer."""
        layer = self.registry.ensure_cells_layer(item)
        plane = layer.data[item.index_of(key)]
        free = np.asarray(mask, bool) & (plane == 0)
        if free.sum() < 10:
            warn("No new cell found at that spot.")
            return None
        label_value = int(largest_value(layer.data)) + 1
        plane[free] = label_value
        layer.refresh()
        self.signals.cells_changed.emit()
        if self.state.session is not None and item.image_id is not None:
            image_id = item.image_id
            only = np.where(plane == label_value, label_value, 0).astype(np.int32)

            def work(session):
                yield from session.add_cells(image_id, item.plane(key), only, t=key[0], z=key[1],
                                             pixel_size_um=item.image.pixel_size_um)
                return image_id, CellTable(session.image_cells(image_id))

            self.jobs.run("Embedding the new cell", work,
                              on_returned=lambda r: self._embedded(item, *r))
        return label_value

    def segment_at(self, item: OpenImage, key, point, config: SegmentConfig):
        """Segment the cell at ``point`` (row, col) of a plane with a SAM point prompt (a job)."""
        missing = sam_missing(config.sam_model, self.state.config.embed.weights_dir)
        if missing is not None:
            raise CellseekError(f"click-to-segment needs SAM, but {missing}")
        plane = item.plane(key)
        return self.runner.run("Click-to-segment", self._sam_point_work(plane, point, config),
                               on_returned=lambda mask: self._clicked(item, mask, key))

    def _clicked(self, item: OpenImage, mask, key) -> None:
        self.add_cell_mask(item, mask, key)
        self.precompute_sam()  # the next planes, now that the model is loaded

    def _shared_sam(self, config: SegmentConfig):
        """The process's shared SAM segmenter (one model, one embedding cache for clicks and
        pre-computation), loaded on first use (call it from a worker: it imports torch)."""
        if self.sam is None:
            from cellseek.segment.sam import shared_segmenter

            self.sam = shared_segmenter(config.sam_model,
                                         weights_dir=self.state.config.embed.weights_dir,
                                         device=self.state.config.embed.device)
        return self.sam

    def _sam_point_work(self, plane, point, config: SegmentConfig):
        """SAM point prompt on the shared segmenter."""
        yield Progress(0, 1, "sam", "point prompt")
        mask = self._shared_sam(config).segment_point(plane, point)
        yield Progress(1, 1, "sam", "done")
        return mask

    # ------------------------------------------------------------------ SAM pre-computation
    def sam_choice(self) -> tuple[str | None, str]:
        """The SAM model clicks and SAM segmentation use on this machine, and why (for the
        panel); ``(None, reason)`` without any SAM weights."""
        from cellseek.zoo.sam_choice import choose_sam_model

        try:
            embed = self.state.config.embed
            return choose_sam_model(embed.device, embed.weights_dir)
        except Exception as exc:  # noqa: BLE001 - the panel shows why, nothing else depends
            return None, f"SAM: {exc}"

    def precompute_sam(self, config: SegmentConfig | None = None) -> None:
        """Embed the plane on screen, then the next ones, for SAM in the background.

        Runs beside the job queue (it never delays a user's action) and restarts from the new
        plane whenever the user moves or picks another image: clicks on the next time point
        then wait for nothing (the encoder is thread-safe; a click waits for an encoding of its
        own plane under way).

        Parameters
        ----------
        config : SegmentConfig, optional
            Given when click-to-segment is switched on: the SAM model is loaded in the
            background if no click loaded it yet, so the first click finds its plane encoded.
            Without it, nothing happens until SAM is loaded.
        """
        item = self.state.current
        if item is None or (self.sam is None and config is None):
            return
        from cellseek.segment.sam import precompute_order

        self.stop_precompute()
        keys = item.planes()
        current = item.current_key(self.viewer)
        if current not in keys:
            return
        order = precompute_order(keys, current)

        def work():
            sam = self._shared_sam(config) if config is not None else self.sam
            return (yield from sam.precompute((k, (lambda k=k: item.plane(k))) for k in order))

        self.precompute_job = self.runner.run("Preparing SAM for clicks", work,
                                              lane="background", key=PRECOMPUTE)

    def stop_precompute(self) -> None:
        """Stop a pre-computation under way (the user moved, or the widget closes)."""
        self.runner.stop(PRECOMPUTE)
        self.precompute_job = None

    def link_images(self, items=None):
        """Link open images to the store (a job): images it knows get their cells back
        (a cells layer from the stored label images), segmented images it does not know are
        embedded. Every image layer of the viewer is looked at when ``items`` is None."""
        if items is None:
            items = [self.registry.for_image_layer(ly) for ly in self.registry.image_layers()]
        items = [i for i in items if i.image_id is None]
        if not items:
            return None

        def work(session):
            found = []
            for n, item in enumerate(items):
                yield Progress(n, len(items), "restore", item.image_layer.name)
                restored = session.restore_image(item.image)
                if restored is None:
                    found.append((item, None))
                    continue
                if item.cells_layer is None:
                    stack = stack_from_planes(item.labels_shape, item.index_of, restored.planes)
                else:  # the store holds the cells of this image: its label images win
                    stack = item.stack_with(restored.planes)
                found.append((item, (restored, CellTable(restored.cells), stack)))
            return found

        return self.jobs.run("Looking for open images in the reference set", work,
                                 on_returned=self._linked)

    def _linked(self, found) -> None:
        restored = 0
        for item, known in found:
            if known is not None:
                stored, table, stack = known
                self.registry.write_planes(item, stored.planes, stack)
                item.image_id, item.table = stored.image_id, table
                restored += len(table)
                self.view.show(item)
            elif item.cells_layer is not None and item.cells_layer.data.any():
                self.embed(item)
        if restored:
            info(f"Restored {cells_text(restored)} of the open images from the reference set.")
            self.signals.cells_changed.emit()


def _at_step(work, done: int, total: int, where: str):
    """Run a plane's work, reporting its steps as step ``done`` of the whole job (its own
    "1 of 1" would read as a finished job); returns what the work returns."""
    try:
        while True:
            try:
                p = next(work)
            except StopIteration as stop:
                return stop.value
            detail = getattr(p, "message", "")
            yield Progress(done, total, "segment", f"{where}: {detail}" if detail else where)
    finally:
        work.close()  # stopped (Cancel): the plane's work stops too
