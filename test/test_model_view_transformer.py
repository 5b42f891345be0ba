"""Lift-splat against a straightforward per-point implementation of the BEVDet semantics (reference §4.3)."""

from __future__ import annotations

import math

import numpy as np
import torch

from bdc_occ_ros.classes import GridSpec
from bdc_occ_ros.model.inputs import CameraGeometry
from bdc_occ_ros.model.view_transformer import (
    LiftSplat,
    bev_pool,
    compute_ranks,
    depth_values,
    make_frustum,
    ring_geometry,
)

GRID = GridSpec(lower=(-10.0, -8.0, -3.0), voxel_size=2.0, shape=(10, 8, 5))  # z: one 10 m bin


def _rot(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return rz @ ry @ rx


def _random_geometry(rng: np.random.Generator, b: int, n: int) -> CameraGeometry:
    optical = np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    k = np.zeros((b, n, 3, 3))
    c2e = np.tile(np.eye(4), (b, n, 1, 1))
    post_rot = np.tile(np.eye(3), (b, n, 1, 1))
    post_trans = np.zeros((b, n, 3))
    for i in range(b):
        for j in range(n):
            f = rng.uniform(20, 40)
            k[i, j] = [[f, 0, rng.uniform(20, 30)], [0, f * rng.uniform(0.9, 1.1), rng.uniform(10, 14)], [0, 0, 1]]
            rot = _rot(rng.uniform(-math.pi, math.pi), rng.uniform(-0.2, 0.2), rng.uniform(-0.1, 0.1))
            c2e[i, j, :3, :3] = rot @ optical
            c2e[i, j, :3, 3] = rng.uniform(-1, 1, 3)
            a, s = rng.uniform(-0.1, 0.1), rng.uniform(0.8, 1.2)
            post_rot[i, j, :2, :2] = s * np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
            post_trans[i, j, :2] = rng.uniform(-5, 5, 2)
    bda = np.stack([np.diag([rng.choice([-1, 1]), rng.choice([-1, 1]), 1.0]) for _ in range(b)])
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return CameraGeometry(t(k), t(c2e), t(post_rot), t(post_trans), t(bda))


def _reference(depth, feat, geometry, frustum, grid):
    """Per point: undo aug, unproject, camera->ego, BDA, truncate to a cell, accumulate depth * feature."""
    c = feat.shape[1]
    g = [t.double().numpy() for t in geometry.tensors()]
    b, n = g[0].shape[:2]
    nx, ny, nz = grid.shape
    bev = np.zeros((b, c, ny, nx))
    fr = frustum.double().numpy()
    inside = 0
    for i in range(b):
        for j in range(n):
            for d, h, w in np.ndindex(*fr.shape[:3]):
                p = np.linalg.inv(g[2][i, j]) @ (fr[d, h, w] - g[3][i, j])
                p = np.array([p[0] * p[2], p[1] * p[2], p[2]])
                e = g[1][i, j, :3, :3] @ np.linalg.inv(g[0][i, j]) @ p + g[1][i, j, :3, 3]
                e = g[4][i] @ e
                cell = [int((e[0] - grid.lower[0]) / grid.voxel_size), int((e[1] - grid.lower[1]) / grid.voxel_size),
                        int((e[2] - grid.lower[2]) / (grid.voxel_size * nz))]  # fmt: skip
                if 0 <= cell[0] < nx and 0 <= cell[1] < ny and cell[2] == 0:
                    inside += 1
                    bev[i, :, cell[1], cell[0]] += depth[i * n + j, d, h, w].item() * feat[i * n + j, :, h, w].numpy()
    return bev, inside


def test_lift_splat_matches_per_point_reference():
    rng = np.random.default_rng(3)
    b, n, d, fh, fw, c = 2, 3, 5, 3, 4, 3
    depths = depth_values((1.0, 11.0, 2.0))
    assert len(depths) == d
    frustum = make_frustum((24, 48), (fh, fw), depths)
    geometry = _random_geometry(rng, b, n)
    depth = torch.rand(b * n, d, fh, fw).softmax(dim=1)
    feat = torch.randn(b * n, c, fh, fw)
    ranks = compute_ranks(geometry, frustum, GRID)
    ours = bev_pool(depth, feat, ranks, (GRID.shape[1], GRID.shape[0]))
    expected, inside = _reference(depth, feat, geometry, frustum, GRID)
    assert 0 < inside < b * n * d * fh * fw  # some points dropped, some kept
    assert len(ranks.ranks_bev) == inside
    assert ours.shape == (b, c, GRID.shape[1], GRID.shape[0])
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4)


def test_truncation_keeps_points_just_below_the_lower_bound():
    # Camera at x = -12.2 m looking along +x; its point 1 m ahead is at x = -11.2, i.e. (-11.2 + 10) / 2 = -0.6
    # cells below the grid: BEVDet's truncation toward zero puts it into column 0 (floor would drop it).
    frustum = torch.tensor([[[[0.0, 0.0, 1.0]]]])  # (D=1, fH=1, fW=1, 3): pixel (0, 0), depth 1 m
    k = torch.eye(3)[None, None]
    c2e = torch.eye(4)
    c2e[:3, :3] = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    c2e[:3, 3] = torch.tensor([-12.2, 0.1, 0.0])
    geometry = CameraGeometry(k, c2e[None, None], torch.eye(3)[None, None], torch.zeros(1, 1, 3), torch.eye(3)[None])
    ranks = compute_ranks(geometry, frustum, GRID)
    assert ranks.ranks_bev.tolist() == [4 * GRID.shape[0] + 0]  # y = 0.1 -> row (8.1 / 2) = 4, column 0


def test_ranks_are_cached_per_geometry():
    vt = LiftSplat(8, 4, (1.0, 9.0, 1.0), (32, 64), (2, 4), GRID)
    g1, g2 = ring_geometry(2, (32, 64)), ring_geometry(2, (32, 64), height=1.0)
    r1 = vt.ranks_for(g1)
    assert vt.ranks_for(ring_geometry(2, (32, 64))) is r1
    assert vt.ranks_for(g2) is not r1
    x = torch.randn(2, 8, 2, 4)
    out = vt(x, g1)
    assert out.shape == (1, 4, GRID.shape[1], GRID.shape[0])
    assert torch.equal(out, vt(x, ranks=r1))
