"""Bag round trips: SynthOcc frames -> rosbag2 (MCAP and sqlite3) in the nuScenes layout -> read back with
rosbags, every message decoded and compared with its source (JPEG bytes, calibration, ground truth)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from bdc_occ_ros.bags.io import BagWriter, bag_topics, read_messages
from bdc_occ_ros.bags.layout import (
    GROUND_TRUTH_TOPIC,
    SAMPLE_PERIOD_NS,
    TF_STATIC_TOPIC,
    calibration_path_for,
    camera_info_topic,
    image_topic,
    rig_from_messages,
)
from bdc_occ_ros.cli import main as cli
from bdc_occ_ros.geometry import NUSCENES_CAMERAS, RigCalibration
from bdc_occ_ros.ros.convert import stamp_to_ns, voxel_grid_arrays

FRAMES = 3


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    """A tiny SynthOcc set: 1 scene, 3 frames, 320x180 images."""
    from bdc_occ_ros.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synthocc")
    generate(SynthConfig(out=out, scenes=1, seed=3, frames_per_scene=FRAMES, image_size=(320, 180)))
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_synth_bag_round_trip(synth_dir: Path, tmp_path: Path, storage: str):
    suffix = {"mcap": ".mcap", "sqlite3": ".db3"}[storage]
    out = tmp_path / f"synth{suffix}"
    assert cli(["bag", "synth", "--data", str(synth_dir), "--out", str(out), "--storage", storage]) == 0
    index = json.loads((synth_dir / "index.json").read_text())
    records = sorted(index["frames"], key=lambda r: r["frame_index"])
    rig = RigCalibration.from_dict(records[0]["calibration"])

    # the files: the bag, the standard rosbag2 metadata beside it, the calibration YAML
    meta = yaml.safe_load((tmp_path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["relative_file_paths"] == [out.name]
    assert meta["storage_identifier"] == storage
    qos = {t["topic_metadata"]["name"]: yaml.safe_load(t["topic_metadata"]["offered_qos_profiles"])
           for t in meta["topics_with_message_count"]}
    assert qos[TF_STATIC_TOPIC][0]["durability"] == 1  # transient_local, so late subscribers get it on playback
    beside = RigCalibration.load(calibration_path_for(out))
    for cam in NUSCENES_CAMERAS:
        np.testing.assert_allclose(beside.cameras[cam].cam_to_base, rig.cameras[cam].cam_to_base, atol=1e-9)
        np.testing.assert_allclose(beside.cameras[cam].intrinsics, rig.cameras[cam].intrinsics)

    topics = bag_topics(out)
    for cam in NUSCENES_CAMERAS:
        assert topics[image_topic(cam)] == ("sensor_msgs/msg/CompressedImage", FRAMES)
        assert topics[camera_info_topic(cam)] == ("sensor_msgs/msg/CameraInfo", FRAMES)
    assert topics[TF_STATIC_TOPIC] == ("tf2_msgs/msg/TFMessage", 1)
    assert topics[GROUND_TRUTH_TOPIC] == ("bdc_occ_ros/msg/SemanticVoxelGrid", FRAMES)

    images: dict[str, list] = {c: [] for c in NUSCENES_CAMERAS}
    infos: dict[str, object] = {}
    gts, tf, last_log = [], None, 0
    for m in read_messages(out):
        assert m.log_time_ns >= last_log or m.topic == GROUND_TRUTH_TOPIC
        last_log = max(last_log, m.log_time_ns)
        if m.topic == TF_STATIC_TOPIC:
            tf = m.msg
        elif m.topic == GROUND_TRUTH_TOPIC:
            gts.append(m.msg)
        else:
            cam = m.topic.split("/")[1]
            assert stamp_to_ns(m.msg.header.stamp) == m.log_time_ns
            assert m.msg.header.frame_id == rig.cameras[cam].frame_id
            if m.topic.endswith("camera_info"):
                infos[cam] = m.msg
                assert m.msg.distortion_model == "plumb_bob" and not np.any(m.msg.d)
                np.testing.assert_allclose(np.asarray(m.msg.r).reshape(3, 3), np.eye(3))
                np.testing.assert_allclose(np.asarray(m.msg.p).reshape(3, 4)[:, :3], rig.cameras[cam].intrinsics)
                assert (m.msg.width, m.msg.height) == (320, 180)
            else:
                assert m.msg.format == "jpeg"
                images[cam].append(m.msg)

    # TFMessage + CameraInfo give back the rig
    back = rig_from_messages(tf, infos)
    for cam in NUSCENES_CAMERAS:
        np.testing.assert_allclose(back.cameras[cam].cam_to_base, rig.cameras[cam].cam_to_base, atol=1e-9)
        np.testing.assert_allclose(back.cameras[cam].intrinsics, rig.cameras[cam].intrinsics)

    for k, rec in enumerate(records):
        # the original JPEG bytes, unchanged and decodable
        for cam in NUSCENES_CAMERAS:
            msg = images[cam][k]
            assert bytes(msg.data) == (synth_dir / rec["cams"][cam]["image"]).read_bytes()
            img = cv2.imdecode(np.asarray(msg.data), cv2.IMREAD_COLOR)
            assert img is not None and img.shape == (180, 320, 3)
        # nuScenes timing: 12 Hz frames, cameras ~43 ms apart within a frame, GT at the CAM_FRONT stamp
        stamps = {cam: stamp_to_ns(images[cam][k].header.stamp) for cam in NUSCENES_CAMERAS}
        assert 35e6 < max(stamps.values()) - min(stamps.values()) < 50e6
        if k:
            assert stamps["CAM_FRONT"] - stamp_to_ns(images["CAM_FRONT"][k - 1].header.stamp) == SAMPLE_PERIOD_NS
        labels, vis = voxel_grid_arrays(gts[k])
        with np.load(synth_dir / rec["occ_path"]) as npz:
            np.testing.assert_array_equal(labels, npz["semantics"])
            np.testing.assert_array_equal(vis, npz["mask_camera"])
        assert stamp_to_ns(gts[k].header.stamp) == stamps["CAM_FRONT"]
        assert gts[k].header.frame_id == rig.base_frame


def test_mcap_stores_ros2_message_definitions(synth_dir: Path, tmp_path: Path):
    """Foxglove and mcap_ros2 need ROS 2 syntax schemas (builtin_interfaces/Time, not ROS 1 `time`)."""
    from rosbags.rosbag2 import Reader

    out = tmp_path / "defs.mcap"
    assert cli(["bag", "synth", "--data", str(synth_dir), "--out", str(out)]) == 0
    with Reader(out) as reader:
        defs = {c.topic: c.msgdef for c in reader.connections}
    for topic in (TF_STATIC_TOPIC, GROUND_TRUTH_TOPIC, image_topic("CAM_FRONT")):
        assert defs[topic].format.name == "MSG"
        assert "builtin_interfaces/Time stamp" in defs[topic].data
        assert "\ntime " not in defs[topic].data
    assert "uint8[] labels" in defs[GROUND_TRUTH_TOPIC].data


def test_writer_refuses_to_clobber(tmp_path: Path):
    from bdc_occ_ros.ros.convert import RosbagsFactory, header_msg

    f = RosbagsFactory()
    msg = f.make("std_msgs/msg/String", data="x")
    with BagWriter(tmp_path / "a.mcap", f.typestore) as bag:
        bag.write("/s", msg, 1)
    with pytest.raises(FileExistsError, match="exists"):
        BagWriter(tmp_path / "a.mcap", f.typestore).__enter__()
    with pytest.raises(FileExistsError, match="another bag"):
        BagWriter(tmp_path / "b.mcap", f.typestore).__enter__()
    bad = BagWriter(tmp_path / "sub" / "c.mcap", f.typestore)
    with pytest.raises(ValueError, match="cannot also write"), bad as bag:
        bag.write("/s", msg, 1)
        bag.write("/s", header_msg(f, 1, "x"), 2)
    assert not (tmp_path / "sub" / "c.mcap").exists()  # nothing left behind after an error
    assert [m.msg.data for m in read_messages(tmp_path / "a.mcap")] == ["x"]


def test_bag_info_lists_topics(synth_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "info.mcap"
    assert cli(["bag", "synth", "--data", str(synth_dir), "--out", str(out)]) == 0
    capsys.readouterr()
    assert cli(["bag", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{GROUND_TRUTH_TOPIC}" in text and "bdc_occ_ros/msg/SemanticVoxelGrid" in text
    assert f"{1 + 13 * FRAMES} messages" in text


def test_generated_scenes_share_one_timeline_and_rig(tmp_path: Path):
    """Without --data the generator runs with one rig; scenes (an hour apart in SynthOcc) follow each other at 12 Hz."""
    out = tmp_path / "two.mcap"
    assert cli(["bag", "synth", "--out", str(out), "--scenes", "2", "--frames-per-scene", "1", "--seed", "5",
                "--image-size", "160x90"]) == 0
    fronts = [stamp_to_ns(m.msg.header.stamp) for m in read_messages(out, [image_topic("CAM_FRONT")])]
    assert np.diff(fronts).tolist() == [SAMPLE_PERIOD_NS]
    assert bag_topics(out)[TF_STATIC_TOPIC][1] == 1
