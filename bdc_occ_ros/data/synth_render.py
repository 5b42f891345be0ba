"""SynthOcc camera rendering: primitives -> triangle mesh -> open3d CPU ray casting -> procedural shading.

Shading gives the network texture and geometry cues instead of a flat class colour: per-object albedo
variation, value noise, road markings, paving, windows, stripes, Lambertian sun with hard shadows + ambient
light, distance fog and a sky gradient. Everything is deterministic for a given scene, pose and seed.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from numba import njit

from bdc_occ_ros.data.synth_scene import PrimitiveSet, Scene, Shape

_FRUSTUM_SEGMENTS = 12
_SPHERE_LAT, _SPHERE_LON = 7, 12


def _box_template() -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = [t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]
    return v, np.array(tris)


def _frustum_template() -> tuple[np.ndarray, np.ndarray]:
    """Unit rings (bottom z=-0.5, top z=+0.5) plus cap centres; x/y later scaled per ring by r0/r1."""
    n = _FRUSTUM_SEGMENTS
    ang = np.arange(n) * 2 * np.pi / n
    ring = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    v = np.concatenate([np.c_[ring, -0.5 * np.ones(n)], np.c_[ring, 0.5 * np.ones(n)], [[0, 0, -0.5], [0, 0, 0.5]]])
    tris = []
    for i in range(n):
        j = (i + 1) % n
        tris += [(i, j, n + j), (i, n + j, n + i), (2 * n, j, i), (2 * n + 1, n + i, n + j)]
    return v, np.array(tris)


def _sphere_template() -> tuple[np.ndarray, np.ndarray]:
    lat = np.linspace(0, np.pi, _SPHERE_LAT + 1)[1:-1]
    lon = np.arange(_SPHERE_LON) * 2 * np.pi / _SPHERE_LON
    pts = [[0, 0, 1]] + [[np.sin(a) * np.cos(b), np.sin(a) * np.sin(b), np.cos(a)] for a in lat for b in lon]
    pts.append([0, 0, -1])
    m = _SPHERE_LON
    tris = [(0, 1 + j, 1 + (j + 1) % m) for j in range(m)]
    for i in range(len(lat) - 1):
        for j in range(m):
            a, b = 1 + i * m + j, 1 + i * m + (j + 1) % m
            tris += [(a, a + m, b + m), (a, b + m, b)]
    last = len(pts) - 1
    base = 1 + (len(lat) - 1) * m
    tris += [(last, base + (j + 1) % m, base + j) for j in range(m)]
    return np.array(pts, dtype=np.float64), np.array(tris)


_TEMPLATES = {Shape.BOX: _box_template(), Shape.FRUSTUM: _frustum_template(), Shape.ELLIPSOID: _sphere_template()}


def build_mesh(prims: PrimitiveSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangle soup of all primitives: vertices (V, 3) float32, triangles (T, 3) uint32, primitive of each
    triangle (T,) int64."""
    verts, tris, owner = [], [], []
    n_verts = 0
    for shape, (tv, tt) in _TEMPLATES.items():
        sel = np.flatnonzero(prims.shape == shape)
        if sel.size == 0:
            continue
        dims = prims.dims[sel]
        if shape == Shape.FRUSTUM:
            top = tv[:, 2] > 0
            radius = np.where(top[None, :], dims[:, 1:2], dims[:, 0:1])  # (P, Vt)
            local = np.stack([tv[None, :, 0] * radius, tv[None, :, 1] * radius,
                              np.broadcast_to(tv[None, :, 2] * dims[:, 2:3], radius.shape)], axis=-1)
        else:
            local = tv[None] * dims[:, None, :]  # BOX scales the unit cube by (l, w, h); ELLIPSOID by (a, b, c)
        world = np.einsum("pij,pvj->pvi", prims.rot[sel], local) + prims.center[sel][:, None, :]
        verts.append(world.reshape(-1, 3))
        offs = n_verts + np.arange(sel.size)[:, None, None] * len(tv)
        tris.append((tt[None] + offs).reshape(-1, 3))
        owner.append(np.repeat(sel, len(tt)))
        n_verts += sel.size * len(tv)
    return (np.concatenate(verts).astype(np.float32), np.concatenate(tris).astype(np.uint32),
            np.concatenate(owner).astype(np.int64))


