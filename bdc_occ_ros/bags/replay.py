"""Offline replay: the node's pipeline over a camera bag as fast as possible, without DDS.

The same steps as ``bdc_occ_node`` in the same order: anchor-camera sync (``ros/sync.py``) on the bag's
image stamps, JPEG decode (``ros/decode.py``), ``OccupancyPipeline``, and every output message built by
``ros/convert.py`` (rosbags classes instead of rclpy). Outputs go to the node's topics under
``/<node name>/`` with log time = the anchor stamp; the input images, CameraInfo, ``/tf_static`` and
ground truth are copied unchanged, so the output bag alone opens in Foxglove or plays into RViz.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bdc_occ_ros.bags.io import BagMessage, BagWriter, bag_topics, offered_qos, read_messages
from bdc_occ_ros.bags.layout import GROUND_TRUTH_TOPIC, TF_STATIC_TOPIC, rig_from_messages
from bdc_occ_ros.geometry import RigCalibration
from bdc_occ_ros.result import OccupancyResult
from bdc_occ_ros.ros.convert import (
    OUTPUT_TOPICS,
    RosbagsFactory,
    diagnostic_array_msg,
    output_messages,
    stamp_to_ns,
    voxel_grid_arrays,
)
from bdc_occ_ros.ros.decode import DecodeError, decode_for_input
from bdc_occ_ros.ros.diagnostics import NodeMonitor
from bdc_occ_ros.ros.params import NodeParams
from bdc_occ_ros.ros.sync import AnchorSync, FrameSet

NODE_NAME = "bdc_occ"
DIAGNOSTICS_TOPIC = "/diagnostics"


def output_topic(key: str, node: str = NODE_NAME) -> str:
    """Absolute topic of a node output key of ``OUTPUT_TOPICS`` (``voxels`` -> ``/bdc_occ/occupancy/voxels``)."""
    return f"/{node}/{OUTPUT_TOPICS[key]}"


@dataclass
class ReplayReport:
    frames_in: int = 0  # anchor-camera images read
    frames_out: int = 0  # camera sets run through the pipeline
    stale_sets: int = 0  # anchor images that never formed a complete set
    decode_errors: int = 0
    gt_frames: int = 0  # outputs that had ground truth in the bag
    wall_s: float = 0.0
    engine: str = ""
    topics: dict[str, int] = field(default_factory=dict)  # output bag: topic -> messages


class _Calibration:
    """Extrinsics (a calibration file, else the bag's /tf_static) + the latest CameraInfo of every camera."""

    def __init__(self, cameras: list[str], fixed: RigCalibration | None):
        self.cameras = cameras
        self.fixed = fixed
        self.tf = None
        self.infos: dict[str, object] = {}
        self._key: tuple | None = None

    def rig(self) -> tuple[RigCalibration | None, bool]:
        """(current rig or None while incomplete, whether it changed since the last call)."""
        if self.fixed is None and self.tf is None:
            return None, False
        key = tuple((c, tuple(np.asarray(i.k).ravel()), int(i.width), int(i.height), i.header.frame_id)
                    for c, i in sorted(self.infos.items()))
        if self.fixed is not None:
            cams = {}
            for name in self.cameras:
                cam = self.fixed.cameras.get(name)
                if cam is None:
                    raise ValueError(f"calibration has no camera {name}; it has {self.fixed.names}")
                info = self.infos.get(name)
                cams[name] = cam if info is None else cam.with_intrinsics(np.asarray(info.k), info.width, info.height)
            rig = RigCalibration(self.fixed.base_frame, cams)
        else:
            if any(c not in self.infos for c in self.cameras):
                return None, False
            rig = rig_from_messages(self.tf, {c: self.infos[c] for c in self.cameras})
        if not rig.is_complete(self.cameras):
            return None, False
        changed, self._key = key != self._key, key
        return rig, changed


def replay_bag(bag_in: str | Path, out: str | Path, pipeline, params: NodeParams | None = None,
               calibration: RigCalibration | None = None, f: RosbagsFactory | None = None,
               on_result: Callable[[OccupancyResult, np.ndarray | None, np.ndarray | None], None] | None = None,
               progress: bool = True, overwrite: bool = False) -> ReplayReport:
    """Run ``pipeline`` (an OccupancyPipeline) over ``bag_in`` and write ``out`` (see module doc).

    ``calibration``: camera extrinsics (CameraInfo intrinsics still take precedence, as in the node);
    None reads them from the bag's ``/tf_static``. ``on_result(result, gt_labels, gt_visibility)`` is
    called for every output (ground truth None when the bag has none at that stamp).
    """
    from tqdm import tqdm

    params = params or NodeParams()
    f = f or RosbagsFactory()
    cams = list(params.cameras)
    image_topics = {params.image_topic_for(c): c for c in cams}
    info_topics = {params.camera_info_topic_for(c): c for c in cams}
    sync = AnchorSync(cams, params.anchor_camera, params.max_camera_time_diff)
    calib = _Calibration(cams, calibration)
    monitor = NodeMonitor(NODE_NAME, cams, params.camera_timeout)
    monitor.engine = pipeline.engine.name
    monitor.set_state("running")
    gts: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    report = ReplayReport(engine=pipeline.engine.name)
    t_start = time.perf_counter()

    def process(fs: FrameSet, bag: BagWriter) -> None:
        rig, changed = calib.rig()
        if rig is None:
            return  # as the node: no inference before calibration and CameraInfo are complete
        if changed:
            pipeline.set_calibration(rig)
        t0 = time.perf_counter()
        try:
            images = [
                decode_for_input(fr.payload.format, fr.payload.data, pipeline.input_size, params.decode_reduction)
                for fr in fs.frames
            ]
        except DecodeError:
            report.decode_errors += 1
            return
        decode_ms = (time.perf_counter() - t0) * 1e3
        result = pipeline(images, stamp_ns=fs.stamp_ns)
        msgs = output_messages(f, result, params.projection, params.publish_free, extra_ms={"decode": decode_ms})
        for key, msg in msgs.items():
            bag.write(output_topic(key), msg, fs.stamp_ns)
        monitor.sets_in = report.frames_out + 1
        monitor.frame_published((time.perf_counter() - t0) * 1e3, result.timings_ms)
        counters = {"stale_sets": sync.stale_sets, "dropped": 0, "sync_resets": sync.resets}
        bag.write(DIAGNOSTICS_TOPIC, diagnostic_array_msg(f, fs.stamp_ns, monitor.reports(counters)), fs.stamp_ns)
        report.frames_out += 1
        gt = gts.pop(fs.stamp_ns, None)
        for old in [s for s in gts if s < fs.stamp_ns]:  # ground truth of sets that never formed
            del gts[old]
        report.gt_frames += gt is not None
        if on_result is not None:
            on_result(result, *(gt or (None, None)))

    copied = set(image_topics) | set(info_topics) | {TF_STATIC_TOPIC, GROUND_TRUTH_TOPIC}
    anchors = bag_topics(bag_in).get(params.image_topic_for(params.anchor_camera), ("", 0))[1]
    with BagWriter(out, f.typestore, overwrite=overwrite) as bag, \
            tqdm(total=anchors, desc="replay", unit="frame", disable=not progress) as bar:
        for m in read_messages(bag_in, copied):
            _copy(bag, m)
            if m.topic == TF_STATIC_TOPIC:
                calib.tf = m.msg
            elif m.topic in info_topics:
                calib.infos[info_topics[m.topic]] = m.msg
            elif m.topic == GROUND_TRUTH_TOPIC:
                labels, vis = voxel_grid_arrays(m.msg)
                gts[stamp_to_ns(m.msg.header.stamp)] = (labels.copy(), None if vis is None else vis.copy())
            else:
                cam = image_topics[m.topic]
                monitor.image_received(cam)
                if cam == params.anchor_camera:
                    report.frames_in += 1
                    bar.update(1)
                fs = sync.add(cam, stamp_to_ns(m.msg.header.stamp), m.msg)
                if fs is not None:
                    process(fs, bag)
        report.topics = dict(bag.counts)
    if report.frames_in and calib.rig()[0] is None:
        raise ValueError(f"{bag_in}: no usable calibration (no /tf_static or CameraInfo for {cams}); "
                         "pass --calibration (bdc-occ bag writes X.calibration.yaml beside X.mcap)")
    report.stale_sets = sync.stale_sets
    report.wall_s = time.perf_counter() - t_start
    return report


def _copy(bag: BagWriter, m: BagMessage) -> None:
    bag.write_raw(m.topic, m.msgtype, m.raw, m.log_time_ns,
                  qos=offered_qos(transient_local=True, depth=1) if m.topic == TF_STATIC_TOPIC else None)
