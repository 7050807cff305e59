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
from cellseek.crops import cells_from_labels, extract_crops, thumbnail_png
from cellseek.errors import CellseekError
from cellseek.search.index import CellIndex
from cellseek.search.vote import adaptive_k, review_queue, suggest_from_neighbours
from cellseek.search.weighting import entropy_weights, fuse, uniform_weights
from cellseek.store import ReferenceStore
from cellseek.types import ImageData, Progress, Suggestion, Work

logger = logging.getLogger(__name__)

PlaneKey = tuple[int, int]


def _config_from_meta(raw: str | None, fallback: Config) -> Config:
    """Rebuild the crop/embed settings a store was made with (they must not drift)."""
    if not raw:
        return fallback
    data = json.loads(raw)
    crop = CropConfig(**data.get("crop", {})) if "crop" in data else fallback.crop
    embed = data.get("embed")
    embed_cfg = (
        replace(fallback.embed, **{k: tuple(v) if k == "models" else v for k, v in embed.items()})
        if embed
        else fallback.embed
    )
    return replace(fallback, crop=crop, embed=embed_cfg)


class Session:
    """An annotation session over one reference store.

    Parameters
    ----------
    store : ReferenceStore
        The open store (the session owns it and closes it in :meth:`close`).
    config : Config, optional
        Settings; the crop and embedding settings stored in the store win over these so that
        every cell of a store is embedded the same way.
    """

    def __init__(self, store: ReferenceStore, config: Config | None = None) -> None:
        self.store = store
        self.config = _config_from_meta(store.meta("config"), config or Config())
        self.models: tuple[str, ...] = tuple(store.models)
        self._embedders: dict = {}
        self._index: CellIndex | None = None
        self._reducer = None  # per-model PCA of the current index (IndexConfig.pca_components)
        self._weights: dict[str, float] | None = store.model_weights()
        # Stored weights were computed on (about) the labelled cells the store holds now.
        self._weights_n_labelled = store.n_cells(labelled=True) if self._weights else -1
        self._labels_cache: dict[int, str] | None = None
        self._offsets: dict[str, dict[str, np.ndarray]] | None = None
        self._predicted: dict[int, str] = {}
        self._cell_sources: dict[int, str] | None = None
        self._plane_labels: dict[int, dict[PlaneKey, np.ndarray]] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls, path, config: Config | None = None, *, overwrite: bool = False
    ) -> Session:
        """Create a new store for the configured model set and open a session on it."""
        from cellseek.zoo import get_spec, resolve_models

        config = config or Config()
        models = resolve_models(config.embed.preset, config.embed.models)
        dims = {m: get_spec(m).dim for m in models}
        store = ReferenceStore.create(path, dims, overwrite=overwrite)
        embed = asdict(config.embed) | {"models": list(models)}
        store.set_meta("config", json.dumps({"crop": asdict(config.crop), "embed": embed}))
        return cls(store, config)

    @classmethod
    def open(cls, path, config: Config | None = None, *, readonly: bool = False) -> Session:
        """Open an existing store."""
        return cls(ReferenceStore.open(path, readonly=readonly), config)

    def close(self) -> None:
        """Close the store."""
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
        from cellseek.zoo import load_embedder

        for name in self.models:
            if name not in self._embedders:
                self._embedders[name] = load_embedder(
                    name, weights_dir=self.config.embed.weights_dir, device=self.config.embed.device
                )
        return self._embedders

    # ------------------------------------------------------------------ images
    def segment(
        self, image: ImageData, config: SegmentConfig | None = None, **plane_kw
    ) -> Work[dict[PlaneKey, np.ndarray]]:
        """Segment every plane of an image (see :func:`cellseek.io.iter_planes` for options)."""
        from cellseek.io import iter_planes
        from cellseek.segment import segment_plane

        config = config or self.config.segment
        planes = list(iter_planes(image, **plane_kw))
        out: dict[PlaneKey, np.ndarray] = {}
        for i, (t, z, plane) in enumerate(planes):
            yield Progress(i, len(planes), "segment", f"plane t={t} z={z}")
            out[(t, z)] = yield from segment_plane(np.asarray(plane), config)
        yield Progress(len(planes), len(planes), "segment", "done")
        return out

    def add_image(
        self,
        image: ImageData | str | Path,
        *,
        labels: Mapping[PlaneKey, np.ndarray] | None = None,
        source: str | None = None,
        **plane_kw,
    ) -> Work[int]:
        """Segment (unless ``labels`` are given), crop and embed an image; store its cells.

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
        from cellseek.io import content_hash, iter_planes, read_image

        if not isinstance(image, ImageData):
            image = read_image(image)
        if labels is None:
            labels = yield from self.segment(image, **plane_kw)
        image_id = self.store.add_image(
            image.path,
            content_hash(image),
            device=image.device,
            source=source or image.device,
            pixel_size_um=image.pixel_size_um,
            shape=image.shape,
        )
        planes = [(t, z, p) for t, z, p in iter_planes(image, **plane_kw) if (t, z) in labels]
        known = {(c["t"], c["z"]) for c in self.store.cells(image_id)}
        for i, (t, z, plane) in enumerate(planes):
            if (t, z) in known:
                continue  # the same image was added before: keep its cells and labels
            yield Progress(i, len(planes), "embed", f"plane t={t} z={z}")
            yield from self.add_cells(image_id, np.asarray(plane), labels[(t, z)], t=t, z=z,
                                      pixel_size_um=image.pixel_size_um)
        yield Progress(len(planes), len(planes), "embed", "done")
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
        from cellseek.zoo.embed import embed_all

        labels = np.asarray(labels)
        self.store.set_plane_labels(image_id, t, z, labels)
        self.plane_labels(image_id)[(t, z)] = labels
        cells = cells_from_labels(labels, t=t, z=z)
        if not cells:
            return np.zeros(0, np.int64)
        crops, masks = extract_crops(plane, labels, cells, self.crop_config_for(cells,
                                                                               pixel_size_um),
                                     pixel_size_um=pixel_size_um)
        embeddings = yield from embed_all(
            self.embedders(), crops, masks, batch_size=self.config.embed.batch_size
        )
        thumbs = [thumbnail_png(c) for c in crops]
        ids = self.store.add_cells(image_id, cells, embeddings, thumbnails=thumbs)
        self._offsets = None  # a source's offset changes with its cells (index keeps its own)
        return ids

    def crop_config_for(self, cells, pixel_size_um: float | None) -> CropConfig:
        """The crop settings for cells of an image with this pixel size.

        When the pixel size is known, crops are resampled to one physical pixel size per store,
        so cells from a 20x and a 40x device compare at the same scale. Unless the config names
        it, that target is fixed by the first image with a known pixel size: the size at which
        its median cell window fills the crop. It is saved in the store (meta
        ``target_pixel_size_um``). Without a pixel size the crop follows each cell's box.
        """
        crop = self.config.crop
        if not pixel_size_um or crop.target_pixel_size_um or not cells:
            return crop
        target = self.store.meta("target_pixel_size_um")
        if target is None:
            sides = [max(c.bbox[2] - c.bbox[0], c.bbox[3] - c.bbox[1]) for c in cells]
            target = float(np.median(sides)) * (1 + 2 * crop.margin) * pixel_size_um / crop.size
            self.store.set_meta("target_pixel_size_um", target)
            logger.info("%s: crops resampled to %.4g um/pixel", self.store.path, target)
        return replace(crop, target_pixel_size_um=float(target))

    # ------------------------------------------------------------------ labels
    def _id_to_label(self) -> dict[int, str]:
        if self._labels_cache is None:
            ids, labs = self.store.labelled()
            self._labels_cache = dict(zip(ids.tolist(), labs))
        return self._labels_cache

    def label(self, cell_ids: Sequence[int], labels: Sequence[str], *, source="user") -> None:
        """Confirm labels (one undoable batch); labelled cells join the reference index."""
        cell_ids = [int(c) for c in cell_ids]
        if len(cell_ids) != len(labels):
            raise ValueError(f"{len(cell_ids)} cells but {len(labels)} labels")
        if not cell_ids:
            return
        self.store.set_labels(cell_ids, list(labels), source=source)
        self._after_label_change(cell_ids)

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
            self._after_label_change([c for c, _ in restored])
        return restored

    def _after_label_change(self, cell_ids: Iterable[int]) -> None:
        self._labels_cache = None
        labelled = self._id_to_label()
        if self._index is None:
            return
        present = set(self._index.ids().tolist())
        new = [c for c in cell_ids if c in labelled and c not in present]
        gone = [c for c in cell_ids if c not in labelled and c in present]
        if gone:
            self._index.remove(np.array(gone, np.int64))
        if new:
            self._index.add(self.fused_vectors(new), np.array(new, np.int64))

    # ------------------------------------------------------------------ weights, index
    def model_weights(self, *, refresh: bool = False) -> dict[str, float]:
        """Current model weights; recomputed when asked or when the labelled set grew by 20 %."""
        n = self.store.n_cells(labelled=True)
        stale = self._weights is None or n > 1.2 * max(self._weights_n_labelled, 1)
        if refresh or stale:
            self._weights = self._compute_weights()
            self._weights_n_labelled = n
            self.store.set_model_weights(self._weights)
            self._index = None
        return dict(self._weights)

    def _compute_weights(self) -> dict[str, float]:
        cfg = self.config.weighting
        ids, labs = self.store.labelled()
        if cfg.mode == "uniform" or len(self.models) == 1 or len(set(labs)) < 2:
            return uniform_weights(self.models)
        embs = {m: self.store.embeddings(m, ids) for m in self.models}
        return entropy_weights(embs, labs, k=cfg.k, tau=cfg.tau)

    def fused_vectors(self, cell_ids: Sequence[int]) -> np.ndarray:
        """Fused vectors of cells under the current model weights (source offsets removed,
        reduced by the index's per-model PCA when ``config.index.pca_components`` is set)."""
        return self._fuse(self._aligned_embeddings(cell_ids))

    def _fuse(self, embs: dict[str, np.ndarray]) -> np.ndarray:
        """Aligned per-model embeddings -> fused vectors (through the index's PCA, if any)."""
        weights = self.model_weights()
        if self._reducer is not None:
            embs = self._reducer.transform(embs)
        return fuse(embs, weights, self.models)

    def _aligned_embeddings(self, cell_ids: Sequence[int]) -> dict[str, np.ndarray]:
        """Model -> embeddings of cells with their source's offset removed."""
        cell_ids = [int(c) for c in cell_ids]
        embs = {m: self.store.embeddings(m, cell_ids) for m in self.models}
        offsets = self.source_offsets() if cell_ids else {}
        if offsets:
            sources = self._sources_of(cell_ids)
            for m in self.models:
                embs[m] = embs[m] - np.stack([offsets[src][m] for src in sources])
        return embs

    def _fit_reducer(self, embs: dict[str, np.ndarray]):
        """The per-model PCA fitted on the index's aligned embeddings, or None when it is off
        or there is nothing to fit or shrink."""
        from cellseek.search.reduce import ModelReducer

        n = int(self.config.index.pca_components)
        if n <= 0 or len(embs[self.models[0]]) < 2:
            return None
        if all(self.store.models[m] <= n for m in self.models):
            return None  # nothing to shrink
        return ModelReducer.fit(embs, n)

    def _sources_of(self, cell_ids: Sequence[int]) -> list[str]:
        """Source name of each cell (its image's source), from a map cached per cell set."""
        if self._cell_sources is None or any(c not in self._cell_sources for c in cell_ids):
            source_of_image = {im["id"]: im["source"] for im in self.store.images()}
            self._cell_sources = {c["id"]: source_of_image[c["image_id"]]
                                  for c in self.store.cells()}
        return [self._cell_sources[c] for c in cell_ids]

    def source_offsets(self) -> dict[str, dict[str, np.ndarray]]:
        """Source -> model -> class-balanced offset (empty when alignment is off).

        See :class:`cellseek.config.AlignConfig` and :func:`cellseek.search.align.source_offsets`.
        """
        from cellseek.search.align import source_offsets

        if self.config.align.method == "none":
            return {}
        if self.config.align.method != "balanced":
            raise CellseekError(f"unknown alignment {self.config.align.method!r}; "
                                "choose 'none' or 'balanced'")
        if self._offsets is None:
            cells = self.store.cells()
            ids = [c["id"] for c in cells]
            classes = [c["label"] or self._predicted.get(c["id"]) or c["suggestion"]
                       for c in cells]
            sources = self._sources_of(ids)
            per_model = {m: source_offsets(self.store.embeddings(m, ids), sources, classes,
                                           min_count=self.config.align.min_count)
                         for m in self.models}
            self._offsets = {src: {m: per_model[m][src] for m in self.models}
                             for src in dict.fromkeys(sources)}
        return self._offsets

    def index(self) -> CellIndex:
        """The reference index (built from the store on first use)."""
        self.model_weights()
        if self._index is None:
            ids = np.fromiter(self._id_to_label(), np.int64)
            embs = self._aligned_embeddings(ids)  # read once: fits the PCA and fills the index
            self._reducer = self._fit_reducer(embs)
            dims = self._reducer.dims if self._reducer is not None else self.store.models
            dim = sum(dims[m] for m in self.models)
            self._index = CellIndex(dim, self.config.index)
            if len(ids):
                self._index.rebuild(self._fuse(embs), ids)
        return self._index

    def refresh(self) -> None:
        """Forget cached labels and the index after the store was changed directly.

        Call it after :meth:`ReferenceStore.rename_class`, :meth:`~ReferenceStore.merge_classes`
        or :meth:`~ReferenceStore.merge_from` on ``self.store``.
        """
        self._labels_cache = None
        self._index = None
        self._offsets = None

    def rebuild_index(self) -> CellIndex:
        """Drop the cached index and rebuild it from the store."""
        self._index = None
        return self.index()

    # ------------------------------------------------------------------ suggestions
    def suggest_cells(self, cell_ids: Sequence[int], *, k: int | None = None) -> list[Suggestion]:
        """Suggestions (with neighbours) for the given cells; nothing is stored."""
        index = self.index()
        labelled = self._id_to_label()
        k = k or adaptive_k(self.store.classes(), self.config.suggest)
        if not len(cell_ids) or k == 0:
            return [Suggestion(label=None, confidence=0.0, entropy=0.0) for _ in cell_ids]
        queries = self.fused_vectors(cell_ids)
        # A labelled query finds itself first: ask for one more and drop self-matches.
        sims, ids = index.search(queries, k + 1)
        own = ids == np.asarray(cell_ids, np.int64)[:, None]
        sims = np.where(own, -np.inf, sims)
        ids = np.where(own, -1, ids)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        sims = np.take_along_axis(sims, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
        return suggest_from_neighbours(sims, ids, labelled, self.config.suggest)

    def suggest(self, cell_ids: Sequence[int] | None = None, *, batch: int = 4096) -> Work[dict]:
        """Suggest labels for cells (default: every unlabelled cell) and store the suggestions.

        Returns
        -------
        dict
            Cell id -> :class:`~cellseek.types.Suggestion`.
        """
        if cell_ids is None:
            cell_ids = [c["id"] for c in self.store.cells(labelled=False)]
        cell_ids = [int(c) for c in cell_ids]
        passes = self.config.align.iterations if self.config.align.method != "none" else 1
        total = len(cell_ids) * passes
        out: dict[int, Suggestion] = {}
        for p in range(max(passes, 1)):
            # Source offsets follow the latest suggestions (classes of unlabelled cells), so
            # every pass recomputes them and rebuilds the index over the labelled cells.
            self._offsets = None
            self._index = None
            for start in range(0, len(cell_ids), batch):
                yield Progress(p * len(cell_ids) + start, total, "suggest")
                chunk = cell_ids[start : start + batch]
                sugg = self.suggest_cells(chunk)
                out.update(zip(chunk, sugg))
                self._predicted.update((c, s.best_label) for c, s in zip(chunk, sugg)
                                       if s.best_label)
        for start in range(0, len(cell_ids), batch):
            chunk = cell_ids[start : start + batch]
            self.store.set_suggestions(chunk, [out[c].label for c in chunk],
                                       [out[c].confidence for c in chunk])
        yield Progress(total, total, "suggest", "done")
        return out

    def review_order(self, suggestions: Mapping[int, Suggestion]) -> list[int]:
        """Cell ids ordered for review: uncertain first, then by rising confidence."""
        ids = list(suggestions)
        return [ids[i] for i in review_queue([suggestions[c] for c in ids])]

    # ------------------------------------------------------------------ export
    def export(self, folder, *, label_images: bool = True) -> dict[str, Path]:
        """Write the store copy, the cells table and the label images into a folder."""
        from cellseek.io import write_labels

        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CellseekError(f"{folder}: cannot create the export folder ({err})") from err
        out = {"store": folder / Path(self.store.path).name, "cells": folder / "cells.csv"}
        self.store.backup(out["store"])
        self.store.export_cells_csv(out["cells"])
        if label_images:
            for image_id in (image["id"] for image in self.store.images()):
                for (t, z), lab in self.plane_labels(image_id).items():
                    path = folder / f"labels_image{image_id}_t{t}_z{z}.tif"
                    write_labels(path, lab)
                    out[path.stem] = path
        return out

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
            confirmed and cells without any suggestion are left alone.
        """
        labelled = self._id_to_label()
        chosen = {
            int(c): s.best_label for c, s in suggestions.items()
            if s.best_label and int(c) not in labelled
            and (threshold is None or s.confidence >= threshold)
        }
        self.label(list(chosen), list(chosen.values()), source="accepted")
        return chosen

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
            self.store.delete_cells(doomed)
            self._offsets = None
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

        saved = list(self.store.meta("class_order", None) or [])
        saved += [c for c in self.store.meta("gui_classes", None) or [] if c not in saved]
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

        saved = self.store.meta("class_colours", None) or {}
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
