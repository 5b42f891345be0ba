"""What one inference produces, independent of ROS and of the engine that computed it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bdc_occ_ros.classes import FREE_LABEL, OCC3D_GRID, OCC_CLASSES, GridSpec


@dataclass
class Detection3D:
    """One 3D box in the base frame: centre of the box (metres), size (length x, width y, height z), yaw
    about +z (rad), ground velocity (vx, vy) in m/s, the detection class name and its score in [0, 1]."""

    center: np.ndarray
    size: np.ndarray
    yaw: float
    velocity: np.ndarray
    label: str
    score: float


@dataclass
class OccupancyResult:
    """Semantic occupancy for one synchronized camera set.

    labels: (X, Y, Z) uint8 in Occ3D order [x, y, z], values index ``class_names``.
    visibility: (X, Y, Z) uint8 0/1, voxels seen by at least one camera, or None.
    """

    labels: np.ndarray
    stamp_ns: int = 0
    frame_id: str = "base_link"
    visibility: np.ndarray | None = None
    detections: list[Detection3D] = field(default_factory=list)
    grid: GridSpec = OCC3D_GRID
    class_names: tuple[str, ...] = OCC_CLASSES
    free_label: int = FREE_LABEL
    timings_ms: dict[str, float] = field(default_factory=dict)
