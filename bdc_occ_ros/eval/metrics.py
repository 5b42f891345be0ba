"""The Occ3D-nuScenes occupancy metric (reference §6, ``occ_metrics.py`` of the releases).

One global 18x18 confusion matrix (rows ground truth, columns prediction) accumulated over the
camera-visible voxels of every sample; IoU per class = TP / (TP + FP + FN) from that matrix; mIoU =
nanmean over classes 0..16 (free excluded from the mean, but free predictions still count as FP/FN of
the other classes), reported in percent.
"""

from __future__ import annotations

import numpy as np

from bdc_occ_ros.classes import FREE_LABEL, NUM_OCC_CLASSES, NUM_SEMANTIC_CLASSES, OCC_CLASSES


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
                     num_classes: int = NUM_OCC_CLASSES) -> np.ndarray:
    """(C, C) int64 counts, rows = ground truth, columns = prediction, over voxels where mask != 0."""
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    gt = np.asarray(gt).reshape(-1).astype(np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction has {pred.size} voxels, ground truth {gt.size}")
    if mask is not None:
        keep = np.asarray(mask).reshape(-1).astype(bool)
        if keep.shape != gt.shape:
            raise ValueError(f"mask has {keep.size} voxels, ground truth {gt.size}")
        pred, gt = pred[keep], gt[keep]
    for name, arr in (("prediction", pred), ("ground truth", gt)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} labels must be in [0, {num_classes - 1}], got {arr.min()}..{arr.max()}")
    return np.bincount(gt * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes,
                                                                                             num_classes)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """IoU per class (C,) in [0, 1]; NaN for classes absent from both ground truth and prediction."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    denom = conf.sum(axis=0) + conf.sum(axis=1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


class OccMetric:
    """Accumulates the Occ3D confusion matrix over samples; :meth:`compute` gives mIoU and per-class IoU."""

    def __init__(self, num_classes: int = NUM_OCC_CLASSES, class_names: tuple[str, ...] = OCC_CLASSES,
                 free_label: int = FREE_LABEL, num_semantic: int = NUM_SEMANTIC_CLASSES):
        self.num_classes = num_classes
        self.class_names = class_names
        self.free_label = free_label
        self.num_semantic = num_semantic
        self.conf = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.samples = 0

    def update(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add one sample: pred, gt (X, Y, Z) labels; mask (X, Y, Z) camera visibility (None = all voxels)."""
        self.conf += confusion_matrix(pred, gt, mask, self.num_classes)
        self.samples += 1

    def compute(self) -> dict:
        """{"miou": %, "per_class": {name: % or NaN}, "free_iou": %, "samples": n, "confusion": list}.

        "miou" is the nanmean over the semantic classes (0..16); a class absent from ground truth and
        prediction alike is NaN and does not count, as in the reference implementation.
        """
        iou = iou_from_confusion(self.conf) * 100.0
        semantic = iou[: self.num_semantic]
        miou = float(np.nanmean(semantic)) if np.isfinite(semantic).any() else float("nan")
        return {
            "miou": miou,
            "per_class": {self.class_names[c]: float(iou[c]) for c in range(self.num_semantic)},
            "free_iou": float(iou[self.free_label]),
            "samples": self.samples,
            "confusion": self.conf.tolist(),
        }
