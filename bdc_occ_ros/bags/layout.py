"""The nuScenes camera bag layout (ros_conventions.md §3, foxglove/TIER IV converters) written with rosbags.

Per camera ``NAME`` (e.g. ``CAM_FRONT``): ``/NAME/image_rect_compressed`` (``sensor_msgs/CompressedImage``,
jpeg, the original JPEG bytes) and ``/NAME/camera_info`` (``sensor_msgs/CameraInfo``, plumb_bob with zero
distortion, R = I, P = [K | 0]), both stamped with the camera's exposure time, frame_id = the camera's
optical frame. ``/tf_static`` (``tf2_msgs/TFMessage``, transient-local) holds ``base_frame -> camera``
for every camera; ``/ground_truth/occupancy`` (``bdc_occ_ros/msg/SemanticVoxelGrid``) the Occ3D labels
with ``mask_camera`` as visibility, stamped with the anchor camera's stamp (the stamp the node gives its
output for the same camera set). Log time = header stamp, as the nuScenes converters do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bdc_occ_ros.bags.io import BagWriter, offered_qos
from bdc_occ_ros.geometry import (
    NUSCENES_CAMERAS,
    CameraCalibration,
    RigCalibration,
    make_transform,
    matrix_to_quat,
    quat_to_matrix,
)
from bdc_occ_ros.result import OccupancyResult
from bdc_occ_ros.ros.convert import (
    RosbagsFactory,
    camera_info_msg,
    compressed_image_msg,
    header_msg,
    vector3_msg,
    voxel_grid_msg,
)

TF_STATIC_TOPIC = "/tf_static"
GROUND_TRUTH_TOPIC = "/ground_truth/occupancy"
#: The camera whose stamp a camera set (and the node's output) carries.
ANCHOR_CAMERA = "CAM_FRONT"
#: nuScenes cameras run at 12 Hz.
SAMPLE_PERIOD_NS = 1_000_000_000 // 12


def image_topic(camera: str) -> str:
    return f"/{camera}/image_rect_compressed"


def camera_info_topic(camera: str) -> str:
    return f"/{camera}/camera_info"


def calibration_path_for(bag_path: str | Path) -> Path:
    """The calibration YAML written beside a bag: ``X.mcap`` -> ``X.calibration.yaml``."""
    bag_path = Path(bag_path)
    return bag_path.with_name(bag_path.stem + ".calibration.yaml")


@dataclass
class CameraFrame:
    """One camera set to write: per camera its JPEG bytes and exposure stamp (ns); optional ground truth
    (Occ3D ``semantics`` and ``mask_camera``, (200, 200, 16) uint8) stamped at ``stamps_ns[anchor]``."""

    stamps_ns: dict[str, int]
    jpegs: dict[str, bytes]
    gt_labels: np.ndarray | None = None
    gt_visibility: np.ndarray | None = None
    extra: dict = field(default_factory=dict)  # source identifiers (scene, token), not written


@dataclass
class FrameSource:
    """Camera sets of one recording, produced lazily (JPEG bytes are read as the bag is written)."""

    rig: RigCalibration
    num_frames: int
    frames: Iterator[CameraFrame]


def tf_static_msg(f: RosbagsFactory, stamp_ns: int, rig: RigCalibration):
    """``tf2_msgs/TFMessage`` with ``base_frame -> camera optical frame`` for every camera of the rig."""
    transforms = []
    for cam in rig.cameras.values():
        w, x, y, z = (float(v) for v in matrix_to_quat(cam.cam_to_base[:3, :3]))
        transforms.append(f.make(
            "geometry_msgs/msg/TransformStamped", header=header_msg(f, stamp_ns, rig.base_frame),
            child_frame_id=cam.frame_id,
            transform=f.make("geometry_msgs/msg/Transform", translation=vector3_msg(f, cam.cam_to_base[:3, 3]),
                             rotation=f.make("geometry_msgs/msg/Quaternion", x=x, y=y, z=z, w=w))))
    return f.make("tf2_msgs/msg/TFMessage", transforms=transforms)


def ground_truth_msg(f: RosbagsFactory, stamp_ns: int, frame_id: str, labels: np.ndarray,
                     visibility: np.ndarray | None):
    """``SemanticVoxelGrid`` of Occ3D ground truth, built by the node's own converter (one message definition)."""
    result = OccupancyResult(labels=np.ascontiguousarray(labels, dtype=np.uint8), stamp_ns=int(stamp_ns),
                             frame_id=frame_id, visibility=visibility)
    return voxel_grid_msg(f, result)


