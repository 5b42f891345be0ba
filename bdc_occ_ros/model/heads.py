"""Output heads on the BEV neck features (B, C, Dy, Dx): occupancy (channel-to-height) and 3D detection.

BEV tensors are laid out (B, C, Dy, Dx) (row = y, column = x); Occ3D grids are [x, y, z]. The occupancy
head therefore permutes to (B, Dx, Dy, C) before predicting the height column of each cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bdc_occ_ros.classes import DET_CLASSES, OCC3D_GRID, GridSpec
from bdc_occ_ros.config import DetHeadConfig, UnitVariant
from bdc_occ_ros.model.units import FusionDecrease, make_unit
from bdc_occ_ros.result import Detection3D


class ConvReLU(nn.Module):
    """Conv3x3 (bias) + ReLU, mmcv ConvModule key layout (``conv.weight``, ``conv.bias``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class OccupancyHead(nn.Module):
    """(B, Cin, Dy, Dx) -> logits (B, Dx, Dy, Dz, num_classes), Occ3D [x, y, z] order.

    final_conv: FP Conv3x3+ReLU (FlashOcc ``BEVOCCHead2D``) or one binarized unit without a trailing
    activation (``BEVOCCHead2DBDC``); then the FP MLP ``predicter`` (Linear, Softplus, Linear) maps each
    cell's channels to its Dz x num_classes column (channel-to-height).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        hidden: int,
        dz: int,
        num_classes: int,
        variant: UnitVariant,
        with_bn: bool,
    ) -> None:
        super().__init__()
        self.dz, self.num_classes = dz, num_classes
        if variant is UnitVariant.FP:
            self.final_conv: nn.Module = ConvReLU(in_channels, channels)
        else:
            self.final_conv = make_unit(variant, in_channels, channels, 1, with_bn)
        self.predicter = nn.Sequential(nn.Linear(channels, hidden), nn.Softplus(), nn.Linear(hidden, dz * num_classes))

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        x = self.final_conv(bev).permute(0, 3, 2, 1)  # (B, C, Dy, Dx) -> (B, Dx, Dy, C)
        b, dx, dy, _ = x.shape
        return self.predicter(x).view(b, dx, dy, self.dz, self.num_classes)


def predict_labels(logits: torch.Tensor) -> torch.Tensor:
    """Occupancy logits (B, X, Y, Z, K) -> labels uint8 (B, X, Y, Z) (argmax; softmax is monotonic)."""
    return logits.argmax(dim=-1).to(torch.uint8)


#: Regression outputs of the detection head and their channel counts (besides the class heatmap).
DET_REGRESSION: dict[str, int] = {"reg": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2}


class CenterHead(nn.Module):
    """CenterPoint-style head, one task with every class.

    (B, Cin, Dy, Dx) -> dict of (B, k, Dy/s, Dx/s) maps (s = cfg.downsample): ``heatmap`` (class logits),
    ``reg`` (x, y offset of the centre inside its cell, in cells), ``height`` (centre z, m), ``dim``
    (log length, width, height), ``rot`` (sin yaw, cos yaw), ``vel`` (vx, vy, m/s). See
    :class:`BevCellMapping` for cell <-> metre.

    shared_conv: FP Conv3x3(bias)+BN+ReLU to ``share_channels``; binarized (BDC-Det, §1.2) as
    log2(Cin/share) FusionDecrease steps (one unit when Cin == share). Task heads are FP.
    """

    def __init__(self, in_channels: int, cfg: DetHeadConfig, variant: UnitVariant, with_bn: bool) -> None:
        super().__init__()
        self.class_names = tuple(cfg.classes)
        self.pool = nn.AvgPool2d(cfg.downsample) if cfg.downsample > 1 else nn.Identity()
        share = cfg.share_channels
        if variant is UnitVariant.FP:
            self.shared_conv: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, share, 3, padding=1), nn.BatchNorm2d(share), nn.ReLU(inplace=True)
            )
        else:
            steps, c = [], in_channels
            while c > share:
                steps.append(FusionDecrease(c, variant, with_bn))
                c //= 2
            self.shared_conv = nn.Sequential(*steps) if steps else make_unit(variant, c, c, 1, with_bn)
        outputs = {"heatmap": len(self.class_names), **DET_REGRESSION}
        self.heads = nn.ModuleDict({name: self._task_head(share, cfg, n) for name, n in outputs.items()})
        nn.init.constant_(self.heads["heatmap"][-1].bias, -2.19)  # CenterPoint prior: sigmoid ~ 0.1

    @staticmethod
    def _task_head(cin: int, cfg: DetHeadConfig, cout: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for _ in range(cfg.num_conv - 1):
            layers += [nn.Conv2d(cin, cfg.head_channels, 3, padding=1, bias=False), nn.BatchNorm2d(cfg.head_channels),
                       nn.ReLU(inplace=True)]  # fmt: skip
            cin = cfg.head_channels
        layers.append(nn.Conv2d(cin, cout, cfg.final_kernel, padding=cfg.final_kernel // 2))
        return nn.Sequential(*layers)

    def forward(self, bev: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.shared_conv(self.pool(bev))
        return {name: head(x) for name, head in self.heads.items()}


@dataclass(frozen=True)
class BevCellMapping:
    """Detection map cell <-> ego metres. Map cell (row iy, column ix) covers
    ``x in lower_x + [ix, ix+1) * cell_x``, ``y in lower_y + [iy, iy+1) * cell_y``; a centre at
    ``lower + (i + offset) * cell`` has ``reg = offset`` in [0, 1)."""

    lower_x: float
    lower_y: float
    cell_x: float
    cell_y: float
    height: int
    width: int

    @classmethod
    def from_grid(cls, grid: GridSpec, map_hw: tuple[int, int]) -> BevCellMapping:
        h, w = map_hw
        return cls(grid.lower[0], grid.lower[1], grid.shape[0] * grid.voxel_size / w,
                   grid.shape[1] * grid.voxel_size / h, h, w)  # fmt: skip

    def cell_of(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ego (M, 2) metres -> ix (M,), iy (M,) int64 and offset (M, 2) in [0, 1) (may be outside the map)."""
        f = (np.asarray(xy, dtype=np.float64) - (self.lower_x, self.lower_y)) / (self.cell_x, self.cell_y)
        cell = np.floor(f)
        return cell[:, 0].astype(np.int64), cell[:, 1].astype(np.int64), (f - cell).astype(np.float32)

    def centre_of(self, ix: torch.Tensor, iy: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """Cells and offsets (M, 2) -> ego (M, 2) metres."""
        x = self.lower_x + (ix.to(offset) + offset[:, 0]) * self.cell_x
        y = self.lower_y + (iy.to(offset) + offset[:, 1]) * self.cell_y
        return torch.stack([x, y], dim=1)


def decode_detections(
    det_out: dict[str, torch.Tensor],
    score_threshold: float = 0.3,
    max_objects: int = 100,
    grid: GridSpec = OCC3D_GRID,
    class_names: tuple[str, ...] | None = None,
) -> list[list[Detection3D]]:
    """Peaks of the class heatmaps (3x3 max-pool NMS, top ``max_objects``, sigmoid score >= threshold)
    -> one list of :class:`Detection3D` (ego frame) per batch element. ``class_names`` defaults to DET_CLASSES."""
    names = class_names or DET_CLASSES
    heat = det_out["heatmap"].detach().float().sigmoid()
    b, k, h, w = heat.shape
    if k != len(names):
        raise ValueError(f"heatmap has {k} classes but {len(names)} class names were given")
    mapping = BevCellMapping.from_grid(grid, (h, w))
    peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
    scores, idx = peaks.reshape(b, -1).topk(min(max_objects, k * h * w), dim=1)
    maps = {name: det_out[name].detach().float().flatten(2) for name in DET_REGRESSION}  # (B, k, h*w)
    results: list[list[Detection3D]] = []
    for i in range(b):
        keep = scores[i] >= score_threshold
        sc, flat = scores[i][keep], idx[i][keep]
        cls, pix = flat // (h * w), flat % (h * w)
        at = {name: m[i][:, pix].T for name, m in maps.items()}  # (M, k) per output
        xy = mapping.centre_of(pix % w, pix // w, at["reg"])
        dims, yaw = at["dim"].exp(), torch.atan2(at["rot"][:, 0], at["rot"][:, 1])
        results.append([
            Detection3D(
                center=np.array([xy[j, 0].item(), xy[j, 1].item(), at["height"][j, 0].item()], dtype=np.float32),
                size=dims[j].numpy().astype(np.float32),
                yaw=float(yaw[j]),
                velocity=at["vel"][j].numpy().astype(np.float32),
                label=names[int(cls[j])],
                score=float(sc[j]),
            )
            for j in range(len(sc))
        ])  # fmt: skip
    return results
