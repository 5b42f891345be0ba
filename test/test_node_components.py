"""The node's ROS-free parts: anchor sync, the newest-wins worker, image decoding, parameter validation."""

from __future__ import annotations

import re
import threading
import time

import cv2
import numpy as np
import pytest
import yaml
from node_support import REPO_ROOT

from bdc_occ_ros.ros.decode import (
    DecodeError,
    auto_reduction,
    decode_compressed,
    decode_for_input,
    decode_raw,
    jpeg_size,
)
from bdc_occ_ros.ros.diagnostics import NodeMonitor
from bdc_occ_ros.ros.params import NodeParams, ParameterError
from bdc_occ_ros.ros.sync import AnchorSync
from bdc_occ_ros.ros.worker import LatestWorker

CAMS = ["FL", "F", "FR", "BL", "B", "BR"]
#: Per-camera offsets (ms) of nuScenes sample 0 relative to CAM_FRONT (42.5 ms spread).
OFFSETS_MS = {"FL": -7.6, "F": 0.0, "FR": 7.9, "BR": 15.4, "B": 25.1, "BL": 35.0}
MS = 1_000_000


def _play(sync: AnchorSync, sets: int, period_ms: float = 1000 / 12, skip=lambda k, cam: False):
    """Feed frames in stamp order as a rig at 12 Hz would; returns the emitted sets as {cam: set index}."""
    events = sorted((1000 + k * period_ms + off, k, cam) for k in range(sets) for cam, off in OFFSETS_MS.items())
    out = []
    for t, k, cam in events:
        if skip(k, cam):
            continue
        fs = sync.add(cam, int(t * MS), (cam, k))
        if fs is not None:
            out.append((fs.stamp_ns, {f.payload[0]: f.payload[1] for f in fs.frames}))
    return out


def test_sync_matches_the_frames_of_one_set():
    sync = AnchorSync(CAMS, "F", 0.1)
    emitted = _play(sync, 6)
    assert len(emitted) == 6
    for k, (stamp, frames) in enumerate(emitted):
        assert stamp == int((1000 + k * 1000 / 12) * MS)  # the anchor's stamp
        assert set(frames.values()) == {k}, frames  # every camera contributes the frame of the same set
    assert sync.stale_sets == 0


def test_sync_silent_camera_counts_stale_sets_and_resumes():
    sync = AnchorSync(CAMS, "F", 0.1)
    emitted = _play(sync, 12, skip=lambda k, cam: cam == "B" and 3 <= k < 9)
    indices = [frames["F"] for _, frames in emitted]
    assert all(k < 3 or k >= 9 for k in indices)
    assert 9 in indices and 11 in indices
    assert sync.stale_sets >= 4


def test_sync_time_going_backwards_resets():
    sync = AnchorSync(CAMS, "F", 0.1)
    _play(sync, 3)
    emitted = _play(sync, 2)  # the first sets again: a bag loop
    assert sync.resets == 1
    assert len(emitted) == 2 and set(emitted[0][1].values()) == {0}


def test_sync_one_sample_republished_with_its_own_stamps_forms_one_set():
    sync = AnchorSync(CAMS, "F", 0.1)  # as `sample_publisher --original-stamps`: every repeat has the same stamps
    emitted = [fs for _ in range(3) for cam, off in sorted(OFFSETS_MS.items(), key=lambda kv: kv[1])
               if (fs := sync.add(cam, int((1000 + off) * MS), cam)) is not None]
    assert len(emitted) == 1 and [f.payload for f in emitted[0].frames] == CAMS


def test_sync_rejects_sets_wider_than_max_diff():
    sync = AnchorSync(CAMS, "F", 0.02)  # BL is 35 ms after F: never within 20 ms
    assert _play(sync, 5) == []


def test_worker_newest_wins_and_counts_drops():
    release = threading.Event()
    seen = []

    def handle(item):
        release.wait(5)
        seen.append(item)

    worker = LatestWorker(handle)
    try:
        worker.submit(0)
        time.sleep(0.2)  # the worker is now blocked inside handle(0)
        for i in range(1, 6):
            worker.submit(i)  # 1..4 are replaced while waiting: dropped
        release.set()
        deadline = time.monotonic() + 5
        while not worker.idle and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == [0, 5]
        assert worker.dropped == 4
    finally:
        worker.stop()