class FrameRenderer:
    """Ray casts one frame's mesh (built once) from any number of cameras."""

    def __init__(self, prims: PrimitiveSet, nthreads: int = 0):
        import open3d as o3d  # heavy; only the generator needs it

        self._o3d = o3d
        self.prims = prims
        verts, tris, self.tri_owner = build_mesh(prims)
        self.scene = o3d.t.geometry.RaycastingScene(nthreads=nthreads)
        self.scene.add_triangles(o3d.core.Tensor(verts), o3d.core.Tensor(tris))
        self.nthreads = nthreads

    def render(self, scene: Scene, ego_from_world: np.ndarray, k: np.ndarray, cam_to_ego: np.ndarray, width: int,
               height: int, exposure: float, noise_rng: np.random.Generator) -> np.ndarray:
        """An RGB uint8 image (height, width, 3) from a pinhole camera (K at that size, camera -> ego)."""
        rays = _camera_rays(tuple(k.ravel()), tuple(cam_to_ego.ravel()), width, height)
        dirs = rays[:, 3:]
        origin = cam_to_ego[:3, 3]
        hits = self.scene.cast_rays(self._o3d.core.Tensor(rays), nthreads=self.nthreads)
        t_hit = hits["t_hit"].numpy()
        miss = ~np.isfinite(t_hit)
        t_hit[miss] = 0.0
        prim = self.tri_owner[np.where(miss, 0, hits["primitive_ids"].numpy())]
        prim[miss] = -1
        normals = hits["primitive_normals"].numpy()
        normals *= np.where(np.einsum("ij,ij->i", normals, dirs) > 0, -1.0, 1.0).astype(np.float32)[:, None]
        rot = ego_from_world[:3, :3]
        sun = rot @ scene.sun
        lit = self._sunlit(origin.astype(np.float32) + dirs * t_hit[:, None], normals, sun, ~miss)
        p = self.prims
        rgb = _shade(dirs, t_hit, prim, lit, normals, origin, p.center, p.rot, p.dims,
                     p.color.astype(np.float64), p.color2.astype(np.float64), p.texture, p.params.astype(np.float64),
                     p.seed, sun, float(scene.ambient), scene.sky_horizon.astype(np.float64),
                     scene.sky_zenith.astype(np.float64), scene.fog_color.astype(np.float64),
                     float(scene.fog_distance), rot @ np.array([0.0, 0.0, 1.0]))
        img = rgb.reshape(height, width, 3) * exposure * 255.0
        img += noise_rng.normal(0.0, 1.5, img.shape)
        return np.clip(img, 0, 255).astype(np.uint8)

    def _sunlit(self, points: np.ndarray, normals: np.ndarray, sun: np.ndarray, hit: np.ndarray) -> np.ndarray:
        """(N,) 1.0 where a surface point faces the sun and nothing lies between them (hard shadows), else 0."""
        lit = np.zeros(len(points), dtype=np.float32)
        facing = hit & (normals @ sun.astype(np.float32) > 0)
        rays = np.empty((int(facing.sum()), 6), dtype=np.float32)
        rays[:, :3] = points[facing] + normals[facing] * 0.02  # off the surface: no self-shadowing
        rays[:, 3:] = sun
        blocked = self.scene.test_occlusions(self._o3d.core.Tensor(rays), nthreads=self.nthreads).numpy()
        lit[facing] = ~blocked
        return lit


