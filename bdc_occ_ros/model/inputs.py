"""The camera geometry handed to the network next to the images.

Everything the view transformer needs to lift pixels of the (augmented) network input into the ego
frame is explicit here, so any rig works: no calibration is baked into the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bdc_occ_ros.geometry import CameraCalibration
from bdc_occ_ros.preprocess import ImageAug


@dataclass
class CameraGeometry:
    """Per-sample camera geometry, float32 tensors.

    intrinsics: (B, N, 3, 3) pinhole K at the *source* image resolution.
    cam_to_ego: (B, N, 4, 4) camera optical frame -> ego (base) frame.
    post_rot:   (B, N, 3, 3) and post_trans (B, N, 3): source pixel -> network-input pixel affine
                (``preprocess.ImageAug``), embedded in 3D as BEVDet does.
    bda:        (B, 3, 3) BEV data augmentation applied to ego points (flips); identity at test time.
    """

    intrinsics: torch.Tensor
    cam_to_ego: torch.Tensor
    post_rot: torch.Tensor
    post_trans: torch.Tensor
    bda: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.intrinsics.shape[0])

    @property
    def num_cameras(self) -> int:
        return int(self.intrinsics.shape[1])

    def to(self, device: torch.device | str) -> CameraGeometry:
        return CameraGeometry(*(t.to(device) for t in self.tensors()))

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.intrinsics, self.cam_to_ego, self.post_rot, self.post_trans, self.bda)

    def cache_key(self) -> str:
        """A digest of the values: equal geometry -> equal key (used to cache lift-splat ranks)."""
        h = hashlib.sha1()
        for t in self.tensors():
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()

    @staticmethod
    def stack(items: Sequence[CameraGeometry]) -> CameraGeometry:
        """Concatenate along the batch axis."""
        return CameraGeometry(*(torch.cat(ts, dim=0) for ts in zip(*(g.tensors() for g in items), strict=True)))


def geometry_from_calibration(
    cameras: Sequence[CameraCalibration],
    augs: Sequence[ImageAug],
    in_w: int,
    in_h: int,
    bda: np.ndarray | None = None,
) -> CameraGeometry:
    """Batch-of-one geometry from calibrated cameras (intrinsics set) and the augmentation of each image."""
    if len(cameras) != len(augs):
        raise ValueError(f"{len(cameras)} cameras but {len(augs)} image augmentations")
    missing = [c.name for c in cameras if c.intrinsics is None]
    if missing:
        raise ValueError(f"cameras without intrinsics: {missing}")
    post = [a.post_rot_trans(in_w, in_h) for a in augs]
    return CameraGeometry(
        intrinsics=_batch_of_one(np.stack([c.intrinsics for c in cameras])),
        cam_to_ego=_batch_of_one(np.stack([c.cam_to_base for c in cameras])),
        post_rot=_batch_of_one(np.stack([p[0] for p in post])),
        post_trans=_batch_of_one(np.stack([p[1] for p in post])),
        bda=_batch_of_one(np.eye(3) if bda is None else bda),
    )


def _batch_of_one(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array, dtype=np.float32))[None]