def write_camera_bag(out: str | Path, rig: RigCalibration, frames: Iterable[CameraFrame], f: RosbagsFactory,
                     anchor: str = ANCHOR_CAMERA, overwrite: bool = False, progress=None) -> dict[str, int]:
    """Write camera sets in the nuScenes layout to ``out`` (+ metadata.yaml) and the rig's calibration
    YAML beside it (``calibration_path_for(out)``). ``progress`` (a tqdm) is advanced per frame.

    Returns message counts per topic.
    """
    names = [n for n in NUSCENES_CAMERAS if n in rig.cameras] + [n for n in rig.cameras if n not in NUSCENES_CAMERAS]
    if anchor not in names:
        raise ValueError(f"anchor camera {anchor} is not in the rig {names}")
    wrote_tf = False
    with BagWriter(out, f.typestore, overwrite=overwrite) as bag:
        for frame in frames:
            missing = [n for n in names if n not in frame.jpegs or n not in frame.stamps_ns]
            if missing:
                raise ValueError(f"frame {frame.extra}: no image/stamp for camera(s) {missing}")
            if not wrote_tf:
                first = min(frame.stamps_ns.values())
                bag.write(TF_STATIC_TOPIC, tf_static_msg(f, first, rig), first,
                          qos=offered_qos(transient_local=True, depth=1))
                wrote_tf = True
            # Messages in exposure order, so the bag's log time is monotonic within a frame.
            for name in sorted(names, key=lambda n: frame.stamps_ns[n]):
                t = frame.stamps_ns[name]
                cam = rig.cameras[name]
                bag.write(camera_info_topic(name), camera_info_msg(f, cam, t), t)
                bag.write(image_topic(name), compressed_image_msg(f, frame.jpegs[name], t, cam.frame_id), t)
                if name == anchor and frame.gt_labels is not None:
                    bag.write(GROUND_TRUTH_TOPIC,
                              ground_truth_msg(f, t, rig.base_frame, frame.gt_labels, frame.gt_visibility), t)
            if progress is not None:
                progress.update(1)
        counts = dict(bag.counts)
    if not wrote_tf:
        raise ValueError("no frames to write")
    rig.save(calibration_path_for(out))
    return counts


# --- reading the layout back ----------------------------------------------------------------------------


def rig_from_messages(tf_msg, camera_infos: dict[str, object], base_frame: str | None = None) -> RigCalibration:
    """Rig calibration from a ``/tf_static`` TFMessage and per-camera CameraInfo messages (camera name -> msg);
    a camera's frame is its CameraInfo's frame_id, looked up among the TF children."""
    by_child = {t.child_frame_id: t for t in tf_msg.transforms}
    cams = {}
    for name, info in camera_infos.items():
        frame_id = info.header.frame_id
        tf = by_child.get(frame_id)
        if tf is None:
            raise ValueError(f"/tf_static has no transform to {frame_id} (camera {name}); it has {sorted(by_child)}")
        if base_frame is not None and tf.header.frame_id != base_frame:
            raise ValueError(f"/tf_static: {frame_id} is relative to {tf.header.frame_id}, not {base_frame}")
        base_frame = tf.header.frame_id
        q, t = tf.transform.rotation, tf.transform.translation
        cams[name] = CameraCalibration(
            name=name, frame_id=frame_id,
            cam_to_base=make_transform(quat_to_matrix([q.w, q.x, q.y, q.z]), [t.x, t.y, t.z]),
            width=int(info.width), height=int(info.height),
            intrinsics=np.asarray(info.k, dtype=np.float64).reshape(3, 3))
    return RigCalibration(base_frame=base_frame or "base_link", cameras=cams)
