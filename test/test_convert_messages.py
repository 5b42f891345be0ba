"""ros/convert.py: every output built with rclpy classes and with rosbags classes, serialised to CDR and
read back; both factories must describe the same message (so bags written offline equal what the node
publishes), and the content must be the result's (labels, points, BEV grid, stamps, frames)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from node_support import CALIBRATION

from bdc_occ_ros.classes import FREE_LABEL, OCC_CLASSES, OCC_PALETTE
from bdc_occ_ros.geometry import RigCalibration
from bdc_occ_ros.result import Detection3D, OccupancyResult
from bdc_occ_ros.ros import convert as C

rclpy_serialization = pytest.importorskip("rclpy.serialization")
STAMP = 1_533_201_470_412_460_000


@pytest.fixture(scope="module")
def typestore():
    from bdc_occ_ros.msgdefs import typestore_with_project_msgs

    return typestore_with_project_msgs()


@pytest.fixture(scope="module")
def result() -> OccupancyResult:
    rng = np.random.default_rng(0)
    labels = np.full((200, 200, 16), FREE_LABEL, np.uint8)
    occupied = rng.random(labels.shape) < 0.05
    labels[occupied] = rng.integers(0, 17, occupied.sum())
    labels[100, 100, 3] = OCC_CLASSES.index("car")  # an obstacle inside the default height band
    labels[10, 20, 0] = OCC_CLASSES.index("driveable_surface")  # ground: not an obstacle
    visibility = (rng.random(labels.shape) < 0.7).astype(np.uint8)
    dets = [Detection3D(np.array([5.0, -2.0, 0.8]), np.array([4.5, 1.9, 1.6]), 0.4, np.zeros(2), "car", 0.81),
            Detection3D(np.array([-3.0, 6.0, 0.9]), np.array([0.7, 0.7, 1.8]), -1.0, np.zeros(2), "pedestrian", 0.4)]
    return OccupancyResult(labels=labels, stamp_ns=STAMP, frame_id="base_link", visibility=visibility,
                           detections=dets, timings_ms={"inference": 12.5, "preprocess": 3.25})


def _equal(a, b, path="msg"):
    """Recursive comparison of an rclpy message and a rosbags message (floats to float32 precision)."""
    if hasattr(b, "__dataclass_fields__"):
        for name in b.__dataclass_fields__:
            if name != "__msgtype__":
                _equal(getattr(a, name), getattr(b, name), f"{path}.{name}")
    elif isinstance(a, bytes) and isinstance(b, int):  # rclpy 'byte' fields vs rosbags ints
        assert a[0] == b, path
    elif isinstance(b, np.ndarray) or isinstance(a, (bytes, np.ndarray)) or type(a).__name__ == "array":
        aa = np.frombuffer(a, dtype=b.dtype) if isinstance(a, bytes) else np.asarray(a)
        np.testing.assert_allclose(aa.astype(np.float64), np.asarray(b).astype(np.float64), rtol=1e-6, err_msg=path)
    elif isinstance(b, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _equal(x, y, f"{path}[{i}]")
    elif isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _builders(rig: RigCalibration):
    cam = rig.cameras["CAM_FRONT"]
    return {
        "bdc_occ_ros/msg/SemanticVoxelGrid": C.voxel_grid_msg,
        "sensor_msgs/msg/PointCloud2": C.point_cloud_msg,
        "nav_msgs/msg/OccupancyGrid": C.occupancy_grid_msg,
        "visualization_msgs/msg/MarkerArray": C.markers_msg,
        "diagnostic_msgs/msg/DiagnosticArray": lambda f, r: C.latency_msg(f, r, {"decode": 7.0}),
        "sensor_msgs/msg/CameraInfo": lambda f, r: C.camera_info_msg(f, cam, r.stamp_ns),
        "sensor_msgs/msg/CompressedImage": lambda f, r: C.compressed_image_msg(f, b"\xff\xd8abc", r.stamp_ns, "CAM"),
        "sensor_msgs/msg/Image": lambda f, r: C.image_msg(f, np.arange(24, dtype=np.uint8).reshape(2, 4, 3),
                                                          r.stamp_ns, "CAM_FRONT", "bgr8"),
    }


MSGTYPES = list(_builders(RigCalibration.load(CALIBRATION)))


@pytest.mark.parametrize("msgtype", MSGTYPES)
def test_rclpy_and_rosbags_build_the_same_message(msgtype, typestore, result):
    build = _builders(RigCalibration.load(CALIBRATION))[msgtype]
    rclpy_msg = build(C.RclpyFactory(), result)
    rosbags_msg = build(C.RosbagsFactory(typestore), result)
    # rclpy CDR bytes decoded by rosbags must equal the rosbags-built message, and vice versa
    from_rclpy = typestore.deserialize_cdr(bytes(rclpy_serialization.serialize_message(rclpy_msg)), msgtype)
    _equal(rclpy_msg, from_rclpy)
    _equal(rclpy_msg, rosbags_msg)
    raw = bytes(typestore.serialize_cdr(rosbags_msg, msgtype))
    back = rclpy_serialization.deserialize_message(raw, type(rclpy_msg))
    _equal(back, rosbags_msg)


def test_voxel_grid_round_trip(result):
    msg = C.voxel_grid_msg(C.RclpyFactory(), result)
    labels, visibility = C.voxel_grid_arrays(msg)
    np.testing.assert_array_equal(labels, result.labels)
    np.testing.assert_array_equal(visibility, result.visibility)
    assert (msg.size_x, msg.size_y, msg.size_z) == (200, 200, 16)
    assert msg.header.frame_id == "base_link"
    assert C.stamp_to_ns(msg.header.stamp) == STAMP
    assert list(msg.class_names) == list(OCC_CLASSES) and msg.free_label == FREE_LABEL
    assert (msg.origin.position.x, msg.origin.position.y, msg.origin.position.z) == (-40.0, -40.0, -1.0)
    assert msg.origin.orientation.w == 1.0


def test_point_cloud_holds_every_occupied_voxel_centre_with_its_colour(result):
    msg = C.point_cloud_msg(C.RclpyFactory(), result)
    points = C.point_cloud_arrays(msg)
    occupied = np.argwhere(result.labels != FREE_LABEL)
    assert msg.width == len(occupied) and msg.height == 1 and msg.point_step == 20
    assert [f.name for f in msg.fields] == ["x", "y", "z", "label", "rgb"]
    centre = -40.0 + (occupied[:, 0] + 0.5) * 0.4
    np.testing.assert_allclose(np.sort(points["x"]), np.sort(centre), atol=1e-5)
    i = int(np.flatnonzero((np.abs(points["x"] - 0.2) < 1e-4) & (np.abs(points["y"] - 0.2) < 1e-4)
                           & (np.abs(points["z"] - 0.4) < 1e-4))[0])  # voxel (100, 100, 3)
    assert points["label"][i] == OCC_CLASSES.index("car")
    rgb = int(points["rgb"][i:i + 1].view(np.uint32)[0])
    assert ((rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255) == tuple(OCC_PALETTE[OCC_CLASSES.index("car")])
    assert FREE_LABEL not in points["label"]
    with_free = C.point_cloud_arrays(C.point_cloud_msg(C.RclpyFactory(), result, publish_free=True))
    assert len(with_free) == result.labels.size


def test_occupancy_grid_projects_the_height_band(result):
    msg = C.occupancy_grid_msg(C.RclpyFactory(), result)
    data = np.frombuffer(msg.data, dtype=np.int8).reshape(msg.info.height, msg.info.width)  # [y, x]
    assert (msg.info.width, msg.info.height) == (200, 200)
    assert math.isclose(msg.info.resolution, 0.4, rel_tol=1e-6)
    assert data[100, 100] == 100  # the car at voxel (100, 100, 3)
    assert data[20, 10] != 100  # driveable surface is not an obstacle
    assert set(np.unique(data)) <= {-1, 0, 100}
    # a column unobserved in the band and without obstacles is unknown
    band = C.bev_occupancy(result)
    unobserved = ~result.visibility[:, :, 1:8].astype(bool).any(axis=2)  # voxel centres -0.4 .. 2.0 m
    assert np.all(band[unobserved & (band != 100)] == -1)
    # only cars are obstacles: fewer occupied cells
    only_cars = C.BevProjection(obstacle_labels=(OCC_CLASSES.index("car"),))
    assert (C.bev_occupancy(result, only_cars) == 100).sum() < (band == 100).sum()
    with pytest.raises(ValueError, match="z_min"):
        C.BevProjection(z_min=2.0, z_max=1.0)


def test_markers_boxes_and_labels(result):
    msg = C.markers_msg(C.RclpyFactory(), result)
    assert msg.markers[0].action == 3  # DELETEALL clears the previous frame's boxes
    cubes = [m for m in msg.markers if m.type == 1]
    texts = [m for m in msg.markers if m.type == 9]
    assert len(cubes) == len(texts) == 2
    assert (cubes[0].scale.x, cubes[0].scale.y, cubes[0].scale.z) == (4.5, 1.9, 1.6)
    assert math.isclose(2 * math.atan2(cubes[0].pose.orientation.z, cubes[0].pose.orientation.w), 0.4)
    assert texts[0].text == "car 0.81" and texts[1].text.startswith("pedestrian")
    assert all(m.header.frame_id == "base_link" and C.stamp_to_ns(m.header.stamp) == STAMP for m in msg.markers)


def test_detection_array_with_rosbags_vision_msgs(typestore, result):
    msg = C.detection_array_msg(C.RosbagsFactory(typestore), result)
    raw = typestore.serialize_cdr(msg, "vision_msgs/msg/Detection3DArray")
    back = typestore.deserialize_cdr(raw, "vision_msgs/msg/Detection3DArray")
    assert [d.results[0].hypothesis.class_id for d in back.detections] == ["car", "pedestrian"]
    assert back.detections[0].bbox.size.x == 4.5 and back.header.frame_id == "base_link"


def test_output_messages_match_the_topic_table(typestore, result):
    rclpy_out = C.output_messages(C.RclpyFactory(), result)
    assert set(rclpy_out) == set(C.OUTPUT_TOPICS) - {"objects"}  # no vision_msgs wheel for rclpy here
    bag_out = C.output_messages(C.RosbagsFactory(), result)  # default typestore: the project's, with vision_msgs
    assert set(bag_out) == set(C.OUTPUT_TOPICS)
    values = {kv.key: float(kv.value) for kv in rclpy_out["latency"].status[0].values}
    assert values == {"inference": 12.5, "preprocess": 3.25}


def test_rosbags_factory_rejects_unknown_fields(typestore):
    with pytest.raises(TypeError, match="no field"):
        C.RosbagsFactory(typestore).make("std_msgs/msg/Header", frame="x")
