"""Labelled crop sets on disk: a CSV of image paths and labels, and single-cell cropping.

The CSV layout is the one of ``shared/data/*/labels.csv``: columns ``path`` and ``label``
(required) and ``source`` (optional; the device or dataset a cell comes from), paths relative to
the CSV's folder. Extra columns are ignored.

:func:`single_cell_crop` turns an image that shows one cell of interest near its centre (PBC,
CellaVision-style galleries, BCCD crops) into the fixed-size crop and mask every embedder takes.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from cellseek.errors import CellseekError

logger = logging.getLogger(__name__)

#: Source name used when the CSV has no ``source`` column (or the cell is empty).
DEFAULT_SOURCE = "default"


@dataclass(frozen=True)
class LabelledSet:
    """A labelled set of single-cell images.

    Parameters
    ----------
    paths : tuple of Path
        Absolute image paths.
    labels : tuple of str
        One class label per image.
    sources : tuple of str
        One source (device / dataset) name per image; :data:`DEFAULT_SOURCE` when not stated.
    csv_path : Path
        The CSV the set was read from.
    """

    paths: tuple[Path, ...]
    labels: tuple[str, ...]
    sources: tuple[str, ...]
    csv_path: Path | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def classes(self) -> tuple[str, ...]:
        """Sorted distinct labels."""
        return tuple(sorted(set(self.labels)))

    def subset(self, keep) -> LabelledSet:
        """The set restricted to the rows where ``keep`` (bool array or index array) selects."""
        idx = np.arange(len(self))[np.asarray(keep)]
        return LabelledSet(
            paths=tuple(self.paths[i] for i in idx),
            labels=tuple(self.labels[i] for i in idx),
            sources=tuple(self.sources[i] for i in idx),
            csv_path=self.csv_path,
        )


def load_labelled_set(csv_path, *, check_files: bool = True) -> LabelledSet:
    """Read a labelled set from a CSV with columns ``path,label[,source]``.

    Parameters
    ----------
    csv_path : str or Path
        The CSV file; relative image paths are resolved against its folder.
    check_files : bool
        Raise when an image file does not exist.

    Returns
    -------
    LabelledSet

    Raises
    ------
    CellseekError
        When the CSV is missing, lacks a required column, has an empty path or label, or names an
        image that does not exist. The message names the CSV and the row (1 = the header).
    """
    csv_path = Path(csv_path).expanduser().resolve()
    if not csv_path.is_file():
        raise CellseekError(f"{csv_path}: labelled-set CSV not found")
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("path", "label") if c not in columns]
        if missing:
            raise CellseekError(
                f"{csv_path}: missing column(s) {', '.join(missing)}; the header must contain "
                f"'path' and 'label' (found: {', '.join(columns) or 'nothing'})"
            )
        paths, labels, sources = [], [], []
        for row_no, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if not row["path"]:
                raise CellseekError(f"{csv_path}, row {row_no}: empty 'path'")
            if not row["label"]:
                raise CellseekError(f"{csv_path}, row {row_no}: empty 'label' for {row['path']}")
            path = Path(row["path"]).expanduser()
            if not path.is_absolute():
                path = (csv_path.parent / path).resolve()
            if check_files and not path.is_file():
                raise CellseekError(f"{csv_path}, row {row_no}: image file not found: {path}")
            paths.append(path)
            labels.append(row["label"])
            sources.append(row.get("source") or DEFAULT_SOURCE)
    if not paths:
        raise CellseekError(f"{csv_path}: no rows below the header")
    logger.info("%s: %d cells, %d classes", csv_path, len(paths), len(set(labels)))
    return LabelledSet(tuple(paths), tuple(labels), tuple(sources), csv_path)


def read_rgb(path) -> np.ndarray:
    """Read an image file as float32 ``(H, W, 3)`` in [0, 1] (grey is repeated to 3 channels)."""
    from PIL import Image

    from cellseek.io.bounds import check_plane_pixels

    try:
        with Image.open(path) as im:
            check_plane_pixels(path, im.size[1], im.size[0])  # before decoding
            im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CellseekError(f"{path}: cannot read image ({exc})") from exc
    return arr


def as_rgb01(image) -> np.ndarray:
    """Any 2-D grey or ``(H, W, 3|4)`` image as float32 RGB in [0, 1] (integers by dtype range)."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise CellseekError(f"expected a grey or RGB image, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        top = 255.0 if info.max <= 255 else float(max(int(arr.max()), 1))
        arr = arr.astype(np.float32) / top
    elif arr.dtype == bool:
        arr = arr.astype(np.float32)
    else:
        arr = arr.astype(np.float32)
        hi = float(np.nanmax(arr)) if arr.size else 1.0
        if hi > 1.0:
            arr = arr / hi
    return np.clip(np.nan_to_num(arr), 0.0, 1.0)


