"""The pixel bound every reader applies before it decodes a plane (decompression bombs).

A 1.5 MB TIFF can declare a 1.6 GB plane; decoding it, and segmenting it, would need many
gigabytes. Readers check the declared plane size against
:attr:`cellseek.config.Limits.max_plane_pixels` (``$CELLSEEK_MAX_PLANE_PIXELS``) first.
"""

from __future__ import annotations

from cellseek.config import MAX_PLANE_PIXELS_ENV, Limits, current_limits
from cellseek.errors import ImageReadError


def check_plane_pixels(path, height: int, width: int, limits: Limits | None = None) -> None:
    """Raise :class:`ImageReadError` naming the file when a plane is larger than the limit.

    Parameters
    ----------
    path : str or Path
        The file, named in the message.
    height, width : int
        The plane size the file declares.
    limits : Limits, optional
        Default: :func:`cellseek.config.current_limits`.
    """
    limits = limits or current_limits()
    pixels = int(height) * int(width)
    if pixels > limits.max_plane_pixels:
        raise ImageReadError(
            path,
            f"an image plane of {int(width)} x {int(height)} pixels ({pixels_text(pixels)}) is "
            f"larger than the limit of {pixels_text(limits.max_plane_pixels)}; if the image is "
            f"genuine, raise the limit with ${MAX_PLANE_PIXELS_ENV}",
        )


def pixels_text(n: int) -> str:
    """``"268.4 megapixels"``, or ``"100 pixels"`` below a megapixel (never "0 megapixels")."""
    return f"{n / 1e6:,.1f} megapixels" if n >= 1_000_000 else f"{n:,} pixels"
