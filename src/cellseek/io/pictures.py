"""Read PNG, JPEG and BMP pictures with Pillow.

Colour pictures become ``YXS`` RGB (alpha dropped, palettes expanded); grey pictures stay grey
``YX`` with their bit depth (8-bit, 16-bit, 32-bit integer or float).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cellseek.errors import ImageReadError
from cellseek.io.bounds import check_plane_pixels
from cellseek.types import ImageData

logger = logging.getLogger(__name__)

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

_GREY_MODES = {"L", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}


def read_picture(path) -> ImageData:
    """Read a PNG / JPEG / BMP file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ImageData
        Axes ``"YXS"`` (device ``"rgb"``) or ``"YX"`` (device ``"image"``). Only the first
        frame of an animated file is read. DPI values are ignored (they are screen defaults,
        not microscope calibrations), so ``pixel_size_um`` is None.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            check_plane_pixels(path, im.size[1], im.size[0])  # before decoding
            im.load()
            mode = im.mode
            frames = getattr(im, "n_frames", 1)
            data, axes = _to_array(im)
    except UnidentifiedImageError as exc:
        raise ImageReadError(
            path, "not a valid PNG/JPEG/BMP image (corrupt or another format)"
        ) from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"refused as a decompression bomb: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(path, f"file is truncated or damaged: {exc}") from exc
    meta = {"pil_mode": mode}
    if frames > 1:
        meta["warnings"] = [f"{path.name}: {frames} frames, only the first is read"]
        logger.warning("%s: %d frames, only the first is read", path, frames)
    return ImageData(
        data=data,
        axes=axes,
        path=str(path),
        device="rgb" if axes.endswith("S") else "image",
        metadata=meta,
    )


def _to_array(im) -> tuple[np.ndarray, str]:
    mode = im.mode
    if mode in _GREY_MODES:
        data = np.asarray(im)
        if mode.startswith("I;16"):
            data = data.astype(np.uint16)
        return data, "YX"
    if mode in ("1", "LA"):
        return np.asarray(im.convert("L")), "YX"
    if mode != "RGB":
        im = im.convert("RGBA" if "A" in mode or "transparency" in im.info else "RGB")
    data = np.asarray(im)[..., :3]
    return np.ascontiguousarray(data), "YXS"