def _is_grey(rgb: np.ndarray, tol: float = 0.02) -> bool:
    sub = rgb[::4, ::4]
    return float(np.abs(sub - sub.mean(axis=-1, keepdims=True)).max()) < tol


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    values = values[np.isfinite(values)]
    if values.size < 2 or float(values.max() - values.min()) < 1e-6:
        return float(values.mean()) if values.size else 0.0
    return float(threshold_otsu(values))


def _disc(shape, frac: float = 0.35) -> np.ndarray:
    h, w = shape
    yy, xx = np.ogrid[:h, :w]
    r = frac * min(h, w)
    return (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2 <= r * r


def _central_component(mask: np.ndarray, min_area: int) -> np.ndarray | None:
    lab, n = ndi.label(mask)
    if n == 0:
        return None
    h, w = mask.shape
    areas = np.bincount(lab.ravel(), minlength=n + 1)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    # distance of each component to the image centre = min distance of its pixels
    yy, xx = np.ogrid[:h, :w]
    dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    dmin = ndi.minimum(dist, lab, index=np.arange(1, n + 1))
    dmin = np.asarray(dmin, dtype=float)
    dmin[areas[1:] < min_area] = np.inf
    if not np.isfinite(dmin).any():
        return None
    return lab == (int(np.argmin(dmin)) + 1)


def simple_central_cell_mask(image, *, stain: str = "auto") -> np.ndarray:
    """A simple mask of the cell nearest the image centre (fallback segmenter).

    Stained images: the nucleus is found by Otsu on the red optical density (nuclei absorb red,
    red blood cells hardly do); the cell is the stained foreground (Otsu on total optical
    density, relative to the image's white point) split by a watershed seeded by the nuclei, and
    the piece holding the central nucleus is kept. Grey images: Otsu on the deviation from the
    background median. Falls back to a centred disc.

    Parameters
    ----------
    image : array-like
        Grey ``(H, W)`` or RGB ``(H, W, 3)``.
    stain : {"auto", "stained", "label-free"}

    Returns
    -------
    ndarray
        bool ``(H, W)``.
    """
    from skimage.morphology import disk, remove_small_holes
    from skimage.segmentation import watershed

    rgb = as_rgb01(image)
    h, w = rgb.shape[:2]
    if stain == "auto":
        stain = "label-free" if _is_grey(rgb) else "stained"
    min_area = max(16, int(0.002 * h * w))
    small = ndi.gaussian_filter(rgb, sigma=(1.0, 1.0, 0))
    if stain == "label-free":
        grey = small.mean(axis=-1)
        dev = np.abs(grey - np.median(grey))
        fg = dev > _otsu(dev)
        fg = ndi.binary_closing(fg, structure=disk(2))
        fg = ndi.binary_fill_holes(fg)
        comp = _central_component(fg, min_area)
        return comp if comp is not None else _disc((h, w))
    white = np.percentile(small.reshape(-1, 3), 99, axis=0).clip(0.05, 1.0)
    od = -np.log(np.clip(small / white, 1e-3, 1.0))
    od_r = od[..., 0]
    od_sum = od.sum(axis=-1)
    nuc = od_r > max(_otsu(od_r), 0.15)
    nuc = ndi.binary_opening(nuc, structure=disk(1))
    # lobes of one nucleus are merged by a closing proportional to the image size
    lobes = ndi.binary_closing(nuc, structure=disk(max(3, min(h, w) // 40)))
    nuc_c = _central_component(lobes, min_area // 4)
    fg = od_sum > max(_otsu(od_sum[~nuc]), 0.08)
    fg = ndi.binary_opening(fg, structure=disk(1))
    fg = remove_small_holes(fg | nuc, max_size=max(64, h * w // 50))
    if nuc_c is None:
        comp = _central_component(fg, min_area)
        return comp if comp is not None else _disc((h, w))
    # seeds: every nucleus component (dilated a little) and background
    lab_nuc, n = ndi.label(lobes)
    centre_lab = int(np.bincount(lab_nuc[nuc_c]).argmax())
    dist = ndi.distance_transform_edt(fg)
    markers = np.where(lab_nuc > 0, lab_nuc, 0)
    markers[~fg] = n + 1
    # non-nucleated objects (RBCs): extra seeds at distance maxima far from nuclei
    from skimage.feature import peak_local_max

    far = ndi.distance_transform_edt(lab_nuc == 0)
    peaks = peak_local_max(dist, min_distance=max(5, h // 30), threshold_abs=3, labels=fg)
    r_nuc = np.sqrt(nuc_c.sum() / np.pi)
    next_id = n + 2
    for py, px in peaks:
        if far[py, px] > 0.3 * r_nuc + 3 and markers[py, px] == 0:
            markers[py, px] = next_id
            next_id += 1
    ws = watershed(-dist, markers=markers, mask=fg | (lab_nuc > 0))
    cell = ws == centre_lab
    # shape prior: a white cell is not much wider than the convex hull of its nucleus
    from skimage.morphology import convex_hull_image

    hull = convex_hull_image(nuc_c)
    hy, hx = np.argwhere(hull).mean(axis=0)
    r_hull = np.sqrt(hull.sum() / np.pi)
    yy, xx = np.ogrid[:h, :w]
    cell &= (yy - hy) ** 2 + (xx - hx) ** 2 <= (1.6 * r_hull + 2) ** 2
    cell = ndi.binary_fill_holes(ndi.binary_opening(cell, structure=disk(2)) | nuc_c)
    comp = _central_component(cell, min_area)
    if comp is None:
        return _disc((h, w))
    return comp


def central_cell_mask(image, *, stain: str = "auto", method: str = "auto") -> np.ndarray:
    """Mask of the cell nearest the image centre.

    Parameters
    ----------
    image : array-like
        Grey or RGB image.
    stain : {"auto", "stained", "label-free"}
    method : {"auto", "segment", "simple"}
        ``"segment"`` uses :func:`cellseek.segment.classical.central_cell_mask`, ``"simple"``
        :func:`simple_central_cell_mask`; ``"auto"`` tries the former and falls back to the latter.

    Returns
    -------
    ndarray
        bool ``(H, W)``.
    """
    if method in ("auto", "segment"):
        try:
            from cellseek.segment.classical import central_cell_mask as seg_central
        except ImportError:
            if method == "segment":
                raise
        else:
            try:
                mask = np.asarray(seg_central(image, stain=stain), dtype=bool)
                if mask.shape == np.shape(image)[:2] and mask.any():
                    return mask
            except Exception as exc:  # noqa: BLE001 - fall back, never block the caller
                if method == "segment":
                    raise
                logger.warning("segment.classical.central_cell_mask failed (%s); fallback", exc)
    return simple_central_cell_mask(image, stain=stain)


def crop_around_mask(
    image, mask, *, size: int = 128, margin: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """Square crop around a mask's bounding box plus margin, padded with the border median.

    Parameters
    ----------
    image : array-like
        Grey or RGB image.
    mask : ndarray
        bool ``(H, W)``; an empty mask crops the whole image.
    size : int
        Output side.
    margin : float
        Context around the bounding box, as a fraction of its longer side (each side).

    Returns
    -------
    crop : ndarray
        float32 ``(size, size, 3)`` in [0, 1].
    mask : ndarray
        bool ``(size, size)``.
    """
    from skimage.transform import resize

    rgb = as_rgb01(image)
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    if mask.any():
        rows, cols = np.nonzero(mask)
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    else:
        r0, r1, c0, c1 = 0, h, 0, w
    side = int(np.ceil(max(r1 - r0, c1 - c0) * (1.0 + 2.0 * margin)))
    side = max(side, 2)
    cy, cx = (r0 + r1) / 2.0, (c0 + c1) / 2.0
    top, left = int(round(cy - side / 2.0)), int(round(cx - side / 2.0))
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]], axis=0)
    fill = np.median(border, axis=0).astype(np.float32)
    canvas = np.empty((side, side, 3), np.float32)
    canvas[:] = fill
    mcanvas = np.zeros((side, side), bool)
    sr0, sr1 = max(top, 0), min(top + side, h)
    sc0, sc1 = max(left, 0), min(left + side, w)
    canvas[sr0 - top : sr1 - top, sc0 - left : sc1 - left] = rgb[sr0:sr1, sc0:sc1]
    mcanvas[sr0 - top : sr1 - top, sc0 - left : sc1 - left] = mask[sr0:sr1, sc0:sc1]
    crop = resize(canvas, (size, size), order=1, anti_aliasing=side > size, preserve_range=True)
    mout = resize(mcanvas.astype(np.float32), (size, size), order=1, anti_aliasing=False) >= 0.5
    return np.clip(crop, 0, 1).astype(np.float32), mout


def single_cell_crop(
    image, *, size: int = 128, stain: str = "auto", margin: float = 0.25, method: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Crop the cell nearest the centre of a single-cell image.

    Parameters
    ----------
    image : array-like
        Grey ``(H, W)`` or RGB ``(H, W, 3)``; integer images are scaled by their dtype range.
    size : int
        Side of the square output.
    stain : {"auto", "stained", "label-free"}
        Passed to the segmenter.
    margin : float
        Context around the mask's bounding box, as a fraction of its longer side.
    method : {"auto", "segment", "simple"}
        Which central-cell segmenter to use (see :func:`central_cell_mask`).

    Returns
    -------
    crop : ndarray
        float32 ``(size, size, 3)`` in [0, 1].
    mask : ndarray
        bool ``(size, size)``.
    """
    mask = central_cell_mask(image, stain=stain, method=method)
    return crop_around_mask(image, mask, size=size, margin=margin)
