"""Image preprocessing shared by training, the offline tools and the node.

Every camera image is resized, cropped (and in training flipped/rotated) into the network's input
size. The same pixel-space affine ``p_in = post_rot @ p_src + post_trans`` is handed to the view
transformer, which undoes it when lifting pixels into 3D (BEVDet's ``post_rots``/``post_trans``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: ImageNet normalisation in 0-255 RGB, as BEVDet/FlashOcc (mmlabNormalize, to_rgb=True).
IMAGE_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
IMAGE_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


@dataclass(frozen=True)
class ImageAug:
    """Resize by ``scale``, crop at ``(crop_x, crop_y)`` to the input size, then flip/rotate about its centre."""

    scale: float
    crop_x: float
    crop_y: float
    flip: bool = False
    rotate_deg: float = 0.0

    def matrix(self, out_w: int, out_h: int) -> np.ndarray:
        """3x3 homogeneous pixel transform, source image -> network input."""
        m = _translate(-self.crop_x, -self.crop_y) @ np.diag([self.scale, self.scale, 1.0])
        if self.flip:
            m = np.array([[-1.0, 0.0, out_w], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ m
        if self.rotate_deg:
            a = np.deg2rad(self.rotate_deg)
            rot = np.array([[np.cos(a), np.sin(a), 0.0], [-np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
            cx, cy = out_w / 2.0, out_h / 2.0
            m = _translate(cx, cy) @ rot @ _translate(-cx, -cy) @ m
        return m

    def post_rot_trans(self, out_w: int, out_h: int) -> tuple[np.ndarray, np.ndarray]:
        """BEVDet-style (post_rot (3, 3), post_trans (3,)) float32: 2D affine embedded in 3D."""
        m = self.matrix(out_w, out_h)
        post_rot = np.eye(3, dtype=np.float32)
        post_rot[:2, :2] = m[:2, :2]
        post_trans = np.zeros(3, dtype=np.float32)
        post_trans[:2] = m[:2, 2]
        return post_rot, post_trans


def test_time_aug(src_w: int, src_h: int, in_w: int, in_h: int) -> ImageAug:
    """FlashOcc's test-time transform generalised to any image size.

    Scale so the resized image covers the input (for 1600x900 -> 704x256 this is 704/1600 = 0.44),
    crop horizontally centred and vertically bottom-aligned (the sky is dropped, the road kept).
    """
    scale = max(in_w / src_w, in_h / src_h)
    new_w, new_h = src_w * scale, src_h * scale
    return ImageAug(scale=scale, crop_x=(new_w - in_w) / 2.0, crop_y=new_h - in_h)


def apply_aug(image: np.ndarray, aug: ImageAug, in_w: int, in_h: int) -> np.ndarray:
    """Warp an HxWx3 uint8 image into the network input (in_h, in_w, 3) uint8.

    Downscaling goes through cv2.INTER_AREA first (no aliasing), the rest is one affine warp.
    """
    h, w = image.shape[:2]
    new_w, new_h = max(1, round(w * aug.scale)), max(1, round(h * aug.scale))
    interp = cv2.INTER_AREA if aug.scale < 1.0 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interp)
    # Express the remaining transform relative to the resized image (its exact scale may differ by rounding).
    m = aug.matrix(in_w, in_h) @ np.diag([w / new_w, h / new_h, 1.0])
    if not aug.flip and not aug.rotate_deg:
        x0, y0 = round(-m[0, 2]), round(-m[1, 2])
        if 0 <= x0 and 0 <= y0 and x0 + in_w <= new_w and y0 + in_h <= new_h:
            return np.ascontiguousarray(resized[y0 : y0 + in_h, x0 : x0 + in_w])
    return cv2.warpAffine(resized, m[:2], (in_w, in_h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def normalize(images: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 RGB -> (..., 3, H, W) float32 normalised."""
    x = (images.astype(np.float32) - IMAGE_MEAN) / IMAGE_STD
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])
