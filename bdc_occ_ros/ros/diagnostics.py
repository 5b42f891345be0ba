"""Input/output health bookkeeping of the node, without ROS; turned into /diagnostics statuses.

Times are wall-clock seconds (``time.monotonic``) so rates and silence are measured as the node sees
them, also under ``use_sim_time``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from bdc_occ_ros.ros.convert import ERROR, OK, WARN, StatusReport

#: Node states, in start-up order; the two waiting states report WARN, "error" ERROR.
STATES = ("waiting_for_calibration", "waiting_for_camera_info", "loading_engine", "running", "error")
_RATE_WINDOW_S = 5.0
_ERROR_MEMORY_S = 5.0  # a decode error keeps the camera WARN this long


@dataclass
class CameraStats:
    arrivals: deque = field(default_factory=lambda: deque(maxlen=256))  # monotonic times
    received: int = 0
    decode_errors: int = 0
    last_error: str = ""
    last_error_time: float = -1e9
    width: int = 0
    height: int = 0

    def rate_hz(self, now: float) -> float:
        recent = [t for t in self.arrivals if now - t <= _RATE_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)


class NodeMonitor:
    """Thread-safe counters shared by the executor (callbacks) and the worker (inference)."""

    def __init__(self, name: str, cameras: list[str] | tuple[str, ...], camera_timeout_s: float):
        self.name = name
        self.cameras = list(cameras)
        self.camera_timeout_s = camera_timeout_s
        self.state = STATES[0]
        self.state_detail = ""
        self.engine = ""
        self.engine_info: dict[str, str] = {}  # Engine.runtime_info(), reported with an "engine_" prefix
        self.sets_in = 0
        self.frames_out = 0
        self.skipped_no_subscribers = 0
        self.inference_errors = 0
        self.latencies_ms: deque[float] = deque(maxlen=200)
        self.last_timings_ms: dict[str, float] = {}
        self._cams = {c: CameraStats() for c in self.cameras}
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def set_state(self, state: str, detail: str = "") -> None:
        assert state in STATES, state
        with self._lock:
            if state == "running" and self.state != "running":
                self._started = time.monotonic()  # silence is measured from the image subscriptions on
            self.state, self.state_detail = state, detail

    def image_received(self, camera: str) -> None:
        with self._lock:
            stats = self._cams[camera]
            stats.received += 1
            stats.arrivals.append(time.monotonic())

    def image_decoded(self, camera: str, width: int, height: int) -> None:
        with self._lock:
            self._cams[camera].width, self._cams[camera].height = width, height

    def decode_failed(self, camera: str, message: str) -> None:
        with self._lock:
            stats = self._cams[camera]
            stats.decode_errors += 1
            stats.last_error, stats.last_error_time = message, time.monotonic()

    def frame_published(self, latency_ms: float, timings_ms: dict[str, float]) -> None:
        with self._lock:
            self.frames_out += 1
            self.latencies_ms.append(latency_ms)
            self.last_timings_ms = dict(timings_ms)

    def silent_cameras(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            return [c for c in self.cameras if self._silence(self._cams[c], now) > self.camera_timeout_s]

    def _silence(self, stats: CameraStats, now: float) -> float:
        return now - (stats.arrivals[-1] if stats.arrivals else self._started)

    def reports(self, counters: dict[str, int]) -> list[StatusReport]:
        """One status for the node and one per camera; ``counters`` adds sync/worker counts (drops...)."""
        now = time.monotonic()
        with self._lock:
            level = {"running": OK, "loading_engine": OK, "error": ERROR}.get(self.state, WARN)
            lat = np.array(self.latencies_ms) if self.latencies_ms else None
            values = {
                "state": self.state,
                "engine": self.engine,
                **{f"engine_{k}": v for k, v in self.engine_info.items()},
                "sets_in": self.sets_in,
                "frames_out": self.frames_out,
                "skipped_no_subscribers": self.skipped_no_subscribers,
                "inference_errors": self.inference_errors,
                **counters,
                "latency_p50_ms": f"{np.percentile(lat, 50):.1f}" if lat is not None else "n/a",
                "latency_p95_ms": f"{np.percentile(lat, 95):.1f}" if lat is not None else "n/a",
            }
            silent = [c for c in self.cameras if self._silence(self._cams[c], now) > self.camera_timeout_s]
            if level == OK and self.state == "running" and silent:
                level = WARN
            message = self.state + (f": {self.state_detail}" if self.state_detail else "")
            if self.state == "running" and silent:
                message += f"; no images from {silent}"
            node = StatusReport(level, f"{self.name}: node", message, self.name, {k: str(v) for k, v in values.items()})
            return [node] + [self._camera_report(cam, now) for cam in self.cameras]

    def _camera_report(self, cam: str, now: float) -> StatusReport:
        stats = self._cams[cam]
        silence = self._silence(stats, now)
        values = {
            "rate_hz": f"{stats.rate_hz(now):.2f}",
            "received": str(stats.received),
            "decode_errors": str(stats.decode_errors),
            "last_image_age_s": f"{silence:.2f}" if stats.arrivals else "never",
            "decoded_size": f"{stats.width}x{stats.height}",
        }
        if not stats.arrivals:
            late = self.state == "running" and silence > self.camera_timeout_s
            level, message = (WARN if late else OK), "no image received yet"
        elif silence > self.camera_timeout_s:
            level, message = WARN, f"no image for {silence:.1f} s"
        elif now - stats.last_error_time < _ERROR_MEMORY_S:
            level, message = WARN, f"decode error: {stats.last_error}"
        else:
            level, message = OK, "receiving"
        if stats.last_error:
            values["last_decode_error"] = stats.last_error
        return StatusReport(level, f"{self.name}: camera {cam}", message, self.name, values)
