"""The node's parameters as a typed, validated dataclass, without ROS.

``config/bdc_occ.param.yaml`` mirrors the defaults below under ``/**: ros__parameters:``. The node
declares every field with its default, reads the values back and calls :meth:`NodeParams.from_dict`,
which raises :class:`ParameterError` naming the parameter and the allowed values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from bdc_occ_ros.classes import OCC_CLASSES
from bdc_occ_ros.engines import ENGINE_NAMES
from bdc_occ_ros.geometry import NUSCENES_CAMERAS
from bdc_occ_ros.ros.convert import DEFAULT_OBSTACLE_LABELS, BevProjection

TRANSPORTS: tuple[str, ...] = ("compressed", "raw")
#: Default image topic per transport (the common nuScenes rosbag2 layout, ros_conventions.md §3).
DEFAULT_IMAGE_TOPICS = {"compressed": "/{camera}/image_rect_compressed", "raw": "/{camera}/image_rect"}
PACKAGE = "bdc_occ_ros"
#: The shipped edge model, relative to the repository root or the package's share directory.
DEFAULT_MODEL_CONFIG = "config/models/bdc_occ_edge.yaml"
DEFAULT_CHECKPOINT = "models/bdc_occ_edge_synth.safetensors"


class ParameterError(ValueError):
    """A node parameter has an invalid value; the message names the parameter and what is allowed."""


@dataclass(frozen=True)
class NodeParams:
    engine: str = "torch"
    device: str = "cpu"
    model_config: str = ""  # "" = the config embedded in checkpoint, or the shipped one when both are ""
    checkpoint: str = ""  # "" = the shipped edge model weights
    cameras: tuple[str, ...] = NUSCENES_CAMERAS
    anchor_camera: str = "CAM_FRONT"
    transport: str = "compressed"
    decode_reduction: int = 0  # JPEGs decoded at 1/N size (1, 2, 4, 8); 0 = auto (decode.auto_reduction)
    image_topic: str = ""  # pattern with {camera} or {camera_lower}; "" = DEFAULT_IMAGE_TOPICS[transport]
    camera_info_topic: str = "/{camera}/camera_info"
    use_camera_info: bool = True  # False: intrinsics from calibration_file (bags without CameraInfo)
    base_frame: str = "base_link"
    calibration_file: str = ""  # "" = tf2 (when tf2_ros is importable)
    max_camera_time_diff: float = 0.1
    score_threshold: float = 0.3
    grid_z_min: float = -0.6
    grid_z_max: float = 2.2
    obstacle_classes: tuple[str, ...] = tuple(OCC_CLASSES[i] for i in DEFAULT_OBSTACLE_LABELS)
    publish_free: bool = False
    camera_timeout: float = 2.0  # seconds without an image before a camera is reported WARN
    diagnostics_period: float = 1.0
    num_threads: int = 0  # torch intra-op threads; 0 = torch's default

    @classmethod
    def from_dict(cls, values: dict) -> NodeParams:
        """Validated parameters from a name -> value mapping (missing names take the defaults)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParameterError(f"unknown parameter(s) {unknown}; known: {sorted(known)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        params = cls(**kwargs)
        params.validate()
        return params

    def validate(self) -> None:
        _one_of("engine", self.engine, ENGINE_NAMES)
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            raise ParameterError(f"parameter 'device': {self.device!r} is not one of cpu, cuda, cuda:<index>")
        _one_of("transport", self.transport, TRANSPORTS)
        _one_of("decode_reduction", self.decode_reduction, (0, 1, 2, 4, 8))
        if not self.cameras or len(set(self.cameras)) != len(self.cameras) or not all(self.cameras):
            raise ParameterError(f"parameter 'cameras': need a non-empty list of distinct names, "
                                 f"got {list(self.cameras)}")
        _one_of("anchor_camera", self.anchor_camera, self.cameras)
        for name in ("image_topic", "camera_info_topic"):
            pattern = getattr(self, name)
            if pattern and "{camera}" not in pattern and "{camera_lower}" not in pattern:
                raise ParameterError(f"parameter '{name}': {pattern!r} must contain '{{camera}}' or '{{camera_lower}}'")
        if not self.use_camera_info and not self.calibration_file:
            raise ParameterError("parameter 'use_camera_info': false needs 'calibration_file' (with intrinsics)")
        if not self.base_frame:
            raise ParameterError("parameter 'base_frame': must not be empty")
        _positive("max_camera_time_diff", self.max_camera_time_diff)
        _positive("camera_timeout", self.camera_timeout)
        _positive("diagnostics_period", self.diagnostics_period)
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ParameterError(f"parameter 'score_threshold': {self.score_threshold} is not in [0, 1]")
        if not self.grid_z_min < self.grid_z_max:
            raise ParameterError(f"parameters 'grid_z_min' ({self.grid_z_min}) and 'grid_z_max' ({self.grid_z_max}):"
                                 " need grid_z_min < grid_z_max")
        for name in self.obstacle_classes:
            _one_of("obstacle_classes", name, OCC_CLASSES)
        if self.num_threads < 0:
            raise ParameterError(f"parameter 'num_threads': {self.num_threads} must be >= 0")

    # --- derived values ---
    def image_topic_for(self, camera: str) -> str:
        return (self.image_topic or DEFAULT_IMAGE_TOPICS[self.transport]).format(camera=camera,
                                                                                  camera_lower=camera.lower())

    def camera_info_topic_for(self, camera: str) -> str:
        return self.camera_info_topic.format(camera=camera, camera_lower=camera.lower())

    @property
    def projection(self) -> BevProjection:
        return BevProjection(self.grid_z_min, self.grid_z_max,
                             tuple(OCC_CLASSES.index(n) for n in self.obstacle_classes))

    def model_paths(self) -> tuple[Path | None, Path]:
        """(model config or None = the one embedded in the checkpoint, checkpoint): the given files, or the
        shipped edge model when both are empty; ParameterError naming the parameter when a file is missing."""
        if self.model_config:
            cfg = Path(self.model_config)
        else:
            cfg = None if self.checkpoint else shipped_file(DEFAULT_MODEL_CONFIG)
        ckpt = Path(self.checkpoint) if self.checkpoint else shipped_file(DEFAULT_CHECKPOINT)
        for name, path in (("model_config", cfg), ("checkpoint", ckpt)):
            if path is not None and not path.is_file():
                hint = "" if getattr(self, name) else " (the shipped edge model; train it or set the parameter)"
                raise ParameterError(f"parameter '{name}': file not found: {path}{hint}")
        return cfg, ckpt


def _one_of(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ParameterError(f"parameter '{name}': {value!r} is not one of {', '.join(map(str, allowed))}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ParameterError(f"parameter '{name}': {value} must be > 0")


def shipped_file(relative: str) -> Path:
    """A file shipped with the package: from the source tree when running from a checkout (editable
    install), else from the installed share directory (``ament_index``, or ``$AMENT_PREFIX_PATH``).
    When it exists nowhere, the source-tree path (what a developer is expected to create)."""
    candidates = [Path(__file__).resolve().parents[2] / relative]
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            candidates.append(Path(get_package_share_directory(PACKAGE)) / relative)
        except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset (plain venv use)
            pass
    except ImportError:
        pass
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / PACKAGE / relative)
    return next((c for c in candidates if c.is_file()), candidates[0])
