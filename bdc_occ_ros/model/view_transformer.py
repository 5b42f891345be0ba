"""LSS view transformer: image features -> depth distribution x context -> BEV (lift-splat).

BEVPoolv2 semantics (reference §4.3) in plain PyTorch. Every frustum point (camera n, depth bin d,
feature pixel (h, w)) is lifted into the ego frame; its BEV cell is ``trunc((p - lower) / interval)``
(truncation toward zero as BEVDet's ``.long()``, so points up to one cell below the lower bound land in
cell 0); points outside ``[0, Dx) x [0, Dy) x [0, 1)`` are dropped (z collapsed to one bin spanning the
grid height). ``bev[b, :, y, x] = sum_points depth[b, n, d, h, w] * feat[b, n, :, h, w]``.

The point -> cell assignment depends only on the geometry, so it is computed once as index vectors
(:func:`compute_ranks`) and cached per :meth:`CameraGeometry.cache_key`; the forward pass is then one
gather + ``index_add_``. ONNX export feeds the same ranks as graph inputs.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from bdc_occ_ros.classes import GridSpec
from bdc_occ_ros.model.inputs import CameraGeometry


@dataclass
class BevPoolRanks:
    """Index vectors of the M frustum points that fall into the BEV grid (int64, same length M).

    ranks_bev:   cell in the flattened (B, Dy, Dx) BEV map.
    ranks_depth: element of the flattened depth probabilities (B, N, D, fH, fW).
    ranks_feat:  pixel of the flattened context features (B, N, fH, fW).
    """

    ranks_bev: torch.Tensor
    ranks_depth: torch.Tensor
    ranks_feat: torch.Tensor
    batch_size: int

    def to(self, device: torch.device | str) -> BevPoolRanks:
        return BevPoolRanks(self.ranks_bev.to(device), self.ranks_depth.to(device), self.ranks_feat.to(device),
                            self.batch_size)  # fmt: skip


def depth_values(depth_bins: tuple[float, float, float]) -> torch.Tensor:
    """Bin centres ``arange(start, stop, step)`` in metres, (D,) float32."""
    return torch.arange(*depth_bins, dtype=torch.float64).float()


def make_frustum(input_size: tuple[int, int], feature_size: tuple[int, int], depths: torch.Tensor) -> torch.Tensor:
    """(D, fH, fW, 3) points (u, v, d) in network-input pixels: u = linspace(0, W-1, fW), v = linspace(0, H-1, fH)."""
    (h, w), (fh, fw) = input_size, feature_size
    d = depths.view(-1, 1, 1).expand(-1, fh, fw)
    u = torch.linspace(0, w - 1, fw).view(1, 1, fw).expand_as(d)
    v = torch.linspace(0, h - 1, fh).view(1, fh, 1).expand_as(d)
    return torch.stack([u, v, d], dim=-1)


def frustum_to_ego(geometry: CameraGeometry, frustum: torch.Tensor) -> torch.Tensor:
    """Lift frustum points (D, fH, fW, 3) into the (BEV-augmented) ego frame: (B, N, D, fH, fW, 3)."""
    g = geometry
    b, n = g.batch_size, g.num_cameras
    p = frustum.to(g.intrinsics).view(1, 1, -1, 3) - g.post_trans.view(b, n, 1, 3)
    p = torch.einsum("bnij,bnpj->bnpi", torch.linalg.inv(g.post_rot), p)
    p = torch.cat([p[..., :2] * p[..., 2:3], p[..., 2:3]], dim=-1)
    combine = g.cam_to_ego[..., :3, :3] @ torch.linalg.inv(g.intrinsics)
    p = torch.einsum("bnij,bnpj->bnpi", combine, p) + g.cam_to_ego[..., :3, 3].view(b, n, 1, 3)
    p = torch.einsum("bij,bnpj->bnpi", g.bda, p)
    return p.view(b, n, *frustum.shape)


def compute_ranks(geometry: CameraGeometry, frustum: torch.Tensor, grid: GridSpec) -> BevPoolRanks:
    """The frustum points inside the grid and their BEV cell / depth / feature indices (see module doc)."""
    points = frustum_to_ego(geometry, frustum)  # (B, N, D, fH, fW, 3)
    b, n, d, fh, fw, _ = points.shape
    nx, ny, _ = grid.shape
    lower = torch.tensor(grid.lower, dtype=points.dtype, device=points.device)
    interval = torch.tensor([grid.voxel_size, grid.voxel_size, grid.voxel_size * grid.shape[2]],
                            dtype=points.dtype, device=points.device)  # fmt: skip
    coords = ((points - lower) / interval).long().view(-1, 3)  # .long() truncates toward zero, as BEVDet
    keep = (coords[:, 0] >= 0) & (coords[:, 0] < nx) & (coords[:, 1] >= 0) & (coords[:, 1] < ny)
    keep &= (coords[:, 2] >= 0) & (coords[:, 2] < 1)
    ranks_depth = torch.nonzero(keep).squeeze(1)
    coords = coords[ranks_depth]
    batch = ranks_depth // (n * d * fh * fw)
    camera = ranks_depth // (d * fh * fw) % n
    pixel = ranks_depth % (fh * fw)
    ranks_feat = (batch * n + camera) * (fh * fw) + pixel
    ranks_bev = (batch * ny + coords[:, 1]) * nx + coords[:, 0]
    return BevPoolRanks(ranks_bev, ranks_depth, ranks_feat, b)


def bev_pool(depth: torch.Tensor, feat: torch.Tensor, ranks: BevPoolRanks, bev_size: tuple[int, int]) -> torch.Tensor:
    """Splat: depth (B*N, D, fH, fW) probabilities, feat (B*N, C, fH, fW) -> BEV (B, C, Dy, Dx)."""
    c = feat.shape[1]
    dy, dx = bev_size
    feat_flat = feat.permute(0, 2, 3, 1).reshape(-1, c)
    values = depth.reshape(-1)[ranks.ranks_depth].unsqueeze(1) * feat_flat[ranks.ranks_feat]
    bev = feat.new_zeros(ranks.batch_size * dy * dx, c).index_add_(0, ranks.ranks_bev, values)
    return bev.view(ranks.batch_size, dy, dx, c).permute(0, 3, 1, 2).contiguous()


def ring_geometry(num_cameras: int, input_size: tuple[int, int], batch: int = 1, height: float = 1.5) -> CameraGeometry:
    """A synthetic rig for benchmarks and tests: ``num_cameras`` pinhole cameras (horizontal FoV ~74 deg) at
    ``height`` m, evenly spaced in yaw and looking outward, images already at the input size (no aug)."""
    h, w = input_size
    k = torch.tensor([[w / 1.5, 0.0, w / 2], [0.0, w / 1.5, h / 2], [0.0, 0.0, 1.0]])
    optical_to_ego = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    cam_to_ego = torch.eye(4).repeat(batch, num_cameras, 1, 1)
    for i in range(num_cameras):
        a = 2 * math.pi * i / num_cameras
        yaw = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
        cam_to_ego[:, i, :3, :3] = yaw @ optical_to_ego
        cam_to_ego[:, i, 2, 3] = height
    return CameraGeometry(
        intrinsics=k.repeat(batch, num_cameras, 1, 1),
        cam_to_ego=cam_to_ego,
        post_rot=torch.eye(3).repeat(batch, num_cameras, 1, 1),
        post_trans=torch.zeros(batch, num_cameras, 3),
        bda=torch.eye(3).repeat(batch, 1, 1),
    )


class LiftSplat(nn.Module):
    """depth_net (1x1 conv with bias, Cin -> D + C; first D channels = depth logits, softmax over D) and
    the splat onto the BEV grid. (B*N, Cin, fH, fW) + geometry -> (B, C, Dy, Dx)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depth_bins: tuple[float, float, float],
        input_size: tuple[int, int],
        feature_size: tuple[int, int],
        grid: GridSpec,
        cache_size: int = 8,
    ) -> None:
        super().__init__()
        depths = depth_values(depth_bins)
        self.num_depth, self.out_channels, self.grid = len(depths), out_channels, grid
        self.depth_net = nn.Conv2d(in_channels, self.num_depth + out_channels, 1)
        self.register_buffer("frustum", make_frustum(input_size, feature_size, depths), persistent=False)
        self._cache: OrderedDict[str, BevPoolRanks] = OrderedDict()
        self._cache_size = cache_size

    @property
    def bev_size(self) -> tuple[int, int]:
        """(Dy, Dx) of the BEV output."""
        return self.grid.shape[1], self.grid.shape[0]

    def ranks_for(self, geometry: CameraGeometry) -> BevPoolRanks:
        """Cached :func:`compute_ranks` for this geometry (LRU over the last few calibrations/augmentations)."""
        key = geometry.cache_key()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        with torch.no_grad():
            ranks = compute_ranks(geometry.to(self.frustum.device), self.frustum, self.grid)
        self._cache[key] = ranks
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return ranks

    def lift(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B*N, Cin, fH, fW) -> depth probabilities (B*N, D, fH, fW), context (B*N, C, fH, fW)."""
        x = self.depth_net(x)
        return x[:, : self.num_depth].softmax(dim=1), x[:, self.num_depth :]

    def forward(
        self, x: torch.Tensor, geometry: CameraGeometry | None = None, ranks: BevPoolRanks | None = None
    ) -> torch.Tensor:
        """Either ``geometry`` (ranks computed/cached here) or precomputed ``ranks`` must be given."""
        if ranks is None:
            if geometry is None:
                raise ValueError("LiftSplat needs the camera geometry or precomputed ranks")
            ranks = self.ranks_for(geometry)
        depth, feat = self.lift(x)
        return bev_pool(depth, feat, ranks.to(x.device), self.bev_size)
