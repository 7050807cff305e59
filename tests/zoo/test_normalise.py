"""Tests of cellseek.zoo.normalise (stain, colour balance, intensity and scale)."""

from __future__ import annotations

import numpy as np
import pytest

from cellseek.zoo.normalise import (
    METHODS,
    REINHARD_TARGET,
    grey_world,
    macenko,
    normalise_crops,
    normalise_intensity,
    reinhard,
    rescale_to_cell_size,
    rescale_to_pixel_size,
    white_balance,
)


def _smear(seed=0, shift=(0.0, 0.0, 0.0)):
    rng = np.random.default_rng(seed)
    img = np.ones((64, 64, 3), np.float32) * np.array([0.95, 0.9, 0.85])
    yy, xx = np.mgrid[:64, :64]
    img[(yy - 32) ** 2 + (xx - 32) ** 2 < 20**2] = (0.7, 0.55, 0.8)
    img[(yy - 32) ** 2 + (xx - 30) ** 2 < 10**2] = (0.35, 0.2, 0.5)
    img += rng.normal(0, 0.02, img.shape)
    return np.clip(img + np.array(shift), 0, 1).astype(np.float32)


def test_reinhard_maps_stats_to_target():
    from skimage.color import rgb2lab

    img = _smear(shift=(-0.1, 0.05, 0.1))
    original = img.copy()
    out = reinhard(img)
    assert np.array_equal(img, original)  # input untouched
    assert out.shape == img.shape and out.dtype == np.float32
    lab = rgb2lab(out).reshape(-1, 3)
    assert np.allclose(lab.mean(0), REINHARD_TARGET["mean"], atol=2.5)
    assert np.allclose(lab.std(0), REINHARD_TARGET["std"], atol=2.5)
    # two colour-shifted copies become (nearly) the same image
    other = reinhard(_smear(shift=(0.05, -0.05, -0.05)))
    assert np.abs(out - other).mean() < np.abs(img - _smear(shift=(0.05, -0.05, -0.05))).mean()


def test_macenko_shape_and_range():
    img = _smear()
    out = macenko(img)
    assert out.shape == img.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    # a blank image has no stain to estimate: returned unchanged
    blank = np.ones((16, 16, 3), np.float32)
    assert np.allclose(macenko(blank), blank)


def test_grey_world_and_white_balance():
    img = _smear(shift=(0.0, 0.0, -0.2))
    gw = grey_world(img)
    means = gw.reshape(-1, 3).mean(0)
    assert np.ptp(means) < 0.02
    wb = white_balance(img)
    assert np.allclose(np.percentile(wb.reshape(-1, 3), 99, axis=0), 1.0, atol=0.02)


def test_normalise_intensity():
    grey = np.linspace(100, 1100, 1000).reshape(20, 50)
    out = normalise_intensity(grey, 1, 99)
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.all(normalise_intensity(np.full((4, 4), 3.0)) <= 1)


def test_rescale_to_pixel_size():
    crop = np.random.default_rng(0).random((40, 60, 3)).astype(np.float32)
    out = rescale_to_pixel_size(crop, 0.5, 1.0)
    assert out.shape == (20, 30, 3)
    m = rescale_to_pixel_size(np.ones((40, 60), bool), 0.25, 0.5)
    assert m.dtype == bool and m.shape == (20, 30)
    with pytest.raises(ValueError):
        rescale_to_pixel_size(crop, 0, 1)


def test_rescale_to_cell_size_makes_sizes_equal():
    yy, xx = np.mgrid[:64, :64]
    diam = []
    for r in (8, 20):
        mask = (yy - 32) ** 2 + (xx - 32) ** 2 < r**2
        crop = np.where(mask[..., None], 0.3, 0.9).astype(np.float32) * np.ones(3, np.float32)
        c, m = rescale_to_cell_size(crop, mask, 30)
        assert c.shape == crop.shape and m.shape == mask.shape
        diam.append(2 * np.sqrt(m.sum() / np.pi))
    assert diam == pytest.approx([30, 30], abs=1.5)


@pytest.mark.parametrize("method", METHODS)
def test_normalise_crops_all_methods(method):
    crops = np.stack([_smear(0), _smear(1, shift=(0.05, 0, -0.05))])
    masks = np.zeros(crops.shape[:3], bool)
    masks[:, 12:52, 12:52] = True
    out = normalise_crops(crops, masks, method)
    assert out.shape == crops.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_normalise_crops_unknown_method():
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise_crops(np.zeros((1, 4, 4, 3), np.float32), None, "magic")
