"""Training losses: Occ3D occupancy cross-entropy under the camera mask (+ optional class balancing)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CLASS_WEIGHTINGS = ("none", "log", "inv_sqrt")


def occupancy_loss(
    logits: torch.Tensor,
    semantics: torch.Tensor,
    mask: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    unobserved_weight: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy over camera-visible voxels, averaged over the number of visible voxels (reference §5).

    logits (B, X, Y, Z, C) float; semantics (B, X, Y, Z) integer labels (free = C-1 trained like any class);
    mask (B, X, Y, Z) 0/1 camera mask; class_weights (C,) or None. With weights each voxel's CE is scaled
    by its class weight but the divisor stays the visible-voxel count (mmdet ``avg_factor``).
    ``unobserved_weight`` > 0 also trains the voxels outside the mask, each scaled by it: only for ground truth
    that is complete there (SynthOcc knows the geometry behind walls and under the road; Occ3D does not).
    Without it the network's output for never-visible voxels, e.g. the layer under the road, is arbitrary.
    """
    if logits.shape[:-1] != semantics.shape or semantics.shape != mask.shape:
        raise ValueError(f"shape mismatch: logits {tuple(logits.shape)}, semantics {tuple(semantics.shape)}, "
                         f"mask {tuple(mask.shape)}")
    if unobserved_weight < 0:
        raise ValueError(f"unobserved_weight must be >= 0, got {unobserved_weight}")
    visible = mask.reshape(-1) > 0
    count = visible.sum().clamp_min(1)
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()
    target = semantics.reshape(-1).long()
    if unobserved_weight == 0:
        return F.cross_entropy(flat_logits[visible], target[visible], weight=class_weights, reduction="sum") / count
    per_voxel = F.cross_entropy(flat_logits, target, weight=class_weights, reduction="none")
    voxel_weight = torch.where(visible, 1.0, unobserved_weight)
    return (per_voxel * voxel_weight).sum() / count


def class_weights_from_counts(counts: np.ndarray, mode: str) -> np.ndarray | None:
    """Per-class CE weights from visible-voxel counts (C,), normalised so the count-weighted mean is 1.

    "log": FlashOcc's ``class_balance`` rule 1 / log(count) (mild); "inv_sqrt": 1 / sqrt(frequency)
    (stronger). Classes absent from the counts get the largest weight of the present ones.
    """
    if mode not in CLASS_WEIGHTINGS:
        raise ValueError(f"class weighting must be one of {CLASS_WEIGHTINGS}, got {mode!r}")
    if mode == "none":
        return None
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    if not present.any():
        raise ValueError("class weighting needs at least one visible voxel in the counts")
    w = np.zeros_like(counts)
    if mode == "log":
        w[present] = 1.0 / np.log(counts[present] + np.e)  # + e keeps log >= 1 for tiny counts
    else:
        w[present] = 1.0 / np.sqrt(counts[present] / counts.sum())
    w[~present] = w[present].max()
    return (w * counts.sum() / (w * counts).sum()).astype(np.float32)
