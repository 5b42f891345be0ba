"""Evaluate an inference pipeline on a data set: Occ3D mIoU, detection mAP, BEV pictures.

The pipeline is anything with ``set_calibration(rig)`` and ``__call__(images, stamp_ns) -> OccupancyResult``
(``bdc_occ_ros.pipeline.OccupancyPipeline``), so ``bdc-occ eval`` scores exactly what the node publishes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bdc_occ_ros.classes import DET_CLASSES
from bdc_occ_ros.data.records import FrameRecord, load_images, load_labels
from bdc_occ_ros.eval.det_metrics import DetMetric
from bdc_occ_ros.eval.metrics import OccMetric
from bdc_occ_ros.eval.visualize import bev_image, save_png, side_by_side


@dataclass
class EvalOptions:
    """pictures: BEV PNGs for the first N frames into ``picture_dir``; detection: also score boxes."""

    pictures: int = 0
    picture_dir: Path | None = None
    detection: bool = False


def evaluate(pipeline, records: Sequence[FrameRecord], cameras: Sequence[str], options: EvalOptions | None = None,
             progress: Callable[[int], None] | None = None) -> dict:
    """Run ``pipeline`` over ``records`` and score it. Returns the metric dict (see ``OccMetric.compute``) plus
    "det" (``DetMetric.compute``) when ``options.detection`` and "mean_latency_ms" (pipeline call only)."""
    options = options or EvalOptions()
    occ = OccMetric()
    det = DetMetric() if options.detection else None
    current_rig = None
    latency = []
    if options.pictures and options.picture_dir is not None:
        options.picture_dir.mkdir(parents=True, exist_ok=True)
    for i, rec in enumerate(records):
        images = load_images(rec, cameras)
        rig_dict = rec.rig.to_dict()
        if rig_dict != current_rig:  # SynthOcc jitters the rig per scene
            pipeline.set_calibration(rec.rig)
            current_rig = rig_dict
        t0 = time.perf_counter()
        result = pipeline(images, stamp_ns=rec.timestamp * 1000)
        latency.append((time.perf_counter() - t0) * 1000.0)
        gt = load_labels(rec)
        if result.labels.shape != gt["semantics"].shape:
            raise ValueError(f"the model predicts a {result.labels.shape} grid but the ground truth is "
                             f"{gt['semantics'].shape}: evaluate a model with the Occ3D grid")
        occ.update(result.labels, gt["semantics"], gt["mask_camera"])
        if det is not None:
            dets = [d for d in result.detections if d.label in DET_CLASSES]
            det.update(np.array([d.center for d in dets]).reshape(-1, 3),
                       np.array([DET_CLASSES.index(d.label) for d in dets]), np.array([d.score for d in dets]),
                       rec.boxes[:, :3], rec.box_labels)
        if i < options.pictures and options.picture_dir is not None:
            picture = side_by_side([bev_image(result.labels, gt["mask_camera"]),
                                    bev_image(gt["semantics"], gt["mask_camera"])],
                                   ["prediction (camera mask)", "ground truth (camera mask)"])
            save_png(options.picture_dir / f"{i:04d}_{rec.scene}_{rec.token}.png", picture)
        if progress:
            progress(1)
    out = occ.compute()
    if det is not None:
        out["det"] = det.compute()
    out["mean_latency_ms"] = float(np.mean(latency)) if latency else float("nan")
    return out
