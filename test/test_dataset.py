"""OccDataset on SynthOcc and on a tiny Occ3D-nuScenes tree; BEV flips move ground truth, boxes and geometry
together."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bdc_occ_ros.classes import DET_CLASSES, FREE_LABEL, OCC3D_GRID, OCC_CLASSES
from bdc_occ_ros.data.augment import BevFlip, sample_image_aug
from bdc_occ_ros.data.dataset import OccDataset, collate
from bdc_occ_ros.data.records import load_records
from bdc_occ_ros.data.synth import SynthConfig, default_rig_path, generate, write_labels_npz
from bdc_occ_ros.geometry import NUSCENES_CAMERAS, RigCalibration, matrix_to_quat
from bdc_occ_ros.model.inputs import CameraGeometry

INPUT = (64, 176)  # (H, W)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(SynthConfig(out=root, scenes=1, seed=3, frames_per_scene=2, image_size=(200, 112), render_scale=1.0))
    return root


def test_item_shapes_and_test_time_geometry(synth_root: Path):
    ds = OccDataset(synth_root, "train", INPUT)
    assert len(ds) == 2
    item = ds[0]
    assert item["images"].shape == (6, 3, *INPUT) and item["images"].dtype == torch.float32
    geo: CameraGeometry = item["geometry"]
    assert geo.intrinsics.shape == (1, 6, 3, 3) and geo.cam_to_ego.shape == (1, 6, 4, 4)
    torch.testing.assert_close(geo.bda, torch.eye(3)[None])
    for key in ("semantics", "mask_camera", "mask_lidar"):
        assert item[key].shape == (200, 200, 16)
    assert item["semantics"].dtype == torch.int64 and item["mask_camera"].dtype == torch.bool
    assert item["gt_boxes"].shape[1] == 9 and item["gt_boxes"].shape[0] == item["gt_labels"].shape[0] > 0
    assert item["meta"]["scene"] == "scene-0000" and item["meta"]["bev_flip"] == (False, False)
    batch = collate([ds[0], ds[1]])
    assert batch["images"].shape == (2, 6, 3, *INPUT)
    assert batch["geometry"].batch_size == 2 and batch["semantics"].shape == (2, 200, 200, 16)
    assert len(batch["gt_boxes"]) == 2 and len(batch["meta"]) == 2
    with pytest.raises(ValueError, match="no frames"):
        OccDataset(synth_root, "val", INPUT)


def test_augmented_items_are_reproducible_and_flip_consistently(synth_root: Path):
    plain = OccDataset(synth_root, "train", INPUT)[0]
    aug = OccDataset(synth_root, "train", INPUT, augment=True, seed=5)
    flipped = None
    for epoch in range(16):  # find an epoch whose draw flips both BEV axes
        aug.set_epoch(epoch)
        item = aug[0]
        if item["meta"]["bev_flip"] == (True, True):
            flipped = item
            again = aug[0]
            torch.testing.assert_close(again["images"], item["images"])
            break
    assert flipped is not None
    torch.testing.assert_close(flipped["geometry"].bda, torch.diag(torch.tensor([-1.0, -1.0, 1.0]))[None])
    torch.testing.assert_close(flipped["semantics"], plain["semantics"].flip(0).flip(1))
    torch.testing.assert_close(flipped["mask_camera"], plain["mask_camera"].flip(0).flip(1))
    torch.testing.assert_close(flipped["gt_boxes"][:, :2], -plain["gt_boxes"][:, :2])
    torch.testing.assert_close(flipped["gt_boxes"][:, 7:], -plain["gt_boxes"][:, 7:])
    # each (flipped) box centre still sits on voxels of its class in the (flipped) ground truth
    for sem, boxes, labels in ((plain["semantics"], plain["gt_boxes"], plain["gt_labels"]),
                               (flipped["semantics"], flipped["gt_boxes"], flipped["gt_labels"])):
        hits = 0
        for box, label in zip(boxes.numpy(), labels.numpy(), strict=True):
            idx, inside = OCC3D_GRID.index_of(box[None, :3])
            if inside[0] and DET_CLASSES[label] in ("car", "bus", "truck"):
                assert OCC_CLASSES[int(sem[tuple(idx[0])])] == DET_CLASSES[label]
                hits += 1
        assert hits > 0


def test_bev_flip_of_boxes_matches_the_bda_matrix():
    boxes = np.array([[10.0, -4.0, 1.0, 4.5, 1.9, 1.6, 0.4, 3.0, -1.0]], dtype=np.float32)
    for flip in (BevFlip(True, False), BevFlip(False, True), BevFlip(True, True)):
        out = flip.boxes(boxes)[0]
        m = flip.matrix()
        np.testing.assert_allclose(out[:3], m @ boxes[0, :3], atol=1e-6)
        np.testing.assert_allclose(out[7:], (m[:2, :2] @ boxes[0, 7:]), atol=1e-6)
        heading = m[:2, :2] @ np.array([np.cos(boxes[0, 6]), np.sin(boxes[0, 6])])
        np.testing.assert_allclose([np.cos(out[6]), np.sin(out[6])], heading, atol=1e-6)
        np.testing.assert_array_equal(out[3:6], boxes[0, 3:6])


def test_image_aug_ranges():
    rng = np.random.default_rng(0)
    augs = [sample_image_aug(rng, 1600, 900, 704, 256) for _ in range(200)]
    scales = np.array([a.scale for a in augs])
    assert scales.min() >= 0.38 - 1e-9 and scales.max() <= 0.55 + 1e-9
    assert all(abs(a.rotate_deg) <= 5.4 for a in augs) and 50 < sum(a.flip for a in augs) < 150
    assert all(abs(a.crop_y - (900 * a.scale - 256)) < 1e-6 for a in augs)  # bottom aligned


# --- a tiny Occ3D-nuScenes tree ---------------------------------------------------------------------------


def _write_nuscenes_tree(root: Path) -> dict:
    rig = RigCalibration.load(default_rig_path())
    rng = np.random.default_rng(0)
    token, scene = "0123456789abcdef0123456789abcdef", "scene-0061"
    cams = {}
    for i, name in enumerate(NUSCENES_CAMERAS):
        rel = f"samples/{name}/n008__{name}__153{i}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), rng.integers(0, 255, (180, 320, 3), dtype=np.uint8))  # 1/5 of 1600x900
        cam = rig.cameras[name]
        cams[name] = {
            "data_path": f"./data/nuscenes/{rel}",
            "cam_intrinsic": cam.intrinsics.tolist(),
            "sensor2ego_rotation": matrix_to_quat(cam.cam_to_base[:3, :3]).tolist(),
            "sensor2ego_translation": cam.cam_to_base[:3, 3].tolist(),
            "timestamp": 1533201470400000 + i * 8000,
        }
    sem = np.full((200, 200, 16), FREE_LABEL, dtype=np.uint8)
    sem[:, :, 2] = OCC_CLASSES.index("driveable_surface")
    sem[120:130, 95:100, 2:6] = OCC_CLASSES.index("car")
    mask = np.zeros_like(sem)
    mask[90:150] = 1
    write_labels_npz(root / "gts" / scene / token / "labels.npz", sem, mask, mask)
    info = {"token": token, "scene_name": scene, "timestamp": 1533201470448696, "cams": cams,
            "ann_infos": [[[9.0, -1.0, 1.0, 4.0, 2.0, 1.6, 0.1, 2.0, 0.0]], [DET_CLASSES.index("car")]]}
    (root / "bevdetv2-nuscenes_infos_val.json").write_text(json.dumps({"infos": [info], "metadata": {}}))
    return {"token": token, "scene": scene, "rig": rig}


def test_nuscenes_tree(tmp_path: Path):
    tree = _write_nuscenes_tree(tmp_path)
    records = load_records(tmp_path, "val")
    assert [r.token for r in records] == [tree["token"]] and records[0].scene == tree["scene"]
    ds = OccDataset(tmp_path, "val", INPUT)
    item = ds[0]
    assert item["images"].shape == (6, 3, *INPUT)
    assert item["semantics"][125, 97, 3] == OCC_CLASSES.index("car") and item["mask_camera"][100, 0, 0]
    torch.testing.assert_close(item["gt_boxes"], torch.tensor([[9.0, -1.0, 1.0, 4.0, 2.0, 1.6, 0.1, 2.0, 0.0]]))
    # intrinsics follow the actual image size (320x180 files, calibration for 1600x900)
    k_full = tree["rig"].cameras["CAM_FRONT"].intrinsics
    k = item["geometry"].intrinsics[0, NUSCENES_CAMERAS.index("CAM_FRONT")].double().numpy()
    np.testing.assert_allclose(k[:2], k_full[:2] / 5, rtol=1e-5)
    assert item["meta"]["cam_timestamps"]["CAM_FRONT"] == 1533201470408000


def test_nuscenes_refuses_pickles_and_names_bad_records(tmp_path: Path):
    (tmp_path / "infos.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(ValueError, match="pickle"):
        load_records(tmp_path, "val", tmp_path / "infos.pkl")
    (tmp_path / "bad.json").write_text(json.dumps([{"token": "t", "timestamp": 1, "scene_name": "s", "cams": {}}]))
    with pytest.raises(ValueError, match="record 0"):
        load_records(tmp_path, "val", tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="info export"):
        load_records(tmp_path, "test")


def _write_devkit_tree(root: Path) -> None:
    """v1.0-mini tables for scene-0103 (a mini val scene): two keyframes 0.5 s apart, the ego at global
    (100, 50) facing +y, a car 10 m ahead moving 2 m/s, plus a stroller and a car without points (both dropped)."""
    rig = RigCalibration.load(default_rig_path())
    t0 = 1533201470000000
    ego_q = [np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)]
    tables: dict[str, list] = {k: [] for k in ("scene", "sample", "sample_data", "calibrated_sensor", "sensor",
                                                "ego_pose", "category", "instance", "sample_annotation")}
    samples = [f"sample{i}" for i in range(2)]
    for i, tok in enumerate(samples):
        tables["sample"].append({"token": tok, "timestamp": t0 + i * 500_000, "scene_token": "sc",
                                 "prev": samples[i - 1] if i else "", "next": samples[i + 1] if i == 0 else ""})
        tables["ego_pose"].append({"token": f"ego{i}", "translation": [100.0, 50.0 + i, 0.0], "rotation": ego_q,
                                   "timestamp": t0 + i * 500_000})
        sem = np.full((200, 200, 16), FREE_LABEL, dtype=np.uint8)
        write_labels_npz(root / "gts" / "scene-0103" / tok / "labels.npz", sem, sem * 0, sem * 0)
    for c, name in enumerate(NUSCENES_CAMERAS):
        cam = rig.cameras[name]
        tables["sensor"].append({"token": f"sensor{c}", "channel": name, "modality": "camera"})
        tables["calibrated_sensor"].append({
            "token": f"cal{c}", "sensor_token": f"sensor{c}", "translation": cam.cam_to_base[:3, 3].tolist(),
            "rotation": matrix_to_quat(cam.cam_to_base[:3, :3]).tolist(), "camera_intrinsic": cam.intrinsics.tolist()})
        for i, tok in enumerate(samples):
            rel = f"samples/{name}/{name}_{i}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), np.full((90, 160, 3), 40 * c, dtype=np.uint8))
            tables["sample_data"].append({
                "token": f"sd{c}_{i}", "sample_token": tok, "calibrated_sensor_token": f"cal{c}",
                "ego_pose_token": f"ego{i}", "timestamp": t0 + i * 500_000 - 40_000 + c * 8000, "fileformat": "jpg",
                "is_key_frame": True, "height": 90, "width": 160, "filename": rel, "prev": "", "next": ""})
    tables["scene"].append({"token": "sc", "name": "scene-0103", "first_sample_token": samples[0],
                            "last_sample_token": samples[1], "nbr_samples": 2, "log_token": "log", "description": ""})
    for k, cat in enumerate(("vehicle.car", "human.pedestrian.stroller")):
        tables["category"].append({"token": f"cat{k}", "name": cat})
    for k in range(3):
        tables["instance"].append({"token": f"inst{k}", "category_token": "cat1" if k == 1 else "cat0"})
    car_q = [np.cos(np.radians(120) / 2), 0.0, 0.0, np.sin(np.radians(120) / 2)]
    for i, tok in enumerate(samples):
        tables["sample_annotation"].append({
            "token": f"car{i}", "sample_token": tok, "instance_token": "inst0", "translation": [100.0, 60.0 + i, 1.0],
            "size": [2.0, 4.5, 1.6], "rotation": car_q, "num_lidar_pts": 20, "num_radar_pts": 1,
            "prev": f"car{i - 1}" if i else "", "next": "car1" if i == 0 else ""})
        for k, pts in ((1, 5), (2, 0)):
            tables["sample_annotation"].append({
                "token": f"other{k}_{i}", "sample_token": tok, "instance_token": f"inst{k}",
                "translation": [90.0, 50.0, 1.0], "size": [1.0, 1.0, 1.0], "rotation": [1.0, 0, 0, 0],
                "num_lidar_pts": pts, "num_radar_pts": 0, "prev": "", "next": ""})
    (root / "v1.0-mini").mkdir()
    for name, rows in tables.items():
        (root / "v1.0-mini" / f"{name}.json").write_text(json.dumps(rows))


def test_nuscenes_devkit_tables(tmp_path: Path):
    _write_devkit_tree(tmp_path)
    records = load_records(tmp_path, "val", tmp_path / "v1.0-mini")
    assert [r.token for r in records] == ["sample0", "sample1"] and records[0].scene == "scene-0103"
    rec = records[0]
    assert rec.box_labels.tolist() == [DET_CLASSES.index("car")]  # stroller and point-less car dropped
    x, y, z, length, width, height, yaw, vx, vy = rec.boxes[0]
    np.testing.assert_allclose([x, y, z], [10.0, 0.0, 1.0], atol=1e-5)  # 10 m ahead of the ego (facing +y)
    np.testing.assert_allclose([length, width, height], [4.5, 2.0, 1.6], atol=1e-6)
    assert yaw == pytest.approx(np.radians(30), abs=1e-5)
    np.testing.assert_allclose([vx, vy], [2.0, 0.0], atol=1e-5)  # 1 m in 0.5 s along global +y = ego +x
    ds = OccDataset(tmp_path, "val", INPUT, info=tmp_path / "v1.0-mini")
    item = ds[1]
    assert item["images"].shape == (6, 3, *INPUT) and item["meta"]["token"] == "sample1"
    assert load_records(tmp_path, "train", tmp_path / "v1.0-mini") == []
