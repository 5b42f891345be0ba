"""Occ3D mIoU against hand-computed confusion matrices; nuScenes-style detection AP on constructed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bdc_occ_ros.classes import DET_CLASSES, FREE_LABEL, OCC_CLASSES
from bdc_occ_ros.eval.det_metrics import DetMetric, average_precision
from bdc_occ_ros.eval.metrics import OccMetric, confusion_matrix, iou_from_confusion

CAR, ROAD, FREE = OCC_CLASSES.index("car"), OCC_CLASSES.index("driveable_surface"), FREE_LABEL


def test_confusion_matrix_by_hand():
    gt = np.array([CAR, CAR, CAR, ROAD, ROAD, FREE, FREE, FREE, CAR])
    pred = np.array([CAR, CAR, ROAD, ROAD, FREE, FREE, CAR, FREE, FREE])
    mask = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0])  # the last voxel is not camera-visible: ignored
    conf = confusion_matrix(pred, gt, mask)
    expected = np.zeros((18, 18), dtype=np.int64)
    expected[CAR, CAR] = 2
    expected[CAR, ROAD] = 1
    expected[ROAD, ROAD] = 1
    expected[ROAD, FREE] = 1
    expected[FREE, FREE] = 2
    expected[FREE, CAR] = 1
    np.testing.assert_array_equal(conf, expected)
    iou = iou_from_confusion(conf)
    # car: TP 2, FN 1 (-> road), FP 1 (free -> car): 2/4; road: TP 1, FN 1, FP 1: 1/3; free: TP 2, FN 1, FP 1: 2/4
    assert iou[CAR] == pytest.approx(0.5) and iou[ROAD] == pytest.approx(1 / 3) and iou[FREE] == pytest.approx(0.5)
    assert np.isnan(iou[OCC_CLASSES.index("bus")])


def test_occ_metric_is_global_not_per_sample_mean():
    metric = OccMetric()
    grid = (2, 2, 1)
    # sample 1: 3 car voxels all right; sample 2: 1 car voxel predicted road
    metric.update(np.full(grid, CAR), np.array([CAR, CAR, CAR, FREE]).reshape(grid), np.ones(grid))
    metric.update(np.array([ROAD, FREE, FREE, FREE]).reshape(grid), np.array([CAR, FREE, FREE, FREE]).reshape(grid),
                  None)
    out = metric.compute()
    assert out["samples"] == 2
    # global car: TP 3, FP 1 (free voxel of sample 1), FN 1 -> 3/5 (a per-sample mean would give (3/4 + 0) / 2)
    assert out["per_class"]["car"] == pytest.approx(60.0)
    assert out["per_class"]["driveable_surface"] == pytest.approx(0.0)  # predicted but never true
    assert math.isnan(out["per_class"]["bus"])
    # mIoU: nanmean over classes 0..16 present in GT or prediction (car 60, road 0); free is excluded
    assert out["miou"] == pytest.approx(30.0)
    assert out["free_iou"] == pytest.approx(100 * 3 / 4)  # free: TP 3, FN 1 (sample 1), FP 0
    assert set(out["per_class"]) == set(OCC_CLASSES[:17])
    assert np.asarray(out["confusion"]).shape == (18, 18)


def test_metric_rejects_bad_input():
    with pytest.raises(ValueError, match="voxels"):
        confusion_matrix(np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match="labels must be in"):
        confusion_matrix(np.array([18]), np.array([0]))


def test_average_precision_devkit_formula():
    # all predictions true positives with all GT found: precision 1 everywhere -> AP 1
    assert average_precision(np.array([0.9, 0.8]), np.array([True, True]), 2) == pytest.approx(1.0)
    # half the GT found: precision 1 up to recall 0.5, 0 beyond -> mean over recall 0.11..1 of (p - 0.1)+ / 0.9
    ap = average_precision(np.array([0.9]), np.array([True]), 2)
    assert ap == pytest.approx(40 / 90)
    assert average_precision(np.array([]), np.array([], dtype=bool), 3) == 0.0
    assert math.isnan(average_precision(np.array([0.5]), np.array([False]), 0))


def test_det_metric_matching_thresholds():
    car, ped = DET_CLASSES.index("car"), DET_CLASSES.index("pedestrian")
    metric = DetMetric()
    gt_c = np.array([[10.0, 0.0, 1.0], [-5.0, 3.0, 1.0]])
    # sample 1: the car 1.5 m off (a TP only at 2 m and 4 m), the pedestrian exact
    metric.update(np.array([[11.5, 0.0, 1.0], [-5.0, 3.0, 1.0]]), np.array([car, ped]), np.array([0.9, 0.8]),
                  gt_c, np.array([car, ped]))
    out = metric.compute()
    assert out["ap"]["car"] == pytest.approx({"0.5": 0.0, "1.0": 0.0, "2.0": 1.0, "4.0": 1.0})
    assert out["per_class_ap"]["car"] == pytest.approx(0.5)
    assert out["per_class_ap"]["pedestrian"] == pytest.approx(1.0)
    assert math.isnan(out["per_class_ap"]["bus"])  # no GT: excluded from the mean
    assert out["map"] == pytest.approx(0.75)
    # a wrong-class prediction does not match
    metric.update(np.array([[0.0, 0.0, 0.0]]), np.array([ped]), np.array([0.95]), np.array([[0.0, 0.0, 0.0]]),
                  np.array([car]))
    assert metric.compute()["per_class_ap"]["pedestrian"] < 1.0