@lru_cache(maxsize=16)
def _camera_rays(k: tuple[float, ...], cam_to_ego: tuple[float, ...], width: int, height: int) -> np.ndarray:
    """Rays (H*W, 6) float32 [origin, unit direction] in the ego frame through the pixel centres of a pinhole
    camera (K and camera -> ego flattened). Cached: a scene renders every frame from the same rig."""
    k_m, pose = np.asarray(k).reshape(3, 3), np.asarray(cam_to_ego).reshape(4, 4)
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pix = np.stack([u, v, np.ones_like(u)], axis=-1).reshape(-1, 3)
    dirs = pix @ np.linalg.inv(k_m).T @ pose[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    rays = np.concatenate([np.broadcast_to(pose[:3, 3], dirs.shape), dirs], axis=1).astype(np.float32)
    rays.flags.writeable = False
    return rays


def render_camera(renderer: FrameRenderer, scene: Scene, ego_from_world: np.ndarray, k: np.ndarray,
                  cam_to_ego: np.ndarray, out_w: int, out_h: int, render_scale: float, exposure: float,
                  noise_rng: np.random.Generator) -> np.ndarray:
    """Render at ``render_scale`` of the output size (K scaled accordingly) and upscale to (out_h, out_w, 3)."""
    rw, rh = max(8, round(out_w * render_scale)), max(8, round(out_h * render_scale))
    k_r = np.diag([rw / out_w, rh / out_h, 1.0]) @ k
    img = renderer.render(scene, ego_from_world, k_r, cam_to_ego, rw, rh, exposure, noise_rng)
    if (rw, rh) != (out_w, out_h):
        img = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    return img


# ----------------------------------------------------------------------------------------------------------
# Shading kernel (numba): one pass over the pixels
# ----------------------------------------------------------------------------------------------------------


@njit(cache=True)
def _hash(ix, iy, iz, seed):  # pragma: no cover - compiled
    h = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791) ^ (seed * 2654435761)
    h = h & 0xFFFFFFFF
    h = ((h >> 16) ^ h) * 0x45D9F3B & 0xFFFFFFFF
    h = ((h >> 16) ^ h) * 0x45D9F3B & 0xFFFFFFFF
    h = (h >> 16) ^ h
    return (h & 0xFFFFFF) / 16777215.0


@njit(cache=True)
def _value_noise(x, y, z, seed):  # pragma: no cover - compiled
    fx, fy, fz = np.floor(x), np.floor(y), np.floor(z)
    ix, iy, iz = np.int64(fx), np.int64(fy), np.int64(fz)
    tx, ty, tz = x - fx, y - fy, z - fz
    tx = tx * tx * (3 - 2 * tx)
    ty = ty * ty * (3 - 2 * ty)
    tz = tz * tz * (3 - 2 * tz)
    acc = 0.0
    for dx in range(2):
        wx = tx if dx else 1 - tx
        for dy in range(2):
            wy = ty if dy else 1 - ty
            for dz in range(2):
                wz = tz if dz else 1 - tz
                acc += wx * wy * wz * _hash(ix + dx, iy + dy, iz + dz, seed)
    return acc


@njit(cache=True)
def _stripe(coord, width):  # pragma: no cover - compiled
    """1.0 within ``width / 2`` of coord == 0 (a painted line), else 0.0."""
    return 1.0 if abs(coord) < width / 2 else 0.0


