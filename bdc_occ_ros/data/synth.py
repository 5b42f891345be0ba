"""SynthOcc generator: procedural street scenes -> six camera JPEGs + Occ3D ground truth + an index.

Output tree (``DIR``)::

    index.json                                   # see :func:`generate` / the README "SynthOcc" section
    samples/<CAM>/<scene>__<CAM>__<timestamp>.jpg
    gts/<scene>/<token>/labels.npz               # semantics, mask_lidar, mask_camera: (200, 200, 16) uint8

Every random draw comes from generators seeded by (seed, scene, ...), npz members carry a fixed zip date,
and frames are written in a fixed order, so the same arguments give byte-identical files with any number
of workers. Scene ``i`` depends only on (seed, i): a run with more scenes extends a smaller one.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from bdc_occ_ros.classes import DET_CLASSES, FREE_LABEL, OCC3D_GRID, OCC_CLASSES
from bdc_occ_ros.data.synth_scene import Scene, frame_primitives, generate_scene, rot_z
from bdc_occ_ros.data.voxelize import (
    LIDAR_ORIGIN,
    LIDAR_RANGE,
    camera_visibility,
    lidar_rays,
    trace_visibility,
    voxelize,
)
from bdc_occ_ros.geometry import NUSCENES_CAMERAS, CameraCalibration, RigCalibration, make_transform, matrix_to_quat

INDEX_FORMAT = "synthocc"
INDEX_VERSION = 1
FRAME_RATE_HZ = 12.0
#: Camera exposure times relative to the frame (LiDAR) stamp, µs, as in nuScenes (the cameras fire as the
#: LiDAR sweeps past them; measured on the sample in ../shared/data/nuscenes_sample0, rounded).
CAMERA_OFFSETS_US = {
    "CAM_FRONT_LEFT": -43800,
    "CAM_FRONT": -36200,
    "CAM_FRONT_RIGHT": -28400,
    "CAM_BACK_RIGHT": -20800,
    "CAM_BACK": -11200,
    "CAM_BACK_LEFT": -1300,
}
BOX_RANGE_M = 55.0  # annotate objects whose centre is within this |x|, |y| of the ego
_EPOCH_US = 1_600_000_000_000_000
_SCENE_SPACING_US = 3_600_000_000


@dataclass(frozen=True)
class SynthConfig:
    """What to generate; see ``bdc-occ synth --help``."""

    out: Path
    scenes: int
    seed: int = 0
    frames_per_scene: int = 4
    image_size: tuple[int, int] = (1600, 900)  # (width, height)
    render_scale: float = 0.5  # ray-cast at this fraction of the image size, then upscale
    val_every: int = 4  # scene i is in the val split when i % val_every == val_every - 1
    jpeg_quality: int = 90
    workers: int = 1
    rig_path: Path | None = None  # default: the package's config/calibration/nuscenes.yaml
    rig_jitter: bool = True  # per-scene mounting noise; False: every scene uses the (scaled) base rig

    def validate(self) -> None:
        checks = {
            "scenes": self.scenes >= 1,
            "frames_per_scene": self.frames_per_scene >= 1,
            "image_size": min(self.image_size) >= 16,
            "render_scale": 0.05 <= self.render_scale <= 1.0,
            "val_every": self.val_every >= 2,
            "jpeg_quality": 1 <= self.jpeg_quality <= 100,
            "workers": self.workers >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid synth setting {bad[0]}={getattr(self, bad[0])!r}")


def default_rig_path() -> Path:
    """The rig SynthOcc renders from: ``config/calibration/nuscenes.yaml`` of the source tree or the ROS share."""
    source_tree = Path(__file__).resolve().parents[2] / "config" / "calibration" / "nuscenes.yaml"
    if source_tree.is_file():
        return source_tree
    try:  # installed by colcon: <prefix>/share/bdc_occ_ros/config/...
        from ament_index_python.packages import get_package_share_directory

        shared = Path(get_package_share_directory("bdc_occ_ros")) / "config" / "calibration" / "nuscenes.yaml"
    except (ImportError, LookupError, OSError, ValueError):
        shared = None
    if shared is not None and shared.is_file():
        return shared
    raise FileNotFoundError(f"default calibration not found at {source_tree} nor in the ament share directory")


def scene_name(index: int) -> str:
    return f"scene-{index:04d}"


def scene_split(index: int, val_every: int) -> str:
    return "val" if index % val_every == val_every - 1 else "train"


def frame_token(seed: int, scene: int, frame: int) -> str:
    """A nuScenes-like 32-hex token, stable for (seed, scene, frame)."""
    return hashlib.sha1(f"synthocc/{seed}/{scene}/{frame}".encode()).hexdigest()[:32]


def scale_rig(rig: RigCalibration, width: int, height: int) -> RigCalibration:
    """The rig with intrinsics rescaled to images of (width, height)."""
    cams = {}
    for name, cam in rig.cameras.items():
        if cam.intrinsics is None:
            raise ValueError(f"rig camera {name} has no intrinsics")
        k = np.diag([width / cam.width, height / cam.height, 1.0]) @ cam.intrinsics
        cams[name] = cam.with_intrinsics(k, width, height)
    return RigCalibration(rig.base_frame, cams)


def jitter_rig(rig: RigCalibration, rng: np.random.Generator) -> RigCalibration:
    """Per-scene mounting noise on a rig: ~1.5 cm, ~0.5 deg, ~1 % focal length, ~0.4 % principal point."""
    cams = {}
    for name, cam in rig.cameras.items():
        k = cam.intrinsics.copy()
        k[0, 0] *= 1 + rng.normal(0, 0.01)
        k[1, 1] = k[0, 0] * (1 + rng.normal(0, 0.001))
        k[:2, 2] += rng.normal(0, 0.004, 2) * [cam.width, cam.height]
        axis = rng.normal(size=3)
        angle = np.deg2rad(rng.normal(0, 0.5))
        drot = cv2.Rodrigues((axis / np.linalg.norm(axis) * angle).reshape(3, 1))[0]
        pose = make_transform(drot @ cam.cam_to_base[:3, :3], cam.cam_to_base[:3, 3] + rng.normal(0, 0.015, 3))
        cams[name] = CameraCalibration(name, cam.frame_id, pose, cam.width, cam.height, k)
    return RigCalibration(rig.base_frame, cams)


def write_labels_npz(path: Path, semantics: np.ndarray, mask_lidar: np.ndarray, mask_camera: np.ndarray) -> None:
    """Occ3D ``labels.npz`` (compressed) with a fixed zip timestamp, so equal arrays give equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in (("semantics", semantics), ("mask_lidar", mask_lidar), ("mask_camera", mask_camera)):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr, dtype=np.uint8), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def ground_truth(prims, rig: RigCalibration) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(semantics, mask_lidar, mask_camera), each (200, 200, 16) uint8, of one posed frame."""
    sem = voxelize(prims)
    occupied = sem != FREE_LABEL
    mask_camera = np.zeros(OCC3D_GRID.shape, dtype=np.uint8)
    for cam in rig.cameras.values():
        camera_visibility(occupied, cam.intrinsics, cam.cam_to_base, cam.width, cam.height, out=mask_camera)
    mask_lidar = trace_visibility(occupied, LIDAR_ORIGIN, lidar_rays(), LIDAR_RANGE)
    return sem, mask_lidar, mask_camera


def _pose_dict(x: float, y: float, yaw: float) -> dict:
    return {"translation": [round(x, 6), round(y, 6), 0.0],
            "rotation": [round(float(v), 9) for v in matrix_to_quat(rot_z(yaw))]}


def generate_scene_frames(cfg: SynthConfig, scene_index: int, base_rig: RigCalibration,
                          nthreads: int = 0) -> list[dict]:
    """Generate and write all frames of one scene; returns their index records."""
    from bdc_occ_ros.data.synth_render import FrameRenderer, render_camera

    width, height = cfg.image_size
    duration = (cfg.frames_per_scene - 1) / FRAME_RATE_HZ
    scene: Scene = generate_scene(np.random.default_rng([cfg.seed, scene_index]), duration)
    rig = scale_rig(base_rig, width, height)
    if cfg.rig_jitter:
        rig = jitter_rig(rig, np.random.default_rng([cfg.seed, scene_index, 1]))
    name = scene_name(scene_index)
    split = scene_split(scene_index, cfg.val_every)
    cams = [n for n in NUSCENES_CAMERAS if n in rig.cameras]
    records = []
    for k in range(cfg.frames_per_scene):
        t = k / FRAME_RATE_HZ
        stamp = _EPOCH_US + scene_index * _SCENE_SPACING_US + round(k * 1e6 / FRAME_RATE_HZ)
        token = frame_token(cfg.seed, scene_index, k)
        prims, boxes, ego_from_world = frame_primitives(scene, t)
        sem, mask_lidar, mask_camera = ground_truth(prims, rig)
        occ_rel = f"gts/{name}/{token}/labels.npz"
        write_labels_npz(cfg.out / occ_rel, sem, mask_lidar, mask_camera)
        renderer = FrameRenderer(prims, nthreads=nthreads)
        noise_rng = np.random.default_rng([cfg.seed, scene_index, 2, k])
        cam_records = {}
        for cam_name in cams:
            cam = rig.cameras[cam_name]
            img = render_camera(renderer, scene, ego_from_world, cam.intrinsics, cam.cam_to_base, width, height,
                                cfg.render_scale, float(noise_rng.uniform(0.92, 1.08)), noise_rng)
            cam_stamp = stamp + CAMERA_OFFSETS_US.get(cam_name, 0)
            rel = f"samples/{cam_name}/{name}__{cam_name}__{cam_stamp}.jpg"
            ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for {rel}")
            (cfg.out / rel).parent.mkdir(parents=True, exist_ok=True)
            (cfg.out / rel).write_bytes(jpg.tobytes())
            cam_records[cam_name] = {"image": rel, "timestamp": cam_stamp}
        ex, ey, eyaw = scene.ego_pose_at(t)
        ego_vel = rot_z(-eyaw)[:2, :2] @ np.asarray(scene.ego_velocity)
        records.append({
            "scene": name,
            "token": token,
            "frame_index": k,
            "prev": frame_token(cfg.seed, scene_index, k - 1) if k > 0 else "",
            "next": frame_token(cfg.seed, scene_index, k + 1) if k + 1 < cfg.frames_per_scene else "",
            "split": split,
            "layout": scene.layout,
            "timestamp": stamp,
            "occ_path": occ_rel,
            "ego_pose": _pose_dict(ex, ey, eyaw),
            "ego_velocity": [round(float(v), 4) for v in ego_vel],
            "cams": cam_records,
            "calibration": rig.to_dict(),
            "boxes": [b.to_dict() for b in boxes
                      if abs(b.center[0]) <= BOX_RANGE_M and abs(b.center[1]) <= BOX_RANGE_M],
        })
    return records


def _worker(args: tuple[SynthConfig, int, dict, int]) -> list[dict]:
    cfg, scene_index, rig_dict, nthreads = args
    return generate_scene_frames(cfg, scene_index, RigCalibration.from_dict(rig_dict), nthreads)


def generate(cfg: SynthConfig, progress: Callable[[int], None] | None = None) -> dict:
    """Generate the whole data set into ``cfg.out`` and write ``index.json``; returns the index.

    ``progress(n)`` is called with the number of frames finished after each scene.
    """
    cfg.validate()
    rig = RigCalibration.load(cfg.rig_path or default_rig_path())
    cfg.out.mkdir(parents=True, exist_ok=True)
    frames: list[dict] = []
    jobs = [(cfg, i, rig.to_dict(), 0 if cfg.workers == 1 else 1) for i in range(cfg.scenes)]
    if cfg.workers == 1:
        results = map(_worker, jobs)
        for recs in results:
            frames.extend(recs)
            if progress:
                progress(len(recs))
    else:
        with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=get_context("spawn")) as pool:
            for recs in pool.map(_worker, jobs):
                frames.extend(recs)
                if progress:
                    progress(len(recs))
    index = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "generator": {
            "seed": cfg.seed,
            "scenes": cfg.scenes,
            "frames_per_scene": cfg.frames_per_scene,
            "image_size": list(cfg.image_size),
            "render_scale": cfg.render_scale,
            "val_every": cfg.val_every,
            "rig_jitter": cfg.rig_jitter,
            "frame_rate_hz": FRAME_RATE_HZ,
        },
        "grid": {"lower": list(OCC3D_GRID.lower), "voxel_size": OCC3D_GRID.voxel_size, "shape": list(OCC3D_GRID.shape)},
        "classes": list(OCC_CLASSES),
        "det_classes": list(DET_CLASSES),
        "cameras": list(NUSCENES_CAMERAS),
        "scenes": [{"name": scene_name(i), "split": scene_split(i, cfg.val_every)} for i in range(cfg.scenes)],
        "frames": frames,
    }
    (cfg.out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return index