def test_worker_survives_exceptions():
    seen = []

    def handle(item):
        if item == "bad":
            raise RuntimeError("boom")
        seen.append(item)

    worker = LatestWorker(handle)
    try:
        worker.submit("bad")
        deadline = time.monotonic() + 5
        while worker.processed < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        worker.submit("good")
        while worker.processed < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == ["good"]
    finally:
        worker.stop()


def test_decode_compressed_and_raw():
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[:, :, 0] = 200  # red
    _, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(decode_compressed("png", png.tobytes()), rgb)
    np.testing.assert_array_equal(decode_raw("rgb8", 30, 40, 120, rgb.tobytes()), rgb)
    np.testing.assert_array_equal(decode_raw("bgr8", 30, 40, 120, rgb[:, :, ::-1].tobytes()), rgb)
    padded = np.zeros((30, 128), np.uint8)
    padded[:, :120] = rgb.reshape(30, 120)
    np.testing.assert_array_equal(decode_raw("rgb8", 30, 40, 128, padded.tobytes()), rgb)  # row padding
    grey = decode_raw("mono8", 30, 40, 40, np.full(1200, 7, np.uint8).tobytes())
    assert grey.shape == (30, 40, 3) and grey.max() == 7
    with pytest.raises(DecodeError, match="corrupt jpeg"):
        decode_compressed("jpeg", b"\xff\xd8 not a jpeg")
    with pytest.raises(DecodeError, match="unsupported CompressedImage format 'bmp'"):
        decode_compressed("bmp", png.tobytes())
    with pytest.raises(DecodeError, match="unsupported Image encoding 'yuv422'"):
        decode_raw("yuv422", 30, 40, 80, bytes(2400))
    with pytest.raises(DecodeError, match="expected 3600"):
        decode_raw("rgb8", 30, 40, 120, bytes(100))


def test_auto_reduction_keeps_the_network_input_covered():
    assert auto_reduction(1600, 900, 352, 128) == 4  # edge model
    assert auto_reduction(1600, 900, 704, 256) == 2  # R50 model
    assert auto_reduction(800, 450, 704, 256) == 1
    assert auto_reduction(320, 180, 704, 256) == 1  # upscaling: never reduce
    jpeg = cv2.imencode(".jpg", np.full((96, 160, 3), 128, np.uint8))[1].tobytes()
    assert decode_compressed("jpeg", jpeg, 4).shape == (24, 40, 3)
    assert jpeg_size(jpeg) == (160, 96) and jpeg_size(b"\xff\xd8 broken") is None
    assert decode_for_input("jpeg", jpeg, (24, 40)).shape == (24, 40, 3)  # auto: 1/4 still covers 40x24
    assert decode_for_input("jpeg", jpeg, (24, 40), reduction=1).shape == (96, 160, 3)


def test_shipped_param_file_equals_the_defaults():
    data = yaml.safe_load((REPO_ROOT / "config" / "bdc_occ.param.yaml").read_text())
    assert NodeParams.from_dict(data["/**"]["ros__parameters"]) == NodeParams()


@pytest.mark.parametrize(("values", "message"), [
    ({"engine": "cuda_magic"}, "parameter 'engine': 'cuda_magic' is not one of torch, bitwise, onnxruntime, tensorrt"),
    ({"device": "gpu"}, "parameter 'device'"),
    ({"transport": "h264"}, "parameter 'transport': 'h264' is not one of compressed, raw"),
    ({"anchor_camera": "CAM_TOP"}, "parameter 'anchor_camera'"),
    ({"max_camera_time_diff": 0.0}, "parameter 'max_camera_time_diff'"),
    ({"score_threshold": 1.5}, "parameter 'score_threshold'"),
    ({"grid_z_min": 3.0}, "grid_z_min"),
    ({"obstacle_classes": ["car", "tree"]}, "parameter 'obstacle_classes': 'tree' is not one of"),
    ({"image_topic": "/cam/image"}, "parameter 'image_topic'"),
    ({"cameras": []}, "parameter 'cameras'"),
    ({"use_camera_info": False}, "parameter 'use_camera_info'"),
    ({"colour": "red"}, "unknown parameter"),
])
def test_invalid_parameters_are_named(values, message):
    with pytest.raises(ParameterError, match=re.escape(message)):
        NodeParams.from_dict(values)


