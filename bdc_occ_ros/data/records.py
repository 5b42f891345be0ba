"""One frame of a data set, independent of where it came from (SynthOcc index or nuScenes infos).

:func:`load_records` picks the reader from what ``root`` holds; :func:`load_images` and
:func:`load_labels` read a frame's pixels and Occ3D ground truth. The dataset, ``bdc-occ eval`` and the
bag tools all go through these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from bdc_occ_ros.classes import DET_CLASSES, OCC3D_GRID
from bdc_occ_ros.geometry import CameraCalibration, RigCalibration

SYNTH_INDEX = "index.json"
LABEL_KEYS = ("semantics", "mask_lidar", "mask_camera")


@dataclass
class FrameRecord:
    """A synchronized camera set with its calibration, ground truth location and boxes.

    boxes: (M, 9) float32 ego-frame [x, y, z (box centre), l, w, h, yaw, vx, vy]; box_labels: (M,) int64
    index into DET_CLASSES. timestamp / cam_timestamps in µs.
    """

    scene: str
    token: str
    timestamp: int
    split: str
    rig: RigCalibration
    image_paths: dict[str, Path]
    cam_timestamps: dict[str, int] = field(default_factory=dict)
    occ_path: Path | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 9), np.float32))
    box_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))

    def meta(self) -> dict:
        return {"scene": self.scene, "token": self.token, "timestamp": self.timestamp, "split": self.split,
                "cam_timestamps": dict(self.cam_timestamps)}


def load_records(root: str | Path, split: str | None = None, info: str | Path | None = None) -> list[FrameRecord]:
    """Frames under ``root`` of the given split ('train', 'val', or None for all), in a stable order.

    A SynthOcc tree is recognised by its ``index.json``; anything else is read as Occ3D-nuScenes through
    ``info`` (an info export or the devkit table directory) or ``root/<...>infos_<split>.json|yaml``; see
    ``data.nuscenes``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data directory not found: {root}")
    if info is None and (root / SYNTH_INDEX).is_file():
        records = load_synth_index(root)
    else:
        from bdc_occ_ros.data.nuscenes import load_nuscenes_records

        records = load_nuscenes_records(root, split, info)
    if split is not None:
        records = [r for r in records if r.split == split]
    return records


def load_synth_index(root: Path) -> list[FrameRecord]:
    """All frames of a SynthOcc ``index.json``."""
    path = root / SYNTH_INDEX
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if index.get("format") != "synthocc":
        raise ValueError(f"{path}: not a SynthOcc index (format={index.get('format')!r})")
    records = []
    for i, f in enumerate(index.get("frames", [])):
        where = f"{path}: frames[{i}]"
        try:
            boxes = f.get("boxes", [])
            records.append(FrameRecord(
                scene=f["scene"],
                token=f["token"],
                timestamp=int(f["timestamp"]),
                split=f["split"],
                rig=RigCalibration.from_dict(f["calibration"], source=where),
                image_paths={cam: root / c["image"] for cam, c in f["cams"].items()},
                cam_timestamps={cam: int(c["timestamp"]) for cam, c in f["cams"].items()},
                occ_path=root / f["occ_path"],
                boxes=boxes_array(boxes),
                box_labels=np.array([DET_CLASSES.index(b["name"]) for b in boxes], dtype=np.int64),
            ))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{where}: missing or malformed field {exc}") from exc
    return records


def boxes_array(boxes: list[dict]) -> np.ndarray:
    """(M, 9) float32 from index box dicts (center, size, yaw, velocity)."""
    rows = [[*b["center"], *b["size"], b["yaw"], *b["velocity"]] for b in boxes]
    return np.asarray(rows, dtype=np.float32).reshape(-1, 9)


def load_images(rec: FrameRecord, cameras) -> list[np.ndarray]:
    """RGB uint8 (H, W, 3) images of the cameras, in the given order."""
    out = []
    for cam in cameras:
        path = rec.image_paths.get(cam)
        if path is None:
            raise ValueError(f"frame {rec.token} has no image for camera {cam}")
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"cannot read image {path}")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return out


def calibrated_cameras(rec: FrameRecord, cameras, images: list[np.ndarray]) -> list[CameraCalibration]:
    """The frame's cameras with intrinsics rescaled to the actual image sizes."""
    out = []
    for cam, img in zip(rec.rig.ordered(cameras), images, strict=True):
        h, w = img.shape[:2]
        if cam.intrinsics is None:
            raise ValueError(f"frame {rec.token}: camera {cam.name} has no intrinsics")
        if (w, h) != (cam.width, cam.height):
            cam = cam.with_intrinsics(np.diag([w / cam.width, h / cam.height, 1.0]) @ cam.intrinsics, w, h)
        out.append(cam)
    return out


def load_labels(rec: FrameRecord) -> dict[str, np.ndarray]:
    """Occ3D ground truth {semantics, mask_lidar, mask_camera}: (200, 200, 16) uint8 each."""
    if rec.occ_path is None or not rec.occ_path.is_file():
        raise FileNotFoundError(f"frame {rec.token}: ground truth not found ({rec.occ_path})")
    with np.load(rec.occ_path, allow_pickle=False) as data:
        missing = [k for k in LABEL_KEYS if k not in data]
        if missing:
            raise ValueError(f"{rec.occ_path}: missing arrays {missing}")
        out = {k: np.asarray(data[k]).astype(np.uint8) for k in LABEL_KEYS}
    for k, v in out.items():
        if v.shape != OCC3D_GRID.shape:
            raise ValueError(f"{rec.occ_path}: {k} has shape {v.shape}, expected {OCC3D_GRID.shape}")
    return out
