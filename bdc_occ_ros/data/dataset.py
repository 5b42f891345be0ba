"""The torch Dataset for SynthOcc and Occ3D-nuScenes, and its collate function.

Item (one frame)::

    images      (N, 3, H, W) float32   normalised network input (N cameras in ``cameras`` order)
    geometry    CameraGeometry         batch of one (intrinsics, cam_to_ego, post_rot/trans, bda)
    semantics   (200, 200, 16) int64   Occ3D labels, 17 = free (BEV-flipped with the bda)
    mask_camera (200, 200, 16) bool
    mask_lidar  (200, 200, 16) bool
    gt_boxes    (M, 9) float32         ego [x, y, z, l, w, h, yaw, vx, vy] (BEV-flipped with the bda)
    gt_labels   (M,) int64             index into DET_CLASSES
    meta        dict                   scene, token, timestamp, split, cam_timestamps, index, augmentation

:func:`collate` stacks a list of items into a batch (geometry via ``CameraGeometry.stack``; boxes stay lists).
Augmentation draws come from ``(seed, epoch, index)``, so runs are reproducible with any worker count;
call :meth:`OccDataset.set_epoch` each epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from bdc_occ_ros.data.augment import AugConfig, BevFlip, sample_bev_flip, sample_image_aug
from bdc_occ_ros.data.records import calibrated_cameras, load_images, load_labels, load_records
from bdc_occ_ros.geometry import NUSCENES_CAMERAS
from bdc_occ_ros.model.inputs import CameraGeometry, geometry_from_calibration
from bdc_occ_ros.preprocess import apply_aug, normalize, test_time_aug


class OccDataset(Dataset):
    """Frames of one split of a SynthOcc or Occ3D-nuScenes tree.

    Args:
        root: data directory (SynthOcc: holds index.json; nuScenes: the dataroot with gts/ and samples/).
        split: 'train', 'val', or None for every frame.
        input_size: network input (H, W), e.g. (256, 704).
        cameras: camera names in network order.
        augment: training augmentation (image resize/crop/flip/rotate and BEV flips) when True, else test-time
            preprocessing.
        info: nuScenes info export (JSON/YAML) or devkit table directory (``<root>/v1.0-mini``), see
            ``data.nuscenes``; leave None for SynthOcc.
        aug: augmentation ranges; seed: base seed of the augmentation draws.
    """

    def __init__(self, root: str | Path, split: str | None, input_size: tuple[int, int],
                 cameras: Sequence[str] = NUSCENES_CAMERAS, augment: bool = False, info: str | Path | None = None,
                 aug: AugConfig | None = None, seed: int = 0):
        self.records = load_records(root, split, info)
        if not self.records:
            raise ValueError(f"no frames of split {split!r} under {root}")
        self.in_h, self.in_w = int(input_size[0]), int(input_size[1])
        self.cameras = tuple(cameras)
        self.augment = augment
        self.aug = aug or AugConfig()
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        rec = self.records[index]
        images = load_images(rec, self.cameras)
        cams = calibrated_cameras(rec, self.cameras, images)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            augs = [sample_image_aug(rng, im.shape[1], im.shape[0], self.in_w, self.in_h, self.aug) for im in images]
            flip = sample_bev_flip(rng, self.aug)
        else:
            augs = [test_time_aug(im.shape[1], im.shape[0], self.in_w, self.in_h) for im in images]
            flip = BevFlip()
        pixels = np.stack([apply_aug(im, a, self.in_w, self.in_h) for im, a in zip(images, augs, strict=True)])
        labels = load_labels(rec)
        meta = rec.meta()
        meta.update(index=index, bev_flip=(flip.flip_x, flip.flip_y), image_flip=[a.flip for a in augs])
        return {
            "images": torch.from_numpy(normalize(pixels)),
            "geometry": geometry_from_calibration(cams, augs, self.in_w, self.in_h, bda=flip.matrix()),
            "semantics": torch.from_numpy(flip.grid(labels["semantics"]).astype(np.int64)),
            "mask_camera": torch.from_numpy(flip.grid(labels["mask_camera"]).astype(bool)),
            "mask_lidar": torch.from_numpy(flip.grid(labels["mask_lidar"]).astype(bool)),
            "gt_boxes": torch.from_numpy(flip.boxes(rec.boxes).astype(np.float32)),
            "gt_labels": torch.from_numpy(rec.box_labels.copy()),
            "meta": meta,
        }


def collate(items: list[dict]) -> dict:
    """Batch items: tensors stacked on a new axis 0, geometry concatenated, boxes/labels/meta as lists."""
    return {
        "images": torch.stack([it["images"] for it in items]),
        "geometry": CameraGeometry.stack([it["geometry"] for it in items]),
        "semantics": torch.stack([it["semantics"] for it in items]),
        "mask_camera": torch.stack([it["mask_camera"] for it in items]),
        "mask_lidar": torch.stack([it["mask_lidar"] for it in items]),
        "gt_boxes": [it["gt_boxes"] for it in items],
        "gt_labels": [it["gt_labels"] for it in items],
        "meta": [it["meta"] for it in items],
    }
