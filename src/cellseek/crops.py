"""Instance labels + image plane -> one record and one fixed-size crop per cell."""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi
from skimage.transform import resize

from cellseek.config import CropConfig, current_limits
from cellseek.errors import CellseekError
from cellseek.io.planes import plane_to_float_rgb
from cellseek.types import Cell

logger = logging.getLogger(__name__)


def cells_from_labels(labels: np.ndarray, *, t: int = 0, z: int = 0) -> list[Cell]:
    """One :class:`~cellseek.types.Cell` per labelled object.

    Parameters
    ----------
    labels : ndarray
        Integer ``(Y, X)`` instance label image, 0 = background.
    t, z : int
        Plane indices recorded on each cell.

    Returns
    -------
    list of Cell
        Sorted by label value.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size == 0:
        return []
    slices = ndi.find_objects(labels.astype(np.int64, copy=False))
    areas = ndi.sum_labels(np.ones_like(labels, dtype=np.int64), labels, ids)
    cents = ndi.center_of_mass(np.ones_like(labels, dtype=np.float32), labels, ids)
    height, width = labels.shape
    cells = []
    for lab, area, cent in zip(ids, areas, cents):
        sl = slices[int(lab) - 1]
        r0, r1, c0, c1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        cells.append(
            Cell(
                label=int(lab),
                t=int(t),
                z=int(z),
                bbox=(int(r0), int(c0), int(r1), int(c1)),
                centroid=(float(cent[0]), float(cent[1])),
                area=int(area),
                touches_border=bool(r0 == 0 or c0 == 0 or r1 == height or c1 == width),
            )
        )
    return cells


def _square_window(bbox, margin: float) -> tuple[int, int, int]:
    """Centre row, centre col and side of the square context window of one bbox."""
    r0, c0, r1, c1 = bbox
    side = int(np.ceil(max(r1 - r0, c1 - c0) * (1 + 2 * margin)))
    return (r0 + r1) // 2, (c0 + c1) // 2, max(side, 4)


def _cut(arr: np.ndarray, cr: int, cc: int, side: int, fill) -> np.ndarray:
    """Cut a ``side`` x ``side`` window centred at (cr, cc), padding outside with ``fill``."""
    r0, c0 = cr - side // 2, cc - side // 2
    out = np.empty((side, side, *arr.shape[2:]), dtype=arr.dtype)
    out[...] = fill
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + side, arr.shape[0]), min(c0 + side, arr.shape[1])
    if re > rs and ce > cs:
        out[rs - r0 : re - r0, cs - c0 : ce - c0] = arr[rs:re, cs:ce]
    return out


def extract_crops(
    plane: np.ndarray,
    labels: np.ndarray,
    cells: list[Cell],
    config: CropConfig | None = None,
    *,
    pixel_size_um: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a square crop and mask around every cell.

    The window is the cell's bounding box grown by ``config.margin`` of its longer side, made
    square, padded with the plane's median colour where it leaves the image (cells touching the
    border are kept, padded), then resized to ``config.size``. When ``pixel_size_um`` and
    ``config.target_pixel_size_um`` are both known, the window is scaled so that every crop
    pixel covers the target physical size (cells from a 20x and a 40x device compare at the same
    scale). With ``mask_mode="mask"`` the pixels outside the cell are set to the median
    background colour.

    Parameters
    ----------
    plane : ndarray
        ``(Y, X)`` or ``(Y, X, 3)`` image plane (any dtype; normalised with
        :func:`cellseek.io.planes.plane_to_float_rgb`).
    labels : ndarray
        Instance labels of the plane.
    cells : list of Cell
        Cells to crop (from :func:`cells_from_labels`).
    config : CropConfig, optional
        Crop settings (defaults from :mod:`cellseek.config`).
    pixel_size_um : float, optional
        Pixel size of the plane.

    Returns
    -------
    crops : ndarray
        float32 ``(N, size, size, 3)`` in [0, 1].
    masks : ndarray
        bool ``(N, size, size)``, True inside the cell.
    """
    config = config or CropConfig()
    if config.mask_mode not in ("context", "mask"):
        raise ValueError(f"mask_mode must be 'context' or 'mask', got {config.mask_mode!r}")
    labels = np.asarray(labels)
    if labels.shape != np.shape(plane)[:2]:
        raise ValueError(
            f"labels shape {labels.shape} does not match the image plane {np.shape(plane)[:2]}"
        )
    size = config.size
    crops = np.zeros((len(cells), size, size, 3), np.float32)
    masks = np.zeros((len(cells), size, size), bool)
    if not cells:
        return crops, masks
    image = plane_to_float_rgb(plane)
    background = np.median(image[labels == 0], axis=0) if (labels == 0).any() else np.zeros(3)
    physical_side = None
    if pixel_size_um and config.target_pixel_size_um:
        # Window side in plane pixels so that ``size`` crop pixels cover the same physical area.
        physical_side = max(
            int(round(size * float(config.target_pixel_size_um) / float(pixel_size_um))), 4
        )
        limit = current_limits().max_crop_window
        if physical_side > limit:  # both sizes may come from files made elsewhere
            raise CellseekError(
                f"a crop of {config.target_pixel_size_um:.4g} um/pixel from an image of "
                f"{float(pixel_size_um):.4g} um/pixel needs a {physical_side}-pixel window, more "
                f"than the limit of {limit} (cellseek.config.Limits.max_crop_window); check the "
                "image's pixel size and the store's crop pixel size"
            )
    for i, cell in enumerate(cells):
        cr, cc, side = _square_window(cell.bbox, config.margin)
        side = physical_side or side
        window = _cut(image, cr, cc, side, background.astype(np.float32))
        mask = _cut(labels, cr, cc, side, 0) == cell.label
        if config.mask_mode == "mask":
            window = np.where(mask[..., None], window, background.astype(np.float32))
        crops[i] = resize(window, (size, size), order=1, anti_aliasing=side > size,
                          preserve_range=True)
        masks[i] = resize(mask.astype(np.float32), (size, size), order=1) >= 0.5
    return crops, masks


def crop_pixel_sizes(
    cells: list[Cell], config: CropConfig | None = None, *, pixel_size_um: float | None = None
) -> np.ndarray:
    """Side of one crop pixel, in micrometres, of every cell cut by :func:`extract_crops`.

    Embedders that measure size (the classical one) take it, so that a cell's physical size
    survives the resize of its window to ``config.size``. Same arguments as
    :func:`extract_crops`.

    Returns
    -------
    ndarray
        float64 ``(N,)``; NaN when ``pixel_size_um`` is unknown (a size in image pixels would
        describe the device's magnification as much as the cell).
    """
    config = config or CropConfig()
    if not pixel_size_um:
        return np.full(len(cells), np.nan)
    if config.target_pixel_size_um:
        side = max(int(round(config.size * float(config.target_pixel_size_um)
                             / float(pixel_size_um))), 4)  # fmt: skip
        sides = np.full(len(cells), float(side))
    else:
        sides = np.array([_square_window(c.bbox, config.margin)[2] for c in cells], float)
    return sides / config.size * float(pixel_size_um)


def thumbnail_png(crop: np.ndarray, size: int = 64) -> bytes:
    """A small PNG of a crop (float ``(H, W, 3)`` in [0, 1]) for the neighbour gallery."""
    import io

    from PIL import Image

    img = Image.fromarray((np.clip(crop, 0, 1) * 255).astype(np.uint8))
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
