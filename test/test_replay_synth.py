"""`bdc-occ replay` on a 3-frame SynthOcc bag: every output topic of the node is written (with the inputs),
the voxels equal the pipeline's labels for the same JPEGs, and the mIoU equals `bdc-occ eval` on the frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bdc_occ_ros.bags.io import bag_topics, read_messages
from bdc_occ_ros.bags.layout import GROUND_TRUTH_TOPIC, TF_STATIC_TOPIC, camera_info_topic, image_topic
from bdc_occ_ros.bags.replay import DIAGNOSTICS_TOPIC, output_topic
from bdc_occ_ros.cli import main as cli
from bdc_occ_ros.geometry import NUSCENES_CAMERAS
from bdc_occ_ros.ros.convert import OUTPUT_TOPICS, OUTPUT_TYPES, stamp_to_ns, voxel_grid_arrays

REPO = Path(__file__).resolve().parents[1]
FRAMES = 3
pytestmark = pytest.mark.slow  # ~2 min under load: generation + 3 x 3 inferences + eval


def model_files(tmp: Path) -> tuple[Path, Path]:
    """The shipped edge model, or (before it is trained) the edge config with seeded random weights."""
    config = REPO / "config" / "models" / "bdc_occ_edge.yaml"
    shipped = REPO / "models" / "bdc_occ_edge_synth.safetensors"
    if shipped.is_file():
        return config, shipped
    import torch

    from bdc_occ_ros.config import load_model_config
    from bdc_occ_ros.model.checkpoint import save_checkpoint
    from bdc_occ_ros.model.network import build_model

    cfg = load_model_config(config)
    torch.manual_seed(0)
    path = tmp / "random_edge.safetensors"
    save_checkpoint(path, build_model(cfg).eval(), cfg)
    return config, path


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> dict:
    from bdc_occ_ros.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("replay")
    data = root / "synthocc"
    generate(SynthConfig(out=data, scenes=1, seed=11, frames_per_scene=FRAMES, image_size=(480, 270)))
    config, checkpoint = model_files(root)
    bag = root / "in" / "synth.mcap"
    assert cli(["bag", "synth", "--data", str(data), "--out", str(bag)]) == 0
    out = root / "out" / "replay.mcap"
    assert cli(["replay", "--bag", str(bag), "--out", str(out), "--config", str(config),
                "--checkpoint", str(checkpoint)]) == 0
    return {"data": data, "bag": bag, "out": out, "config": config, "checkpoint": checkpoint, "root": root}


def test_all_node_outputs_and_inputs_are_written(replayed):
    topics = bag_topics(replayed["out"])
    for key, msgtype in OUTPUT_TYPES.items():
        assert topics[output_topic(key)] == (msgtype, FRAMES), key
    assert topics[DIAGNOSTICS_TOPIC] == ("diagnostic_msgs/msg/DiagnosticArray", FRAMES)
    for cam in NUSCENES_CAMERAS:  # inputs copied, so the output bag alone plays into RViz / opens in Foxglove
        assert topics[image_topic(cam)][1] == FRAMES and topics[camera_info_topic(cam)][1] == FRAMES
    assert topics[TF_STATIC_TOPIC][1] == 1 and topics[GROUND_TRUTH_TOPIC][1] == FRAMES
    assert set(OUTPUT_TOPICS) == set(OUTPUT_TYPES)


def test_voxels_equal_the_pipeline_on_the_same_images(replayed):
    from bdc_occ_ros.bags.layout import rig_from_messages
    from bdc_occ_ros.pipeline import OccupancyPipeline
    from bdc_occ_ros.ros.decode import decode_for_input

    # the calibration replay uses: extrinsics from /tf_static, intrinsics from CameraInfo (as the node)
    tf = next(m.msg for m in read_messages(replayed["bag"], [TF_STATIC_TOPIC]))
    infos = {c: next(m.msg for m in read_messages(replayed["bag"], [camera_info_topic(c)])) for c in NUSCENES_CAMERAS}
    pipeline = OccupancyPipeline(replayed["config"], replayed["checkpoint"])
    pipeline.set_calibration(rig_from_messages(tf, infos))
    index = json.loads((replayed["data"] / "index.json").read_text())
    voxels = [m.msg for m in read_messages(replayed["out"], [output_topic("voxels")])]
    fronts = [stamp_to_ns(m.msg.header.stamp) for m in read_messages(replayed["bag"], [image_topic("CAM_FRONT")])]
    for rec, msg, front in zip(sorted(index["frames"], key=lambda r: r["frame_index"]), voxels, fronts, strict=True):
        images = [decode_for_input("jpeg", (replayed["data"] / rec["cams"][c]["image"]).read_bytes(),
                                   pipeline.input_size) for c in NUSCENES_CAMERAS]  # as the node decodes
        labels, vis = voxel_grid_arrays(msg)
        expected = pipeline(images, stamp_ns=front)
        np.testing.assert_array_equal(labels, expected.labels)
        assert stamp_to_ns(msg.header.stamp) == front  # stamped with the anchor (CAM_FRONT) image
        assert msg.header.frame_id == "base_link" and vis is not None


def test_miou_equals_bdc_occ_eval(replayed):
    # bdc-occ eval decodes the JPEGs at full size; replay does the same with --decode-reduction 1
    out = replayed["root"] / "full" / "replay_full.mcap"
    assert cli(["replay", "--bag", str(replayed["bag"]), "--out", str(out), "--config", str(replayed["config"]),
                "--checkpoint", str(replayed["checkpoint"]), "--decode-reduction", "1"]) == 0
    ours = json.loads(out.with_name("replay_full.miou.json").read_text())
    assert ours["samples"] == FRAMES
    ref_path = replayed["root"] / "eval.json"
    assert cli(["eval", "--config", str(replayed["config"]), "--checkpoint", str(replayed["checkpoint"]),
                "--data", str(replayed["data"]), "--split", "all", "--json", str(ref_path)]) == 0
    ref = json.loads(ref_path.read_text())
    assert ref["samples"] == FRAMES
    assert ours["miou"] == pytest.approx(ref["miou"], abs=1e-6)
    for name, iou in ref["per_class"].items():  # null: class absent from ground truth and prediction
        assert (ours["per_class"][name] is None) == (iou is None), name
        if iou is not None:
            assert ours["per_class"][name] == pytest.approx(iou, abs=1e-6), name
