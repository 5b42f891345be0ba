"""Occ3D-style ground truth from analytic geometry: semantic voxelisation and ray-traced visibility masks.

* :func:`voxelize` gives every voxel the class of the solid primitive occupying it (sub-voxel sampling, later
  primitives win, so objects drawn after the ground overwrite it), free (17) elsewhere.
* :func:`camera_visibility` is Occ3D's ``mask_camera``: a voxel in a camera's view is visible when the line of
  sight to it reaches it before any other occupied voxel (free voxels looked through, and the first surfaces).
* :func:`trace_visibility` walks rays through the grid (Amanatides-Woo DDA) and marks every voxel a ray crosses
  up to and including the first occupied one: ``mask_lidar`` from a spinning LiDAR's beams.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

from bdc_occ_ros.classes import FREE_LABEL, OCC3D_GRID, GridSpec
from bdc_occ_ros.data.synth_scene import PrimitiveSet, Shape

#: The roof LiDAR of the nuScenes car (LIDAR_TOP position in the ego frame, metres) and its beam layout
#: (HDL-32E: 32 rings from -30.67 to +10.67 deg elevation).
LIDAR_ORIGIN = np.array([0.94, 0.0, 1.84])
LIDAR_ELEVATION_DEG = (-30.67, 10.67)
LIDAR_RINGS = 32
LIDAR_AZIMUTH_STEPS = 1080
LIDAR_RANGE = 70.0


def local_half_extents(shape: int, dims: np.ndarray) -> np.ndarray:
    """Half sizes (3,) of a primitive's bounding box in its own frame."""
    if shape == Shape.BOX:
        return dims / 2
    if shape == Shape.FRUSTUM:
        r = max(dims[0], dims[1])
        return np.array([r, r, dims[2] / 2])
    return np.asarray(dims, dtype=np.float64)


