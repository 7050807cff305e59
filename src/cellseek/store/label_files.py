"""Names of the label image files of an export folder: after the source image and its plane.

``smear01.tif`` plane t=0, z=0 gives ``smear01_t0_z0_labels.tif``. The image path comes from the
store, which may come from another lab, so a name keeps only letters, digits, ``-``, ``_`` and
``.`` of the file name (never a folder part, never a leading dot), is at most
:data:`MAX_STEM_BYTES` bytes, and is unique in the folder also on case-insensitive file systems:
images whose names clash get their store id appended (``_image7``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

#: The file of plane ``(t, z)`` of an image whose stem is ``stem``.
LABEL_FILE = "{stem}_t{t}_z{z}_labels.tif"
#: Longest stem in UTF-8 bytes (a file name stays far below the usual 255-byte limit).
MAX_STEM_BYTES = 120
_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png", ".jpeg", ".jpg", ".bmp")
_UNSAFE = re.compile(r"[^\w.-]+")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
                     *(f"lpt{i}" for i in range(10))}


def safe_stem(path: str, image_id: int) -> str:
    """A file-name stem for an image from its (untrusted) path."""
    name = re.split(r"[\\/]", str(path))[-1]
    lower = name.lower()
    for suffix in _SUFFIXES:
        if lower.endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = unicodedata.normalize("NFC", name)
    name = _UNSAFE.sub("_", name).strip("._-")
    raw = name.encode("utf-8")[:MAX_STEM_BYTES]
    name = raw.decode("utf-8", "ignore").rstrip("._-")
    if not name or name.split(".")[0].lower() in _WINDOWS_RESERVED:
        name = f"image{int(image_id)}" if not name else f"{name}_image{int(image_id)}"
    return name


def label_stems(images: Iterable[tuple[int, str]]) -> dict[int, str]:
    """Image id -> a unique stem (see :func:`safe_stem`), from ``(image id, path)`` pairs.

    Images whose stems clash (ignoring case) all get ``_image{id}`` appended; the result is
    the same for the same images whatever their order.
    """
    pairs = sorted((int(i), str(p)) for i, p in images)
    stems = {i: safe_stem(p, i) for i, p in pairs}
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem.casefold()] = counts.get(stem.casefold(), 0) + 1
    out: dict[int, str] = {}
    taken: set[str] = set()
    for image_id, _ in pairs:
        stem = stems[image_id]
        if counts[stem.casefold()] > 1:
            stem = f"{stem}_image{image_id}"
        while stem.casefold() in taken:  # a clash made by the appended ids themselves
            stem = f"{stem}_image{image_id}"
        taken.add(stem.casefold())
        out[image_id] = stem
    return out


def label_file(stem: str, t: int, z: int) -> str:
    """The file name of plane ``(t, z)`` of the image with this stem."""
    return LABEL_FILE.format(stem=stem, t=int(t), z=int(z))
