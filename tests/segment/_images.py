"""Synthetic images for the segmentation tests."""

from __future__ import annotations

import numpy as np


def disc(shape, centre, radius) -> np.ndarray:
    """Bool mask of a disc."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def grey_discs(shape=(200, 240), centres=((50, 50), (60, 170), (150, 110)), radius=18,
               fg=200.0, bg=40.0, noise=4.0, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs on a dark background (fluorescence-like) and their label image."""
    rng = np.random.default_rng(seed)
    img = np.full(shape, bg, np.float32)
    labels = np.zeros(shape, np.int32)
    for i, c in enumerate(centres, start=1):
        m = disc(shape, c, radius)
        img[m] = fg
        labels[m] = i
    img += rng.normal(0, noise, shape).astype(np.float32)
    return img, labels


def smear(seed=0, shape=(240, 320)) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """A Giemsa-like RGB field: pink nucleus-free "RBC" discs and nucleated "WBC"s.

    Returns the uint8 image, the WBC cell masks and the RBC masks. One WBC has a bilobed nucleus
    (two lobes 4 px apart) that must come out as one cell.
    """
    rng = np.random.default_rng(seed)
    img = np.empty((*shape, 3), np.float32)
    img[:] = (222, 222, 232)
    wbcs, rbcs = [], []
    for c in [(40, 40), (40, 150), (200, 40), (200, 160), (130, 40), (40, 280), (200, 280)]:
        m = disc(shape, c, 16)
        img[m] = (205, 150, 155)
        img[disc(shape, c, 6)] = (215, 175, 180)  # central pallor
        rbcs.append(m)
    # WBC 1: round nucleus; WBC 2: two lobes
    for c, lobes in [((120, 140), [((120, 140), 15)]),
                     ((120, 240), [((110, 240), 8), ((131, 240), 8)])]:
        cell = disc(shape, c, 26)
        img[cell] = (195, 180, 212)
        for lc, lr in lobes:
            img[disc(shape, lc, lr)] = (125, 95, 200)
        wbcs.append(cell)
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), wbcs, rbcs