def test_topics_and_model_paths(tmp_path):
    p = NodeParams()
    assert p.image_topic_for("CAM_FRONT") == "/CAM_FRONT/image_rect_compressed"
    assert NodeParams(transport="raw").image_topic_for("CAM_FRONT") == "/CAM_FRONT/image_rect"
    assert NodeParams(image_topic="{camera_lower}/raw").image_topic_for("CAM_BACK") == "cam_back/raw"
    with pytest.raises(ParameterError, match="parameter 'checkpoint': file not found"):
        NodeParams(checkpoint=str(tmp_path / "missing.safetensors")).model_paths()
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"x")
    assert NodeParams(checkpoint=str(ckpt)).model_paths() == (None, ckpt)  # config embedded in the checkpoint


def test_monitor_reports_silent_camera_as_warn():
    monitor = NodeMonitor("bdc_occ", ["A", "B"], camera_timeout_s=0.05)
    monitor.set_state("running")
    monitor.image_received("A")
    monitor.image_received("B")
    time.sleep(0.1)
    monitor.image_received("A")
    reports = {r.name: r for r in monitor.reports({"dropped": 3})}
    assert reports["bdc_occ: camera A"].level == 0
    assert reports["bdc_occ: camera B"].level == 1 and "no image for" in reports["bdc_occ: camera B"].message
    assert reports["bdc_occ: node"].level == 1 and reports["bdc_occ: node"].values["dropped"] == "3"
    monitor.decode_failed("A", "corrupt jpeg image")
    assert "decode error" in {r.name: r for r in monitor.reports({})}["bdc_occ: camera A"].message


def test_monitor_reports_the_engine_runtime():
    monitor = NodeMonitor("bdc_occ", ["A"], camera_timeout_s=1.0)
    monitor.engine, monitor.engine_info = "bitwise", {"threading_layer": "workqueue", "kernel_threads": "1"}
    values = {r.name: r for r in monitor.reports({})}["bdc_occ: node"].values
    assert values["engine"] == "bitwise" and values["engine_threading_layer"] == "workqueue"
    assert values["engine_kernel_threads"] == "1"


class _FakeExecutor:
    """spin_once runs the scripted steps: a callable is called (it may raise), then the step is consumed."""

    def __init__(self, steps) -> None:
        self.steps = list(steps)

    def spin_once(self, timeout_sec: float) -> None:
        self.steps.pop(0)()


class _FakeNode:
    exit_code: int | None = None


def test_spin_stops_cleanly_when_a_take_fails_during_shutdown() -> None:
    from bdc_occ_ros.ros.node import spin_until_stopped

    state = {"ok": True}

    def take_fails_as_the_signal_lands() -> None:
        state["ok"] = False  # rclpy's signal handler shut the context down ...
        raise RuntimeError("Unable to convert call argument '0' to Python object")  # ... mid-take

    executor = _FakeExecutor([lambda: None, take_fails_as_the_signal_lands])
    assert spin_until_stopped(executor, _FakeNode(), ok=lambda: state["ok"]) == 0
    assert executor.steps == []


def test_spin_stops_cleanly_when_the_shutdown_follows_the_failed_take() -> None:
    # rclpy's signal thread shuts the context down a moment after the interrupted take failed
    from bdc_occ_ros.ros.node import spin_until_stopped

    checks = {"after_failure": 0}
    failed = threading.Event()

    def ok() -> bool:
        if failed.is_set():
            checks["after_failure"] += 1
        return checks["after_failure"] < 3

    def take_fails_before_the_shutdown() -> None:
        failed.set()
        raise RuntimeError("Unable to convert call argument '0' to Python object")

    executor = _FakeExecutor([lambda: None, take_fails_before_the_shutdown])
    assert spin_until_stopped(executor, _FakeNode(), ok=ok, shutdown_grace_s=5.0) == 0
    assert checks["after_failure"] >= 3  # it waited for the shutdown instead of raising


def test_spin_propagates_errors_while_running_and_returns_the_exit_code() -> None:
    from bdc_occ_ros.ros.node import spin_until_stopped

    def broken() -> None:
        raise RuntimeError("a real error")

    with pytest.raises(RuntimeError, match="a real error"):
        spin_until_stopped(_FakeExecutor([broken]), _FakeNode(), ok=lambda: True, shutdown_grace_s=0.05)
    node = _FakeNode()

    def stop() -> None:
        node.exit_code = 3

    assert spin_until_stopped(_FakeExecutor([stop]), node, ok=lambda: True) == 3
