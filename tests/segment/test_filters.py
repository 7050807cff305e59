import numpy as np
import pytest

from cellseek.segment.filters import border_labels, fill_label_holes, filter_labels


def _labels():
    lab = np.zeros((20, 20), np.int32)
    lab[0:3, 0:3] = 2  # 9 px, touches the border
    lab[5:10, 5:10] = 5  # 25 px
    lab[12:14, 12:14] = 9  # 4 px
    lab[15:19, 2:8] = 7  # 24 px
    return lab


def test_sequential_relabel_keeps_order():
    lab = _labels()
    out = filter_labels(lab)
    assert out.dtype == np.int32
    assert sorted(np.unique(out)) == [0, 1, 2, 3, 4]
    # order follows the original label values: 2->1, 5->2, 7->3, 9->4
    assert out[1, 1] == 1 and out[6, 6] == 2 and out[16, 3] == 3 and out[12, 12] == 4


def test_area_filters():
    lab = _labels()
    out = filter_labels(lab, min_area=5)
    assert out.max() == 3 and out[12, 12] == 0
    out = filter_labels(lab, min_area=5, max_area=24)
    assert out.max() == 2 and out[6, 6] == 0
    assert out[1, 1] == 1 and out[16, 3] == 2


def test_border_filter():
    lab = _labels()
    assert border_labels(lab).tolist() == [2]
    out = filter_labels(lab, exclude_border=True)
    assert out[1, 1] == 0 and out.max() == 3


def test_input_not_modified_and_types():
    lab = _labels().astype(np.uint16)
    before = lab.copy()
    out = filter_labels(lab, min_area=10, exclude_border=True)
    np.testing.assert_array_equal(lab, before)
    assert out.dtype == np.int32 and out.shape == lab.shape


def test_empty_and_invalid():
    assert filter_labels(np.zeros((4, 5), np.int32)).max() == 0
    with pytest.raises(ValueError):
        filter_labels(np.zeros((4, 5), float))
    with pytest.raises(ValueError):
        filter_labels(np.zeros((4, 5, 2), np.int32))


def test_fill_label_holes():
    lab = np.zeros((9, 9), np.int32)
    lab[1:8, 1:8] = 3
    lab[4, 4] = 0
    before = lab.copy()
    out = fill_label_holes(lab)
    assert out[4, 4] == 3
    np.testing.assert_array_equal(lab, before)
