"""Training augmentation as in BEVDet/FlashOcc/BDC-Occ (reference §5).

Image aug per camera: resize factor ``base + U(-0.06, 0.11)`` (base = test-time scale, 0.44 for 1600 -> 704),
bottom-aligned crop with a random horizontal offset, random flip, rotation U(-5.4, 5.4) deg.
BEV aug (BDA): random flips of x and y (p = 0.5 each); the occupancy ground truth, both masks and the
boxes are flipped with them, and the view transformer gets the same flip as ``bda``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bdc_occ_ros.preprocess import ImageAug


@dataclass(frozen=True)
class AugConfig:
    """Ranges of the random augmentation (defaults = the reference configs)."""

    resize_lim: tuple[float, float] = (-0.06, 0.11)  # added to the test-time scale (absolute, as in BEVDet)
    rot_lim_deg: tuple[float, float] = (-5.4, 5.4)
    image_flip: bool = True
    bev_flip: bool = True


@dataclass(frozen=True)
class BevFlip:
    """BEV flips: ``flip_x`` negates ego x (grid axis 0), ``flip_y`` negates ego y (grid axis 1)."""

    flip_x: bool = False
    flip_y: bool = False

    def matrix(self) -> np.ndarray:
        """The 3x3 ``bda`` applied to ego points by the view transformer."""
        return np.diag([-1.0 if self.flip_x else 1.0, -1.0 if self.flip_y else 1.0, 1.0])

    def grid(self, volume: np.ndarray) -> np.ndarray:
        """Flip an (X, Y, ...) grid (semantics, masks) consistently with :meth:`matrix` (grid symmetric about 0)."""
        if self.flip_x:
            volume = volume[::-1]
        if self.flip_y:
            volume = volume[:, ::-1]
        return np.ascontiguousarray(volume)

    def boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Flip (M, 9) [x, y, z, l, w, h, yaw, vx, vy] boxes as BEVDet's ``bev_transform``."""
        out = boxes.copy()
        if self.flip_x:
            out[:, 0] *= -1
            out[:, 6] = np.pi - out[:, 6]
            out[:, 7] *= -1
        if self.flip_y:
            out[:, 1] *= -1
            out[:, 6] = -out[:, 6]
            out[:, 8] *= -1
        out[:, 6] = (out[:, 6] + np.pi) % (2 * np.pi) - np.pi
        return out


def sample_image_aug(rng: np.random.Generator, src_w: int, src_h: int, in_w: int, in_h: int,
                     cfg: AugConfig = AugConfig()) -> ImageAug:
    """A random training transform of one camera image (source size -> network input size)."""
    base = max(in_w / src_w, in_h / src_h)
    scale = base + rng.uniform(*cfg.resize_lim) * base / 0.44  # the reference ranges are for base 0.44
    new_w, new_h = src_w * scale, src_h * scale
    crop_x = rng.uniform(0.0, max(0.0, new_w - in_w))
    crop_y = new_h - in_h  # bottom aligned (reference crop_h range (0, 0))
    flip = bool(cfg.image_flip and rng.random() < 0.5)
    rotate = float(rng.uniform(*cfg.rot_lim_deg))
    return ImageAug(scale=float(scale), crop_x=float(crop_x), crop_y=float(crop_y), flip=flip, rotate_deg=rotate)


def sample_bev_flip(rng: np.random.Generator, cfg: AugConfig = AugConfig()) -> BevFlip:
    if not cfg.bev_flip:
        return BevFlip()
    return BevFlip(flip_x=bool(rng.random() < 0.5), flip_y=bool(rng.random() < 0.5))