def inside(shape: int, dims: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Which local-frame points q (..., 3) are inside the primitive (boundary included)."""
    if shape == Shape.BOX:
        return np.all(np.abs(q) <= dims / 2 + 1e-9, axis=-1)
    if shape == Shape.FRUSTUM:
        r0, r1, h = dims
        along = np.clip(q[..., 2] / h + 0.5, 0.0, 1.0)
        radius = r0 + (r1 - r0) * along
        return (np.abs(q[..., 2]) <= h / 2 + 1e-9) & (q[..., 0] ** 2 + q[..., 1] ** 2 <= radius**2)
    return np.sum((q / dims) ** 2, axis=-1) <= 1.0


def voxelize(prims: PrimitiveSet, grid: GridSpec = OCC3D_GRID) -> np.ndarray:
    """Semantic grid (X, Y, Z) uint8 of the primitives (ego frame); free = 17.

    Each primitive is sampled at a few points per voxel of its bounding box (0.2 m apart, 0.1 m across parts
    thinner than 0.25 m, so any part at least 0.1 m thick is caught); a voxel with a sample inside takes its class.
    """
    sem = np.full(grid.shape, FREE_LABEL, dtype=np.uint8)
    lower = np.asarray(grid.lower)
    shape = np.asarray(grid.shape)
    vs = grid.voxel_size
    for i in range(len(prims)):
        if not prims.voxelize[i]:
            continue
        rot, centre, dims = prims.rot[i], prims.center[i], prims.dims[i]
        half = local_half_extents(int(prims.shape[i]), dims)
        reach = np.abs(rot) @ half
        lo = np.maximum(np.floor((centre - reach - lower) / vs).astype(int), 0)
        hi = np.minimum(np.floor((centre + reach - lower) / vs).astype(int), shape - 1)
        if np.any(hi < lo):
            continue
        n = _samples_per_axis(rot, half)
        axes = [lower[a] + (np.arange(lo[a], hi[a] + 1)[:, None] + (np.arange(n[a]) + 0.5)[None, :] / n[a]).ravel() * vs
                for a in range(3)]
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)  # (nx*n0, ny*n1, nz*n2, 3)
        q = (pts - centre) @ rot  # ego -> local (rot maps local -> ego)
        hit = inside(int(prims.shape[i]), dims, q)
        nx, ny, nz = hi - lo + 1
        occ = hit.reshape(nx, n[0], ny, n[1], nz, n[2]).any(axis=(1, 3, 5))
        view = sem[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1]
        view[occ] = prims.label[i]
    return sem


def _samples_per_axis(rot: np.ndarray, half: np.ndarray) -> tuple[int, int, int]:
    """Sub-voxel samples per ego axis: 2 (0.2 m apart), or 4 (0.1 m) across parts thinner than 0.25 m.

    Parts only turned about z (all but tilted arms and wheels) keep their height axis, so z is decided apart.
    """
    thin = 2 * half < 0.25
    if abs(rot[2, 2] - 1.0) < 1e-9:
        nxy = 4 if thin[:2].any() else 2
        return nxy, nxy, 4 if thin[2] else 2
    n = 4 if thin.any() else 2
    return n, n, n


@lru_cache(maxsize=4)
def _centres(grid: GridSpec) -> np.ndarray:
    """Voxel centres (X*Y*Z, 3) float64, read-only (shared between calls)."""
    out = grid.centers().reshape(-1, 3).astype(np.float64)
    out.flags.writeable = False
    return out


def camera_visibility(occupied: np.ndarray, k: np.ndarray, cam_to_ego: np.ndarray, width: int, height: int,
                      grid: GridSpec = OCC3D_GRID, out: np.ndarray | None = None) -> np.ndarray:
    """Mark (into ``out``, uint8 (X, Y, Z)) the voxels one pinhole camera sees.

    A voxel whose centre projects into the image is visible when the straight line from the camera to
    one of its sample points (the centre, and the centres of the three faces turned to the camera) reaches
    the voxel without crossing another occupied voxel: free voxels the camera looks through, and the
    first occupied voxels (surfaces) it looks at. Face points matter for surfaces seen at grazing angles
    (the road far ahead), whose centres are hidden behind the neighbouring road voxels.
    """
    if out is None:
        out = np.zeros(grid.shape, dtype=np.uint8)
    centres = _centres(grid)
    origin = cam_to_ego[:3, 3]
    cam = (centres - origin) @ cam_to_ego[:3, :3]  # ego -> camera optical frame
    z = cam[:, 2]
    front = z > 0.05
    uv = cam[front, :2] / z[front, None] * [k[0, 0], k[1, 1]] + [k[0, 2], k[1, 2]]
    in_image = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    cand = np.flatnonzero(front)[in_image]
    cand = cand[~interior(occupied).ravel()[cand]]  # solid insides are never seen: skip their ray walks
    pts = centres[cand]
    towards = np.sign(origin - pts) * (0.49 * grid.voxel_size)  # just inside the face: grazing views
    samples = np.repeat(pts[:, None, :], 4, axis=1)
    for a in range(3):
        samples[:, a + 1, a] += towards[:, a]
    target = np.stack(np.unravel_index(cand, grid.shape), axis=1).astype(np.int64)
    _visible_points(occupied.astype(np.bool_), origin.astype(np.float64), samples, target,
                    np.asarray(grid.lower, dtype=np.float64), float(grid.voxel_size), out)
    return out


def interior(occupied: np.ndarray) -> np.ndarray:
    """Occupied voxels whose six face neighbours are all occupied (X, Y, Z) bool."""
    pad = np.pad(occupied.astype(bool), 1, constant_values=False)
    out = pad[1:-1, 1:-1, 1:-1].copy()
    for a in range(3):
        for shift in (0, 2):
            sl = [slice(1, -1)] * 3
            sl[a] = slice(shift, shift + occupied.shape[a])
            out &= pad[tuple(sl)]
    return out


def lidar_rays() -> np.ndarray:
    """Unit directions (M, 3) of one LiDAR revolution in the ego frame."""
    el = np.deg2rad(np.linspace(*LIDAR_ELEVATION_DEG, LIDAR_RINGS))
    az = np.linspace(-np.pi, np.pi, LIDAR_AZIMUTH_STEPS, endpoint=False)
    e, a = np.meshgrid(el, az, indexing="ij")
    return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=-1).reshape(-1, 3)


def trace_visibility(occupied: np.ndarray, origin: np.ndarray, dirs: np.ndarray, max_range: float = np.inf,
                     grid: GridSpec = OCC3D_GRID, out: np.ndarray | None = None) -> np.ndarray:
    """Mark (into ``out``, uint8 (X, Y, Z), created when None) the voxels that rays from ``origin`` along
    ``dirs`` (M, 3) cross before and including the first occupied voxel, within ``max_range`` metres.

    A ray starting outside the grid marks nothing (the ego sensors are always inside it).
    """
    if out is None:
        out = np.zeros(grid.shape, dtype=np.uint8)
    _trace(occupied.astype(np.bool_), np.asarray(origin, dtype=np.float64), np.ascontiguousarray(dirs, np.float64),
           float(max_range), np.asarray(grid.lower, dtype=np.float64), float(grid.voxel_size), out)
    return out


@njit(cache=True)
def _inside(idx, dims):  # pragma: no cover - compiled
    return 0 <= idx[0] < dims[0] and 0 <= idx[1] < dims[1] and 0 <= idx[2] < dims[2]


@njit(cache=True)
def _next_axis(t_max):  # pragma: no cover - compiled
    """The axis whose voxel boundary the walk crosses next."""
    a = 0
    if t_max[1] < t_max[a]:
        a = 1
    if t_max[2] < t_max[a]:
        a = 2
    return a


@njit(cache=True)
def _dda_start(d, g, start, vs, idx, step, t_max, t_delta):  # pragma: no cover - compiled
    """Initialise a voxel walk (Amanatides-Woo) from grid position ``g`` (in voxels) along unit ``d``."""
    for a in range(3):
        idx[a] = start[a]
        if d[a] > 0:
            step[a] = 1
            t_max[a] = (start[a] + 1 - g[a]) * vs / d[a]
            t_delta[a] = vs / d[a]
        elif d[a] < 0:
            step[a] = -1
            t_max[a] = (g[a] - start[a]) * vs / -d[a]
            t_delta[a] = vs / -d[a]
        else:
            step[a] = 0
            t_max[a] = np.inf
            t_delta[a] = np.inf


@njit(cache=True)
def _trace(occ, origin, dirs, max_range, lower, vs, out):  # pragma: no cover - compiled
    dims = occ.shape
    g = (origin - lower) / vs
    start = np.floor(g).astype(np.int64)
    if not _inside(start, dims):
        return
    step, idx = np.zeros(3, np.int64), np.zeros(3, np.int64)
    t_max, t_delta = np.zeros(3), np.zeros(3)
    for r in range(dirs.shape[0]):
        _dda_start(dirs[r], g, start, vs, idx, step, t_max, t_delta)
        t = 0.0
        while t <= max_range:
            out[idx[0], idx[1], idx[2]] = 1
            if occ[idx[0], idx[1], idx[2]]:
                break
            a = _next_axis(t_max)
            t = t_max[a]
            t_max[a] += t_delta[a]
            idx[a] += step[a]
            if idx[a] < 0 or idx[a] >= dims[a]:
                break


@njit(cache=True)
def _visible_points(occ, origin, samples, target, lower, vs, out):  # pragma: no cover - compiled
    """out[target[m]] = 1 when a straight line from origin to one of samples[m] reaches voxel target[m]
    before any other occupied voxel. samples[m, 0] is the centre; the others are tried for occupied targets only."""
    dims = occ.shape
    g = (origin - lower) / vs
    start = np.floor(g).astype(np.int64)
    if not _inside(start, dims):
        return
    step, idx = np.zeros(3, np.int64), np.zeros(3, np.int64)
    t_max, t_delta = np.zeros(3), np.zeros(3)
    for m in range(samples.shape[0]):
        tx, ty, tz = target[m, 0], target[m, 1], target[m, 2]
        for s in range(samples.shape[1]):
            d = samples[m, s] - origin
            length = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
            _dda_start(d / length, g, start, vs, idx, step, t_max, t_delta)
            reached = False
            while True:
                if idx[0] == tx and idx[1] == ty and idx[2] == tz:
                    reached = True
                    break
                if occ[idx[0], idx[1], idx[2]]:
                    break
                a = _next_axis(t_max)
                if t_max[a] > length + 1e-6:  # passed the sample point without entering the voxel (rounding)
                    break
                idx[a] += step[a]
                t_max[a] += t_delta[a]
                if idx[a] < 0 or idx[a] >= dims[a]:
                    break
            if reached:
                out[tx, ty, tz] = 1
                break
            if not occ[tx, ty, tz]:
                break  # free voxels: the centre decides (face points matter for surfaces seen edge-on)
