"""`bdc-occ infer --sample DIR --out DIR` on the real nuScenes sample with a tiny random model: the written
labels are the pipeline's, in the Occ3D npz layout, plus the BEV and per-camera pictures."""

from __future__ import annotations

import json

import cv2
import numpy as np
from node_support import SAMPLE_DIR, make_tiny_checkpoint, requires_sample

from bdc_occ_ros.cli import main as cli
from bdc_occ_ros.ros.decode import auto_reduction
from bdc_occ_ros.tools.infer import load_sample


@requires_sample
def test_infer_writes_the_pipeline_labels_and_pictures(tmp_path):
    from bdc_occ_ros.pipeline import OccupancyPipeline

    ckpt = make_tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "out"
    assert cli(["infer", "--sample", str(SAMPLE_DIR), "--out", str(out), "--checkpoint", str(ckpt)]) == 0
    saved = np.load(out / "labels.npz")
    sample = load_sample(SAMPLE_DIR)
    pipeline = OccupancyPipeline(None, ckpt)
    pipeline.set_calibration(sample.rig)
    assert auto_reduction(1600, 900, 160, 64) == 8  # the tiny model's input: 1/8 of 1600x900 still covers it
    result = pipeline([sample.rgb(c, pipeline.input_size) for c in pipeline.camera_names])  # as infer and the node
    np.testing.assert_array_equal(saved["semantics"], result.labels)
    np.testing.assert_array_equal(saved["mask_camera"], result.visibility.astype(bool))
    assert int(saved["stamp_ns"]) == sample.stamps_ns["CAM_FRONT"] == 1_533_201_470_412_460_000
    bev = cv2.imread(str(out / "bev.png"))
    assert bev.shape[:2] == (3 * result.labels.shape[0], 3 * result.labels.shape[1])
    assert cv2.imread(str(out / "cameras.png")).shape == (2 * 450, 3 * 800, 3)
    assert {"preprocess", "inference"} <= set(json.loads((out / "timings.json").read_text()))


def test_infer_reports_a_missing_sample(tmp_path, capsys):
    assert cli(["infer", "--sample", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "no info record" in capsys.readouterr().err
