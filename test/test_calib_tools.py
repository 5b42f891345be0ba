"""`bdc-occ calib from-info` and `bdc-occ calib-check` on the real nuScenes sample."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml
from node_support import CALIBRATION, SAMPLE_DIR, requires_sample

from bdc_occ_ros.cli import main as cli
from bdc_occ_ros.geometry import NUSCENES_CAMERAS, RigCalibration
from bdc_occ_ros.tools.calib_check import load_lidar, project, project_points


@requires_sample
def test_from_info_writes_the_shipped_calibration(tmp_path):
    out = tmp_path / "calib.yaml"
    assert cli(["calib", "from-info", str(SAMPLE_DIR / "sample0000.yaml"), "--out", str(out)]) == 0
    written, shipped = RigCalibration.load(out), RigCalibration.load(CALIBRATION)
    assert written.names == list(NUSCENES_CAMERAS) and written.base_frame == "base_link"
    info = yaml.safe_load((SAMPLE_DIR / "sample0000.yaml").read_text())
    for name in NUSCENES_CAMERAS:
        np.testing.assert_allclose(written.cameras[name].cam_to_base, shipped.cameras[name].cam_to_base, atol=1e-12)
        np.testing.assert_allclose(written.cameras[name].cam_to_base[:3, 3],
                                   info["cams"][name]["sensor2ego_translation"])
        np.testing.assert_allclose(written.cameras[name].intrinsics, info["cams"][name]["cam_intrinsic"])
        assert (written.cameras[name].width, written.cameras[name].height) == (1600, 900)
    assert out.read_text().startswith("# ")  # says where it came from
    assert CALIBRATION.read_text().startswith("# Calibration of the real nuScenes sample")


def test_from_info_errors_name_the_problem(tmp_path, capsys):
    bad = tmp_path / "info.yaml"
    bad.write_text(yaml.safe_dump({"cams": {"CAM_FRONT": {"cam_intrinsic": np.eye(3).tolist()}}}))
    assert cli(["calib", "from-info", str(bad), "--out", str(tmp_path / "c.yaml")]) == 2
    assert "info: cams.CAM_FRONT: missing 'sensor2ego_rotation'" in capsys.readouterr().err
    assert cli(["calib", "from-info", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "c.yaml")]) == 2
    assert "info record not found" in capsys.readouterr().err


def test_projection_of_a_point_on_the_optical_axis_hits_the_principal_point():
    cam = RigCalibration.load(CALIBRATION).cameras["CAM_FRONT"]
    on_axis = (cam.cam_to_base @ np.array([0.0, 0.0, 10.0, 1.0]))[:3]
    uv, depth, idx = project(on_axis[None], cam)
    np.testing.assert_allclose(uv[0], cam.intrinsics[:2, 2], atol=1e-6)
    assert depth[0] == pytest.approx(10.0) and idx.tolist() == [0]
    behind = (cam.cam_to_base @ np.array([0.0, 0.0, -10.0, 1.0]))[:3]
    assert len(project(behind[None], cam)[0]) == 0


@requires_sample
def test_lidar_points_lie_on_the_ground_in_the_base_frame():
    info = yaml.safe_load((SAMPLE_DIR / "sample0000.yaml").read_text())
    points = load_lidar(SAMPLE_DIR / "lidar_top.bin", info)
    near = points[np.linalg.norm(points[:, :2], axis=1) < 15]
    # the base frame sits on the ground: most near returns are road at z ~ 0
    assert abs(np.percentile(near[:, 2], 20)) < 0.5


@requires_sample
def test_calib_check_draws_the_sweep_into_all_cameras(tmp_path):
    assert cli(["calib-check", "--sample", str(SAMPLE_DIR), "--out", str(tmp_path)]) == 0
    grid = cv2.imread(str(tmp_path / "lidar_projection.png"))
    assert grid.shape == (2 * 450, 3 * 800, 3)
    # every camera tile got coloured points: compare with the plain images
    cam = RigCalibration.load(CALIBRATION).cameras["CAM_FRONT"]
    img = np.zeros((900, 1600, 3), np.uint8)
    drawn = project_points(img, np.array([[20.0, 0.0, 1.0]]), np.array([[255, 0, 0]], np.uint8), cam, radius=1)
    _, xs = np.nonzero(drawn[:, :, 0])
    assert len(xs) == 9 and abs(xs.mean() - cam.intrinsics[0, 2]) < 60  # 20 m ahead: near the image centre
