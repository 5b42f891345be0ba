"""Rig geometry without ROS or torch: quaternions, camera calibration, the calibration YAML schema.

Frames: the *base frame* (``base_link``, nuScenes ego: x forward, y left, z up) and per camera the
optical frame (x right, y down, z forward). ``cam_to_base`` maps camera-frame points into the base frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

#: nuScenes camera order used by BEVDet/FlashOcc/Autoware; the network's camera axis follows it.
NUSCENES_CAMERAS: tuple[str, ...] = (
    "CAM_FRONT_LEFT",
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_BACK_LEFT",
    "CAM_BACK",
    "CAM_BACK_RIGHT",
)


class CalibrationError(ValueError):
    """A calibration file or record is missing a field or holds an invalid value (the message names it)."""


def quat_to_matrix(q_wxyz) -> np.ndarray:
    """Rotation matrix (3, 3) of a quaternion given as (w, x, y, z); normalised first."""
    w, x, y, z = np.asarray(q_wxyz, dtype=np.float64) / np.linalg.norm(q_wxyz)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quat(rot: np.ndarray) -> np.ndarray:
    """Quaternion (w, x, y, z) with w >= 0 of a rotation matrix (3, 3)."""
    m = np.asarray(rot, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def make_transform(rot: np.ndarray, trans) -> np.ndarray:
    """Homogeneous 4x4 transform from a 3x3 rotation and a translation."""
    t = np.eye(4)
    t[:3, :3] = rot
    t[:3, 3] = trans
    return t


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


@dataclass
class CameraCalibration:
    """One camera: intrinsics at its native image size and its pose in the base frame."""

    name: str
    frame_id: str
    cam_to_base: np.ndarray  # (4, 4) float64: camera optical frame -> base frame
    width: int
    height: int
    intrinsics: np.ndarray | None = None  # (3, 3) K at (width, height); None until CameraInfo arrives

    def with_intrinsics(self, k: np.ndarray, width: int, height: int) -> CameraCalibration:
        """A copy with new intrinsics (e.g. from CameraInfo) at the given image size."""
        return CameraCalibration(self.name, self.frame_id, self.cam_to_base.copy(), int(width), int(height),
                                 np.asarray(k, dtype=np.float64).reshape(3, 3).copy())


@dataclass
class RigCalibration:
    """All cameras of the rig, in the network's camera order, plus the base frame they are expressed in."""

    base_frame: str = "base_link"
    cameras: dict[str, CameraCalibration] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.cameras)

    def ordered(self, names) -> list[CameraCalibration]:
        missing = [n for n in names if n not in self.cameras]
        if missing:
            raise CalibrationError(f"calibration has no camera(s) {missing}; it has {self.names}")
        return [self.cameras[n] for n in names]

    def is_complete(self, names) -> bool:
        return all(n in self.cameras and self.cameras[n].intrinsics is not None for n in names)

    # --- the calibration YAML schema (see README "Calibration") ---
    def to_dict(self) -> dict:
        cams = {}
        for name, cam in self.cameras.items():
            entry = {
                "frame_id": cam.frame_id,
                "translation": [float(v) for v in cam.cam_to_base[:3, 3]],
                "rotation": [float(v) for v in matrix_to_quat(cam.cam_to_base[:3, :3])],
            }
            if cam.intrinsics is not None:
                k = cam.intrinsics
                entry["intrinsics"] = [float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2])]
            entry["width"] = int(cam.width)
            entry["height"] = int(cam.height)
            cams[name] = entry
        return {"base_frame": self.base_frame, "cameras": cams}

    @classmethod
    def from_dict(cls, data: dict, source: str = "calibration") -> RigCalibration:
        if not isinstance(data, dict):
            raise CalibrationError(f"{source}: expected a mapping with 'base_frame' and 'cameras'")
        base = data.get("base_frame", "base_link")
        cams_in = data.get("cameras")
        if not isinstance(cams_in, dict) or not cams_in:
            raise CalibrationError(f"{source}: 'cameras' must be a non-empty mapping of camera name -> entry")
        cams: dict[str, CameraCalibration] = {}
        for name, entry in cams_in.items():
            where = f"{source}: cameras.{name}"
            if not isinstance(entry, dict):
                raise CalibrationError(f"{where}: expected a mapping")
            trans = _vector(entry, "translation", 3, where)
            rot = _vector(entry, "rotation", 4, where)
            if np.linalg.norm(rot) < 1e-9:
                raise CalibrationError(f"{where}.rotation: zero quaternion")
            width = _positive_int(entry, "width", where)
            height = _positive_int(entry, "height", where)
            k = None
            if entry.get("intrinsics") is not None:
                fx, fy, cx, cy = _vector(entry, "intrinsics", 4, where)
                if fx <= 0 or fy <= 0:
                    raise CalibrationError(f"{where}.intrinsics: fx and fy must be > 0, got {fx}, {fy}")
                k = intrinsics_matrix(fx, fy, cx, cy)
            cams[name] = CameraCalibration(
                name=name,
                frame_id=str(entry.get("frame_id", name)),
                cam_to_base=make_transform(quat_to_matrix(rot), trans),
                width=width,
                height=height,
                intrinsics=k,
            )
        return cls(base_frame=str(base), cameras=cams)

    @classmethod
    def load(cls, path: str | Path) -> RigCalibration:
        path = Path(path)
        if not path.is_file():
            raise CalibrationError(f"calibration file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise CalibrationError(f"{path}: not valid YAML: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_info(cls, info: dict, width: int = 1600, height: int = 900,
                  base_frame: str = "base_link") -> RigCalibration:
        """From an mmdet3d/BEVDet info record (``cams.<NAME>.cam_intrinsic``, ``sensor2ego_*``)."""
        cams_in = info.get("cams")
        if not isinstance(cams_in, dict) or not cams_in:
            raise CalibrationError("info record has no 'cams' mapping")
        order = [n for n in NUSCENES_CAMERAS if n in cams_in] + [n for n in cams_in if n not in NUSCENES_CAMERAS]
        cams = {}
        for name in order:
            c = cams_in[name]
            where = f"info: cams.{name}"
            for key in ("cam_intrinsic", "sensor2ego_rotation", "sensor2ego_translation"):
                if key not in c:
                    raise CalibrationError(f"{where}: missing '{key}'")
            cams[name] = CameraCalibration(
                name=name,
                frame_id=name,
                cam_to_base=make_transform(quat_to_matrix(c["sensor2ego_rotation"]), c["sensor2ego_translation"]),
                width=width,
                height=height,
                intrinsics=np.asarray(c["cam_intrinsic"], dtype=np.float64).reshape(3, 3),
            )
        return cls(base_frame=base_frame, cameras=cams)


def _vector(entry: dict, key: str, n: int, where: str) -> list[float]:
    value = entry.get(key)
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise CalibrationError(f"{where}.{key}: expected a list of {n} numbers, got {value!r}")
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{where}.{key}: expected numbers, got {value!r}") from exc
    if not np.all(np.isfinite(out)):
        raise CalibrationError(f"{where}.{key}: values must be finite, got {value!r}")
    return out


def _positive_int(entry: dict, key: str, where: str) -> int:
    value = entry.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise CalibrationError(f"{where}.{key}: expected a positive integer, got {value!r}")
    return value
