"""images + calibration -> preprocess -> engine -> postprocess -> OccupancyResult.

The one inference path shared by the ROS node, ``bdc-occ infer/eval/replay`` and the benchmarks, so
that every tool computes exactly what the node publishes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bdc_occ_ros.config import ModelConfig, load_model_config
from bdc_occ_ros.engines import Engine, create_engine
from bdc_occ_ros.geometry import CameraCalibration, RigCalibration
from bdc_occ_ros.model.checkpoint import load_checkpoint
from bdc_occ_ros.model.heads import decode_detections
from bdc_occ_ros.model.inputs import CameraGeometry, geometry_from_calibration
from bdc_occ_ros.preprocess import ImageAug, apply_aug, normalize, test_time_aug
from bdc_occ_ros.result import OccupancyResult


class OccupancyPipeline:
    """Runs the occupancy network on one synchronized set of camera images.

    ``model_config``: a ModelConfig or a YAML path; None takes the config embedded in ``checkpoint``.
    ``checkpoint``: safetensors file (None: random weights, for tests). ``engine``: torch, bitwise,
    onnxruntime or tensorrt (falls back to torch with a warning when unavailable; ``engine.name`` tells
    which one runs). Call ``set_calibration`` before the first frame and whenever the calibration changes.
    """

    def __init__(
        self,
        model_config: ModelConfig | str | Path | None = None,
        checkpoint: str | Path | None = None,
        engine: str = "torch",
        device: str = "cpu",
        camera_names: Sequence[str] | None = None,
        score_threshold: float = 0.3,
    ):
        self.cfg = _resolve_config(model_config, checkpoint)
        self.engine: Engine = create_engine(engine, self.cfg, checkpoint, device)
        self.camera_names = list(camera_names or self.cfg.cameras)
        if len(self.camera_names) != len(self.cfg.cameras):
            raise ValueError(
                f"cameras: the model takes {len(self.cfg.cameras)} cameras, {len(self.camera_names)} were given"
            )
        self.score_threshold = score_threshold
        self._rig: RigCalibration | None = None
        # Geometry and the in-view mask depend only on calibration and image sizes: cached per sizes.
        self._geometry_cache: dict[tuple, tuple[list[ImageAug], CameraGeometry, np.ndarray]] = {}

    @property
    def input_size(self) -> tuple[int, int]:
        """Network input (height, width)."""
        return tuple(self.cfg.input_size)

    def set_calibration(self, rig: RigCalibration) -> None:
        rig.ordered(self.camera_names)  # raises CalibrationError naming missing cameras
        self._rig = rig
        self._geometry_cache.clear()

    def __call__(self, images: Sequence[np.ndarray], stamp_ns: int = 0) -> OccupancyResult:
        """``images``: one HxWx3 uint8 RGB array per camera, in ``camera_names`` order (any size)."""
        if self._rig is None:
            raise RuntimeError("set_calibration() must be called before the first frame")
        if len(images) != len(self.camera_names):
            raise ValueError(f"expected {len(self.camera_names)} images ({self.camera_names}), got {len(images)}")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        augs, geometry, in_view = self._geometry_for(images)
        in_h, in_w = self.input_size
        batch = np.stack([apply_aug(img, aug, in_w, in_h) for img, aug in zip(images, augs, strict=True)])
        imgs = torch.from_numpy(normalize(batch))[None]
        timings["preprocess"] = _ms_since(t0)

        t1 = time.perf_counter()
        out = self.engine.infer(imgs, geometry)
        timings.update(out.timings_ms)
        timings["inference"] = _ms_since(t1)

        t2 = time.perf_counter()
        labels = out.occ_labels[0].numpy()
        detections = []
        if out.det is not None:
            detections = decode_detections(out.det, score_threshold=self.score_threshold)[0]
        timings["postprocess"] = _ms_since(t2)
        return OccupancyResult(
            labels=labels,
            stamp_ns=stamp_ns,
            frame_id=self._rig.base_frame,
            visibility=in_view,
            detections=detections,
            grid=self.cfg.grid.spec(),
            timings_ms=timings,
        )

    def _geometry_for(self, images: Sequence[np.ndarray]) -> tuple[list[ImageAug], CameraGeometry, np.ndarray]:
        sizes = tuple((int(img.shape[1]), int(img.shape[0])) for img in images)
        cached = self._geometry_cache.get(sizes)
        if cached is None:
            in_h, in_w = self.input_size
            calibrated = self._rig.ordered(self.camera_names)
            cams = [_at_size(cam, w, h) for cam, (w, h) in zip(calibrated, sizes, strict=True)]
            augs = [test_time_aug(w, h, in_w, in_h) for w, h in sizes]
            geometry = geometry_from_calibration(cams, augs, in_w, in_h)
            cached = (augs, geometry, in_view_mask(cams, augs, in_w, in_h, self.cfg.grid.spec().centers()))
            self._geometry_cache = {sizes: cached}  # only the current sizes: a size change invalidates
        return cached


def in_view_mask(
    cams: Sequence[CameraCalibration], augs: Sequence[ImageAug], in_w: int, in_h: int, centers: np.ndarray
) -> np.ndarray:
    """(X, Y, Z) uint8: 1 where a voxel centre projects inside at least one camera's *network input*
    (the crop the model actually sees), in front of the camera. Field of view only: no occlusion."""
    pts = centers.reshape(-1, 3).astype(np.float64)
    seen = np.zeros(len(pts), dtype=bool)
    for cam, aug in zip(cams, augs, strict=True):
        base_to_cam = np.linalg.inv(cam.cam_to_base)
        p_cam = pts @ base_to_cam[:3, :3].T + base_to_cam[:3, 3]
        z = p_cam[:, 2]
        front = z > 0.1
        uv = p_cam[front] @ cam.intrinsics.T
        uv = uv[:, :2] / uv[:, 2:3]
        m = aug.matrix(in_w, in_h)
        uv_in = uv @ m[:2, :2].T + m[:2, 2]
        inside = (uv_in[:, 0] >= 0) & (uv_in[:, 0] < in_w) & (uv_in[:, 1] >= 0) & (uv_in[:, 1] < in_h)
        idx = np.flatnonzero(front)[inside]
        seen[idx] = True
    return seen.reshape(centers.shape[:3]).astype(np.uint8)


def _at_size(cam: CameraCalibration, width: int, height: int) -> CameraCalibration:
    """The camera with intrinsics rescaled from its calibrated image size to the received one."""
    if cam.intrinsics is None:
        raise ValueError(f"camera {cam.name} has no intrinsics (no CameraInfo and none in the calibration)")
    if (width, height) == (cam.width, cam.height):
        return cam
    k = cam.intrinsics.copy()
    k[0] *= width / cam.width
    k[1] *= height / cam.height
    return cam.with_intrinsics(k, width, height)


def _resolve_config(model_config: ModelConfig | str | Path | None, checkpoint: str | Path | None) -> ModelConfig:
    if isinstance(model_config, ModelConfig):
        return model_config
    if model_config is not None:
        return load_model_config(model_config)
    if checkpoint is None:
        raise ValueError("model_config: give a model config or a checkpoint that embeds one")
    return load_checkpoint(checkpoint)[0]


def _ms_since(t: float) -> float:
    return (time.perf_counter() - t) * 1000.0
