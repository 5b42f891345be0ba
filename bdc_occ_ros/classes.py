"""Occ3D-nuScenes classes, palette, detection classes and the occupancy grid geometry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Occ3D-nuScenes semantic classes; the index is the label value. 17 = free space.
OCC_CLASSES: tuple[str, ...] = (
    "others",
    "barrier",
    "bicycle",
    "bus",
    "car",
    "construction_vehicle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "trailer",
    "truck",
    "driveable_surface",
    "other_flat",
    "sidewalk",
    "terrain",
    "manmade",
    "vegetation",
    "free",
)
FREE_LABEL = 17
NUM_OCC_CLASSES = len(OCC_CLASSES)  # 18, free included
#: mIoU is averaged over these (free excluded), as in the Occ3D metric.
NUM_SEMANTIC_CLASSES = 17

#: FlashOcc/Occ3D visualisation palette, RGB uint8, one row per label.
OCC_PALETTE = np.array(
    [
        (0, 0, 0),
        (255, 120, 50),
        (255, 192, 203),
        (255, 255, 0),
        (0, 150, 245),
        (0, 255, 255),
        (200, 180, 0),
        (255, 0, 0),
        (255, 240, 150),
        (135, 60, 0),
        (160, 32, 240),
        (255, 0, 255),
        (175, 0, 75),
        (75, 0, 75),
        (150, 240, 80),
        (230, 230, 250),
        (0, 175, 0),
        (255, 255, 255),
    ],
    dtype=np.uint8,
)

#: nuScenes detection classes in BEVDet/CenterPoint order (the detection head's class index).
DET_CLASSES: tuple[str, ...] = (
    "car",
    "truck",
    "construction_vehicle",
    "bus",
    "trailer",
    "barrier",
    "motorcycle",
    "bicycle",
    "pedestrian",
    "traffic_cone",
)

#: Detection class -> the Occ3D label its voxels carry.
DET_TO_OCC_LABEL: dict[str, int] = {name: OCC_CLASSES.index(name) for name in DET_CLASSES}


@dataclass(frozen=True)
class GridSpec:
    """An axis-aligned voxel grid in the ego frame (x forward, y left, z up), Occ3D layout [x, y, z].

    Voxel ``(i, j, k)`` covers ``lower + (i, j, k) * voxel_size`` to ``lower + (i+1, j+1, k+1) * voxel_size``.
    """

    lower: tuple[float, float, float] = (-40.0, -40.0, -1.0)
    voxel_size: float = 0.4
    shape: tuple[int, int, int] = (200, 200, 16)

    @property
    def upper(self) -> tuple[float, float, float]:
        return tuple(lo + n * self.voxel_size for lo, n in zip(self.lower, self.shape, strict=True))

    def centers(self) -> np.ndarray:
        """Voxel centres, float32 array (X, Y, Z, 3) in metres."""
        axes = [
            lo + (np.arange(n, dtype=np.float32) + 0.5) * self.voxel_size
            for lo, n in zip(self.lower, self.shape, strict=True)
        ]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)

    def index_of(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voxel indices (N, 3) int64 of ego-frame points (N, 3) and a mask of those inside the grid."""
        idx = np.floor((points - np.asarray(self.lower)) / self.voxel_size).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < np.asarray(self.shape)), axis=1)
        return idx, inside


#: The Occ3D-nuScenes grid: 200 x 200 x 16 voxels of 0.4 m over [-40, 40] x [-40, 40] x [-1, 5.4] m.
OCC3D_GRID = GridSpec()
