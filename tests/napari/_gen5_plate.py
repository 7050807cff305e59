"""A small synthetic BioTek Gen5 (Lionheart) plate export, following docs/formats.md.

Brightfield planes (uint16, one TIFF per plane with a ``BTIImageMetaData`` XML) with two kinds
of dark cells on a bright background: round ones and elongated ones. Well A1 is a time-lapse
(3 reads, 18 min apart: name convention A); well B2 a z-stack (4 slices, 2 µm: convention B).
A labelled CSV of single-cell crops of both kinds serves as a small reference set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

SHAPE = (200, 260)
WIDTH_UM = 260 * 0.65  # 0.65 µm per pixel
BACKGROUND = 3200
CELL = 1100


def bti_xml(*, date: str = "05/14/24", time: str = "10:00:00", z_step: float | None = None):
    """A minimal Gen5 XML with the tags the reader uses."""
    z = f"<ZStackStepSizeMicrons>{z_step}</ZStackStepSizeMicrons>" if z_step else ""
    return (
        "<BTIImageMetaData><ImageAcquisition>"
        f"<ImageWidthMicrons>{WIDTH_UM}</ImageWidthMicrons><ObjectiveSize>20</ObjectiveSize>"
        f"<Date>{date}</Date><Time>{time}</Time>{z}"
        "</ImageAcquisition><Channel Color=\"Bright Field\"/></BTIImageMetaData>"
    )


def draw_cells(rng, shape=SHAPE, n_per_kind=4, *, shift=(0, 0)):
    """A plane with round and elongated dark cells; returns (uint16 plane, {centre: kind})."""
    plane = np.full(shape, BACKGROUND, np.float64)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    spots = [(r, c) for r in range(35, shape[0] - 30, 62) for c in range(35, shape[1] - 30, 62)]
    rng.shuffle(spots)
    kinds = {}
    for i, (r, c) in enumerate(spots[: 2 * n_per_kind]):
        r, c = r + shift[0], c + shift[1]
        if i % 2 == 0:
            inside = (yy - r) ** 2 + (xx - c) ** 2 < rng.uniform(13, 15) ** 2
            kinds[(r, c)] = "round"
        else:
            inside = ((yy - r) / 7.5) ** 2 + ((xx - c) / rng.uniform(20, 23)) ** 2 < 1
            kinds[(r, c)] = "elongated"
        plane[inside] = CELL + rng.normal(0, 60)
    plane += rng.normal(0, 40, shape)
    return np.clip(plane, 0, 65535).astype(np.uint16), kinds


def write_plate(folder: Path, seed: int = 0) -> Path:
    """Write the plate into ``folder`` (made when missing) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for t in range(3):  # well A1: a time-lapse, 18 minutes between reads (convention A)
        plane, _ = draw_cells(rng, shift=(2 * t, 3 * t))
        minute = 18 * t
        xml = bti_xml(time=f"10:{minute:02d}:00")
        tifffile.imwrite(folder / f"A1_01_1_1_Bright Field_{t + 1:03d}.tif", plane,
                         description=xml, metadata=None)
    for z in range(4):  # well B2: a z-stack, 2 µm steps (convention B)
        plane, _ = draw_cells(rng)
        tifffile.imwrite(folder / f"B2_1Z{z + 1}_Bright Field_1_001.tif", plane,
                         description=bti_xml(z_step=2.0), metadata=None)
    return folder


def write_reference_csv(folder: Path, seed: int = 1, n_per_kind: int = 4,
                        mislabelled: int = 0) -> Path:
    """Single-cell crops (PNG) of both kinds and a ``path,label`` CSV listing them.

    ``mislabelled`` more round cells are listed as elongated (label noise, so that some
    suggestions are uncertain)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = ["path,label"]
    n = 0
    wrong = 0
    while n < 2 * n_per_kind + mislabelled:
        plane, kinds = draw_cells(rng)
        for (r, c), kind in kinds.items():
            if sum(row.endswith(kind) for row in rows) >= n_per_kind:
                if kind != "round" or wrong >= mislabelled:
                    continue
                kind, wrong = "elongated", wrong + 1
            crop = plane[max(r - 30, 0): r + 30, max(c - 30, 0): c + 30]
            grey = (crop.astype(np.float64) / 16).clip(0, 255).astype(np.uint8)
            name = f"{kind}_{n}.png"
            Image.fromarray(grey).save(folder / name)
            rows.append(f"{name},{kind}")
            n += 1
    path = folder / "reference.csv"
    path.write_text("\n".join(rows) + "\n")
    return path
