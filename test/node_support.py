"""Shared by the node, convert, infer and calib tests: the real nuScenes sample and a tiny random model."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT.parent / "shared" / "data" / "nuscenes_sample0"
CALIBRATION = REPO_ROOT / "config" / "calibration" / "nuscenes.yaml"
requires_sample = pytest.mark.skipif(not SAMPLE_DIR.is_dir(), reason=f"nuScenes sample not found at {SAMPLE_DIR}")

#: A tiny network (ResNet-18, 64x160 input, 48x48x16 grid of 1.6 m voxels) so node tests run in seconds;
#: label-equality tests are valid with any weights.
TINY_CONFIG = {
    "name": "tiny_test",
    "input_size": [64, 160],
    "grid": {"lower": [-40.0, -40.0, -1.0], "voxel_size": 1.6, "shape": [48, 48, 16]},
    "backbone": {"depth": 18, "out_indices": [2, 3]},
    "img_neck": {"out_channels": 64},
    "view_transformer": {"channels": 16, "depth_bins": [1.0, 45.0, 2.0]},
    "bev_encoder": {"channels": [16, 32, 64], "num_layers": [1, 1, 1], "neck_channels": 32},
    "occ_head": {"channels": 32, "hidden": 32},
    "det_head": {"share_channels": 16, "head_channels": 16, "num_conv": 1},
}


def make_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """Write a randomly initialised tiny model with save_checkpoint (config embedded)."""
    import torch

    from bdc_occ_ros.config import ModelConfig
    from bdc_occ_ros.model.checkpoint import save_checkpoint
    from bdc_occ_ros.model.network import build_model

    cfg = ModelConfig.from_dict(TINY_CONFIG)
    torch.manual_seed(seed)
    save_checkpoint(path, build_model(cfg).eval(), cfg, metadata={"purpose": "tests, random weights"})
    return path
