"""BioTek Lionheart / Cytation (Gen5) exports: one TIFF per plane with a BTIImageMetaData XML.

File names (matched in this order; the extension is case-insensitive):

``LIONHEART_A``  ``<well>_<read>_<channel#>_<site>_<channel name>_<time>.tif``
    e.g. ``A1_01_1_1_Phase Contrast_001.tif``
``LIONHEART_B``  ``<well>_<site>[Z<z>]_<channel name>_<read>_<time>[_<extra>].tif``
    e.g. ``B2_1_Bright Field_1_001_02.tif``, ``B2_1Z3_GFP_1_001.tif``

Planes are grouped per (well, site, channel name) and ordered numerically: T by
(read, time[, extra]), Z by the ``Z<z>`` index.
"""

from __future__ import annotations

import logging
import re
import statistics
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

from cellseek.io.fileseries import PlaneFile, natural_key

logger = logging.getLogger(__name__)

_CHANNEL = r"(?P<channel>[A-Za-z0-9 ,\[\]\(\)+.\-]+?)"
_TIF = r"\.(?i:tiff?)"

#: ``A1_01_1_1_Phase Contrast_001.tif``: well, read step, channel number, site, channel, time.
LIONHEART_A = re.compile(
    r"^(?P<well>[A-Z]{1,2}\d{1,2})_(?P<read>-?\d+)_(?P<chnum>\d+)_(?P<site>\d+)_"
    + _CHANNEL
    + r"_(?P<time>\d+)"
    + _TIF
    + r"$"
)
#: ``B2_1_Bright Field_1_001_02.tif``: well, site[, Z index], channel, read, time[, extra].
LIONHEART_B = re.compile(
    r"^(?P<well>[A-Z]{1,2}\d{1,2})_(?P<site>-?\d+)(?:Z(?P<z>\d+))?_"
    + _CHANNEL
    + r"_(?P<read>\d+)_(?P<time>\d+)(?:_(?P<extra>\d+))?"
    + _TIF
    + r"$"
)

#: Tag names (compared case-insensitively, anywhere in the XML) holding the image width in µm.
WIDTH_TAGS = (
    "imagewidthmicrons",
    "imagewidthum",
    "imagewidthmicrometers",
    "imagewidthinmicrons",
    "fieldwidthmicrons",
    "widthmicrons",
)
HEIGHT_TAGS = ("imageheightmicrons", "imageheightum", "fieldheightmicrons", "heightmicrons")
MARKER = "<BTIImageMetaData"


def parse_name(path: Path) -> PlaneFile | None:
    """Parse a Lionheart / Gen5 file name; None when it follows neither convention."""
    match = LIONHEART_A.match(path.name) or LIONHEART_B.match(path.name)
    if match is None:
        return None
    parts = match.groupdict()
    well = parts["well"]
    row = re.match(r"[A-Z]+", well).group(0)
    column = int(well[len(row) :])
    row_index = sum((ord(ch) - 64) * 26**i for i, ch in enumerate(reversed(row)))
    channel = parts["channel"].strip()
    site = int(parts["site"])
    t = (int(parts["read"]), int(parts["time"]), int(parts.get("extra") or 0))
    z = (int(parts["z"]),) if parts.get("z") is not None else ()
    group = (row_index, column, site, natural_key(channel), well, channel)
    return PlaneFile(path=path, group=group, t=t, z=z, channel="")


def group_name(group: tuple) -> str:
    """Readable name of a group key: ``A1_site1_Phase Contrast``."""
    return f"{group[4]}_site{group[2]}_{group[5]}"


def find_xml(text: str) -> str | None:
    """The BTIImageMetaData XML document inside a tag's text, or None."""
    start = text.find(MARKER)
    if start < 0:
        return None
    end = text.find("</BTIImageMetaData>", start)
    if end < 0:
        return text[start:]
    return text[start : end + len("</BTIImageMetaData>")]


def parse_xml(xml: str) -> ET.Element:
    """Parse the XML, refusing DTDs and entities (no entity-expansion attacks)."""
    if "<!DOCTYPE" in xml or "<!ENTITY" in xml:
        raise ValueError("XML with a DTD or entities is not accepted")
    return ET.fromstring(xml)


def _find(root: ET.Element, names: tuple[str, ...]) -> str | None:
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1].lower() in names and el.text and el.text.strip():
            return el.text.strip()
    return None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        return None
    return value if value > 0 else None


def xml_metadata(root: ET.Element) -> dict:
    """Fields of a BTIImageMetaData document (missing ones are left out).

    Returns
    -------
    dict
        ``width_um``, ``height_um``, ``objective`` (magnification), ``numerical_aperture``,
        ``channel_color`` (Channel ``Color`` attribute), ``excitation_nm``, ``emission_nm``,
        ``z_step_um``, ``plate``, ``well``, ``date``, ``time``.
    """
    out: dict = {}
    numbers = {
        "width_um": WIDTH_TAGS,
        "height_um": HEIGHT_TAGS,
        "objective": ("objectivesize", "displayedobjectivesize"),
        "numerical_aperture": ("numericalaperture",),
        "excitation_nm": ("excitationwavelength",),
        "emission_nm": ("emissionwavelength",),
        "z_step_um": ("zstackstepsizemicrons",),
    }
    for key, names in numbers.items():
        value = _number(_find(root, names))
        if value is not None:
            out[key] = value
    for key, names in {
        "plate": ("plate",),
        "well": ("well",),
        "date": ("date",),
        "time": ("time",),
    }.items():
        value = _find(root, names)
        if value is not None:
            out[key] = value
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1].lower() == "channel" and el.get("Color"):
            out["channel_color"] = el.get("Color")
            break
    return out


def timestamp(meta: dict) -> datetime | None:
    """Acquisition time from the XML's Date and Time, or None."""
    if "date" not in meta or "time" not in meta:
        return None
    text = f"{meta['date']} {meta['time']}"
    for fmt in ("%m/%d/%y %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def time_interval_s(stamps: list[datetime | None]) -> float | None:
    """Median step between consecutive time points (None with fewer than two stamps)."""
    known = [s for s in stamps if s is not None]
    steps = [(b - a).total_seconds() for a, b in zip(known, known[1:])]
    steps = [s for s in steps if s > 0]
    return statistics.median(steps) if steps else None


def read_xml_metadata(text: str, where: str, warnings: list[str], width_px: int) -> dict:
    """XML fields of one file plus the pixel size; problems go to ``warnings``.

    Parameters
    ----------
    text : str
        The file's text tags.
    where : str
        File name for the warnings.
    warnings : list of str
    width_px : int
        Image width in pixels (pixel size = ``width_um / width_px``).
    """
    xml = find_xml(text)
    if xml is None:
        _warn(warnings, where, "no BTIImageMetaData XML; pixel size unknown")
        return {}
    try:
        meta = xml_metadata(parse_xml(xml))
    except (ET.ParseError, ValueError) as exc:
        _warn(
            warnings, where, f"BTIImageMetaData XML could not be parsed ({exc}); pixel size unknown"
        )
        return {}
    if "width_um" in meta:
        meta["pixel_size_um"] = meta["width_um"] / width_px
    else:
        _warn(
            warnings,
            where,
            "BTIImageMetaData has no image width tag (ImageWidthMicrons); pixel size unknown",
        )
    return meta


def _warn(warnings: list[str], where: str, problem: str) -> None:
    message = f"{where}: {problem}"
    warnings.append(message)
    logger.warning("%s", message)
