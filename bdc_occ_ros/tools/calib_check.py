"""``bdc-occ calib-check --sample DIR --out DIR``: the sample's LiDAR sweep drawn into the six images.

If the calibration is right, the coloured LiDAR points (near = red, far = blue) lie on the objects
they hit: car bodies, poles, kerbs. A wrong extrinsic shows as a consistent shift or rotation, a wrong
intrinsic as points scaled away from the image centre. ``lidar_top.bin`` holds float32 records
(x, y, z, intensity, ring) in the LiDAR frame; ``lidar2ego_*`` of the info record maps it to the base
frame. ``--calibration`` checks a calibration YAML instead of the info record's own cameras.
Writes ``DIR/lidar_projection.png`` (2 x 3 grid in nuScenes order).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bdc_occ_ros.geometry import CameraCalibration, RigCalibration, make_transform, quat_to_matrix

#: Depth range of the colour map (metres).
DEPTH_RANGE = (1.0, 50.0)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("calib-check", help="project the sample's LiDAR sweep into its camera images")
    p.add_argument("--sample", type=Path, required=True, help="sample dir: imgs/CAM_*.jpg, sample*.yaml, lidar_top.bin")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--calibration", type=Path, default=None, help="calibration YAML to check (default: the info's)")
    p.set_defaults(func=run)


def load_lidar(path: Path, info: dict) -> np.ndarray:
    """(N, 3) float64 LiDAR points in the base frame (ego), from the (x, y, z, intensity, ring) records."""
    if not path.is_file():
        raise FileNotFoundError(f"LiDAR sweep not found: {path}")
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % 5:
        raise ValueError(f"{path}: {raw.size} floats is not a multiple of 5 (x, y, z, intensity, ring)")
    for key in ("lidar2ego_rotation", "lidar2ego_translation"):
        if key not in info:
            raise ValueError(f"info record: missing '{key}'")
    lidar_to_base = make_transform(quat_to_matrix(info["lidar2ego_rotation"]), info["lidar2ego_translation"])
    pts = raw.reshape(-1, 5)[:, :3].astype(np.float64)
    return pts @ lidar_to_base[:3, :3].T + lidar_to_base[:3, 3]


def project(points_base: np.ndarray, cam: CameraCalibration) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel coordinates (M, 2), depths (M,) and the indices (M,) of the points that land inside the image."""
    if cam.intrinsics is None:
        raise ValueError(f"camera {cam.name}: no intrinsics")
    base_to_cam = np.linalg.inv(cam.cam_to_base)
    p = points_base @ base_to_cam[:3, :3].T + base_to_cam[:3, 3]
    front = np.flatnonzero(p[:, 2] > 0.5)
    uvw = p[front] @ cam.intrinsics.T
    uv = uvw[:, :2] / uvw[:, 2:3]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
    return uv[inside], p[front[inside], 2], front[inside]


def project_points(img: np.ndarray, points_base: np.ndarray, colors: np.ndarray, cam: CameraCalibration,
                   radius: int = 2) -> np.ndarray:
    """A copy of ``img`` (H, W, 3 RGB) with ``points_base`` (N, 3) drawn as squares of half-size ``radius`` in
    ``colors`` (N, 3 uint8), far points first so near ones stay on top. Intrinsics are rescaled to the image."""
    h, w = img.shape[:2]
    if (w, h) != (cam.width, cam.height):
        k = cam.intrinsics.copy()
        k[0] *= w / cam.width
        k[1] *= h / cam.height
        cam = cam.with_intrinsics(k, w, h)
    uv, depth, idx = project(points_base, cam)
    order = np.argsort(-depth, kind="stable")
    u, v = uv[order, 0].astype(np.int64), uv[order, 1].astype(np.int64)
    rgb = colors[idx[order]]
    out = img.copy()
    for dv in range(-radius, radius + 1):  # numpy assignment keeps the last (nearest) write per pixel
        for du in range(-radius, radius + 1):
            uu, vv = np.clip(u + du, 0, w - 1), np.clip(v + dv, 0, h - 1)
            out[vv, uu] = rgb
    return out


def depth_colors(points_base: np.ndarray, cam: CameraCalibration) -> np.ndarray:
    """(N, 3) uint8 RGB colour per point from its depth in ``cam`` (near red, far blue; jet colour map)."""
    import cv2

    base_to_cam = np.linalg.inv(cam.cam_to_base)
    z = points_base @ base_to_cam[2, :3] + base_to_cam[2, 3]
    t = np.clip((z - DEPTH_RANGE[0]) / (DEPTH_RANGE[1] - DEPTH_RANGE[0]), 0, 1)
    jet = cv2.applyColorMap((255 * (1 - t)).astype(np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]
    return np.ascontiguousarray(jet)


def camera_grid(views: Sequence[np.ndarray], names: Sequence[str], tile_w: int = 800, cols: int = 3) -> np.ndarray:
    """The views (RGB) resized to ``tile_w`` wide and tiled ``cols`` per row, each captioned with its name."""
    import cv2

    tiles = []
    for img, name in zip(views, names, strict=True):
        tile_h = round(img.shape[0] * tile_w / img.shape[1])
        tile = cv2.resize(img, (tile_w, tile_h), interpolation=cv2.INTER_AREA)
        cv2.putText(tile, name, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2, cv2.LINE_AA)
        tiles.append(tile)
    tile_h = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, tile_h - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % cols)
    rows = [np.concatenate(tiles[i:i + cols], axis=1) for i in range(0, len(tiles), cols)]
    return np.concatenate(rows, axis=0)


def run(args: argparse.Namespace) -> int:
    import cv2

    from bdc_occ_ros.tools.infer import load_sample

    sample = load_sample(args.sample)
    rig = RigCalibration.load(args.calibration) if args.calibration else sample.rig
    points = load_lidar(args.sample / "lidar_top.bin", sample.info)
    names = list(sample.jpeg)
    views = []
    for cam in rig.ordered(names):
        views.append(project_points(sample.rgb(cam.name), points, depth_colors(points, cam), cam, radius=2))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "lidar_projection.png"
    cv2.imwrite(str(path), cv2.cvtColor(camera_grid(views, names), cv2.COLOR_RGB2BGR))
    print(f"wrote {path}: {len(points)} LiDAR points projected into {len(views)} cameras")
    return 0
