import numpy as np
import pytest

from cellseek.measure.detection import box_iou, label_boxes, match_boxes, voc_to_boxes


def test_box_iou_values():
    a = [[0, 0, 10, 10]]
    b = [[0, 0, 10, 10], [0, 5, 10, 15], [20, 20, 30, 30], [0, 0, 0, 0]]
    iou = box_iou(a, b)
    assert iou.shape == (1, 4)
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0, 0.0])


def test_voc_to_boxes_swaps_axes():
    np.testing.assert_array_equal(voc_to_boxes([[1, 2, 3, 4]]), [[2, 1, 4, 3]])


def test_label_boxes_half_open():
    lab = np.zeros((10, 10), np.int32)
    lab[2:5, 3:7] = 4
    ids, boxes = label_boxes(lab)
    assert ids.tolist() == [4]
    np.testing.assert_array_equal(boxes, [[2, 3, 5, 7]])


def test_match_boxes_one_to_one():
    lab = np.zeros((50, 50), np.int32)
    lab[0:10, 0:10] = 1  # matches gt 0 exactly
    lab[20:30, 20:30] = 2  # matches gt 1 with IoU 0.81
    lab[40:45, 40:45] = 3  # no gt: false positive
    gt = [[0, 0, 10, 10], [21, 21, 30, 30], [0, 30, 10, 40]]  # gt 2 is missed
    res = match_boxes(lab, gt, iou=0.5)
    assert res["matches"] == {1: 0, 2: 1}
    assert res["n_pred"] == 3 and res["n_gt"] == 3 and res["n_matched"] == 2
    assert res["recall"] == pytest.approx(2 / 3)
    assert res["precision"] == pytest.approx(2 / 3)
    assert res["mean_iou"] == pytest.approx((1.0 + 81 / 100) / 2)
    np.testing.assert_allclose(res["best_iou"], [1.0, 0.81, 0.0])


def test_match_boxes_threshold_and_duplicates():
    lab = np.zeros((30, 30), np.int32)
    lab[0:10, 0:10] = 1
    lab[0:10, 0:9] = 2  # overwrites all but the last column of object 1
    gt = [[0, 0, 10, 10]]
    res = match_boxes(lab, gt, iou=0.5)
    assert res["n_matched"] == 1 and res["precision"] == 0.5
    assert res["matches"] == {2: 0}
    assert match_boxes(lab, gt, iou=0.95)["n_matched"] == 0


def test_match_boxes_empty_cases():
    empty = np.zeros((8, 8), np.int32)
    res = match_boxes(empty, np.zeros((0, 4)))
    assert res["recall"] == 1.0 and res["precision"] == 1.0 and res["matches"] == {}
    res = match_boxes(empty, [[0, 0, 4, 4]])
    assert res["recall"] == 0.0 and res["n_gt"] == 1
