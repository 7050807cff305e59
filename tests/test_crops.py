import numpy as np
import pytest

from cellseek.config import CropConfig
from cellseek.crops import cells_from_labels, extract_crops


def _two_cells():
    labels = np.zeros((60, 80), np.int32)
    labels[10:20, 10:30] = 1
    labels[40:60, 60:80] = 2  # touches the bottom-right border
    image = np.zeros((60, 80, 3), np.uint8)
    image[labels == 1] = (200, 0, 0)
    image[labels == 2] = (0, 0, 200)
    return image, labels


def test_cells_from_labels_records_geometry():
    _, labels = _two_cells()
    cells = cells_from_labels(labels, t=3, z=1)
    assert [c.label for c in cells] == [1, 2]
    assert cells[0].bbox == (10, 10, 20, 30)
    assert cells[0].area == 200
    assert cells[0].centroid == pytest.approx((14.5, 19.5))
    assert (cells[0].t, cells[0].z) == (3, 1)
    assert not cells[0].touches_border and cells[1].touches_border


def test_cells_from_empty_labels():
    assert cells_from_labels(np.zeros((5, 5), int)) == []


def test_extract_crops_shapes_and_content():
    image, labels = _two_cells()
    before = image.copy()
    cells = cells_from_labels(labels)
    crops, masks = extract_crops(image, labels, cells, CropConfig(size=32, margin=0.25))
    assert crops.shape == (2, 32, 32, 3) and crops.dtype == np.float32
    assert masks.shape == (2, 32, 32) and masks.dtype == bool
    assert 0 <= crops.min() and crops.max() <= 1
    # The red cell's crop is red inside its mask, the blue one blue.
    assert crops[0][masks[0]][:, 0].mean() > 0.7 and crops[1][masks[1]][:, 2].mean() > 0.7
    np.testing.assert_array_equal(image, before)


def test_mask_mode_blanks_the_context():
    image, labels = _two_cells()
    labels[10:20, 32:40] = 3  # a neighbour inside the first cell's context window
    image[10:20, 32:40] = (0, 200, 0)
    cells = cells_from_labels(labels)
    ctx, m = extract_crops(image, labels, cells[:1], CropConfig(size=32, margin=0.5))
    masked, _ = extract_crops(image, labels, cells[:1],
                              CropConfig(size=32, margin=0.5, mask_mode="mask"))
    assert ctx[0][~m[0]][:, 1].max() > 0.5  # the green neighbour is visible in context mode
    assert masked[0][~m[0]][:, 1].max() < 0.1


def test_pixel_size_normalisation_gives_same_physical_scale():
    # The same disc imaged at 1 um/px and at 0.5 um/px covers the same fraction of the crop.
    def disc(radius, shape):
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        return ((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 < radius**2).astype(np.int32)

    cfg = CropConfig(size=32, target_pixel_size_um=1.0)
    fractions = []
    for radius, px in ((8, 1.0), (16, 0.5)):
        lab = disc(radius, (100, 100))
        _, m = extract_crops(lab.astype(float), lab, cells_from_labels(lab), cfg, pixel_size_um=px)
        fractions.append(m.mean())
    assert fractions[0] == pytest.approx(fractions[1], rel=0.1)


def test_labels_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="does not match"):
        labels = np.ones((4, 4), int)
        extract_crops(np.zeros((5, 5)), labels, cells_from_labels(labels))
