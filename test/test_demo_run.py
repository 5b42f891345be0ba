"""A shortened `make demo`: the real node, bag player and recorder over Fast DDS on a 3-frame bag.

Checks summary.json (schema, counts consistent with the recording), that outputs.mcap holds the node's
topics with receipt times as log times, and that the two pictures are written.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_replay_synth import model_files

from bdc_occ_ros.bags.io import bag_topics, read_messages
from bdc_occ_ros.ros.convert import stamp_to_ns

FRAMES = 3
REQUIRED_TOPICS = ("/bdc_occ/occupancy/voxels", "/bdc_occ/occupancy/points", "/bdc_occ/occupancy/grid",
                   "/bdc_occ/objects/markers")


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_short_demo_run(ros_processes, tmp_path: Path):
    config, checkpoint = model_files(tmp_path)
    out = tmp_path / "demo_output"
    demo = ros_processes.python_module(
        "bdc_occ_ros.demo", "--frames", str(FRAMES), "--loops", "1", "--out", str(out), "--cache",
        str(tmp_path / "cache"), "--model-config", str(config), "--checkpoint", str(checkpoint), name="demo")
    assert demo.wait(timeout=540) == 0, demo.describe()
    assert "demo: done" in demo.stdout()

    summary = json.loads((out / "summary.json").read_text())
    for key, kind in (("frames_in", int), ("frames_out", int), ("dropped", int), ("miou", float)):
        assert isinstance(summary[key], kind), key
    assert summary["frames_in"] == FRAMES
    assert 1 <= summary["frames_out"] <= FRAMES
    assert summary["dropped"] == summary["frames_in"] - summary["frames_out"]
    assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p95"]
    assert summary["miou_frames"] == summary["frames_out"] and 0.0 <= summary["miou"] <= 100.0
    assert not math.isnan(summary["miou"])

    topics = bag_topics(out / "outputs.mcap")
    for topic in REQUIRED_TOPICS:
        assert topics[topic][1] == summary["frames_out"], topic
    latencies = [(m.log_time_ns - stamp_to_ns(m.msg.header.stamp)) / 1e6
                 for m in read_messages(out / "outputs.mcap", ["/bdc_occ/occupancy/voxels"])]
    assert all(lat > 0 for lat in latencies)  # image stamp (restamped to the wall clock) -> receipt
    assert float(np.percentile(latencies, 50)) == pytest.approx(summary["latency_ms"]["p50"], abs=0.1)
    for picture in ("bev.png", "voxels.png"):
        img = cv2.imread(str(out / picture))
        assert img is not None and img.shape[0] > 100 and img.shape[1] > 100, picture


def test_demo_fails_clearly_without_the_model(tmp_path: Path, capsys):
    from bdc_occ_ros.demo import main

    missing = tmp_path / "nope.safetensors"
    config = tmp_path / "model.yaml"
    config.write_text("{}\n")
    assert main(["--model-config", str(config), "--checkpoint", str(missing), "--out", str(tmp_path / "o"),
                 "--cache", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "model weights not found" in err and str(missing) in err