@njit(cache=True)
def _shade(dirs, t_hit, prim, lit, normals, origin, centers, rots, dims, colors, colors2, textures, params, seeds, sun,
           ambient, horizon, zenith, fog, fog_dist, up):  # pragma: no cover - compiled
    """RGB (N, 3) in [0, 1] of N pixel rays: sky where prim < 0, else the textured, lit, fogged surface."""
    n_px = dirs.shape[0]
    out = np.empty((n_px, 3))
    for i in range(n_px):
        d = dirs[i]
        up_d = d[0] * up[0] + d[1] * up[1] + d[2] * up[2]
        if prim[i] < 0:
            s = min(max(up_d * 2.5, 0.0), 1.0)
            glow = max(d[0] * sun[0] + d[1] * sun[1] + d[2] * sun[2], 0.0) ** 32 * 0.4
            for c in range(3):
                out[i, c] = horizon[c] + (zenith[c] - horizon[c]) * s + glow
            continue
        j = prim[i]
        t = t_hit[i]
        n = normals[i]
        # hit point and normal in the primitive's frame
        q = np.zeros(3)
        nl = np.zeros(3)
        for a in range(3):
            for b in range(3):
                q[a] += (origin[b] + t * d[b] - centers[j, b]) * rots[j, b, a]
                nl[a] += n[b] * rots[j, b, a]
        seed = seeds[j]
        tex = textures[j]
        base = colors[j].copy()
        noise = _value_noise(q[0] * 1.7, q[1] * 1.7, q[2] * 1.7, seed)
        fine = _hash(np.int64(np.floor(q[0] * 12)), np.int64(np.floor(q[1] * 12)), np.int64(np.floor(q[2] * 12)), seed)
        amp = 0.25
        mix2 = 0.0
        horiz_face = abs(nl[2]) > 0.7
        height = q[2] + dims[j, 2] / 2
        if tex == 1 and horiz_face:  # ASPHALT lane markings along local x
            hw, lw, cy, two_way = params[j, 0], params[j, 1], params[j, 2], params[j, 3]
            y = q[1]
            edge = hw - 0.3
            line = _stripe(abs(y) - edge, 0.15)
            if abs(y) < edge - 0.4:
                k = np.round((y - cy) / lw)
                if k != 0:
                    dashed = (q[0] % 9.0) < 3.0
                    line = max(line, _stripe(y - cy - k * lw, 0.15) * (1.0 if dashed else 0.0))
                elif two_way > 0.5:
                    line = max(line, _stripe(y - cy, 0.2))
            mix2 = line * (0.75 + 0.25 * noise)
            amp = 0.35
        elif tex == 2:  # TILES: grout lines on the two in-plane axes
            size = params[j, 0] if params[j, 0] > 0 else 0.5
            if horiz_face:
                u, w = q[0], q[1]
            elif abs(nl[0]) > abs(nl[1]):
                u, w = q[1], q[2]
            else:
                u, w = q[0], q[2]
            fu = (u / size) % 1.0
            fw = (w / size) % 1.0
            if min(fu, 1 - fu) < 0.04 or min(fw, 1 - fw) < 0.04:
                for c in range(3):
                    base[c] *= 0.75
        elif tex == 3:  # ROUGH (grass, foliage, bark)
            n2 = _value_noise(q[0] * 6.0, q[1] * 6.0, q[2] * 6.0, seed + 7)
            for c in range(3):
                base[c] *= 0.6 + 0.5 * n2 + 0.3 * (fine - 0.5)
            amp = 0.5
        elif tex == 4 and not horiz_face:  # FACADE windows
            ww, wh, floor_h, spacing = params[j, 0], params[j, 1], params[j, 2], params[j, 3]
            u = q[1] if abs(nl[0]) > abs(nl[1]) else q[0]
            fv = height % floor_h
            if height > 1.2 and abs(fv - floor_h / 2) < wh / 2 and (u % spacing) < ww:
                mix2 = 0.85 + 0.15 * noise
        elif tex == 5:  # STRIPES: horizontal bands of colour2 in the top `duty` of each period
            period, duty = params[j, 0], params[j, 1]
            if period > 0 and (height % period) / period > 1.0 - duty:
                mix2 = 1.0
        shade = ambient + (1.0 - ambient) * max(n[0] * sun[0] + n[1] * sun[1] + n[2] * sun[2], 0.0) * lit[i]
        fog_w = np.exp(-t / fog_dist)
        variation = 1.0 + amp * (noise - 0.5) + 0.08 * (fine - 0.5)
        for c in range(3):
            albedo = (base[c] * (1 - mix2) + colors2[j, c] * mix2) * variation
            out[i, c] = albedo * shade * fog_w + fog[c] * (1 - fog_w)
    return out
