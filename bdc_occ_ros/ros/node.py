"""``bdc_occ_node``: six camera streams in, semantic occupancy and detections out.

Start-up is Autoware-style two-phase (not a lifecycle node): the node validates its parameters,
loads the calibration YAML (or, where tf2_ros is importable and no ``calibration_file`` is given, looks
camera extrinsics up in tf2), subscribes to CameraInfo only and waits for all cameras ("waiting for
CameraInfo: [...]", throttled); then it loads the engine and only then subscribes to the images.

Per frame: image callbacks only stamp-sort the undecoded messages into :class:`AnchorSync`; a complete
set goes to a worker thread with a queue of one (newest wins, replaced sets are counted as dropped),
which decodes the six images in parallel, runs :class:`OccupancyPipeline` and publishes what
:func:`output_messages` builds. Nothing is computed while no output topic has a subscriber.

Errors: invalid parameters, an unusable calibration or a missing/corrupt checkpoint log one clear
error (with a final ERROR on /diagnostics) and the node exits with status 2 (parameters) or 1 (files);
it never crash-loops by itself. Per-frame problems (corrupt JPEG, unsupported encoding, inference
errors) are counted, reported on /diagnostics and the node keeps running.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from bdc_occ_ros.geometry import CalibrationError, RigCalibration
from bdc_occ_ros.openmp import load_system_openmp
from bdc_occ_ros.ros.convert import (
    OUTPUT_TOPICS,
    OUTPUT_TYPES,
    RclpyFactory,
    diagnostic_array_msg,
    output_messages,
    stamp_to_ns,
)
from bdc_occ_ros.ros.decode import DecodeError, decode_for_input, decode_raw
from bdc_occ_ros.ros.diagnostics import NodeMonitor
from bdc_occ_ros.ros.params import NodeParams, ParameterError
from bdc_occ_ros.ros.sync import AnchorSync, FrameSet
from bdc_occ_ros.ros.worker import LatestWorker

NODE_NAME = "bdc_occ"
EXIT_PARAMETERS = 2
EXIT_STARTUP = 1
_WAIT_LOG_PERIOD_S = 5.0
#: Outputs whose subscribers make the node compute (latency and /diagnostics alone do not).
_DEMAND_KEYS = ("voxels", "points", "grid", "objects", "markers")


class StartupError(RuntimeError):
    """A start-up problem the node cannot recover from (calibration, checkpoint); exits with EXIT_STARTUP."""


class BdcOccNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.exit_code: int | None = None
        self.params = self._read_parameters()  # ParameterError propagates: main() reports and exits
        p = self.params
        self.factory = RclpyFactory()
        self.monitor = NodeMonitor(self.get_name(), p.cameras, p.camera_timeout)
        self.sync = AnchorSync(p.cameras, p.anchor_camera, p.max_camera_time_diff)
        self._sync_lock = threading.Lock()
        self._infos: dict[str, tuple[np.ndarray, int, int, str]] = {}  # camera -> (K, width, height, frame_id)
        self._rig: RigCalibration | None = None
        self._rig_changed = False
        self._rig_lock = threading.Lock()
        self.pipeline = None
        self.worker: LatestWorker[FrameSet] | None = None
        self._decoder = ThreadPoolExecutor(max_workers=min(len(p.cameras), 6), thread_name_prefix="bdc_occ_decode")

        out_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.publishers_ = {
            key: self.create_publisher(self._msg_class(OUTPUT_TYPES[key]), f"~/{topic}", out_qos)
            for key, topic in OUTPUT_TOPICS.items()
            if self.factory.has(OUTPUT_TYPES[key])
        }
        if "objects" not in self.publishers_:
            self.get_logger().info("vision_msgs is not importable: ~/objects (Detection3DArray) is not published")
        self._diag_pub = self.create_publisher(self._msg_class("diagnostic_msgs/msg/DiagnosticArray"),
                                               "/diagnostics", 10)
        self.create_timer(p.diagnostics_period, self._guard(self._publish_diagnostics))

        self.model_config, self.checkpoint = p.model_paths()  # ParameterError when a file is missing
        self._extrinsics = self._load_extrinsics()  # StartupError when no calibration source exists
        self.monitor.set_state("waiting_for_camera_info")
        info_cls = self._msg_class("sensor_msgs/msg/CameraInfo")
        for cam in p.cameras if p.use_camera_info else ():
            self.create_subscription(info_cls, p.camera_info_topic_for(cam),
                                     self._guard(lambda msg, cam=cam: self._on_camera_info(cam, msg)),
                                     qos_profile_sensor_data)
        self._init_timer = self.create_timer(0.1, self._guard(self._check_initialization))

    # --- parameters ---------------------------------------------------------------------------
    def _read_parameters(self) -> NodeParams:
        defaults = NodeParams()
        values = {}
        for f in fields(NodeParams):
            default = getattr(defaults, f.name)
            descriptor = ParameterDescriptor(read_only=True, dynamic_typing=True)
            declared = self.declare_parameter(f.name, list(default) if isinstance(default, tuple) else default,
                                              descriptor)
            values[f.name] = _coerce(f.name, declared.value, default)
        return NodeParams.from_dict(values)

    # --- calibration --------------------------------------------------------------------------
    def _load_extrinsics(self) -> RigCalibration | None:
        """The calibration YAML (extrinsics, maybe intrinsics), or None when tf2 will provide extrinsics."""
        p = self.params
        if p.calibration_file:
            try:
                rig = RigCalibration.load(p.calibration_file)
                rig.ordered(p.cameras)
            except CalibrationError as exc:
                raise StartupError(f"parameter 'calibration_file': {exc}") from exc
            no_k = [c for c in p.cameras if rig.cameras[c].intrinsics is None]
            if not p.use_camera_info and no_k:
                raise StartupError(f"parameter 'calibration_file': use_camera_info is false but {no_k} have no "
                                   "intrinsics in it")
            if rig.base_frame != p.base_frame:
                raise StartupError(f"parameter 'calibration_file': {p.calibration_file} is expressed in "
                                   f"'{rig.base_frame}' but parameter 'base_frame' is '{p.base_frame}'")
            self.get_logger().info(f"calibration from {p.calibration_file} ({len(rig.cameras)} cameras)")
            return rig
        try:
            import tf2_ros
        except ImportError:
            raise StartupError(
                "parameter 'calibration_file': required here because tf2_ros is not importable (ROS 2 from PyPI "
                "wheels has no tf2); give a calibration YAML, e.g. calibration_file:=config/calibration/nuscenes.yaml"
            ) from None
        self._tf_buffer = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
        return None

    def _lookup_tf(self, frame_id: str) -> np.ndarray | None:
        """cam_to_base (4, 4) from tf2, or None while the transform is not available yet."""
        from rclpy.time import Time

        from bdc_occ_ros.geometry import make_transform, quat_to_matrix

        try:
            tf = self._tf_buffer.lookup_transform(self.params.base_frame, frame_id, Time())
        except Exception:  # tf2 raises several exception types while waiting; all mean "not yet"
            return None
        q, t = tf.transform.rotation, tf.transform.translation
        return make_transform(quat_to_matrix((q.w, q.x, q.y, q.z)), (t.x, t.y, t.z))

    def _build_rig(self) -> tuple[RigCalibration | None, list[str]]:
        """The rig from CameraInfo intrinsics + extrinsics; (None, what is missing) while incomplete."""
        from bdc_occ_ros.geometry import CameraCalibration

        p = self.params
        if not p.use_camera_info:  # intrinsics and extrinsics both from the calibration file
            return self._extrinsics, []
        missing_info = [c for c in p.cameras if c not in self._infos]
        if missing_info:
            return None, [f"CameraInfo: {missing_info} (topics {[p.camera_info_topic_for(c) for c in missing_info]})"]
        cams, missing_tf = {}, []
        for cam in p.cameras:
            k, width, height, frame_id = self._infos[cam]
            if self._extrinsics is not None:
                base = self._extrinsics.cameras[cam]
                cams[cam] = base.with_intrinsics(k, width, height)
                continue
            cam_to_base = self._lookup_tf(frame_id)
            if cam_to_base is None:
                missing_tf.append(f"{p.base_frame} <- {frame_id}")
                continue
            cams[cam] = CameraCalibration(cam, frame_id, cam_to_base, width, height, k)
        if missing_tf:
            return None, [f"TF: {missing_tf}"]
        return RigCalibration(p.base_frame, cams), []

    def _on_camera_info(self, camera: str, msg) -> None:
        k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        if k[0, 0] <= 0 or k[1, 1] <= 0 or msg.width == 0 or msg.height == 0:
            self.get_logger().warning(f"{camera}: ignoring CameraInfo without intrinsics/size "
                                      f"(K={k.ravel().tolist()}, {msg.width}x{msg.height})",
                                      throttle_duration_sec=_WAIT_LOG_PERIOD_S)
            return
        entry = (k, int(msg.width), int(msg.height), msg.header.frame_id or camera)
        old = self._infos.get(camera)
        if old is not None and np.allclose(old[0], k) and old[1:] == entry[1:]:
            return
        self._infos[camera] = entry
        if self.pipeline is not None:  # running: recalibrate before the next frame (ranks recomputed)
            rig, _ = self._build_rig()
            if rig is not None:
                with self._rig_lock:
                    self._rig, self._rig_changed = rig, True
                self.get_logger().info(f"{camera}: CameraInfo changed, calibration updated")

    # --- start-up -----------------------------------------------------------------------------
    def _check_initialization(self) -> None:
        rig, missing = self._build_rig()
        if rig is None:
            self.monitor.set_state("waiting_for_camera_info", "; ".join(missing))
            self.get_logger().info(f"waiting for {'; '.join(missing)}", throttle_duration_sec=_WAIT_LOG_PERIOD_S)
            return
        self._init_timer.cancel()
        self.monitor.set_state("loading_engine")
        p = self.params
        self.get_logger().info(f"all CameraInfo received; loading engine '{p.engine}' on {p.device}: "
                               f"{self.model_config} + {self.checkpoint}")
        self.pipeline = self._load_pipeline(rig)
        self._rig = rig
        self.worker = LatestWorker(self._process_guarded)
        image_cls = self._msg_class("sensor_msgs/msg/CompressedImage" if p.transport == "compressed"
                                    else "sensor_msgs/msg/Image")
        for cam in p.cameras:
            self.create_subscription(image_cls, p.image_topic_for(cam),
                                     self._guard(lambda msg, cam=cam: self._on_image(cam, msg)),
                                     qos_profile_sensor_data)
        self.monitor.set_state("running")
        topics = [p.image_topic_for(c) for c in p.cameras]
        self.get_logger().info(f"running: engine {self.monitor.engine}, subscribed to {topics}")

    def _load_pipeline(self, rig: RigCalibration):
        from bdc_occ_ros.pipeline import OccupancyPipeline

        p = self.params
        if p.num_threads:
            import torch

            torch.set_num_threads(p.num_threads)
        try:
            pipeline = OccupancyPipeline(self.model_config, self.checkpoint, engine=p.engine, device=p.device,
                                         camera_names=p.cameras, score_threshold=p.score_threshold)
            pipeline.set_calibration(rig)
        except Exception as exc:  # any failure to load the model is fatal and reported once
            raise StartupError(f"cannot load the model (model_config {self.model_config}, checkpoint "
                               f"{self.checkpoint}, engine {p.engine}): {type(exc).__name__}: {exc}") from exc
        self.monitor.engine = pipeline.engine.name
        self.monitor.engine_info = pipeline.engine.runtime_info()
        if pipeline.engine.name != p.engine:
            self.get_logger().warning(f"engine '{p.engine}' is unavailable here; falling back to "
                                      f"'{pipeline.engine.name}'")
        return pipeline

    # --- per frame ----------------------------------------------------------------------------
    def _on_image(self, camera: str, msg) -> None:
        self.monitor.image_received(camera)
        with self._sync_lock:
            resets = self.sync.resets
            frame_set = self.sync.add(camera, stamp_to_ns(msg.header.stamp), msg)
            if self.sync.resets != resets:
                self.get_logger().warning(f"{camera}: image stamp went backwards (bag loop?): sync state reset")
        if frame_set is not None:
            self.monitor.sets_in += 1
            self.worker.submit(frame_set)

    def _has_demand(self) -> bool:
        return any(self.publishers_[k].get_subscription_count() > 0 for k in _DEMAND_KEYS if k in self.publishers_)

    def _process_guarded(self, frame_set: FrameSet) -> None:
        """The worker's entry: errors are counted and logged; none while shutting down (context gone)."""
        try:
            self._process(frame_set)
        except Exception as exc:
            if not self.context.ok():
                return  # Ctrl-C while a frame was in flight: publishers are gone, nothing to report
            self.monitor.inference_errors += 1
            self.get_logger().error(f"frame {frame_set.stamp_ns}: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=5.0)

    def _process(self, frame_set: FrameSet) -> None:
        """Worker thread: decode, infer, convert, publish one synchronised set."""
        if not self._has_demand():
            self.monitor.skipped_no_subscribers += 1
            return
        t0 = time.perf_counter()
        images = self._decode(frame_set)
        if images is None:
            return
        t_decode = time.perf_counter()
        with self._rig_lock:
            if self._rig_changed:
                self.pipeline.set_calibration(self._rig)
                self._rig_changed = False
        result = self.pipeline(images, stamp_ns=frame_set.stamp_ns)  # errors: counted by _process_guarded
        t_infer = time.perf_counter()
        wanted = [k for k, pub in self.publishers_.items() if k == "latency" or pub.get_subscription_count() > 0]
        messages = output_messages(self.factory, result, self.params.projection, self.params.publish_free,
                                   keys=[k for k in wanted if k != "latency"])
        t_convert = time.perf_counter()
        for key, msg in messages.items():
            self.publishers_[key].publish(msg)
        t_publish = time.perf_counter()
        latency_ms = (self.get_clock().now().nanoseconds - frame_set.stamp_ns) / 1e6
        extra = {
            "decode": (t_decode - t0) * 1e3,
            "pipeline": (t_infer - t_decode) * 1e3,
            "convert": (t_convert - t_infer) * 1e3,
            "publish": (t_publish - t_convert) * 1e3,
            "total": (t_publish - t0) * 1e3,
            "stamp_to_publish": latency_ms,
        }
        latency = output_messages(self.factory, result, extra_ms=extra, keys=["latency"])["latency"]
        self.publishers_["latency"].publish(latency)
        self.monitor.frame_published(latency_ms, {**result.timings_ms, **extra})

    def _decode(self, frame_set: FrameSet) -> list[np.ndarray] | None:
        """RGB images of the set (decoded in parallel), or None after reporting a bad frame."""
        compressed = self.params.transport == "compressed"

        input_size, reduction = self.pipeline.input_size, self.params.decode_reduction

        def one(msg):
            if compressed:
                return decode_for_input(msg.format, msg.data, input_size, reduction)
            return decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data)

        images = []
        futures = [self._decoder.submit(one, f.payload) for f in frame_set.frames]
        for cam, future in zip(self.params.cameras, futures, strict=True):
            try:
                img = future.result()
            except DecodeError as exc:
                self.monitor.decode_failed(cam, str(exc))
                self.get_logger().warning(f"{cam}: {exc}; frame skipped", throttle_duration_sec=2.0)
                images = None
                continue
            self.monitor.image_decoded(cam, img.shape[1], img.shape[0])
            if images is not None:
                images.append(img)
        return images

    # --- diagnostics ----------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        with self._sync_lock:
            counters = {"stale_sets": self.sync.stale_sets, "time_resets": self.sync.resets}
        counters["dropped"] = self.worker.dropped if self.worker is not None else 0
        msg = diagnostic_array_msg(self.factory, self.get_clock().now().nanoseconds, self.monitor.reports(counters))
        self._diag_pub.publish(msg)

    # --- plumbing -----------------------------------------------------------------------------
    def _msg_class(self, msgtype: str) -> type:
        return self.factory.message_class(msgtype)

    def _guard(self, fn):
        """Wrap a callback: no exception escapes into the executor. StartupError ends the node."""

        def wrapped(*args):
            try:
                fn(*args)
            except StartupError as exc:
                self.fail(str(exc))
            except Exception as exc:
                self.get_logger().error(f"{getattr(fn, '__name__', 'callback')}: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=5.0)

        return wrapped

    def fail(self, message: str) -> None:
        """Report a fatal start-up error once (log + ERROR diagnostics) and ask main() to exit."""
        self.get_logger().fatal(message)
        self.monitor.set_state("error", message)
        self._publish_diagnostics()
        self.exit_code = EXIT_STARTUP

    def shutdown(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self._decoder.shutdown(wait=False)


def _coerce(name: str, value, default):
    """A parameter value in the type of its default (ints for floats, lists for tuples); named errors."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, tuple):
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ParameterError(f"parameter '{name}': {value!r} has the wrong type; expected {type(default).__name__}"
                             f" like the default {default!r}")
    return value


#: How long a failed take may wait for rclpy's signal thread to shut the context down before it counts as an error.
SHUTDOWN_GRACE_S = 2.0


def spin_until_stopped(
    executor, node, ok: Callable[[], bool] = rclpy.ok, shutdown_grace_s: float = SHUTDOWN_GRACE_S
) -> int:
    """Spin until the node sets an exit code or rclpy shuts down (SIGINT/SIGTERM); returns the exit code.

    A signal can arrive while rclpy is taking a message, and rclpy may then fail that take (seen on the
    loaded CI machine: ``RuntimeError: Unable to convert call argument '0' to Python object``, presumably the
    signal's KeyboardInterrupt landing in the call's argument conversion). rclpy shuts its context down from a signal
    thread, and CI saw the failure come first, so it waits up to ``shutdown_grace_s`` for the shutdown. Once rclpy
    has shut down, such an error is part of a clean stop; if it does not, the error is real and propagates.
    """
    while ok() and node.exit_code is None:
        try:
            executor.spin_once(timeout_sec=0.1)
        except Exception:
            deadline = time.monotonic() + shutdown_grace_s
            while ok() and time.monotonic() < deadline:
                time.sleep(0.01)
            if ok():
                raise
            break
    return node.exit_code or 0


def main(argv: list[str] | None = None) -> int:
    load_system_openmp()  # before the engine imports torch
    try:
        rclpy.init(args=argv)
    except Exception as exc:  # rcl rejects malformed --ros-args (e.g. "-p name:=" without a value)
        print(f"{NODE_NAME}: invalid command line arguments: {exc}", file=sys.stderr)
        return EXIT_PARAMETERS
    node = None
    try:
        try:
            node = BdcOccNode()
        except ParameterError as exc:
            rclpy.logging.get_logger(NODE_NAME).fatal(f"invalid parameter: {exc}")
            return EXIT_PARAMETERS
        except StartupError as exc:
            rclpy.logging.get_logger(NODE_NAME).fatal(str(exc))
            return EXIT_STARTUP
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        return spin_until_stopped(executor, node)
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
