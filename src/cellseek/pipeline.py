"""The one path from pixels to embeddings: image -> planes -> label images -> crops -> embeddings.

Every caller goes through :class:`Pipeline`: the :class:`~cellseek.session.Session` (napari and
the CLI), the Dask batch tasks, reference import, whole-field evaluation, the demo and
``cellseek bench``. It threads the weights folder, the device and the model set to segmentation
and embedding in one place, and owns the pixel-size rule of the crops, so that one image gives
the same crops and embeddings on every path.

The pixel-size rule
-------------------
When an image states its pixel size, its crops are resampled to one physical pixel size per
reference set (``CropConfig.target_pixel_size_um``), so cells from a 20x and a 40x device compare
at the same scale. Unless the configuration names it, the target is fixed by the first plane with
cells of the first calibrated image: the physical pixel size at which its median cell window
fills the crop (:func:`physical_target`). The owner of the pipeline saves it (the session in the
store's meta ``target_pixel_size_um``; the batch runner before it dispatches work). Images
without a pixel size are cropped around each cell's box.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cellseek.config import Config, CropConfig
from cellseek.crops import cells_from_labels, crop_pixel_sizes, extract_crops, thumbnail_png
from cellseek.errors import CellseekError
from cellseek.types import Cell, ImageData, Progress, Work

logger = logging.getLogger(__name__)

#: ``(t, z)`` of a plane.
PlaneKey = tuple[int, int]


@dataclass
class PlaneCells:
    """The cells of one plane, cropped and embedded, ready for the store.

    Parameters
    ----------
    t, z : int
        The plane.
    labels : ndarray
        int32 ``(Y, X)`` label image of the plane.
    cells : list of Cell
        One record per label value, sorted by value.
    embeddings : dict
        Model -> float32 ``(len(cells), dim)``.
    thumbnails : list of bytes
        One PNG per cell.
    crops, masks : ndarray or None
        The crops ``(N, S, S, 3)`` and masks ``(N, S, S)`` when asked for (``keep_crops``).
    """

    t: int
    z: int
    labels: np.ndarray
    cells: list[Cell]
    embeddings: dict[str, np.ndarray]
    thumbnails: list[bytes]
    crops: np.ndarray | None = None
    masks: np.ndarray | None = None


def physical_target(cells: Sequence[Cell], pixel_size_um: float, crop: CropConfig) -> float:
    """The physical pixel size (µm) at which the median cell window of ``cells`` fills a crop.

    Parameters
    ----------
    cells : sequence of Cell
        Cells of one plane (at least one).
    pixel_size_um : float
        Pixel size of that plane.
    crop : CropConfig
        ``margin`` and ``size`` of the crops.

    Returns
    -------
    float
    """
    sides = [max(c.bbox[2] - c.bbox[0], c.bbox[3] - c.bbox[1]) for c in cells]
    return float(np.median(sides)) * (1 + 2 * crop.margin) * float(pixel_size_um) / crop.size


def resolve_models(config: Config) -> tuple[str, ...]:
    """The model names of a configuration (its explicit list, else its preset)."""
    from cellseek.zoo import resolve_models as resolve

    return tuple(resolve(config.embed.preset, config.embed.models))


class Pipeline:
    """Segmentation, cropping and embedding with one configuration.

    Parameters
    ----------
    config : Config
        Segmentation, crop and embedding settings (``embed.weights_dir`` and ``embed.device``
        reach both the segmenter and the embedders).
    models : sequence of str, optional
        Model names, in store order (default: resolved from ``config.embed``).
    embedders : dict, optional
        Already built embedders (name -> embedder) to reuse; missing ones are built on first
        use.

    Attributes
    ----------
    target_pixel_size_um : float or None
        The physical crop pixel size in force (``config.crop.target_pixel_size_um`` until the
        first calibrated plane fixes it; see the module docstring).
    """

    def __init__(self, config: Config, models: Sequence[str] | None = None, *,
                 embedders: Mapping | None = None) -> None:
        self.config = config
        self.models = tuple(models) if models is not None else resolve_models(config)
        self._embedders = dict(embedders or {})
        self.target_pixel_size_um = config.crop.target_pixel_size_um
        #: method -> why, for every segmenter this pipeline has used (``method="auto"`` may
        #: pick SAM for some planes and the classical segmenter for others).
        self.segment_choices: dict[str, str] = {}

    # ------------------------------------------------------------------ models
    @property
    def weights_dir(self):
        """The local weights folder handed to every model loader (or None)."""
        return self.config.embed.weights_dir

    def embedders(self) -> dict:
        """The embedders of the model set, built once (weights load here)."""
        from cellseek.zoo import load_embedder

        for name in self.models:
            if name not in self._embedders:
                self._embedders[name] = load_embedder(
                    name, weights_dir=self.weights_dir, device=self.config.embed.device)
        return {name: self._embedders[name] for name in self.models}

    def segment_method(self) -> str:
        """The segmenter in use: ``"sam"``, ``"classical"`` or ``"classical+sam"`` when
        ``method="auto"`` chose by plane; before any plane, what the settings say
        (``"auto"`` when it depends on the plane)."""
        from cellseek.segment import resolve_method

        if self.segment_choices:
            return "+".join(sorted(self.segment_choices))
        return resolve_method(self.config.segment, weights_dir=self.weights_dir)

    def segment_reason(self) -> str:
        """Why: one line per segmenter used (what the Segment panel shows)."""
        return "; ".join(self.segment_choices.values())

    # ------------------------------------------------------------------ segmentation
    def segment_plane(self, plane: np.ndarray) -> Work[np.ndarray]:
        """Instance labels of one plane (see :func:`cellseek.segment.segment_plane`); the
        segmenter ``method="auto"`` chose and why are kept in :attr:`segment_choices`."""
        from dataclasses import replace

        from cellseek.segment import choose_method, segment_plane

        plane = np.asarray(plane)
        method, reason = choose_method(self.config.segment, plane, weights_dir=self.weights_dir,
                                       device=self.config.embed.device)
        self.segment_choices[method] = reason
        config = replace(self.config.segment, method=method)
        labels = yield from segment_plane(plane, config, weights_dir=self.weights_dir)
        return np.asarray(labels, np.int32)

    def segment(self, image: ImageData, keys: Iterable[PlaneKey] | None = None,
                **plane_kw) -> Work[dict[PlaneKey, np.ndarray]]:
        """Segment the planes of an image: the one plane loop.

        Parameters
        ----------
        image : ImageData
        keys : iterable of (t, z), optional
            Only these planes (default: every plane :func:`cellseek.io.iter_planes` yields).
        **plane_kw
            ``z_mode``, ``z_index``, ``channel`` of :func:`cellseek.io.iter_planes`.

        Returns
        -------
        dict
            ``(t, z) -> int32 labels``.
        """
        out: dict[PlaneKey, np.ndarray] = {}
        planes = self.planes(image, keys, **plane_kw)
        for i, (t, z, plane) in enumerate(planes):
            yield Progress(i, len(planes), "segment", f"plane t={t} z={z}")
            out[(t, z)] = yield from self.segment_plane(plane)
        yield Progress(len(planes), len(planes), "segment", "done")
        return out

    @staticmethod
    def planes(image: ImageData, keys: Iterable[PlaneKey] | None = None,
               **plane_kw) -> list[tuple[int, int, np.ndarray]]:
        """``(t, z, plane)`` of an image (only ``keys`` when given), as lazy as the reader."""
        from cellseek.io import get_plane, iter_planes

        if keys is None:
            return list(iter_planes(image, **plane_kw))
        from cellseek.io import channel_index

        c = channel_index(image, plane_kw.get("channel"))
        return [(int(t), int(z), get_plane(image, int(t), int(z), c)) for t, z in keys]

    # ------------------------------------------------------------------ crops
    def crop_config(self, cells: Sequence[Cell], pixel_size_um: float | None) -> CropConfig:
        """The crop settings for cells of a plane with this pixel size (the pixel-size rule).

        The first call with a pixel size and cells fixes :attr:`target_pixel_size_um` when the
        configuration does not name it.
        """
        crop = self.config.crop
        if pixel_size_um and self.target_pixel_size_um is None and cells:
            self.target_pixel_size_um = physical_target(cells, pixel_size_um, crop)
            logger.info("crops resampled to %.4g um/pixel", self.target_pixel_size_um)
        return replace(crop, target_pixel_size_um=self.target_pixel_size_um)

    def crops(self, plane: np.ndarray, labels: np.ndarray, cells: Sequence[Cell],
              pixel_size_um: float | None) -> tuple[np.ndarray, np.ndarray]:
        """Crops and masks of ``cells`` (see :func:`cellseek.crops.extract_crops`)."""
        return extract_crops(plane, labels, list(cells), self.crop_config(cells, pixel_size_um),
                             pixel_size_um=pixel_size_um)

    def crop_sizes(self, cells: Sequence[Cell], pixel_size_um: float | None) -> np.ndarray:
        """Micrometres per crop pixel of each cell (NaN when the pixel size is unknown); the
        classical embedder measures physical size with them
        (:func:`cellseek.crops.crop_pixel_sizes`)."""
        return crop_pixel_sizes(list(cells), self.crop_config(cells, pixel_size_um),
                                pixel_size_um=pixel_size_um)

    # ------------------------------------------------------------------ embedding
    def embed_crops(self, crops: np.ndarray, masks: np.ndarray,
                    pixel_size: np.ndarray | None = None) -> Work[dict[str, np.ndarray]]:
        """Model -> float32 ``(N, dim)`` embeddings of crops (``pixel_size``: µm per crop pixel
        of each crop, for embedders that measure size; :meth:`crop_sizes`)."""
        from cellseek.zoo.embed import embed_all

        if len(crops) == 0:
            from cellseek.zoo import get_spec

            return {m: np.zeros((0, get_spec(m).dim), np.float32) for m in self.models}
        embs = yield from embed_all(self.embedders(), crops, masks,
                                    batch_size=self.config.embed.batch_size,
                                    pixel_size=pixel_size)
        for m, e in embs.items():
            if not np.isfinite(e).all():
                raise CellseekError(f"model {m!r} gave NaN or infinite embeddings; the crops "
                                    "or the model weights are unusable")
        return embs

    def embed_plane(self, plane: np.ndarray, labels: np.ndarray, *, t: int = 0, z: int = 0,
                    pixel_size_um: float | None = None,
                    keep_crops: bool = False) -> Work[PlaneCells]:
        """Cells, crops, embeddings and thumbnails of one segmented plane."""
        labels = np.asarray(labels, np.int32)
        cells = cells_from_labels(labels, t=t, z=z)
        crops, masks = self.crops(plane, labels, cells, pixel_size_um)
        embs = yield from self.embed_crops(crops, masks, self.crop_sizes(cells, pixel_size_um))
        return PlaneCells(int(t), int(z), labels, cells, embs,
                          [thumbnail_png(c) for c in crops],
                          crops if keep_crops else None, masks if keep_crops else None)

    def process(self, image: ImageData, *, labels: Mapping[PlaneKey, np.ndarray] | None = None,
                skip: Iterable[PlaneKey] = (), on_plane: Callable[[PlaneCells], None] | None = None,
                **plane_kw) -> Work[list[PlaneCells]]:
        """Segment (unless ``labels`` are given), crop and embed every plane of an image.

        Parameters
        ----------
        image : ImageData
        labels : mapping, optional
            ``(t, z) -> label image`` to use instead of segmenting; only these planes are done.
        skip : iterable of (t, z)
            Planes to leave out (e.g. already stored).
        on_plane : callable, optional
            Called with each plane as soon as it is embedded (e.g. to save it, so that a kill
            loses at most the plane in progress); the planes are then not kept in memory.
        **plane_kw
            Options of :func:`cellseek.io.iter_planes`.

        Returns
        -------
        list of PlaneCells
            One per plane done, in plane order (empty with ``on_plane``).
        """
        skip = set(skip)
        keys = None if labels is None else [k for k in labels if k not in skip]
        planes = [(t, z, p) for t, z, p in self.planes(image, keys, **plane_kw)
                  if (t, z) not in skip]
        out = []
        for i, (t, z, plane) in enumerate(planes):
            yield Progress(i, len(planes), "embed", f"plane t={t} z={z}")
            if labels is None:
                lab = yield from self.segment_plane(plane)
            else:
                lab = np.asarray(labels[(t, z)])
                if lab.shape != np.shape(plane)[:2]:
                    raise CellseekError(
                        f"{image.path or 'image'}: the label image of plane t={t} z={z} has "
                        f"shape {lab.shape}, the plane {np.shape(plane)[:2]}")
            done = yield from self.embed_plane(plane, lab, t=t, z=z,
                                               pixel_size_um=image.pixel_size_um)
            if on_plane is not None:
                on_plane(done)
            else:
                out.append(done)
        yield Progress(len(planes), len(planes), "embed", "done")
        return out

    def fix_target(self, images: Iterable[ImageData | str | Path], **plane_kw) -> float | None:
        """Fix :attr:`target_pixel_size_um` from the first calibrated plane with cells.

        The batch runner calls this before it dispatches work, so that every worker crops at the
        scale a :class:`~cellseek.session.Session` adding the same images in the same order would
        use. Images are read one at a time; unreadable ones are skipped here (they fail, with
        their error, in the run itself).

        Returns
        -------
        float or None
            The target, or None when no image states a pixel size or none has cells.
        """
        from cellseek.io import read_image
        from cellseek.types import run_work

        if self.target_pixel_size_um is not None:
            return self.target_pixel_size_um
        for image in images:
            try:
                image = image if isinstance(image, ImageData) else read_image(image)
            except CellseekError:
                continue
            if not image.pixel_size_um:
                continue
            for _, _, plane in self.planes(image, None, **plane_kw):
                cells = cells_from_labels(run_work(self.segment_plane(plane)))
                if cells:
                    self.crop_config(cells, image.pixel_size_um)
                    return self.target_pixel_size_um
        return None

    # ------------------------------------------------------------------ single-cell images
    def single_cell_crops(self, images: Sequence[ImageData | str | Path],
                          pixel_sizes: bool = False) -> Work[list[tuple]]:
        """Label image, cell, crop, mask and crop pixel size of single-cell images.

        The cell is the segmented object nearest the image centre
        (:func:`cellseek.segment.classical.central_cell_mask`), cropped exactly as cells found
        in whole fields. See :meth:`single_cells` for the parameters.

        Returns
        -------
        list of tuple
            One ``(labels, cells, crops, masks, sizes)`` per image (one cell each).
        """
        from cellseek.io import iter_planes, read_image

        cut = []
        for i, image in enumerate(images):
            if not isinstance(image, ImageData):
                image = read_image(image)
            if i % 25 == 0:
                yield Progress(i, len(images), "crop", Path(image.path).name)
            _, _, plane = next(iter_planes(image))
            try:
                labels = single_cell_labels(plane)
            except CellseekError as err:
                raise CellseekError(f"{image.path}: {err}") from None
            cells = cells_from_labels(labels)
            px = image.pixel_size_um if pixel_sizes else None
            crops, masks = self.crops(plane, labels, cells, px)
            cut.append((labels, cells, crops, masks, self.crop_sizes(cells, px)))
        yield Progress(len(images), len(images), "crop", "done")
        return cut

    def single_cells(self, images: Sequence[ImageData | str | Path],
                     pixel_sizes: bool = False) -> Work[list[PlaneCells]]:
        """Embed images that each show one cell of interest near their centre.

        The cell is the segmented object nearest the centre
        (:func:`cellseek.segment.classical.central_cell_mask`); it is then cropped and embedded
        exactly as cells found in whole fields, so reference cells and query cells compare.

        Parameters
        ----------
        images : sequence of ImageData or path
            Already read images, or files to read.
        pixel_sizes : bool
            Apply the pixel-size rule to calibrated images (off by default: single-cell galleries
            are already framed around their cell).

        Returns
        -------
        list of PlaneCells
            One per image, each with one cell (label value 1).
        """
        cut = yield from self.single_cell_crops(images, pixel_sizes)
        size = self.config.crop.size
        all_crops = np.concatenate([c[2] for c in cut]) if cut else \
            np.zeros((0, size, size, 3), np.float32)
        all_masks = np.concatenate([c[3] for c in cut]) if cut else \
            np.zeros((0, size, size), bool)
        sizes = np.concatenate([c[4] for c in cut]) if cut else np.zeros(0)
        embs = yield from self.embed_crops(all_crops, all_masks, sizes)
        return [PlaneCells(0, 0, labels, cells, {m: e[i : i + 1] for m, e in embs.items()},
                           [thumbnail_png(crops[0])], crops, masks)
                for i, (labels, cells, crops, masks, _) in enumerate(cut)]


def single_cell_labels(plane: np.ndarray) -> np.ndarray:
    """Label image (0/1) of the cell nearest the centre of a single-cell image."""
    from cellseek.segment.classical import central_cell_mask

    plane = np.asarray(plane)
    if plane.size and (plane == plane.flat[0]).all():
        raise CellseekError(f"the image is constant (every pixel is {plane.flat[0]}): "
                            "no cell to take")
    mask = central_cell_mask(plane)
    if not mask.any():
        raise CellseekError("no cell found near the image centre")
    return mask.astype(np.int32)
