"""SynthOcc generator: determinism, index and label format, ground truth against the placed geometry."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bdc_occ_ros.classes import DET_CLASSES, DET_TO_OCC_LABEL, FREE_LABEL, OCC3D_GRID, OCC_CLASSES
from bdc_occ_ros.cli import main as cli
from bdc_occ_ros.data.records import load_labels, load_records
from bdc_occ_ros.data.synth import CAMERA_OFFSETS_US, SynthConfig, default_rig_path, generate, ground_truth, scale_rig
from bdc_occ_ros.data.synth_scene import L, Scene, SceneObject, Texture, _box, _ground, frame_primitives, make_car
from bdc_occ_ros.geometry import NUSCENES_CAMERAS, RigCalibration

SIZE = (160, 90)
ARGS = ["--scenes", "2", "--seed", "7", "--frames-per-scene", "2", "--image-size", f"{SIZE[0]}x{SIZE[1]}",
        "--render-scale", "1.0", "--val-every", "2"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, Path]:
    """The same data set twice: with the CLI (one worker) and with the API (two worker processes)."""
    first = tmp_path_factory.mktemp("synth_a")
    second = tmp_path_factory.mktemp("synth_b")
    assert cli(["synth", "--out", str(first), *ARGS]) == 0
    generate(SynthConfig(out=second, scenes=2, seed=7, frames_per_scene=2, image_size=SIZE, render_scale=1.0,
                         val_every=2, workers=2))
    return first, second


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(generated):
    a, b = (_files(root) for root in generated)
    assert sorted(a) == sorted(b)
    assert len([k for k in a if k.endswith(".jpg")]) == 2 * 2 * 6
    assert len([k for k in a if k.endswith("labels.npz")]) == 2 * 2
    differing = [k for k in a if a[k] != b[k]]
    assert not differing


def test_other_seed_gives_other_scenes(generated, tmp_path: Path):
    generate(SynthConfig(out=tmp_path, scenes=1, seed=8, frames_per_scene=1, image_size=SIZE, render_scale=1.0))
    ours = json.loads((generated[0] / "index.json").read_text())["frames"][0]
    other = json.loads((tmp_path / "index.json").read_text())["frames"][0]
    assert ours["token"] != other["token"]
    assert ours["boxes"] != other["boxes"]


def test_index_format(generated):
    root = generated[0]
    index = json.loads((root / "index.json").read_text())
    assert index["format"] == "synthocc"
    assert index["classes"] == list(OCC_CLASSES)
    assert [s["split"] for s in index["scenes"]] == ["train", "val"]
    frames = index["frames"]
    assert len(frames) == 4
    for f in frames:
        assert set(f["cams"]) == set(NUSCENES_CAMERAS)
        for cam, c in f["cams"].items():
            assert c["timestamp"] - f["timestamp"] == CAMERA_OFFSETS_US[cam]
            img = cv2.imread(str(root / c["image"]))
            assert img is not None and img.shape == (SIZE[1], SIZE[0], 3)
        rig = RigCalibration.from_dict(f["calibration"])
        assert all(cam.width == SIZE[0] and cam.height == SIZE[1] for cam in rig.cameras.values())
        for box in f["boxes"]:
            assert box["name"] in DET_CLASSES
            assert len(box["center"]) == 3 and len(box["size"]) == 3 and len(box["velocity"]) == 2
            assert all(s > 0 for s in box["size"])
    # 12 Hz inside a scene, the ego moves along its lane
    f0, f1 = frames[0], frames[1]
    assert f0["scene"] == f1["scene"] and f1["prev"] == f0["token"] and f0["next"] == f1["token"]
    assert f1["timestamp"] - f0["timestamp"] == round(1e6 / 12)
    # the per-scene rig jitter is small: same cameras within a few cm / degrees of the shipped calibration
    base = RigCalibration.load(default_rig_path())
    rig = RigCalibration.from_dict(f0["calibration"])
    for name, cam in rig.cameras.items():
        assert np.linalg.norm(cam.cam_to_base[:3, 3] - base.cameras[name].cam_to_base[:3, 3]) < 0.1
        cos = (np.trace(cam.cam_to_base[:3, :3].T @ base.cameras[name].cam_to_base[:3, :3]) - 1) / 2
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))) < 3.0


def test_labels_are_occ3d(generated):
    records = load_records(generated[0])
    assert [r.split for r in records] == ["train", "train", "val", "val"]
    seen = set()
    for rec in records:
        with np.load(rec.occ_path) as data:
            assert sorted(data.files) == ["mask_camera", "mask_lidar", "semantics"]
            for key in data.files:
                assert data[key].shape == (200, 200, 16) and data[key].dtype == np.uint8
        labels = load_labels(rec)
        sem = labels["semantics"]
        assert sem.max() <= FREE_LABEL
        assert set(np.unique(labels["mask_camera"])) <= {0, 1} and set(np.unique(labels["mask_lidar"])) <= {0, 1}
        assert 0.05 < labels["mask_camera"].mean() < 0.9
        # the ground under the ego is road, the air above it is free and seen by the cameras
        assert sem[100, 100, 2] == L["driveable_surface"]
        assert sem[100, 100, 8] == FREE_LABEL and labels["mask_camera"][110, 100, 8] == 1
        seen |= set(np.unique(sem[labels["mask_camera"] == 1]).tolist())
    assert {L["driveable_surface"], L["sidewalk"], L["car"], FREE_LABEL} <= seen


def test_annotated_boxes_carry_their_class(generated):
    """Every annotated object inside the grid has voxels of its class inside its box."""
    checked = 0
    centres = OCC3D_GRID.centers()
    for rec in load_records(generated[0]):
        sem = load_labels(rec)["semantics"]
        for box, label in zip(rec.boxes, rec.box_labels, strict=True):
            x, y, z, length, width, height, yaw = box[:7]
            if abs(x) > 38 or abs(y) > 38:
                continue
            # voxels around the box (its bounding circle), in the box frame
            r = np.hypot(length, width) / 2 + 0.4
            i0, j0, _ = OCC3D_GRID.index_of(np.array([[x - r, y - r, 0.0]]))[0][0]
            i0, j0 = max(i0, 0), max(j0, 0)
            win = centres[i0 : i0 + int(2 * r / 0.4) + 2, j0 : j0 + int(2 * r / 0.4) + 2]
            d = win - np.array([x, y, z])
            c, s = np.cos(yaw), np.sin(yaw)
            local = np.stack([d[..., 0] * c + d[..., 1] * s, -d[..., 0] * s + d[..., 1] * c, d[..., 2]], -1)
            inside = np.all(np.abs(local) <= np.array([length, width, height]) / 2 + 0.2, axis=-1)
            want = DET_TO_OCC_LABEL[DET_CLASSES[label]]
            region = sem[i0 : i0 + win.shape[0], j0 : j0 + win.shape[1]]
            assert (region[inside] == want).any(), f"{DET_CLASSES[label]} box at ({x:.1f}, {y:.1f}) has no voxels"
            checked += 1
    assert checked > 5


def _manual_scene(objects: list[SceneObject]) -> Scene:
    return Scene(objects=objects, ego_start=(0.0, 0.0, 0.0), ego_velocity=(0.0, 0.0), sun=np.array([0, 0, 1.0]),
                 ambient=0.4, sky_horizon=np.ones(3) * 0.8, sky_zenith=np.ones(3) * 0.5, fog_color=np.ones(3) * 0.8,
                 fog_distance=200.0, layout="test", noise_seed=0)


def _voxel(x: float, y: float, z: float) -> tuple[int, int, int]:
    idx, inside = OCC3D_GRID.index_of(np.array([[x, y, z]]))
    assert inside[0]
    return tuple(int(v) for v in idx[0])


def test_placed_car_voxels_exactly_inside_its_box():
    grey = np.array([0.5, 0.5, 0.5])
    car = make_car(np.random.default_rng(0))
    car.pose, car.velocity = (10.3, -4.1, 0.0, 0.6), (3.0, 1.0)
    scene = _manual_scene([_ground("driveable_surface", -60, 60, -60, 60, color=grey), car])
    prims, boxes, _ = frame_primitives(scene, 0.5)  # the car has moved 1.5 m / 0.5 m
    assert len(boxes) == 1 and boxes[0].name == "car"
    np.testing.assert_allclose(boxes[0].center[:2], [11.8, -3.6], atol=1e-9)
    np.testing.assert_allclose(boxes[0].velocity, [3.0, 1.0])
    sem, _, _ = ground_truth(prims, scale_rig(RigCalibration.load(default_rig_path()), *SIZE))
    car_vox = OCC3D_GRID.centers()[sem == L["car"]]
    assert len(car_vox) > 20
    b = boxes[0]
    d = car_vox - b.center
    c, s = np.cos(b.yaw), np.sin(b.yaw)
    local = np.stack([d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c, d[:, 2]], -1)
    # every car voxel overlaps the box (centre within half a voxel diagonal of it)
    assert np.all(np.abs(local) <= b.size / 2 + 0.35)
    assert sem[_voxel(*b.center)] == L["car"]
    assert sem[_voxel(0.0, 0.0, 0.0)] == L["driveable_surface"] and sem[_voxel(0.0, 0.0, 1.0)] == FREE_LABEL


def test_voxels_behind_an_opaque_wall_are_not_camera_visible():
    grey = np.array([0.5, 0.5, 0.5])
    wall = SceneObject([_box((0.8, 30.0, 5.0), (12.0, 0.0, 2.5), L["manmade"], grey, texture=Texture.FACADE)],
                       (0.0, 0.0, 0.0, 0.0))
    scene = _manual_scene([_ground("terrain", -60, 60, -60, 60, color=grey), wall])
    prims, _, _ = frame_primitives(scene, 0.0)
    sem, mask_lidar, mask_camera = ground_truth(prims, scale_rig(RigCalibration.load(default_rig_path()), *SIZE))
    front_face, behind = _voxel(11.7, 0.0, 1.0), _voxel(16.0, 0.0, 1.0)
    assert sem[front_face] == L["manmade"] and sem[_voxel(12.3, 0.0, 1.0)] == L["manmade"]
    assert mask_camera[_voxel(6.0, 0.0, 1.0)] == 1  # free space in front of the wall
    assert mask_camera[front_face] == 1  # the wall surface itself
    assert mask_camera[_voxel(12.3, 0.0, 1.0)] == 0  # inside / back of the wall
    assert mask_camera[behind] == 0 and mask_lidar[behind] == 0
    assert mask_camera[_voxel(-6.0, 0.0, 1.0)] == 1  # free space behind the ego, seen by the back camera
