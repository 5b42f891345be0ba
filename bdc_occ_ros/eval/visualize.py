"""Bird's-eye pictures of Occ3D label grids (Occ3D/FlashOcc palette), for eval, replay and the demo.

Orientation: ego x (forward) points up, ego y (left) points left, one pixel per voxel column (scaled up
by ``scale``); the ego is drawn as a small white box at the centre.
"""

from __future__ import annotations

import cv2
import numpy as np

from bdc_occ_ros.classes import FREE_LABEL, OCC_PALETTE

#: Colours of columns without an occupied voxel: observed free space, and not observed (masked out).
FREE_COLOR = np.array([40, 40, 40], dtype=np.uint8)
UNOBSERVED_COLOR = np.array([0, 0, 0], dtype=np.uint8)


def top_labels(labels: np.ndarray, mask: np.ndarray | None = None, free_label: int = FREE_LABEL) -> np.ndarray:
    """Per (x, y) column the label of the top-most non-free voxel (voxels with mask == 0 ignored), else free.

    labels: (X, Y, Z) uint8; mask: (X, Y, Z) 0/1 or None. Returns (X, Y) uint8.
    """
    occupied = labels != free_label
    if mask is not None:
        occupied &= mask.astype(bool)
    z_size = labels.shape[2]
    top = z_size - 1 - np.argmax(occupied[:, :, ::-1], axis=2)  # highest occupied z (0 where none)
    out = np.take_along_axis(labels, top[:, :, None], axis=2)[:, :, 0].astype(np.uint8)
    out[~occupied.any(axis=2)] = free_label
    return out


def bev_image(labels: np.ndarray, mask: np.ndarray | None = None, scale: int = 2,
              free_label: int = FREE_LABEL, palette: np.ndarray = OCC_PALETTE) -> np.ndarray:
    """RGB uint8 (X*scale, Y*scale, 3) picture of a label grid; with a mask, unobserved columns are black."""
    top = top_labels(labels, mask, free_label)
    img = palette[np.minimum(top, len(palette) - 1)].copy()
    img[top == free_label] = FREE_COLOR
    if mask is not None:
        img[~mask.astype(bool).any(axis=2)] = UNOBSERVED_COLOR
    img = img[::-1, ::-1]  # row 0 = max x (forward up), column 0 = max y (left on the left)
    img = np.ascontiguousarray(img.repeat(scale, axis=0).repeat(scale, axis=1))
    c0, c1 = img.shape[0] // 2, img.shape[1] // 2
    cv2.rectangle(img, (c1 - 2 * scale, c0 - 4 * scale), (c1 + 2 * scale, c0 + 4 * scale), (255, 255, 255), -1)
    return img


def side_by_side(images: list[np.ndarray], titles: list[str] | None = None, gap: int = 8) -> np.ndarray:
    """Images (equal height, RGB uint8) next to each other with optional titles above them."""
    height = max(im.shape[0] for im in images)
    bar = 28 if titles else 0
    width = sum(im.shape[1] for im in images) + gap * (len(images) - 1)
    canvas = np.full((height + bar, width, 3), 255, dtype=np.uint8)
    x = 0
    for i, im in enumerate(images):
        canvas[bar : bar + im.shape[0], x : x + im.shape[1]] = im
        if titles:
            cv2.putText(canvas, titles[i], (x + 4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        x += im.shape[1] + gap
    return canvas


def save_png(path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG (the parent directory must exist)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
