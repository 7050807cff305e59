"""Tile layout and stitching (pure NumPy)."""

from __future__ import annotations

import numpy as np
import pytest

from cellseek.segment.tiling import (
    masks_to_labels,
    stitch_tiles,
    tile_for_point,
    tile_layout,
)


def _disc(shape, centre, radius):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _same_up_to_relabelling(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or not np.array_equal(a > 0, b > 0):
        return False
    fg = a > 0
    pairs = set(zip(a[fg].tolist(), b[fg].tolist()))
    return len(pairs) == len(np.unique(a[fg])) == len(np.unique(b[fg]))


def _cut(labels, tiles, seed=0):
    """Cut a label image into tiles, relabelling every tile with random values."""
    rng = np.random.default_rng(seed)
    out = []
    for t in tiles:
        part = labels[t.slices]
        values = np.unique(part)
        lut = np.zeros(int(labels.max()) + 1, np.int32)
        lut[values[values > 0]] = rng.permutation(1000)[: (values > 0).sum()] + 1
        out.append(lut[part])
    return out


@pytest.fixture
def field():
    shape = (300, 420)
    labels = np.zeros(shape, np.int32)
    centres = [(20, 20), (60, 110), (100, 118), (150, 200), (40, 300), (250, 60), (260, 400),
               (200, 330), (128, 64), (64, 128), (150, 150)]
    for i, c in enumerate(centres, start=1):
        labels[_disc(shape, c, 11)] = i
    # a long cell wider than any overlap, crossing a vertical and a horizontal seam
    labels[90:200, 250:262] = len(centres) + 1
    labels[180:190, 100:300] = len(centres) + 2
    return labels


def test_layout_covers_the_plane_and_cores_partition_it():
    tiles = tile_layout((300, 420), tile_size=128, overlap=32)
    cover = np.zeros((300, 420), int)
    owner = np.zeros((300, 420), int)
    for t in tiles:
        assert t.shape == (128, 128)  # the last tile is aligned with the edge, never short
        cover[t.slices] += 1
        r0, c0, r1, c1 = t.core
        assert t.row0 <= r0 < r1 <= t.row1 and t.col0 <= c0 < c1 <= t.col1
        owner[r0:r1, c0:c1] += 1
    assert cover.min() >= 1
    assert (owner == 1).all()
    # neighbours overlap by at least the requested overlap
    rows = sorted({t.row0 for t in tiles})
    assert all(b - a <= 128 - 32 for a, b in zip(rows, rows[1:]))


def test_small_plane_is_one_tile():
    tiles = tile_layout((100, 90, 3), tile_size=128, overlap=32)
    assert len(tiles) == 1
    assert tiles[0].shape == (100, 90) and tiles[0].core == (0, 0, 100, 90)


@pytest.mark.parametrize("bad", [dict(tile_size=0), dict(overlap=128), dict(overlap=-1)])
def test_layout_rejects_bad_arguments(bad):
    kw = dict(tile_size=128, overlap=16) | bad
    with pytest.raises(ValueError):
        tile_layout((300, 300), **kw)


def test_tile_for_point_picks_the_most_central_tile():
    tiles = tile_layout((300, 420), tile_size=128, overlap=32)
    for rc in [(0, 0), (299, 419), (100, 100), (150, 300)]:
        t = tiles[tile_for_point(tiles, rc)]
        assert t.contains(rc) and t.in_core(rc)
    with pytest.raises(ValueError):
        tile_for_point(tiles, (300, 0))


@pytest.mark.parametrize("tile_size,overlap", [(128, 32), (100, 40), (256, 64), (512, 0)])
def test_cut_and_stitch_gives_back_the_labels(field, tile_size, overlap):
    tiles = tile_layout(field.shape, tile_size, overlap)
    stitched = stitch_tiles(field.shape, tiles, _cut(field, tiles))
    assert stitched.dtype == np.int32
    assert _same_up_to_relabelling(stitched, field)
    assert set(np.unique(stitched)) == set(range(int(stitched.max()) + 1))


def test_objects_across_seams_are_merged(field):
    tiles = tile_layout(field.shape, 128, 32)
    stitched = stitch_tiles(field.shape, tiles, _cut(field, tiles, seed=3))
    long_cell = stitched[field == field.max()]
    assert np.unique(long_cell).size == 1  # one object, though no tile holds it whole
    assert stitched.max() == field.max()


def test_distinct_touching_objects_across_a_seam_stay_apart():
    labels = np.zeros((100, 200), np.int32)
    labels[40:60, 80:100] = 1
    labels[40:60, 100:120] = 2  # touches object 1 right on the seam
    tiles = tile_layout(labels.shape, 110, 20)
    stitched = stitch_tiles(labels.shape, tiles, _cut(labels, tiles))
    assert _same_up_to_relabelling(stitched, labels)


def test_stitch_checks_shapes():
    tiles = tile_layout((50, 50), 32, 8)
    with pytest.raises(ValueError):
        stitch_tiles((50, 50), tiles, [np.zeros((5, 5), int)] * len(tiles))
    with pytest.raises(ValueError):
        stitch_tiles((50, 50), tiles, [])


def test_empty_tiles_give_an_empty_label_image():
    tiles = tile_layout((50, 70), 32, 8)
    out = stitch_tiles((50, 70), tiles, [np.zeros(t.shape, int) for t in tiles])
    assert out.shape == (50, 70) and out.dtype == np.int32 and out.max() == 0


def test_masks_to_labels_keeps_smaller_masks_on_top_and_drops_the_background():
    shape = (60, 60)
    big = _disc(shape, (30, 30), 20)
    small = _disc(shape, (30, 30), 6)
    background = np.ones(shape, bool)
    labels = masks_to_labels([small, big, background], shape, [0.9, 0.9, 0.99],
                             max_fraction=0.5)
    assert labels.dtype == np.int32 and labels.max() == 2
    assert np.unique(labels[small]).size == 1
    assert labels[30, 30] != labels[30, 12] and labels[30, 12] > 0
    assert labels[0, 0] == 0
    assert masks_to_labels([], shape).max() == 0
