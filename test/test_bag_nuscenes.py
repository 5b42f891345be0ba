"""`bdc-occ bag from-nuscenes` on a tiny nuScenes-format tree written here: devkit JSON tables, real JPEG
files for 2 keyframes + 1 sweep per camera, and Occ3D gts/ for the keyframes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bdc_occ_ros.bags.io import bag_topics, read_messages
from bdc_occ_ros.bags.layout import GROUND_TRUTH_TOPIC, TF_STATIC_TOPIC, calibration_path_for, image_topic
from bdc_occ_ros.cli import main as cli
from bdc_occ_ros.geometry import NUSCENES_CAMERAS, RigCalibration, quat_to_matrix
from bdc_occ_ros.ros.convert import stamp_to_ns, voxel_grid_arrays

SCENE = "scene-0061"
T0_US = 1_532_402_927_612_460
#: Camera exposure offsets within a sample (µs), nuScenes-like.
OFFSETS_US = dict(zip(NUSCENES_CAMERAS, (-7586, 0, 7879, 34963, 25065, 15433), strict=True))
W, H = 64, 36


def _token(*parts) -> str:
    return "_".join(str(p) for p in parts)


@pytest.fixture(scope="module")
def tiny_nuscenes(tmp_path_factory) -> dict:
    """Tables for one scene with 2 keyframe samples (0.5 s apart) and one sweep image per camera between
    them; a LIDAR_TOP keyframe record that the converter must ignore; labels.npz for both samples."""
    root = tmp_path_factory.mktemp("nuscenes")
    rng = np.random.default_rng(0)
    sensors, calibs, sample_data, jpegs = [], [], [], {}
    samples = [{"token": _token("sample", i), "timestamp": T0_US + i * 500_000, "scene_token": "scene0",
                "prev": _token("sample", i - 1) if i else "", "next": _token("sample", i + 1) if i == 0 else ""}
               for i in range(2)]
    for c, cam in enumerate([*NUSCENES_CAMERAS, "LIDAR_TOP"]):
        sensors.append({"token": _token("sensor", cam), "channel": cam,
                        "modality": "lidar" if cam == "LIDAR_TOP" else "camera"})
        yaw = c * np.pi / 3
        k_matrix = [] if cam == "LIDAR_TOP" else [[50.0 + c, 0, 32], [0, 50.0 + c, 18], [0, 0, 1]]
        calibs.append({"token": _token("calib", cam), "sensor_token": _token("sensor", cam),
                       "translation": [1.0 + c, 0.1 * c, 1.5], "rotation": [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)],
                       "camera_intrinsic": k_matrix})
        if cam == "LIDAR_TOP":
            sample_data.append({"token": _token("sd", cam, 0), "sample_token": samples[0]["token"],
                                "calibrated_sensor_token": _token("calib", cam), "ego_pose_token": "",
                                "timestamp": T0_US, "fileformat": "pcd", "is_key_frame": True, "height": 0,
                                "width": 0, "filename": "samples/LIDAR_TOP/x.pcd.bin", "prev": "", "next": ""})
            continue
        # keyframe 0, one 12 Hz sweep after it, keyframe 1 (0.5 s later)
        for k, (stamp, sample, key) in enumerate([(T0_US, 0, True), (T0_US + 83_333, 0, False),
                                                    (T0_US + 500_000, 1, True)]):
            name = f"{'samples' if key else 'sweeps'}/{cam}/{cam}_{k}.jpg"
            img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
            data = cv2.imencode(".jpg", img)[1].tobytes()
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
            jpegs[(cam, k)] = data
            sample_data.append({"token": _token("sd", cam, k), "sample_token": samples[sample]["token"],
                                "calibrated_sensor_token": _token("calib", cam), "ego_pose_token": "",
                                "timestamp": stamp + OFFSETS_US[cam], "fileformat": "jpg", "is_key_frame": key,
                                "height": H, "width": W, "filename": name,
                                "prev": _token("sd", cam, k - 1) if k else "",
                                "next": _token("sd", cam, k + 1) if k < 2 else ""})
    scene = {"token": "scene0", "log_token": "log0", "nbr_samples": 2, "name": SCENE, "description": "tiny",
             "first_sample_token": samples[0]["token"], "last_sample_token": samples[1]["token"]}
    tables = root / "v1.0-mini"
    tables.mkdir()
    for name, rows in (("scene", [scene]), ("sample", samples), ("sample_data", sample_data),
                       ("calibrated_sensor", calibs), ("sensor", sensors)):
        (tables / f"{name}.json").write_text(json.dumps(rows))
    gts = {}
    for s in samples:
        sem = rng.integers(0, 18, (200, 200, 16), dtype=np.uint8)
        mask = rng.integers(0, 2, (200, 200, 16), dtype=np.uint8)
        path = root / "gts" / SCENE / s["token"] / "labels.npz"
        path.parent.mkdir(parents=True)
        np.savez_compressed(path, semantics=sem, mask_lidar=mask, mask_camera=mask)
        gts[s["token"]] = (sem, mask)
    return {"root": root, "jpegs": jpegs, "gts": gts, "calibs": {c["sensor_token"][7:]: c for c in calibs}}


def test_keyframes_with_occ3d_ground_truth(tiny_nuscenes, tmp_path: Path):
    out = tmp_path / "nus.mcap"
    assert cli(["bag", "from-nuscenes", "--dataroot", str(tiny_nuscenes["root"]), "--scene", SCENE,
                "--out", str(out)]) == 0
    topics = bag_topics(out)
    assert topics[GROUND_TRUTH_TOPIC][1] == 2 and topics[TF_STATIC_TOPIC][1] == 1
    assert all(topics[image_topic(c)][1] == 2 for c in NUSCENES_CAMERAS)
    assert not any("LIDAR" in t for t in topics)

    rig = RigCalibration.load(calibration_path_for(out))
    assert rig.names == list(NUSCENES_CAMERAS)
    for cam in NUSCENES_CAMERAS:
        cs = tiny_nuscenes["calibs"][cam]
        np.testing.assert_allclose(rig.cameras[cam].cam_to_base[:3, :3], quat_to_matrix(cs["rotation"]), atol=1e-9)
        np.testing.assert_allclose(rig.cameras[cam].cam_to_base[:3, 3], cs["translation"])
        np.testing.assert_allclose(rig.cameras[cam].intrinsics, cs["camera_intrinsic"])
        assert (rig.cameras[cam].width, rig.cameras[cam].height) == (W, H)

    front_stamps, gt_msgs = [], []
    for m in read_messages(out, [image_topic(c) for c in NUSCENES_CAMERAS] + [GROUND_TRUTH_TOPIC]):
        if m.topic == GROUND_TRUTH_TOPIC:
            gt_msgs.append(m.msg)
            continue
        cam = m.topic.split("/")[1]
        k = 0 if stamp_to_ns(m.msg.header.stamp) < (T0_US + 250_000) * 1000 else 2
        assert bytes(m.msg.data) == tiny_nuscenes["jpegs"][(cam, k)]  # original bytes, µs stamps -> ns
        assert stamp_to_ns(m.msg.header.stamp) == (T0_US + 500_000 * (k // 2) + OFFSETS_US[cam]) * 1000
        if cam == "CAM_FRONT":
            front_stamps.append(stamp_to_ns(m.msg.header.stamp))
    assert [stamp_to_ns(g.header.stamp) for g in gt_msgs] == front_stamps
    for g, token in zip(gt_msgs, ["sample_0", "sample_1"], strict=True):
        labels, vis = voxel_grid_arrays(g)
        np.testing.assert_array_equal(labels, tiny_nuscenes["gts"][token][0])
        np.testing.assert_array_equal(vis, tiny_nuscenes["gts"][token][1])


def test_sweeps_are_grouped_into_camera_sets(tiny_nuscenes, tmp_path: Path):
    out = tmp_path / "sweeps.db3"
    assert cli(["bag", "from-nuscenes", "--dataroot", str(tiny_nuscenes["root"]), "--scene", SCENE,
                "--out", str(out), "--sweeps", "--storage", "sqlite3"]) == 0
    topics = bag_topics(out)
    assert all(topics[image_topic(c)][1] == 3 for c in NUSCENES_CAMERAS)
    assert topics[GROUND_TRUTH_TOPIC][1] == 2  # ground truth only on keyframes


def test_bad_input_names_the_problem(tiny_nuscenes, tmp_path: Path, capsys):
    assert cli(["bag", "from-nuscenes", "--dataroot", str(tiny_nuscenes["root"]), "--scene", "scene-9999",
                "--out", str(tmp_path / "x.mcap")]) == 2
    assert "no scene 'scene-9999'" in capsys.readouterr().err
    assert cli(["bag", "from-nuscenes", "--dataroot", str(tmp_path), "--scene", SCENE,
                "--out", str(tmp_path / "x.mcap")]) == 2
    assert "nuScenes tables not found" in capsys.readouterr().err
