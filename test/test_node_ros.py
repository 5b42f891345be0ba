"""bdc_occ_node against real rclpy + Fast DDS: a test publisher plays the real nuScenes sample (both
transports) with CameraInfo; the node's labels must equal the offline pipeline's for the same images,
with the anchor (CAM_FRONT) stamp and base_link; then the failure cases, grouped per node run to keep
start-ups (torch import) few: corrupt JPEG, unsupported format/encoding, image size change, time going
backwards, a silent camera, bursts, no subscribers, and start-up errors (parameters, calibration,
missing/corrupt checkpoint, CameraInfo never arriving)."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from node_support import CALIBRATION, SAMPLE_DIR, make_tiny_checkpoint, requires_sample
from ros_harness import spin_until, wait_for_subscribers

from bdc_occ_ros.geometry import NUSCENES_CAMERAS, RigCalibration
from bdc_occ_ros.ros.convert import (
    OUTPUT_TOPICS,
    OUTPUT_TYPES,
    RclpyFactory,
    compressed_image_msg,
    stamp_to_ns,
    voxel_grid_arrays,
)
from bdc_occ_ros.ros.decode import decode_for_input

pytestmark = [pytest.mark.ros, pytest.mark.slow, requires_sample]
BASE_NS = 1_700_000_000_000_000_000
#: Generous: 8 agents share 2 cores on the dev machine; CI is faster.
TIMEOUT = 90.0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def sample():
    from bdc_occ_ros.tools.infer import load_sample

    return load_sample(SAMPLE_DIR)


@pytest.fixture(scope="module")
def offline(checkpoint):
    """labels_for(images) with the offline pipeline, calibrated like the node (calibration YAML)."""
    from bdc_occ_ros.pipeline import OccupancyPipeline

    pipeline = OccupancyPipeline(None, checkpoint, camera_names=NUSCENES_CAMERAS)
    pipeline.set_calibration(RigCalibration.load(CALIBRATION))
    return lambda images: pipeline([images[c] for c in NUSCENES_CAMERAS]).labels


def _as_node_decodes(jpeg: dict) -> dict:
    """The JPEGs decoded as the node does by default (decode_reduction 0: auto from each JPEG's size for the tiny
    model's 64x160 input, e.g. 1600x900 at 1/8)."""
    return {c: decode_for_input("jpeg", data, (64, 160)) for c, data in jpeg.items()}


def _offsets(sample) -> dict[str, int]:
    anchor = sample.stamps_ns["CAM_FRONT"]
    return {c: s - anchor for c, s in sample.stamps_ns.items()}


class Outputs:
    """Subscriptions of the test node on the node's outputs and /diagnostics."""

    KEYS = ("voxels", "points", "grid", "markers", "latency")

    def __init__(self, ros_node):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.ros_node = ros_node
        self.msgs: dict[str, list] = {k: [] for k in self.KEYS}
        self.diagnostics: list = []
        self.subs = {}
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        factory = RclpyFactory()
        for key in self.KEYS:
            cls = factory.message_class(OUTPUT_TYPES[key])
            self.subs[key] = ros_node.node.create_subscription(cls, f"/bdc_occ/{OUTPUT_TOPICS[key]}",
                                                               self.msgs[key].append, qos)
        ros_node.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)

    def voxels_at(self, stamp_ns: int, timeout: float = TIMEOUT):
        def found():
            return [m for m in self.msgs["voxels"] if stamp_to_ns(m.header.stamp) == stamp_ns]

        spin_until(self.ros_node.executor, lambda: bool(found()), timeout, f"voxels stamped {stamp_ns}")
        return found()[0]

    def status(self, name_suffix: str) -> dict:
        """Latest diagnostic status whose name ends with ``name_suffix``: {'level', 'message', values...}."""
        for array in reversed(self.diagnostics):
            for s in array.status:
                if s.name.endswith(name_suffix):
                    return {"level": s.level[0], "message": s.message, **{kv.key: kv.value for kv in s.values}}
        return {}

    def wait_status(self, name_suffix: str, predicate, what: str, timeout: float = TIMEOUT) -> dict:
        spin_until(self.ros_node.executor, lambda: predicate(self.status(name_suffix)), timeout, what)
        return self.status(name_suffix)

    def unsubscribe(self, keys) -> None:
        for key in keys:
            self.ros_node.node.destroy_subscription(self.subs.pop(key))


