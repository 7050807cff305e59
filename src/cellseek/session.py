"""The scripting API: one annotation session over one reference store.

The CLI and the napari widget both drive a :class:`Session`; it holds no GUI state. Long steps
(:meth:`Session.add_image`, :meth:`Session.suggest`) are generators yielding
:class:`~cellseek.types.Progress` (see :func:`cellseek.types.run_work`).

Example
-------
>>> from cellseek import Session
>>> from cellseek.types import run_work
>>> s = Session.create("ref.cellseek")                      # doctest: +SKIP
>>> image_id = run_work(s.add_image("smear.png"))           # doctest: +SKIP
>>> s.label([1, 2], ["neutrophil", "lymphocyte"])           # doctest: +SKIP
>>> suggestions = run_work(s.suggest())                     # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from cellseek.annotation.classes import ClassInfo
from cellseek.config import Config, CropConfig, SegmentConfig
from cellseek.errors import CellseekError
from cellseek.pipeline import Pipeline, PlaneCells, PlaneKey
from cellseek.search.cellset import CellSet
from cellseek.search.suggester import Suggester, compute_weights, predict
from cellseek.search.vote import review_queue
from cellseek.store import ReferenceStore, untrusted_json
from cellseek.text import cells_text, count_text
from cellseek.types import ImageData, Progress, Suggestion, Work

logger = logging.getLogger(__name__)


#: Settings of the machine that runs cellseek: never taken from a store file.
MACHINE_LOCAL = ("weights_dir", "device", "batch_size")


def _config_from_meta(raw: str | None, fallback: Config, where="the store") -> Config:
    """Rebuild the crop/embed settings a store was made with (they must not drift).

    Machine-local settings (:data:`MACHINE_LOCAL`) always come from ``fallback`` (the user or
    the command line). Malformed, out-of-range or newer settings raise one clear StoreError.
    """
    from cellseek.config import check_crop_config
    from cellseek.errors import StoreError

    if not raw:
        return fallback
    try:
        data = untrusted_json.loads(raw)
        crop = check_crop_config(CropConfig(**data["crop"])) if "crop" in data else fallback.crop
        embed = {k: v for k, v in (data.get("embed") or {}).items() if k not in MACHINE_LOCAL}
        embed_cfg = replace(fallback.embed,
                            **{k: tuple(v) if k == "models" else v for k, v in embed.items()})
    except (ValueError, TypeError, AttributeError) as err:
        raise StoreError(f"{where}: the store's saved settings are malformed or were made by a "
                         f"newer cellseek ({err}); upgrade cellseek or use another store") from None
    return replace(fallback, crop=crop, embed=embed_cfg)




class Session:
    """An annotation session over one reference store.

    Parameters
    ----------
    store : ReferenceStore
        The open store (the session owns it and closes it in :meth:`close`).
    config : Config, optional
        Settings; the crop and model settings stored in the store win over these so that every
        cell of a store is embedded the same way.

    Attributes
    ----------
    pipeline : Pipeline
        Image -> cells -> embeddings, with this store's settings (:mod:`cellseek.pipeline`).
    """

    def __init__(self, store: ReferenceStore, config: Config | None = None) -> None:
        from cellseek.errors import CellseekError
        from cellseek.store.meta import check_same_versions
        from cellseek.zoo import MODELS, model_versions

        try:
            # a store of another embedding version (e.g. the classical embedder's v1 features)
            # is refused rather than mixed with new vectors
            check_same_versions(store.model_versions,
                                model_versions(m for m in store.models if m in MODELS),
                                store.path)
        except CellseekError:
            store.close()
            raise
        self.store = store
        self.config = _config_from_meta(store.meta("config"), config or Config(), store.path)
        self.models: tuple[str, ...] = tuple(store.models)
        target = store.meta("target_pixel_size_um")
        if target is not None and self.config.crop.target_pixel_size_um is None:
            self.config = replace(self.config, crop=replace(self.config.crop,
                                                            target_pixel_size_um=float(target)))
        self.pipeline = Pipeline(self.config, self.models)
        self._suggester: Suggester | None = None
        self._state_dirty = False
        #: Where the current search state came from: "built", "saved" or "saved (updated)".
        self.index_origin: str | None = None
        self._weights: dict[str, float] | None = store.model_weights()
        # Stored weights were computed on (about) the labelled cells the store holds now.
        self._weights_n_labelled = store.n_cells(labelled=True) if self._weights else -1
        self._labels_cache: dict[int, str] | None = None
        # The label stamps (store.label_stamp) the label cache and the suggester reflect: own
        # changes advance them only when no other program changed labels in between, so a
        # saved index never claims labels it does not hold (issue 24 item 3).
        self._labels_stamp: int | None = None
        self._index_stamp: int | None = None
        self._predicted: dict[int, str] = {}
        #: ``(label stamp, class -> median area of its confirmed cells)`` (see size_flags).
        self._class_areas: tuple[int, dict[str, float]] | None = None
        self._cell_sources: dict[int, str] | None = None
        self._plane_labels: dict[int, dict[PlaneKey, np.ndarray]] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls, path, config: Config | None = None, *, overwrite: bool = False
    ) -> Session:
        """Create a new store for the configured model set and open a session on it."""
        from cellseek.pipeline import resolve_models
        from cellseek.zoo import get_spec, model_versions
        from cellseek.zoo.licences import licence_warning

        config = config or Config()
        models = resolve_models(config)
        warning = licence_warning(models)
        if warning:
            logger.warning("%s: %s", path, warning)
        dims = {m: get_spec(m).dim for m in models}
        embed = asdict(config.embed) | {"models": list(models)}
        saved = json.dumps({"crop": asdict(config.crop), "embed": embed})
        store = ReferenceStore.create(path, dims, overwrite=overwrite, meta={"config": saved},
                                      versions=model_versions(models))
        return cls(store, config)

    @classmethod
    def open(cls, path, config: Config | None = None, *, readonly: bool = False) -> Session:
        """Open an existing store."""
        return cls(ReferenceStore.open(path, readonly=readonly), config)

    def close(self) -> None:
        """Save the search state when confirmed cells changed it, then close the store."""
        if self._suggester is not None and self._state_dirty and not self.store.readonly:
            self._save_suggester()
        self.store.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def plane_labels(self, image_id: int) -> dict[PlaneKey, np.ndarray]:
        """``(t, z) -> label image`` of an image (from the store, cached)."""
        if image_id not in self._plane_labels:
            self._plane_labels[image_id] = self.store.plane_labels(image_id)
        return self._plane_labels[image_id]

    # ------------------------------------------------------------------ models
    def embedders(self) -> dict:
        """The session's embedders, built once (weights are loaded here)."""
        return self.pipeline.embedders()

    # ------------------------------------------------------------------ images
    def segment(
        self, image: ImageData, config: SegmentConfig | None = None, **plane_kw
    ) -> Work[dict[PlaneKey, np.ndarray]]:
        """Segment every plane of an image (see :meth:`cellseek.pipeline.Pipeline.segment`)."""
        pipeline = self.pipeline
        if config is not None and config != self.config.segment:
            pipeline = Pipeline(replace(self.config, segment=config), self.models)
        return (yield from pipeline.segment(image, **plane_kw))

    def add_image(
        self,
        image: ImageData | str | Path,
        *,
        labels: Mapping[PlaneKey, np.ndarray] | None = None,
        source: str | None = None,
        **plane_kw,
    ) -> Work[int]:
        """Segment (unless ``labels`` are given), crop and embed an image; store its cells.

        Planes the store already holds for this image (same pixel content) are kept as they
        are, with their cells and labels.

        Parameters
        ----------
        image : ImageData or path
            The image, or a file/folder to read with :func:`cellseek.io.read_image`.
        labels : mapping, optional
            ``(t, z) -> label image`` to use instead of segmenting.
        source : str, optional
            Device / dataset / batch the image comes from (default: the reader's device).
        **plane_kw
            Passed to :func:`cellseek.io.iter_planes` (``z_mode``, ``channel`` ...).

        Returns
        -------
        int
            The image id in the store.
        """
        from cellseek.io import content_hash, read_image

        if not isinstance(image, ImageData):
            image = read_image(image)
        path = image.path
        if path and Path(path).exists():
            path = str(Path(path).resolve())  # the store is shared: record where the file is
        digest = content_hash(image)
        found = self.store.image_by_hash(digest)
        image_id = None if found is None else int(found["id"])

        def register() -> int:
            # a new image is stored with its first plane, so a plane that cannot be segmented
            # (bad input) leaves the store as it was
            return self.store.add_image(path, digest, device=image.device,
                                        source=source or image.device,
                                        pixel_size_um=image.pixel_size_um, shape=image.shape)

        def save(plane: PlaneCells) -> None:
            nonlocal image_id
            if image_id is None:
                image_id = register()
            self._save_plane(image_id, plane)

        known = set() if image_id is None else \
            {(c["t"], c["z"]) for c in self.store.cells(image_id)}
        yield from self.pipeline.process(image, labels=labels, skip=known, on_plane=save,
                                         **plane_kw)
        if image_id is None:  # an image without planes
            image_id = register()
        return image_id

    def add_cells(
        self,
        image_id: int,
        plane: np.ndarray,
        labels: np.ndarray,
        *,
        t: int = 0,
        z: int = 0,
        pixel_size_um: float | None = None,
    ) -> Work[np.ndarray]:
        """Crop and embed the cells of one plane and store them with its label image.

        Returns
        -------
        ndarray
            The new cell ids.
        """
        result = yield from self.pipeline.embed_plane(plane, labels, t=t, z=z,
                                                      pixel_size_um=pixel_size_um)
        return self._save_plane(image_id, result)

    def _save_plane(self, image_id: int, plane: PlaneCells) -> np.ndarray:
        """Store one embedded plane: its label image, then its cells (each one transaction)."""
        self._persist_target()
        self.store.set_plane_labels(image_id, plane.t, plane.z, plane.labels)
        self.plane_labels(image_id)[(plane.t, plane.z)] = plane.labels
        if not plane.cells:
            return np.zeros(0, np.int64)
        ids = self.store.add_cells(image_id, plane.cells, plane.embeddings,
                                   thumbnails=plane.thumbnails)
        self._cell_sources = None
        return ids

    def _persist_target(self) -> None:
        """Save the physical crop pixel size once the pipeline has fixed it."""
        target = self.pipeline.target_pixel_size_um
        if target is not None and self.store.meta("target_pixel_size_um") is None:
            self.store.set_meta("target_pixel_size_um", float(target))
            self.config = replace(self.config, crop=replace(self.config.crop,
                                                            target_pixel_size_um=float(target)))

    def crop_config_for(self, cells, pixel_size_um: float | None) -> CropConfig:
        """The crop settings for cells of an image with this pixel size.

        See :meth:`cellseek.pipeline.Pipeline.crop_config` (the pixel-size rule); the target it
        fixes is saved in the store (meta ``target_pixel_size_um``).
        """
        crop = self.pipeline.crop_config(cells, pixel_size_um)
        self._persist_target()
        return crop

    # ------------------------------------------------------------------ labels
    def _id_to_label(self) -> dict[int, str]:
        if self._labels_cache is None:
            self._labels_stamp, ids, labs = self.store.label_snapshot()
            self._labels_cache = dict(zip(ids.tolist(), labs))
        return self._labels_cache

    def label(self, cell_ids: Sequence[int], labels: Sequence[str], *, source="user") -> None:
        """Confirm labels (one undoable batch); labelled cells join the reference index."""
        cell_ids = [int(c) for c in cell_ids]
        if len(cell_ids) != len(labels):
            raise ValueError(f"{cells_text(len(cell_ids))} but {count_text(len(labels), 'label')}")
        if not cell_ids:
            return
        self.store.set_labels(cell_ids, list(labels), source=source)
        self._after_label_change(dict(zip(cell_ids, map(str, labels))))

    def accept(self, cell_ids: Sequence[int]) -> int:
        """Confirm the stored suggestion of each cell that has one; returns how many."""
        pairs = [(c, self.store.cell(int(c))["suggestion"]) for c in cell_ids]
        pairs = [(c, s) for c, s in pairs if s]
        self.label([c for c, _ in pairs], [s for _, s in pairs], source="accepted")
        return len(pairs)

    def undo(self):
        """Undo the last batch of label changes; returns what was restored (or None)."""
        restored = self.store.undo()
        if restored:
            self._after_label_change({int(c): label for c, label in restored})
        return restored

    def _after_label_change(self, changes: Mapping[int, str | None]) -> None:
        """Keep the label cache and the fitted suggester's index in step with the confirmed
        labels (``changes``: cell id -> its label now, None when it has none).

        Their label stamps move with the change only when the store's stamp before it was
        theirs (no other program changed labels in between); otherwise they stay behind, and
        the saved index says so (the next opening brings it up to date)."""
        before, after = self.store.last_label_write or (None, None)
        if before is not None and self._labels_stamp == before:
            self._labels_stamp = after
        if before is not None and self._index_stamp == before:
            self._index_stamp = after
        if self._labels_cache is not None:
            for c, label in changes.items():
                if label is None:
                    self._labels_cache.pop(int(c), None)
                else:
                    self._labels_cache[int(c)] = label
        suggester = self._suggester
        if suggester is None:
            return
        now = {int(c): label for c, label in changes.items()}  # labels read from the change
        present = suggester.labels
        gone = [c for c, label in now.items() if label is None and c in present]
        new = [c for c, label in now.items() if label is not None and c not in present]
        changed = [c for c, label in now.items() if label is not None and c in present]
        suggester.remove(gone)
        suggester.relabel(changed, [now[c] for c in changed])
        self._state_dirty = True
        if new:
            cells = self.cell_set(new, classes=[now[c] for c in new])
            if not suggester.knows(cells.sources):
                self._suggester = None  # a new source: refit on next use
                return
            suggester.add(cells)

    # ------------------------------------------------------------------ weights, suggester
    def model_weights(self, *, refresh: bool = False) -> dict[str, float]:
        """Current model weights; recomputed when asked or when the labelled set grew by 20 %
        (and saved with the store unless it is read-only)."""
        n = self.store.n_cells(labelled=True)
        stale = self._weights is None or n > 1.2 * max(self._weights_n_labelled, 1)
        if refresh or stale:
            self._weights = compute_weights(self.reference_set(), self.config, self.models)
            self._weights_n_labelled = n
            if not self.store.readonly:
                self.store.set_model_weights(self._weights)
            self._suggester = None
        return dict(self._weights)

    def _sources_of(self, cell_ids: Sequence[int]) -> list[str]:
        """Source name of each cell (its image's source), from a map cached per cell set."""
        if self._cell_sources is None:
            self._cell_sources = {}
        missing = [int(c) for c in cell_ids if int(c) not in self._cell_sources]
        if missing:
            # all of them when many are asked for (one scan), only those for a click
            self._cell_sources.update(self.store.cell_sources(
                None if len(missing) > 10_000 else missing))
        return [self._cell_sources[int(c)] for c in cell_ids]

    def cell_set(self, cell_ids: Sequence[int], *, labelled: bool = False,
                 classes: Sequence | None = None) -> CellSet:
        """Cells of the store as a :class:`~cellseek.search.cellset.CellSet`.

        Parameters
        ----------
        cell_ids : sequence of int
        labelled : bool
            Attach the confirmed labels (every cell must have one).
        classes : sequence, optional
            Labels to attach instead (e.g. current suggestions).
        """
        ids = [int(c) for c in cell_ids]
        embs = {m: self.store.embeddings(m, ids) for m in self.models}
        labels = [self._id_to_label()[c] for c in ids] if labelled else \
            (list(classes) if classes is not None else None)
        return CellSet(np.asarray(ids, np.int64), embs, self._sources_of(ids), labels,
                       str(self.store.path))

    def reference_set(self) -> CellSet:
        """Every confirmed cell, with its label."""
        return self.cell_set(list(self._id_to_label()), labelled=True)

    def _current_class(self, cell: Mapping) -> str | None:
        return cell["label"] or self._predicted.get(cell["id"]) or cell["suggestion"]

    def _context(self, exclude: Iterable[int] = ()) -> CellSet | None:
        """The unconfirmed cells (minus ``exclude``) with their current classes, for alignment."""
        exclude = set(exclude)
        cells = [c for c in self.store.cells(labelled=False) if c["id"] not in exclude]
        if not cells:
            return None
        return self.cell_set([c["id"] for c in cells],
                             classes=[self._current_class(c) for c in cells])

    def suggester(self, progress=None) -> Suggester:
        """The fitted suggester: the one saved with the store when it is current, else fitted
        from the store (and saved); ``progress`` receives the index build's reports."""
        weights = self.model_weights()
        if self._suggester is None:
            self._suggester = self._load_saved_suggester(weights)
        if self._suggester is None:
            self._suggester = Suggester(self.config, self.models).fit(
                self.reference_set(), self._context(), weights=weights, progress=progress)
            self._index_stamp = self._labels_stamp  # built from the label cache
            self.index_origin = "built"
            self._save_suggester()
        return self._suggester

    # ------------------------------------------------------------------ saved search state
    def state_key(self) -> str:
        """What a saved search state must have been built with (models, settings)."""
        from cellseek.search.saved import state_key
        from cellseek.zoo import get_spec

        versions = {}
        for m in self.models:
            try:
                versions[m] = str(getattr(get_spec(m), "version", ""))
            except Exception:  # noqa: BLE001 - a model outside this cellseek's registry
                versions[m] = ""
        return state_key(self.config, self.models, self.store.models, versions)

    def _load_saved_suggester(self, weights: Mapping[str, float]) -> Suggester | None:
        """The suggester saved with the store, brought up to date with the labels changed
        since; None when there is none or it cannot be used (the reason is logged)."""
        from cellseek.errors import StoreError
        from cellseek.search import saved

        if self.config.align.method not in saved.SAVABLE_ALIGNMENTS:
            return None
        try:
            got = self.store.search_state()
        except StoreError as err:
            logger.warning("%s; the search index is rebuilt", err)
            return None
        if got is None:
            return None
        key, header, arrays = got
        expected = self.state_key()
        if key != expected:
            logger.info("%s: the saved search index was built with other settings; rebuilding",
                        self.store.path)
            return None
        try:
            s = saved.load(header, arrays, self.config, expected, self.store.models)
        except saved.SavedStateError as err:
            logger.warning("%s: %s; the search index is rebuilt", self.store.path, err)
            return None
        if any(abs(s.weights.get(m, -1.0) - w) > 1e-9 for m, w in weights.items()):
            logger.info("%s: the model weights changed since the search index was saved; "
                        "rebuilding", self.store.path)
            return None
        now = self.store.label_stamp()
        if header.get("labels_stamp") == now:
            self._state_dirty = False  # no confirmed label changed since it was saved
            self._index_stamp = now
            self.index_origin = "saved"
            return s
        if self._labels_stamp != now:
            self._labels_cache = None  # compare with the labels of now, not an older cache
        labels = self._id_to_label()
        added, removed, relabelled = saved.label_changes(s, labels)
        s.remove(removed)
        s.relabel(relabelled, [labels[c] for c in relabelled])
        if added:
            cells = self.cell_set(added, labelled=True)
            if not s.knows(cells.sources):
                return None  # confirmed cells of a source it has not seen: refit
            s.add(cells)
        self._index_stamp = self._labels_stamp
        self._state_dirty = bool(added or removed or relabelled)
        if not self._state_dirty and not self.store.readonly:
            # labels changed and changed back (an undo): stamp the state, so that the next
            # opening does not compare every label again
            try:
                self.store.update_search_header(
                    key, {**header, "labels_stamp": self._index_stamp})
            except StoreError as err:
                logger.info("%s; the saved search index is compared again next time", err)
        self.index_origin = "saved" + (" (updated)" if self._state_dirty else "")
        return s

    def _save_suggester(self, *, required: bool = False) -> None:
        """Save the fitted suggester with the store (not for read-only sessions).

        A failure (a full disk) is logged, as the index is a cache, unless ``required``: then
        the :class:`~cellseek.errors.StoreError` is raised."""
        from cellseek.errors import StoreError
        from cellseek.search import saved

        s = self._suggester
        if s is None or self.store.readonly or not saved.can_save(s):
            return
        key = self.state_key()
        header, arrays = saved.dump(s, key)
        # The stamp the suggester was brought up to, not the store's: labels another program
        # confirmed meanwhile are not in it, and the next opening compares and adds them.
        header["labels_stamp"] = self._index_stamp
        if self._index_stamp != self.store.label_stamp():
            logger.info("%s: labels changed in another program since the search index was "
                        "brought up to date; it is saved as of then and updated on next use",
                        self.store.path)
        try:
            self.store.save_search_state(key, header, arrays)
        except StoreError as err:
            if required:
                raise
            logger.warning("%s; the search index was not saved (it is rebuilt next time)", err)
            return
        self._state_dirty = False

    def drop_saved_index(self) -> bool:
        """Delete the search state saved with the store; whether there was one."""
        return self.store.drop_search_state()

    def index(self, progress=None):
        """The reference index (:class:`~cellseek.search.index.CellIndex`) of the suggester
        (``progress``: see :meth:`suggester`)."""
        return self.suggester(progress).index

    def fused_vectors(self, cell_ids: Sequence[int]) -> np.ndarray:
        """The vectors suggestions are computed in: source offsets removed, model weights
        applied, reduced by the per-model PCA when ``config.index.pca_components`` is set."""
        cells = self.cell_set(cell_ids)
        if not self.suggester().knows(cells.sources):
            self._suggester = None
        return self.suggester().vectors(cells)

    def refresh(self) -> None:
        """Forget cached labels and the suggester after the store was changed directly.

        Call it after :meth:`ReferenceStore.rename_class`, :meth:`~ReferenceStore.merge_classes`
        or :meth:`~ReferenceStore.merge_from` on ``self.store``.
        """
        self._labels_cache = None
        self._suggester = None
        self._cell_sources = None

    def rebuild_index(self, progress=None):
        """Refit the suggester from the store's labels now (ignoring a saved state), save it,
        return its index (``progress``: see :meth:`suggester`).

        Raises
        ------
        StoreError
            The index was built but could not be saved (a full disk, a locked store); the
            store is unchanged and the index stays in use in this session.
        """
        self._labels_cache = None  # the labels of now, also those another program confirmed
        self._suggester = Suggester(self.config, self.models).fit(
            self.reference_set(), self._context(), weights=self.model_weights(),
            progress=progress)
        self._index_stamp = self._labels_stamp
        self.index_origin = "built"
        self._save_suggester(required=True)
        return self._suggester.index

    # ------------------------------------------------------------------ suggestions
    def suggest_cells(self, cell_ids: Sequence[int], *, k: int | None = None) -> list[Suggestion]:
        """Suggestions (with neighbours) for the given cells; nothing is stored."""
        if not len(cell_ids):
            return []
        cells = self.cell_set(cell_ids)
        if not self.suggester().knows(cells.sources):
            self._suggester = None  # cells of a source added since the fit
        found = self.suggester().suggest(cells, k)
        flags = self.size_flags(cell_ids, [s.best_label for s in found])
        return [replace(s, size_flag=flags.get(int(c))) for c, s in zip(cell_ids, found)]

    def suggest(self, cell_ids: Sequence[int] | None = None, *, batch: int = 4096) -> Work[dict]:
        """Suggest labels for cells (default: every unlabelled cell) and store the suggestions
        (a read-only session only returns them).

        The suggestion run of :func:`cellseek.search.suggester.predict`: with source alignment
        on, the alignment is refitted on the latest suggestions ``config.align.iterations``
        times. The final fit stays in use for clicks until the next run.

        Returns
        -------
        dict
            Cell id -> :class:`~cellseek.types.Suggestion`.
        """
        cells = self.store.cells(labelled=False)
        if cell_ids is None:
            cell_ids = [c["id"] for c in cells]
        cell_ids = [int(c) for c in cell_ids]
        current = {c["id"]: self._current_class(c) for c in cells}
        weights = self.model_weights()
        yield Progress(0, 2, "suggest", cells_text(len(cell_ids)))
        query = self.cell_set(cell_ids, classes=[current.get(c) for c in cell_ids])
        background = self._context(exclude=cell_ids)
        result = predict(self.reference_set(), query, self.config, models=self.models,
                         weights=weights, background=background)
        self._suggester = result.suggester
        self._index_stamp = self._labels_stamp  # predict used the label cache
        self.index_origin = "built"
        self._save_suggester()
        flags = self.size_flags(cell_ids, [s.best_label for s in result.suggestions],
                                cells=self.store.cells())
        out = {c: replace(s, size_flag=flags.get(c))
               for c, s in zip(cell_ids, result.suggestions)}
        self._predicted.update((c, s.best_label) for c, s in out.items() if s.best_label)
        yield Progress(1, 2, "suggest", "saving")
        for start in range(0 if not self.store.readonly else len(cell_ids), len(cell_ids), batch):
            chunk = cell_ids[start : start + batch]
            self.store.set_suggestions(chunk, [out[c].label for c in chunk],
                                       [out[c].confidence for c in chunk],
                                       best_labels=[out[c].best_label for c in chunk])
        yield Progress(2, 2, "suggest", "done")
        return out

    def review_order(self, suggestions: Mapping[int, Suggestion]) -> list[int]:
        """Cell ids ordered for review: uncertain first, then by rising confidence."""
        ids = list(suggestions)
        return [ids[i] for i in review_queue([suggestions[c] for c in ids])]

    # ------------------------------------------------------------------ export
    def export(self, folder, *, label_images: bool = True,
               overwrite: bool = False) -> dict[str, Path]:
        """Write the store copy, the cells table and the label images into a folder.

        See :meth:`ReferenceStore.export_folder`: a non-empty folder is refused unless
        ``overwrite``.
        """
        return self.store.export_folder(folder, label_images=label_images, overwrite=overwrite)

    # ================================================================== domain rules
    # Classes and their keys and colours, accepting suggestions, re-segmenting planes and
    # restoring an image's cells: the rules the napari widget, the CLI and scripts share.
    # They use the store's public API and the methods above.

    def classes(self) -> list[ClassInfo]:
        """Classes in creation order, each with its number key, colour and confirmed count.

        Key n is the n-th class ever created in this reference set (classes added with
        :meth:`add_class` keep their place even without cells), so adding a class never changes
        the key of another. The order and colours are saved in the store (meta ``class_order``
        and ``class_colours``) when it is writable.

        Returns
        -------
        list of ClassInfo
        """
        from cellseek.annotation.classes import class_infos

        counts = self.store.classes()
        order = self._class_order(counts)
        return class_infos(order, self._colours_for(order), counts)

    def class_names(self) -> list[str]:
        """Class names in creation order (see :meth:`classes`)."""
        return self._class_order(self.store.classes())

    def class_colours(self) -> dict[str, tuple[float, float, float]]:
        """Class -> RGB in [0, 1]: the one palette of napari, the plots and ``cellseek demo``."""
        return self._colours_for(self.class_names())

    def class_for_key(self, number: int) -> str:
        """The class that number key ``number`` (1-9) gives.

        Raises
        ------
        CellseekError
            No class has that key.
        """
        names = self.class_names()
        if not 1 <= int(number) <= min(len(names), 9):
            raise CellseekError(
                f"there is no class {number}: the reference set has {len(names)} classes; add "
                "classes in the Reference set tab (or label cells with their class name)")
        return names[int(number) - 1]

    def add_class(self, name: str) -> str:
        """Add a class (it gets the next key and colour before any cell has it)."""
        name = self._class_name(name)
        order = self.class_names()
        if name not in order:
            self._save_class_order([*order, name])
        return name

    def rename_class(self, old: str, new: str) -> None:
        """Rename a class everywhere (its cells, key and colour stay); one undo step."""
        new = self._class_name(new)
        order = self.class_names()
        if old not in order:
            raise CellseekError(f"there is no class {old!r} to rename")
        if new in order and new != old:
            raise CellseekError(f"class {new!r} exists already: merge {old!r} into it instead")
        colours = self._colours_for(order)
        if old in self.store.classes():
            self.store.rename_class(old, new)
            self.refresh()
        colours[new] = colours.pop(old)
        self._save_class_order([new if c == old else c for c in order], colours)

    def merge_classes(self, sources: Sequence[str], into: str) -> None:
        """Give every cell of the ``sources`` classes the class ``into``; one undo step.

        ``into`` keeps its place and colour when it exists; otherwise it takes the place of the
        first source. The sources are removed from the class list.
        """
        into = self._class_name(into)
        order = self.class_names()
        sources = [s for s in dict.fromkeys(sources) if s != into]
        unknown = [s for s in sources if s not in order]
        if unknown:
            raise CellseekError(f"there is no class {unknown[0]!r} to merge")
        if not sources:
            return
        stored = set(self.store.classes())
        if any(s in stored for s in sources):
            self.store.merge_classes([s for s in sources if s in stored], into)
            self.refresh()
        colours = self._colours_for(order)
        if into not in order:
            at = order.index(sources[0])
            order[at] = into
            colours[into] = colours[sources[0]]
        order = [c for c in order if c not in sources]
        self._save_class_order(order, {c: colours[c] for c in order})

    def accept_suggestions(
        self, suggestions: Mapping[int, Suggestion], *, threshold: float | None = None
    ) -> dict[int, str]:
        """Confirm the best label of suggested cells (one undoable step).

        Parameters
        ----------
        suggestions : mapping
            Cell id -> :class:`~cellseek.types.Suggestion` (e.g. what :meth:`suggest` returned).
        threshold : float, optional
            Only suggestions with at least this confidence; None accepts every best guess
            (the user looked at the cells and agrees).

        Returns
        -------
        dict
            Cell id -> confirmed class, for the cells that were accepted. Cells already
            confirmed and cells without any suggestion are left alone; with a ``threshold``
            (a bulk accept), so are objects whose size is flagged (``Suggestion.size_flag``:
            fragments, merged blobs; :meth:`accept_above` says how many).
        """
        return self.accept_above(suggestions, threshold)[0]

    def accept_above(self, suggestions: Mapping[int, Suggestion], threshold: float | None
                     ) -> tuple[dict[int, str], dict[int, str]]:
        """:meth:`accept_suggestions`, also returning the objects skipped for their size.

        Returns
        -------
        (dict, dict)
            Cell id -> confirmed class; and cell id -> size flag (``"fragment"``,
            ``"oversized"``) of the cells that cleared the threshold but were not accepted.
        """
        labelled = self._id_to_label()
        eligible = {
            int(c): s for c, s in suggestions.items()
            if s.best_label and int(c) not in labelled
            and (threshold is None or s.confidence >= threshold)
        }
        skipped = {c: s.size_flag for c, s in eligible.items()
                   if threshold is not None and s.size_flag}
        chosen = {c: s.best_label for c, s in eligible.items() if c not in skipped}
        self.label(list(chosen), list(chosen.values()), source="accepted")
        if skipped:
            logger.info("bulk accept skipped %s far from a cell's size",
                        count_text(len(skipped), "object"))
        return chosen, skipped

    def size_flags(self, cell_ids: Sequence[int], best_labels: Sequence[str | None], *,
                   cells: Sequence[Mapping] | None = None) -> dict[int, str]:
        """Cell id -> ``"fragment"`` / ``"oversized"`` for objects far from a cell's size.

        See :mod:`cellseek.search.sizes`: the reference is the median area of the confirmed
        cells of the object's best class, else its image's typical object. ``cells``: every
        cell of the store when the caller has read them already.
        """
        from cellseek.search.sizes import size_flag, typical_area

        ids = [int(c) for c in cell_ids]
        if not ids:
            return {}
        if cells is None:  # a click: the cells' images, and the class sizes cached per stamp
            images = {self.store.cell(c)["image_id"] for c in ids}
            cells = [c for i in images for c in self.store.cells(i)]
            per_class = self._confirmed_areas()
        else:
            per_class = self._confirmed_areas(cells)
        by_id = {int(c["id"]): c for c in cells}
        per_image: dict[int, list[float]] = {}
        for c in by_id.values():
            per_image.setdefault(int(c["image_id"]), []).append(float(c["area"]))
        typical = {i: typical_area(a) for i, a in per_image.items()}
        out = {}
        for c, label in zip(ids, best_labels):
            cell = by_id.get(c)
            if cell is None:
                continue
            flag = size_flag(float(cell["area"]), label, per_class, typical.get(cell["image_id"]))
            if flag:
                out[c] = flag
        return out

    def _confirmed_areas(self, cells: Sequence[Mapping] | None = None) -> dict[str, float]:
        """Class -> median area of its confirmed cells, read once per label stamp (a click
        does not read every confirmed cell of a large reference set again)."""
        from cellseek.search.sizes import class_areas

        stamp = self.store.label_stamp()
        if self._class_areas is not None and self._class_areas[0] == stamp:
            return self._class_areas[1]
        if cells is None:
            cells = self.store.cells(labelled=True)
        confirmed = [(c["label"], c["area"]) for c in cells if c["label"]]
        per_class = class_areas(*zip(*confirmed)) if confirmed else {}
        self._class_areas = (stamp, per_class)
        return per_class

    # ------------------------------------------------------------------ object edits
    def merge_cells(self, cell_ids: Sequence[int], plane: np.ndarray) -> int:
        """Merge objects of one plane into one cell (see :mod:`cellseek.cell_edits`)."""
        return self._edits().merge(cell_ids, plane)

    def split_cell(self, cell_id: int, plane: np.ndarray, point_rc=None, *, mask=None,
                   segmenter=None) -> list[int]:
        """Split one object by a SAM click inside it (or a given mask); see
        :meth:`cellseek.cell_edits.CellEdits.split`."""
        return self._edits().split(cell_id, plane, point_rc, mask=mask, segmenter=segmenter)

    def _edits(self):
        from cellseek.cell_edits import CellEdits

        return CellEdits(self.store, self.pipeline, plane_labels=self.plane_labels,
                         on_change=self._after_edit)

    def _after_edit(self, image_id: int, removed: dict[int, str | None],
                    added: dict[int, str | None]) -> None:
        """Keep caches and the suggester in step after cells were replaced."""
        self._cell_sources = None
        self._class_areas = None
        self._plane_labels.pop(int(image_id), None)
        for c in removed:
            self._predicted.pop(int(c), None)
        self._after_label_change({**{c: None for c, lab in removed.items() if lab},
                                  **{c: lab for c, lab in added.items() if lab}})

    def accept_best(self, cell_ids: Sequence[int]) -> dict[int, str]:
        """Confirm the current best guess for cells (fresh from the index, as the neighbour
        gallery shows it), whatever its confidence; one undoable step. Returns what was
        confirmed."""
        ids = [int(c) for c in cell_ids if int(c) not in self._id_to_label()]
        return self.accept_suggestions(dict(zip(ids, self.suggest_cells(ids)))) if ids else {}

    def clear_planes(self, image_id: int, planes: Iterable[PlaneKey]) -> list[PlaneKey]:
        """Forget the cells of planes that are about to be segmented again.

        Planes holding a confirmed label keep all their cells (re-segmenting must never lose
        a label); the other planes lose their stored cells, embeddings and thumbnails.

        Returns
        -------
        list of (t, z)
            The planes that were kept.
        """
        planes = [(int(t), int(z)) for t, z in planes]
        by_plane: dict[PlaneKey, list[dict]] = {}
        for cell in self.store.cells(int(image_id)):
            by_plane.setdefault((cell["t"], cell["z"]), []).append(cell)
        kept = [k for k in planes if any(c["label"] for c in by_plane.get(k, ()))]
        doomed = [c["id"] for k in planes if k not in kept for c in by_plane.get(k, ())]
        if doomed:
            self.store.delete_cells(doomed)  # unconfirmed: the suggester's index keeps its cells
            self._cell_sources = None
        stored = self.plane_labels(int(image_id))
        for key in planes:
            if key not in kept and key in stored:  # the plane holds no cells until re-added
                empty = np.zeros_like(stored[key])
                self.store.set_plane_labels(int(image_id), key[0], key[1], empty)
                stored[key] = empty
        return kept

    def find_image(self, image: ImageData) -> int | None:
        """Store id of an image with the same pixel content, or None."""
        from cellseek.io import content_hash

        known = self.store.image_by_hash(content_hash(image))
        return None if known is None else int(known["id"])

    def restore_image(self, image: ImageData) -> RestoredImage | None:
        """An image's cells as the store holds them (label images and cells), or None when the
        store does not know the image or holds no cells of it."""
        image_id = self.find_image(image)
        if image_id is None:
            return None
        planes = self.plane_labels(image_id)
        if not planes:
            return None
        return RestoredImage(image_id, dict(planes), self.store.cells(image_id))

    def image_cells(self, image_id: int) -> list[dict]:
        """The stored cells of one image (see :meth:`ReferenceStore.cells`)."""
        return self.store.cells(int(image_id))

    def cell(self, cell_id: int) -> dict:
        """One stored cell (see :meth:`ReferenceStore.cell`)."""
        return self.store.cell(int(cell_id))

    def image_path(self, image_id: int) -> str:
        """The path an image was read from."""
        return str(self.store.image(int(image_id))["path"])

    def summary(self) -> dict:
        """``path``, ``n_cells``, ``n_labelled``, ``models`` and ``weights`` of the store."""
        from cellseek.search.weighting import uniform_weights

        weights = self.store.model_weights() or uniform_weights(self.models)
        return {"path": Path(self.store.path), "n_cells": self.store.n_cells(),
                "n_labelled": self.store.n_cells(labelled=True), "models": self.models,
                "weights": dict(weights)}

    def import_reference(self, path) -> dict:
        """Merge another reference set into this one (see :meth:`ReferenceStore.merge_from`)."""
        result = self.store.merge_from(str(path))
        self.refresh()
        return result

    def _class_order(self, counts: Mapping[str, int]) -> list[str]:
        from cellseek.annotation.classes import ordered_classes

        saved = _names(self.store.meta("class_order", None))
        saved += [c for c in _names(self.store.meta("gui_classes", None)) if c not in saved]
        if all(c in saved for c in counts):
            return ordered_classes(saved, counts)
        first: dict[str, int] = {}
        for cell in self.store.cells(labelled=True):
            first.setdefault(cell["label"], int(cell["id"]))
        order = ordered_classes(saved, counts, first)
        self._save_class_order(order)
        return order

    def _colours_for(self, order: Sequence[str]) -> dict[str, tuple[float, float, float]]:
        from cellseek.annotation.colours import class_colours

        saved = _colours(self.store.meta("class_colours", None))
        colours = class_colours(order, {k: v for k, v in saved.items() if k in order})
        if any(c not in saved for c in order):
            self._save_class_order(list(order), colours)
        return {c: colours[c] for c in order}

    def _save_class_order(self, order: Sequence[str], colours: Mapping | None = None) -> None:
        if self.store.readonly:
            return
        self.store.set_meta("class_order", list(order))
        if colours is not None:
            self.store.set_meta("class_colours", {k: list(v) for k, v in colours.items()})

    @staticmethod
    def _class_name(name: str) -> str:
        name = str(name).strip()
        if not name:
            raise CellseekError("a class needs a name")
        return name


def _names(value) -> list[str]:
    """A saved list of class names; anything else (a crafted store) counts as none."""
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str) and v.strip()]


def _colours(value) -> dict[str, tuple[float, float, float]]:
    """Saved class colours (name -> RGB in [0, 1]); malformed entries are left out."""
    out = {}
    if isinstance(value, dict):
        for name, rgb in value.items():
            if (isinstance(name, str) and isinstance(rgb, list) and len(rgb) in (3, 4)
                    and all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in rgb)):
                out[name] = tuple(float(v) for v in rgb[:3])
    return out


@dataclass(frozen=True)
class RestoredImage:
    """An image's cells as a reference set holds them (:meth:`Session.restore_image`).

    Attributes
    ----------
    image_id : int
    planes : dict
        ``(t, z)`` -> label image (the values the cells have in the store).
    cells : list of dict
        The stored cells of the image.
    """

    image_id: int
    planes: dict
    cells: list
