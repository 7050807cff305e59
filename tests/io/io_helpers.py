"""Writers of synthetic files that follow each vendor's conventions (imported by the tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

#: Real fixtures (../shared/data next to the repository), see their README.
SHARED_DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()


def bti_xml(
    width_um=None,
    *,
    tag="ImageWidthMicrons",
    width_px=64,
    channel="Phase Contrast",
    emission=None,
    date="03/14/24",
    time="10:00:00",
) -> str:
    """A BTIImageMetaData document shaped like Gen5's (ImageReference + ImageAcquisition)."""
    width = f"<{tag}>{width_um}</{tag}>" if width_um is not None else ""
    em = (
        f"<ExcitationWavelength>469</ExcitationWavelength>"
        f"<EmissionWavelength>{emission}</EmissionWavelength>"
        if emission
        else ""
    )
    return (
        '<?xml version="1.0" encoding="utf-16"?>'
        "<BTIImageMetaData>"
        "<ImageReference><Plate>Plate 1</Plate><Well>A1</Well>"
        f"<Date>{date}</Date><Time>{time}</Time></ImageReference>"
        "<ImageAcquisition><ObjectiveSize>10</ObjectiveSize>"
        "<NumericalAperture>0.3</NumericalAperture>"
        f"<PixelWidth>{width_px}</PixelWidth>{width}"
        f'<Channel Color="{channel}">{em}</Channel>'
        "</ImageAcquisition></BTIImageMetaData>"
    )


def write_lionheart(
    path: Path, value: int, *, shape=(48, 64), xml: str | None = "default", width_um=130.0, **xml_kw
) -> Path:
    """One Gen5 plane: uint16 filled with ``value`` plus a gradient, XML in ImageDescription."""
    if xml == "default":
        xml = bti_xml(width_um, width_px=shape[1], **xml_kw)
    data = (np.arange(np.prod(shape)).reshape(shape) % 97 + value).astype(np.uint16)
    tifffile.imwrite(path, data, description=xml, metadata=None)
    return path
