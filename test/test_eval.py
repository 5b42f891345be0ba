"""``bdc-occ eval``: metric plumbing with known predictions, BEV pictures, and the JSON of a real (tiny) model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from bdc_occ_ros.classes import FREE_LABEL, OCC_CLASSES, OCC_PALETTE
from bdc_occ_ros.cli import main as cli
from bdc_occ_ros.data.records import load_labels, load_records
from bdc_occ_ros.data.synth import SynthConfig, generate
from bdc_occ_ros.eval.evaluate import EvalOptions, evaluate
from bdc_occ_ros.eval.visualize import FREE_COLOR, UNOBSERVED_COLOR, bev_image, side_by_side, top_labels
from bdc_occ_ros.geometry import NUSCENES_CAMERAS
from bdc_occ_ros.result import OccupancyResult

#: A small random network with the Occ3D grid (the metric needs 200x200x16 predictions) and a detection head.
TINY_OCC3D_MODEL = {
    "name": "tiny_eval_test",
    "input_size": [64, 160],
    "backbone": {"depth": 18, "out_indices": [2, 3]},
    "img_neck": {"out_channels": 32},
    "view_transformer": {"channels": 16, "depth_bins": [1.0, 45.0, 2.0]},
    "bev_encoder": {"channels": [16, 32, 64], "num_layers": [1, 1, 1], "neck_channels": 32},
    "occ_head": {"channels": 32, "hidden": 32},
    "det_head": {"share_channels": 16, "head_channels": 16, "num_conv": 1},
}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth_eval")
    generate(SynthConfig(out=root, scenes=2, seed=11, frames_per_scene=1, image_size=(200, 112), render_scale=1.0,
                         val_every=2))
    return root


class OraclePipeline:
    """Stands in for OccupancyPipeline: answers each frame with its ground truth (or all free)."""

    def __init__(self, records, free_only: bool = False):
        self.by_stamp = {r.timestamp * 1000: r for r in records}
        self.free_only = free_only
        self.calibrations = 0

    def set_calibration(self, rig) -> None:
        self.calibrations += 1

    def __call__(self, images, stamp_ns: int = 0) -> OccupancyResult:
        assert len(images) == 6 and images[0].dtype == np.uint8
        sem = load_labels(self.by_stamp[stamp_ns])["semantics"]
        return OccupancyResult(labels=np.full_like(sem, FREE_LABEL) if self.free_only else sem, stamp_ns=stamp_ns)


def test_evaluate_scores_known_predictions(synth_root: Path, tmp_path: Path):
    records = load_records(synth_root)
    oracle = OraclePipeline(records)
    out = evaluate(oracle, records, NUSCENES_CAMERAS, EvalOptions(pictures=1, picture_dir=tmp_path))
    assert out["samples"] == 2 and oracle.calibrations == 2  # one rig per scene
    present = [v for v in out["per_class"].values() if not math.isnan(v)]
    assert present and all(v == pytest.approx(100.0) for v in present)
    assert out["miou"] == pytest.approx(100.0) and out["free_iou"] == pytest.approx(100.0)
    pictures = sorted(tmp_path.glob("*.png"))
    assert len(pictures) == 1 and cv2.imread(str(pictures[0])).shape[1] > 800

    out = evaluate(OraclePipeline(records, free_only=True), records, NUSCENES_CAMERAS)
    assert out["miou"] == pytest.approx(0.0) and 0 < out["free_iou"] < 100


def test_bev_image_top_voxel_palette_and_orientation():
    labels = np.full((200, 200, 16), FREE_LABEL, dtype=np.uint8)
    labels[150, 100, 2] = OCC_CLASSES.index("driveable_surface")
    labels[150, 100, 5] = OCC_CLASSES.index("car")  # above the road: the car is what the picture shows
    labels[100, 180, 3] = OCC_CLASSES.index("pedestrian")  # +y (left of the ego)
    top = top_labels(labels)
    assert top[150, 100] == OCC_CLASSES.index("car") and top[0, 0] == FREE_LABEL
    img = bev_image(labels, scale=1)
    assert img.shape == (200, 200, 3) and img.dtype == np.uint8
    # forward (+x) is up, left (+y) is left
    np.testing.assert_array_equal(img[199 - 150, 199 - 100], OCC_PALETTE[OCC_CLASSES.index("car")])
    np.testing.assert_array_equal(img[199 - 100, 199 - 180], OCC_PALETTE[OCC_CLASSES.index("pedestrian")])
    np.testing.assert_array_equal(img[5, 5], FREE_COLOR)
    mask = np.zeros_like(labels)
    mask[150, 100, 2] = 1  # only the road voxel is visible
    masked = bev_image(labels, mask, scale=1)
    np.testing.assert_array_equal(masked[199 - 150, 199 - 100], OCC_PALETTE[OCC_CLASSES.index("driveable_surface")])
    np.testing.assert_array_equal(masked[5, 5], UNOBSERVED_COLOR)
    pair = side_by_side([img, masked], ["a", "b"])
    assert pair.shape[1] == 400 + 8 and pair.shape[0] > 200


def test_eval_cli_json(synth_root: Path, tmp_path: Path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_OCC3D_MODEL))
    out = tmp_path / "metrics.json"
    assert cli(["eval", "--config", str(config), "--data", str(synth_root), "--json", str(out), "--split", "val",
                "--pictures", "1"]) == 0
    metrics = json.loads(out.read_text())
    assert isinstance(metrics["miou"], float) and 0.0 <= metrics["miou"] <= 100.0
    assert set(metrics["per_class"]) == set(OCC_CLASSES[:17])
    assert all(v is None or 0.0 <= v <= 100.0 for v in metrics["per_class"].values())
    assert metrics["samples"] == 1 and metrics["split"] == "val"
    assert isinstance(metrics["free_iou"], float)
    assert "map" in metrics["det"] and set(metrics["det"]["per_class_ap"]) >= {"car", "pedestrian"}
    assert len(list((tmp_path / "metrics_bev").glob("*.png"))) == 1


def test_eval_cli_errors(tmp_path: Path):
    assert cli(["eval", "--data", str(tmp_path / "missing"), "--json", str(tmp_path / "m.json")]) == 2
