"""nuScenes-style detection mAP: centre-distance matching, AP per class and threshold, averaged.

As the nuScenes devkit (``detection/algo.py``): predictions of a class are sorted by score over the whole
set; each is matched greedily to the nearest unmatched ground-truth box of the same class and sample whose
BEV centre distance is below the threshold (0.5, 1, 2, 4 m); precision is interpolated at 101 recall
points, and AP = mean(max(precision - 0.1, 0)) over recall > 0.1, divided by 0.9. mAP averages over the
classes that have ground truth and the four thresholds. (The devkit's per-class range filter and its
TP error metrics / NDS are not computed.)
"""

from __future__ import annotations

import numpy as np

from bdc_occ_ros.classes import DET_CLASSES

DIST_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)
MIN_RECALL = 0.1
MIN_PRECISION = 0.1


def average_precision(scores: np.ndarray, is_tp: np.ndarray, num_gt: int) -> float:
    """nuScenes ``calc_ap`` from predictions already matched: scores (K,), is_tp (K,) bool; NaN without GT."""
    if num_gt == 0:
        return float("nan")
    if scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(is_tp[order]).astype(np.float64)
    fp = np.cumsum(~is_tp[order]).astype(np.float64)
    prec = tp / np.maximum(tp + fp, 1e-12)
    rec = tp / num_gt
    prec_interp = np.interp(np.linspace(0, 1, 101), rec, prec, right=0)
    prec_interp = prec_interp[round(100 * MIN_RECALL) + 1 :] - MIN_PRECISION
    return float(np.mean(np.clip(prec_interp, 0, None)) / (1.0 - MIN_PRECISION))


class DetMetric:
    """Accumulates predictions and ground truth per sample; :meth:`compute` gives mAP and AP per class."""

    def __init__(self, class_names: tuple[str, ...] = DET_CLASSES, thresholds: tuple[float, ...] = DIST_THRESHOLDS):
        self.class_names = class_names
        self.thresholds = thresholds
        self._samples: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def update(self, pred_centers: np.ndarray, pred_labels: np.ndarray, pred_scores: np.ndarray,
               gt_centers: np.ndarray, gt_labels: np.ndarray) -> None:
        """One sample. Centres (K, >=2) ego metres (only x, y are used); labels index ``class_names``."""
        self._samples.append((_xy(pred_centers), np.asarray(pred_labels, dtype=np.int64).reshape(-1),
                              np.asarray(pred_scores, dtype=np.float64).reshape(-1), _xy(gt_centers),
                              np.asarray(gt_labels, dtype=np.int64).reshape(-1)))

    def _match(self, cls: int, threshold: float) -> tuple[np.ndarray, np.ndarray, int]:
        """Scores and TP flags of all predictions of a class, greedy by descending score (devkit order)."""
        preds = []  # (score, sample, centre)
        num_gt = 0
        for s, (pc, pl, ps, _gc, gl) in enumerate(self._samples):
            num_gt += int(np.sum(gl == cls))
            preds.extend((float(ps[i]), s, pc[i]) for i in np.flatnonzero(pl == cls))
        preds.sort(key=lambda p: -p[0])
        taken = [np.zeros(int(np.sum(smp[4] == cls)), dtype=bool) for smp in self._samples]
        gts = [smp[3][smp[4] == cls] for smp in self._samples]
        is_tp = np.zeros(len(preds), dtype=bool)
        for k, (_score, s, centre) in enumerate(preds):
            if len(gts[s]) == 0:
                continue
            dist = np.linalg.norm(gts[s] - centre, axis=1)
            dist[taken[s]] = np.inf
            best = int(np.argmin(dist))
            if dist[best] < threshold:
                taken[s][best] = True
                is_tp[k] = True
        return np.array([p[0] for p in preds]), is_tp, num_gt

    def compute(self) -> dict:
        """{"map": mean AP in [0, 1], "per_class_ap": {name: AP averaged over thresholds (NaN: no GT)},
        "ap": {name: {threshold: AP}}, "samples": n}."""
        ap: dict[str, dict[str, float]] = {}
        for c, name in enumerate(self.class_names):
            ap[name] = {}
            for th in self.thresholds:
                scores, is_tp, num_gt = self._match(c, th)
                ap[name][str(th)] = average_precision(scores, is_tp, num_gt)
        per_class = {name: float(np.mean(list(v.values()))) for name, v in ap.items()}
        valid = [v for v in per_class.values() if np.isfinite(v)]
        return {
            "map": float(np.mean(valid)) if valid else float("nan"),
            "per_class_ap": per_class,
            "ap": ap,
            "samples": len(self._samples),
        }


def _xy(centers) -> np.ndarray:
    """(K, 2) float64 BEV centres of (K, >=2) boxes or centres; (0, 2) when empty."""
    a = np.asarray(centers, dtype=np.float64)
    return a.reshape(len(a), -1)[:, :2] if a.size else np.zeros((0, 2))