def _start_node(ros_processes, checkpoint, *params: str, name: str = "bdc_occ_node"):
    args = ["--ros-args", "-p", f"calibration_file:={CALIBRATION}", "-p", f"checkpoint:={checkpoint}",
            "-p", "camera_timeout:=1.0", "-p", "diagnostics_period:=0.25", "-p", "num_threads:=1"]
    for p in params:
        args += ["-p", p]
    return ros_processes.python_module("bdc_occ_ros.ros.node", *args, name=name)


def _bring_up(node, ros_node, pub):
    """Publish CameraInfo until the node runs, then wait until it subscribed to every image topic."""
    node.wait_for_line(r"waiting for CameraInfo: \[", timeout=TIMEOUT)
    for p in pub.info_pubs.values():
        wait_for_subscribers(p, 1, timeout=TIMEOUT)
    running = re.compile(r"running: engine")
    spin_until(ros_node.executor, lambda: (pub.publish_info_all(BASE_NS), running.search(node.output()))[1]
               is not None, TIMEOUT, "node running")
    for p in pub.image_pubs.values():
        wait_for_subscribers(p, 1, timeout=TIMEOUT)


def _encode(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


class _Publisher:
    """CameraSetPublisher + a publish_info_all helper used while waiting for start-up."""

    def __init__(self, ros_node, sample, transport):
        from bdc_occ_ros.ros.sample_publisher import CameraSetPublisher

        self.inner = CameraSetPublisher(ros_node.node, RigCalibration.load(CALIBRATION), NUSCENES_CAMERAS, transport)
        self.image_pubs, self.info_pubs = self.inner.image_pubs, self.inner.info_pubs
        self.offsets = _offsets(sample)

    def publish_info_all(self, stamp_ns: int) -> None:
        for cam in NUSCENES_CAMERAS:
            self.inner.publish_info(cam, stamp_ns)

    def publish(self, images: dict, anchor_ns: int, skip=()) -> None:
        stamps = {c: anchor_ns + self.offsets[c] for c in images if c not in skip}
        self.inner.publish_set({c: images[c] for c in stamps}, stamps, with_info=False)


def test_node_compressed_outputs_equal_offline_and_survive_failures(ros_processes, ros_node, checkpoint, sample,
                                                                    offline):
    node = _start_node(ros_processes, checkpoint)
    out = Outputs(ros_node)
    # CameraInfo never arriving: the node waits, says so (throttled) and reports it on /diagnostics
    out.wait_status(": node", lambda s: s.get("state") == "waiting_for_camera_info", "waiting state")
    assert out.status(": node")["level"] == 1
    pub = _Publisher(ros_node, sample, "compressed")
    _bring_up(node, ros_node, pub)
    rgb = {c: sample.rgb(c) for c in NUSCENES_CAMERAS}

    # 1. the real sample: labels equal the offline pipeline's; stamps and frames right
    t1 = BASE_NS + 1_000_000_000
    pub.publish(sample.jpeg, t1)
    voxels = out.voxels_at(t1)
    labels, visibility = voxel_grid_arrays(voxels)
    np.testing.assert_array_equal(labels, offline(_as_node_decodes(sample.jpeg)))
    assert voxels.header.frame_id == "base_link" and visibility is not None
    spin_until(ros_node.executor, lambda: all(out.msgs[k] for k in ("points", "grid", "markers", "latency")),
               TIMEOUT, "all output topics")
    for key in ("points", "grid", "latency"):
        msg = next(m for m in out.msgs[key] if stamp_to_ns(m.header.stamp) == t1)
        assert msg.header.frame_id == "base_link", key
    points = next(m for m in out.msgs["points"] if stamp_to_ns(m.header.stamp) == t1)
    assert points.width == int((labels != voxels.free_label).sum())
    grid = next(m for m in out.msgs["grid"] if stamp_to_ns(m.header.stamp) == t1)
    assert (grid.info.width, grid.info.height) == labels.shape[:2]
    assert all(stamp_to_ns(m.header.stamp) == t1 for m in out.msgs["markers"][-1].markers)
    latency = {kv.key for kv in out.msgs["latency"][-1].status[0].values}
    assert {"decode", "preprocess", "inference", "postprocess", "convert", "publish"} <= latency

    # 2. corrupt JPEG on one camera, unsupported format on another: counted, reported, node keeps going
    t2 = t1 + 1_000_000_000
    broken = dict(sample.jpeg, CAM_BACK=b"\xff\xd8\xff\xe0 this is not a jpeg")
    pub.inner.publish_set({c: broken[c] for c in NUSCENES_CAMERAS},
                          {c: t2 + pub.offsets[c] for c in NUSCENES_CAMERAS}, with_info=False)
    back = out.wait_status("camera CAM_BACK", lambda s: "decode error" in s.get("message", ""), "decode error")
    assert back["level"] == 1 and "corrupt" in back["message"]
    bad_format = compressed_image_msg(pub.inner.f, sample.jpeg["CAM_FRONT_LEFT"], t2 + 500_000_000, "CAM_FRONT_LEFT",
                                      "bmp")
    pub.image_pubs["CAM_FRONT_LEFT"].publish(bad_format)
    pub.publish({c: sample.jpeg[c] for c in NUSCENES_CAMERAS if c != "CAM_FRONT_LEFT"}, t2 + 500_000_000,
                skip=("CAM_FRONT_LEFT",))
    fl = out.wait_status("camera CAM_FRONT_LEFT", lambda s: "unsupported" in s.get("message", ""), "format error")
    assert "bmp" in fl["message"]

    # 3. image size changes mid-stream (1600x900 -> 800x450): intrinsics rescaled, labels still offline-equal
    t3 = t2 + 1_000_000_000
    small = {c: _encode(cv2.resize(rgb[c], (800, 450), interpolation=cv2.INTER_AREA)) for c in NUSCENES_CAMERAS}
    pub.publish(small, t3)
    np.testing.assert_array_equal(voxel_grid_arrays(out.voxels_at(t3))[0], offline(_as_node_decodes(small)))
    assert out.status("camera CAM_FRONT")["decoded_size"] == "200x113"  # 800x450 decoded at 1/4

    # 4. time jumps backwards (bag loop): state reset, outputs continue
    t4 = BASE_NS - 60_000_000_000
    pub.publish(sample.jpeg, t4)
    out.voxels_at(t4)
    node.wait_for_line(r"stamp went backwards", timeout=TIMEOUT)

    # 5. one camera silent for > camera_timeout: WARN, stale sets; resumes when it returns
    t = t4
    def silent_until_warn():
        nonlocal t
        t += 100_000_000
        pub.publish(sample.jpeg, t, skip=("CAM_BACK",))
        return out.status("camera CAM_BACK").get("message", "").startswith("no image for")
    spin_until(ros_node.executor, silent_until_warn, TIMEOUT, "CAM_BACK silent -> WARN")
    assert out.status("camera CAM_BACK")["level"] == 1
    assert out.status(": node")["level"] == 1
    t5 = t + 1_000_000_000
    pub.publish(sample.jpeg, t5)
    out.voxels_at(t5)
    t = t5

    def back_to_ok():
        nonlocal t
        t += 100_000_000
        pub.publish(sample.jpeg, t)
        return out.status("camera CAM_BACK").get("message") == "receiving"
    spin_until(ros_node.executor, back_to_ok, TIMEOUT, f"CAM_BACK OK again (last: {out.status('camera CAM_BACK')})")
    assert int(out.status(": node")["stale_sets"]) > 0

    # 6. a burst faster than inference: older sets dropped (bounded queue), the newest one is processed
    t6 = t + 1_000_000_000
    for k in range(12):
        pub.publish(sample.jpeg, t6 + k * 83_000_000)
    out.voxels_at(t6 + 11 * 83_000_000)
    out.wait_status(": node", lambda s: int(s.get("dropped", 0)) > 0, "drops counted")
    assert node.returncode is None

    # 7. nobody listens to the outputs: no inference
    out.unsubscribe(["voxels", "points", "grid", "markers"])
    skipped = int(out.status(": node")["skipped_no_subscribers"])
    t7 = t6 + 10_000_000_000

    def skipping():
        nonlocal t7
        t7 += 200_000_000
        pub.publish(sample.jpeg, t7)
        return int(out.status(": node").get("skipped_no_subscribers", 0)) > skipped
    spin_until(ros_node.executor, skipping, TIMEOUT, "inference skipped without subscribers")

    assert node.terminate() == 0, node.describe()
    assert "Traceback" not in node.output(), node.describe()


def test_node_raw_transport_and_engine_fallback(ros_processes, ros_node, checkpoint, sample, offline):
    node = _start_node(ros_processes, checkpoint, "transport:=raw", "engine:=tensorrt")
    out = Outputs(ros_node)
    pub = _Publisher(ros_node, sample, "raw")
    _bring_up(node, ros_node, pub)
    assert re.search(r"engine 'tensorrt' is unavailable here; falling back to 'torch'", node.output())
    small = {c: cv2.resize(sample.rgb(c), (640, 360), interpolation=cv2.INTER_AREA) for c in NUSCENES_CAMERAS}
    expected = offline(small)

    t1 = BASE_NS + 1_000_000_000
    pub.publish(small, t1)  # rgb8
    np.testing.assert_array_equal(voxel_grid_arrays(out.voxels_at(t1))[0], expected)

    t2 = t1 + 1_000_000_000
    for cam in sorted(NUSCENES_CAMERAS, key=lambda c: pub.offsets[c]):
        pub.inner.publish_image(cam, small[cam][:, :, ::-1], t2 + pub.offsets[cam], encoding="bgr8")
    np.testing.assert_array_equal(voxel_grid_arrays(out.voxels_at(t2))[0], expected)

    t3 = t2 + 1_000_000_000
    for cam in sorted(NUSCENES_CAMERAS, key=lambda c: pub.offsets[c]):
        encoding = "yuv422" if cam == "CAM_BACK" else "rgb8"
        pub.inner.publish_image(cam, small[cam], t3 + pub.offsets[cam], encoding=encoding)
    back = out.wait_status("camera CAM_BACK", lambda s: "unsupported Image encoding" in s.get("message", ""),
                           "encoding error")
    assert "yuv422" in back["message"]
    status = out.wait_status(": node", lambda s: s.get("engine") == "torch", "the engine on /diagnostics")
    assert status["engine_device"] == "cpu" and status["engine_torch_threads"] == "1"  # num_threads:=1
    assert node.terminate() == 0, node.describe()


@pytest.mark.parametrize(("params", "code", "message"), [
    (["engine:=warp_drive"], 2, r"parameter 'engine': 'warp_drive' is not one of torch, bitwise, onnxruntime"),
    (["max_camera_time_diff:=-1.0"], 2, r"parameter 'max_camera_time_diff': -1.0 must be > 0"),
    (["checkpoint:=/nonexistent/model.safetensors"], 2, r"parameter 'checkpoint': file not found"),
    (["calibration_file:=/nonexistent/calib.yaml"], 1, r"calibration file not found: /nonexistent/calib.yaml"),
    (["calibration_file:=''"], 1, r"parameter 'calibration_file': required here because tf2_ros is not importable"),
])
def test_node_startup_errors_exit_once_with_a_clear_message(ros_processes, checkpoint, params, code, message):
    node = _start_node(ros_processes, checkpoint, *params)
    assert node.wait(timeout=TIMEOUT) == code, node.describe()
    output = node.output()
    assert re.search(message, output), node.describe()
    assert "Traceback" not in output and len(re.findall(message, output)) == 1


def test_node_corrupt_checkpoint_fails_after_camera_info(ros_processes, ros_node, sample, tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}" + bytes(64))
    node = _start_node(ros_processes, corrupt)
    pub = _Publisher(ros_node, sample, "compressed")
    node.wait_for_line(r"waiting for CameraInfo", timeout=TIMEOUT)
    spin_until(ros_node.executor, lambda: (pub.publish_info_all(BASE_NS), node.returncode)[1] is not None,
               TIMEOUT, "node exit after a corrupt checkpoint")
    assert node.returncode == 1, node.describe()
    assert len(re.findall(r"cannot load the model", node.output())) == 1, node.describe()
    assert "Traceback" not in node.output()
