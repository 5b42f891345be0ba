"""CenterPoint training targets and losses for the detection head (``model.heads.CenterHead``).

Targets per sample: a Gaussian class heatmap (CornerNet radius, min overlap 0.1, min radius 2 cells, as
CenterPoint/BEVDet) and, at each box centre cell, the regression vector
[reg_x, reg_y, height, log l, log w, log h, sin yaw, cos yaw, vx, vy] in the head's output order.
Losses: Gaussian focal loss on the heatmap (averaged over the number of centre peaks) and weighted L1 on
the regression (code weights 1 ... 1, 0.2, 0.2 for velocity; averaged over boxes; loss weight 0.25).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bdc_occ_ros.classes import GridSpec
from bdc_occ_ros.model.heads import DET_REGRESSION, BevCellMapping

#: Per regression channel weights (CenterPoint nuScenes ``code_weights``), in DET_REGRESSION order.
CODE_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)
BBOX_LOSS_WEIGHT = 0.25
MIN_RADIUS = 2
MIN_OVERLAP = 0.1


@dataclass
class DetTargets:
    """heatmap (B, K, H, W) float; for the M boxes of the batch: batch index, cell row/column (M,) int64
    and regression targets (M, 10)."""

    heatmap: torch.Tensor
    batch: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor
    regression: torch.Tensor


def gaussian_radius(length: float, width: float, min_overlap: float = MIN_OVERLAP) -> float:
    """CornerNet's radius (in cells) such that a box shifted by it still overlaps by ``min_overlap``
    (the smallest root of the three corner cases, as CenterPoint uses it)."""
    h, w = length, width
    b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_gaussian(heatmap: np.ndarray, row: int, col: int, radius: int) -> None:
    """Max-merge a Gaussian (sigma = diameter / 6) centred at (row, col) into ``heatmap`` (H, W) in place."""
    sigma = (2 * radius + 1) / 6.0
    ys, xs = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    g = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))
    h, w = heatmap.shape
    top, bottom = min(row, radius), min(h - row, radius + 1)
    left, right = min(col, radius), min(w - col, radius + 1)
    patch = heatmap[row - top : row + bottom, col - left : col + right]
    np.maximum(patch, g[radius - top : radius + bottom, radius - left : radius + right], out=patch)


def build_targets(
    gt_boxes: list[torch.Tensor], gt_labels: list[torch.Tensor], num_classes: int, map_hw: tuple[int, int],
    grid: GridSpec,
) -> DetTargets:
    """Targets for a batch. gt_boxes: per sample (M_i, 9) ego [x, y, z, l, w, h, yaw, vx, vy]; gt_labels:
    (M_i,) class indices. Boxes whose centre falls outside the map are dropped."""
    mapping = BevCellMapping.from_grid(grid, map_hw)
    h, w = map_hw
    heat = np.zeros((len(gt_boxes), num_classes, h, w), dtype=np.float32)
    batch, rows, cols, regs = [], [], [], []
    for b, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
        boxes_np = boxes.detach().cpu().numpy().astype(np.float64).reshape(-1, 9)
        labels_np = labels.detach().cpu().numpy().reshape(-1)
        if len(boxes_np) == 0:
            continue
        ix, iy, offset = mapping.cell_of(boxes_np[:, :2])
        for j in np.flatnonzero((ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)):
            z, length, width, height, yaw, vx, vy = boxes_np[j, 2:]
            radius = gaussian_radius(length / mapping.cell_x, width / mapping.cell_y)
            draw_gaussian(heat[b, int(labels_np[j])], int(iy[j]), int(ix[j]), max(MIN_RADIUS, int(radius)))
            batch.append(b)
            rows.append(int(iy[j]))
            cols.append(int(ix[j]))
            regs.append([offset[j, 0], offset[j, 1], z, math.log(max(length, 1e-3)), math.log(max(width, 1e-3)),
                         math.log(max(height, 1e-3)), math.sin(yaw), math.cos(yaw), vx, vy])  # fmt: skip
    return DetTargets(
        heatmap=torch.from_numpy(heat),
        batch=torch.tensor(batch, dtype=torch.int64),
        row=torch.tensor(rows, dtype=torch.int64),
        col=torch.tensor(cols, dtype=torch.int64),
        regression=torch.tensor(regs, dtype=torch.float32).reshape(-1, len(CODE_WEIGHTS)),
    )


def gaussian_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet focal loss (alpha 2, gamma 4) on sigmoid(logits), summed, divided by the number of peaks."""
    p = logits.float().sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = -torch.log(p) * (1 - p).pow(2) * pos
    neg_loss = -torch.log(1 - p) * p.pow(2) * (1 - target).pow(4) * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp_min(1.0)


def detection_loss(det_out: dict[str, torch.Tensor], targets: DetTargets) -> dict[str, torch.Tensor]:
    """{"loss_heatmap", "loss_bbox"} for the head outputs (each (B, k, H, W)) against ``targets``."""
    device = det_out["heatmap"].device
    loss_heatmap = gaussian_focal_loss(det_out["heatmap"], targets.heatmap.to(device))
    if targets.batch.numel() == 0:
        loss_bbox = sum(det_out[name].sum() * 0.0 for name in DET_REGRESSION)  # keeps every output in the graph
        return {"loss_heatmap": loss_heatmap, "loss_bbox": loss_bbox}
    b, r, c = targets.batch.to(device), targets.row.to(device), targets.col.to(device)
    pred = torch.cat([det_out[name][b, :, r, c] for name in DET_REGRESSION], dim=1).float()  # (M, 10)
    weights = torch.tensor(CODE_WEIGHTS, device=device)
    l1 = F.l1_loss(pred, targets.regression.to(device), reduction="none") * weights
    loss_bbox = BBOX_LOSS_WEIGHT * l1.sum() / (targets.batch.numel() + 1e-4)
    return {"loss_heatmap": loss_heatmap, "loss_bbox": loss_bbox}
