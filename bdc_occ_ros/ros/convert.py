"""Every ROS message the project writes, built from ROS-free objects, for rclpy and rosbags alike.

The node publishes these messages over DDS (rclpy classes) and the offline tools (bag synth, replay,
demo) write the same messages into rosbag2 files (``rosbags`` typestore classes), so both go through
the builders below with a :class:`MessageFactory`:

* :class:`RclpyFactory` imports ``<pkg>.msg.<Name>`` and hands numpy arrays over in the form the rclpy
  setters take quickly (``array.array`` for ``sequence<uint8>`` and friends, never per-element lists);
* :class:`RosbagsFactory` instantiates ``typestore.types[msgtype]`` dataclasses, which need every field in
  the constructor, so it fills the fields a builder leaves out with their ROS defaults and turns
  primitive arrays into numpy arrays of the declared dtype.

Builders name fields with ``msgtype`` strings as ROS does (``sensor_msgs/msg/PointCloud2``) and pass
numpy arrays for array fields; the factories do the rest. rosbags does not know the IDL default values
(e.g. ``Quaternion.w = 1``), so builders pass every field whose ROS default is not zero (poses always via
:func:`pose_msg`). This module does not import rclpy.

Conventions (README "Node"): every output carries the anchor camera's stamp and ``result.frame_id``
(the base frame); ``rgb`` in PointCloud2 is the PCL packed float (0x00RRGGBB reinterpreted as float32).
"""

from __future__ import annotations

import array
import importlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from bdc_occ_ros.classes import DET_TO_OCC_LABEL, OCC_CLASSES, OCC_PALETTE
from bdc_occ_ros.geometry import CameraCalibration
from bdc_occ_ros.result import OccupancyResult

# --- factories -------------------------------------------------------------------------------------


class MessageFactory(Protocol):
    """Creates a message of a ROS type (``pkg/msg/Name``) from keyword fields; unnamed fields get defaults."""

    def make(self, msgtype: str, **fields: Any) -> Any: ...

    def has(self, msgtype: str) -> bool: ...


#: numpy dtype of each primitive ROS field type, under both the rosidl (rclpy) and the .msg (rosbags) names.
_NUMPY_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(dt)
    for names, dt in (
        (("bool", "boolean"), np.bool_),
        (("int8",), np.int8),
        (("uint8", "byte", "octet", "char"), np.uint8),
        (("int16",), np.int16),
        (("uint16",), np.uint16),
        (("int32",), np.int32),
        (("uint32",), np.uint32),
        (("int64",), np.int64),
        (("uint64",), np.uint64),
        (("float32", "float"), np.float32),
        (("float64", "double"), np.float64),
    )
    for name in names
}
#: ``array.array`` type code of each numeric rosidl type (what rclpy stores ``sequence<T>`` fields as).
_ARRAY_TYPECODES = {"int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
                    "int64": "q", "uint64": "Q", "float": "f", "double": "d"}


class RclpyFactory:
    """rclpy message classes; numpy values are converted per field type (``get_fields_and_field_types``)."""

    def __init__(self) -> None:
        self._classes: dict[str, tuple[type, dict[str, str]]] = {}

    def message_class(self, msgtype: str) -> type:
        """The rclpy class of ``msgtype`` (ImportError/AttributeError when its package is not installed)."""
        return self._lookup(msgtype)[0]

    def _lookup(self, msgtype: str) -> tuple[type, dict[str, str]]:
        entry = self._classes.get(msgtype)
        if entry is None:
            pkg, kind, name = msgtype.split("/")
            cls = getattr(importlib.import_module(f"{pkg}.{kind}"), name)
            entry = (cls, cls.get_fields_and_field_types())
            self._classes[msgtype] = entry
        return entry

    def has(self, msgtype: str) -> bool:
        try:
            self._lookup(msgtype)
        except (ImportError, AttributeError):
            return False
        return True

    def make(self, msgtype: str, **fields: Any) -> Any:
        cls, types = self._lookup(msgtype)
        return cls(**{key: _rclpy_value(types[key], value) for key, value in fields.items()})


def _rclpy_value(ftype: str, value: Any) -> Any:
    if ftype == "octet" and isinstance(value, int):
        return bytes([value])
    if not isinstance(value, np.ndarray):
        return value
    if ftype.startswith("sequence<") and ftype[9:-1] in _ARRAY_TYPECODES:
        base = ftype[9:-1]
        out = array.array(_ARRAY_TYPECODES[base])
        out.frombytes(np.ascontiguousarray(value, dtype=_NUMPY_DTYPES[base]).tobytes())  # one memcpy
        return out
    if "[" in ftype:  # fixed-size array: rclpy keeps these as numpy arrays of the element dtype
        return np.asarray(value, dtype=_NUMPY_DTYPES[ftype.split("[")[0]]).ravel()
    return value


class RosbagsFactory:
    """``rosbags`` typestore dataclasses; fields a builder leaves out are filled with ROS defaults."""

    def __init__(self, typestore: Any = None) -> None:
        if typestore is None:  # the project's store: standard types + SemanticVoxelGrid + vision_msgs
            from bdc_occ_ros.msgdefs import typestore_with_project_msgs

            typestore = typestore_with_project_msgs()
        self.typestore = typestore

    def has(self, msgtype: str) -> bool:
        return msgtype in self.typestore.types

    def make(self, msgtype: str, **fields: Any) -> Any:
        _, defs = self.typestore.fielddefs[msgtype]
        values = {}
        for name, desc in defs:
            values[name] = self._value(desc, fields[name]) if name in fields else self._default(desc)
        unknown = set(fields) - set(values)
        if unknown:
            raise TypeError(f"{msgtype} has no field(s) {sorted(unknown)}")
        return self.typestore.types[msgtype](**values)

    def _default(self, desc) -> Any:
        kind, detail = desc
        if kind.name == "BASE":
            base = detail[0]
            return "" if base in ("string", "wstring") else (False if base == "bool" else
                                                              0.0 if base.startswith("float") else 0)
        if kind.name == "NAME":
            return self.make(detail)
        (elem_kind, elem), size = detail
        count = size if kind.name == "ARRAY" else 0
        if elem_kind.name == "BASE" and elem[0] in _NUMPY_DTYPES:
            return np.zeros(count, dtype=_NUMPY_DTYPES[elem[0]])
        return [self._default((elem_kind, elem)) for _ in range(count)]

    @staticmethod
    def _value(desc, value: Any) -> Any:
        kind, detail = desc
        if kind.name in ("ARRAY", "SEQUENCE"):
            (elem_kind, elem), _ = detail
            if elem_kind.name == "BASE" and elem[0] in _NUMPY_DTYPES:
                if isinstance(value, (bytes, bytearray, memoryview)):
                    return np.frombuffer(value, dtype=_NUMPY_DTYPES[elem[0]])
                return np.asarray(value, dtype=_NUMPY_DTYPES[elem[0]]).ravel()
            return list(value)
        if kind.name == "BASE" and isinstance(value, bytes) and detail[0] in ("byte", "uint8", "char"):
            return value[0]
        return value


# --- small building blocks -------------------------------------------------------------------------


def stamp_msg(f: MessageFactory, stamp_ns: int) -> Any:
    """builtin_interfaces/Time of an integer nanosecond stamp."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return f.make("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


def stamp_to_ns(stamp: Any) -> int:
    """Nanoseconds of a builtin_interfaces/Time (rclpy or rosbags)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def header_msg(f: MessageFactory, stamp_ns: int, frame_id: str) -> Any:
    return f.make("std_msgs/msg/Header", stamp=stamp_msg(f, stamp_ns), frame_id=frame_id)


def pose_msg(f: MessageFactory, position: Sequence[float], yaw: float = 0.0) -> Any:
    """geometry_msgs/Pose at ``position`` rotated by ``yaw`` about +z."""
    return f.make(
        "geometry_msgs/msg/Pose",
        position=f.make("geometry_msgs/msg/Point", x=float(position[0]), y=float(position[1]), z=float(position[2])),
        orientation=f.make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=math.sin(yaw / 2.0), w=math.cos(yaw / 2.0)),
    )


def vector3_msg(f: MessageFactory, v: Sequence[float]) -> Any:
    return f.make("geometry_msgs/msg/Vector3", x=float(v[0]), y=float(v[1]), z=float(v[2]))


def _color(f: MessageFactory, rgb: Sequence[int], alpha: float) -> Any:
    r, g, b = (float(c) / 255.0 for c in rgb)
    return f.make("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=float(alpha))


# --- occupancy outputs -----------------------------------------------------------------------------


def voxel_grid_msg(f: MessageFactory, result: OccupancyResult) -> Any:
    """bdc_occ_ros/SemanticVoxelGrid: dense labels (x slowest, z fastest) and the visibility mask."""
    grid = result.grid
    labels = np.ascontiguousarray(result.labels, dtype=np.uint8)
    visibility = (np.zeros(0, np.uint8) if result.visibility is None
                  else np.ascontiguousarray(result.visibility, dtype=np.uint8))
    return f.make(
        "bdc_occ_ros/msg/SemanticVoxelGrid",
        header=header_msg(f, result.stamp_ns, result.frame_id),
        origin=pose_msg(f, grid.lower),
        voxel_size=float(grid.voxel_size),
        size_x=grid.shape[0],
        size_y=grid.shape[1],
        size_z=grid.shape[2],
        labels=labels.reshape(-1),
        class_names=list(result.class_names),
        free_label=int(result.free_label),
        visibility=visibility.reshape(-1),
    )


def voxel_grid_arrays(msg: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverse of :func:`voxel_grid_msg`: labels (X, Y, Z) uint8 and visibility (X, Y, Z) uint8 or None."""
    shape = (int(msg.size_x), int(msg.size_y), int(msg.size_z))
    labels = np.frombuffer(_as_buffer(msg.labels), dtype=np.uint8).reshape(shape)
    vis = _as_buffer(msg.visibility)
    visibility = np.frombuffer(vis, dtype=np.uint8).reshape(shape) if len(vis) else None
    return labels, visibility


def _as_buffer(data: Any) -> Any:
    """A uint8 buffer of a uint8[] field as rclpy (array.array / bytes) or rosbags (numpy) stores it."""
    return data if isinstance(data, (bytes, bytearray, array.array, np.ndarray)) else bytes(data)


#: PointCloud2 point layout: x, y, z float32, label uint8 (3 pad bytes keep rgb 4-byte aligned), rgb float32.
POINT_DTYPE = np.dtype({"names": ["x", "y", "z", "label", "rgb"],
                        "formats": [np.float32, np.float32, np.float32, np.uint8, np.float32],
                        "offsets": [0, 4, 8, 12, 16], "itemsize": 20})
_POINT_FIELD_TYPES = {np.dtype(np.float32): 7, np.dtype(np.uint8): 2}  # sensor_msgs/PointField FLOAT32, UINT8


def packed_rgb(palette: np.ndarray = OCC_PALETTE) -> np.ndarray:
    """(L,) float32: the PCL packed colour of each palette row (0x00RRGGBB reinterpreted as float32)."""
    p = palette.astype(np.uint32)
    return ((p[:, 0] << 16) | (p[:, 1] << 8) | p[:, 2]).view(np.float32)


_PACKED_PALETTE = packed_rgb()


def occupied_points(result: OccupancyResult, publish_free: bool = False) -> np.ndarray:
    """Structured array (N,) of :data:`POINT_DTYPE`: the centres of all non-free voxels (all if publish_free)."""
    labels = result.labels
    keep = np.ones(labels.shape, bool) if publish_free else labels != result.free_label
    idx = np.nonzero(keep)
    grid = result.grid
    out = np.zeros(len(idx[0]), dtype=POINT_DTYPE)  # zeros: the pad bytes are serialized too
    for axis, name in enumerate("xyz"):
        out[name] = grid.lower[axis] + (idx[axis].astype(np.float32) + 0.5) * grid.voxel_size
    lab = labels[idx]
    out["label"] = lab
    palette = _PACKED_PALETTE if len(result.class_names) <= len(_PACKED_PALETTE) else None
    out["rgb"] = palette[np.minimum(lab, len(palette) - 1)] if palette is not None else 0.0
    return out


def point_cloud_msg(f: MessageFactory, result: OccupancyResult, publish_free: bool = False) -> Any:
    """sensor_msgs/PointCloud2 (unorganised, height 1) of the occupied voxel centres with label and rgb."""
    points = occupied_points(result, publish_free)
    fields = [
        f.make("sensor_msgs/msg/PointField", name=name, offset=POINT_DTYPE.fields[name][1],
               datatype=_POINT_FIELD_TYPES[POINT_DTYPE.fields[name][0]], count=1)
        for name in POINT_DTYPE.names
    ]
    return f.make(
        "sensor_msgs/msg/PointCloud2",
        header=header_msg(f, result.stamp_ns, result.frame_id),
        height=1,
        width=len(points),
        fields=fields,
        is_bigendian=False,
        point_step=POINT_DTYPE.itemsize,
        row_step=POINT_DTYPE.itemsize * len(points),
        data=points.view(np.uint8).reshape(-1),
        is_dense=True,
    )


def point_cloud_arrays(msg: Any) -> np.ndarray:
    """Inverse of :func:`point_cloud_msg`: the structured (N,) array of :data:`POINT_DTYPE`."""
    return np.frombuffer(_as_buffer(msg.data), dtype=POINT_DTYPE, count=int(msg.width) * int(msg.height))


#: Occ3D labels that block a ground robot/vehicle (everything but free space and the flat ground classes).
DEFAULT_OBSTACLE_LABELS: tuple[int, ...] = tuple(
    i for i, name in enumerate(OCC_CLASSES)
    if name not in ("free", "driveable_surface", "other_flat", "sidewalk", "terrain")
)


@dataclass(frozen=True)
class BevProjection:
    """How the 3D labels collapse into the 2D planner grid: a height band [z_min, z_max] metres (voxel centres
    inside count) and the labels that are obstacles."""

    z_min: float = -0.6
    z_max: float = 2.2
    obstacle_labels: tuple[int, ...] = DEFAULT_OBSTACLE_LABELS

    def __post_init__(self) -> None:
        if not self.z_min < self.z_max:
            raise ValueError(f"grid height band: z_min ({self.z_min}) must be < z_max ({self.z_max})")


def bev_occupancy(result: OccupancyResult, projection: BevProjection = BevProjection()) -> np.ndarray:
    """(X, Y) int8 over the band: 100 where any voxel is an obstacle, 0 where the band is observed and
    free of obstacles, -1 where no voxel of the band is observed (visibility 0) or it has no voxel at all."""
    grid = result.grid
    centers_z = grid.lower[2] + (np.arange(grid.shape[2]) + 0.5) * grid.voxel_size
    band = (centers_z >= projection.z_min) & (centers_z <= projection.z_max)
    out = np.full(grid.shape[:2], -1, dtype=np.int8)
    if not band.any():
        return out
    labels = result.labels[:, :, band]
    obstacle = np.isin(labels, np.asarray(projection.obstacle_labels, dtype=np.uint8)).any(axis=2)
    if result.visibility is None:
        observed = np.ones(grid.shape[:2], bool)
    else:
        observed = result.visibility[:, :, band].astype(bool).any(axis=2)
    out[observed] = 0
    out[obstacle] = 100  # a predicted obstacle is kept even where unobserved: planners stay conservative
    return out


def occupancy_grid_msg(f: MessageFactory, result: OccupancyResult,
                       projection: BevProjection = BevProjection()) -> Any:
    """nav_msgs/OccupancyGrid of :func:`bev_occupancy`; map x = grid x, cell (i, j) at data[j * width + i]."""
    grid = result.grid
    bev = bev_occupancy(result, projection)
    stamp = stamp_msg(f, result.stamp_ns)
    info = f.make(
        "nav_msgs/msg/MapMetaData",
        map_load_time=stamp,
        resolution=float(grid.voxel_size),
        width=grid.shape[0],
        height=grid.shape[1],
        origin=pose_msg(f, (grid.lower[0], grid.lower[1], 0.0)),
    )
    return f.make("nav_msgs/msg/OccupancyGrid", header=header_msg(f, result.stamp_ns, result.frame_id),
                  info=info, data=np.ascontiguousarray(bev.T).reshape(-1))


# --- detections ------------------------------------------------------------------------------------


def _det_color(label: str) -> np.ndarray:
    return OCC_PALETTE[DET_TO_OCC_LABEL.get(label, 0)]


def markers_msg(f: MessageFactory, result: OccupancyResult, namespace: str = "bdc_occ/objects") -> Any:
    """visualization_msgs/MarkerArray: DELETEALL, then per detection a CUBE (id 2k) and a label TEXT (id 2k+1)."""
    header = header_msg(f, result.stamp_ns, result.frame_id)
    markers = [f.make("visualization_msgs/msg/Marker", header=header, ns=namespace, id=0, action=3,  # DELETEALL
                      pose=pose_msg(f, (0.0, 0.0, 0.0)))]
    for k, det in enumerate(result.detections):
        color = _det_color(det.label)
        markers.append(f.make(
            "visualization_msgs/msg/Marker", header=header, ns=namespace, id=2 * k, type=1, action=0,  # CUBE, ADD
            pose=pose_msg(f, det.center, float(det.yaw)), scale=vector3_msg(f, det.size),
            color=_color(f, color, 0.5)))
        top = (det.center[0], det.center[1], det.center[2] + det.size[2] / 2.0 + 0.4)
        markers.append(f.make(
            "visualization_msgs/msg/Marker", header=header, ns=namespace, id=2 * k + 1, type=9, action=0,  # TEXT
            pose=pose_msg(f, top), scale=vector3_msg(f, (0.0, 0.0, 0.8)), color=_color(f, color, 1.0),
            text=f"{det.label} {det.score:.2f}"))
    return f.make("visualization_msgs/msg/MarkerArray", markers=markers)


def detection_array_msg(f: MessageFactory, result: OccupancyResult) -> Any:
    """vision_msgs/Detection3DArray (vision_msgs 4.x fields: results[].hypothesis.{class_id, score})."""
    header = header_msg(f, result.stamp_ns, result.frame_id)
    detections = []
    for k, det in enumerate(result.detections):
        pose = pose_msg(f, det.center, float(det.yaw))
        hypothesis = f.make(
            "vision_msgs/msg/ObjectHypothesisWithPose",
            hypothesis=f.make("vision_msgs/msg/ObjectHypothesis", class_id=det.label, score=float(det.score)),
            pose=f.make("geometry_msgs/msg/PoseWithCovariance", pose=pose, covariance=np.zeros(36)),
        )
        detections.append(f.make(
            "vision_msgs/msg/Detection3D", header=header, results=[hypothesis],
            bbox=f.make("vision_msgs/msg/BoundingBox3D", center=pose, size=vector3_msg(f, det.size)), id=str(k)))
    return f.make("vision_msgs/msg/Detection3DArray", header=header, detections=detections)


# --- diagnostics and timings -----------------------------------------------------------------------

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels


@dataclass
class StatusReport:
    """One DiagnosticStatus, ROS-free: level (OK/WARN/ERROR/STALE), name, message, key/values."""

    level: int
    name: str
    message: str
    hardware_id: str = ""
    values: dict[str, str] = field(default_factory=dict)


def diagnostic_array_msg(f: MessageFactory, stamp_ns: int, reports: Iterable[StatusReport], frame_id: str = "") -> Any:
    """diagnostic_msgs/DiagnosticArray of the reports (frame_id empty by default, as diagnostic_updater does)."""
    statuses = [
        f.make("diagnostic_msgs/msg/DiagnosticStatus", level=int(r.level), name=r.name, message=r.message,
               hardware_id=r.hardware_id,
               values=[f.make("diagnostic_msgs/msg/KeyValue", key=k, value=str(v)) for k, v in r.values.items()])
        for r in reports
    ]
    return f.make("diagnostic_msgs/msg/DiagnosticArray", header=header_msg(f, stamp_ns, frame_id), status=statuses)


def latency_msg(f: MessageFactory, result: OccupancyResult, extra_ms: dict[str, float] | None = None) -> Any:
    """``~/debug/latency_ms``: a DiagnosticArray stamped like the outputs, one status named ``latency_ms``
    whose key/values are stage -> milliseconds (``%.3f``) of the last frame: the pipeline's
    ``result.timings_ms`` plus the node's own stages (``extra_ms``: decode, convert, publish, total...)."""
    timings = {**result.timings_ms, **(extra_ms or {})}
    report = StatusReport(OK, "latency_ms", "per-stage wall time of the last frame, milliseconds",
                          values={k: f"{v:.3f}" for k, v in timings.items()})
    return diagnostic_array_msg(f, result.stamp_ns, [report], frame_id=result.frame_id)


# --- inputs (publishers in tests, bag writers) -----------------------------------------------------


def camera_info_msg(f: MessageFactory, cam: CameraCalibration, stamp_ns: int) -> Any:
    """sensor_msgs/CameraInfo of a calibrated, rectified pinhole camera (no distortion)."""
    if cam.intrinsics is None:
        raise ValueError(f"camera {cam.name}: no intrinsics to publish")
    k = np.asarray(cam.intrinsics, dtype=np.float64).reshape(3, 3)
    p = np.zeros((3, 4))
    p[:, :3] = k
    return f.make(
        "sensor_msgs/msg/CameraInfo", header=header_msg(f, stamp_ns, cam.frame_id), height=int(cam.height),
        width=int(cam.width), distortion_model="plumb_bob", d=np.zeros(5), k=k.reshape(-1),
        r=np.eye(3).reshape(-1), p=p.reshape(-1))


def compressed_image_msg(f: MessageFactory, data: bytes, stamp_ns: int, frame_id: str, fmt: str = "jpeg") -> Any:
    """sensor_msgs/CompressedImage holding already-encoded bytes (``fmt``: jpeg or png)."""
    return f.make("sensor_msgs/msg/CompressedImage", header=header_msg(f, stamp_ns, frame_id), format=fmt,
                  data=np.frombuffer(data, dtype=np.uint8))


def image_msg(f: MessageFactory, img: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "rgb8") -> Any:
    """sensor_msgs/Image of an (H, W, 3) or (H, W) uint8 array in the given encoding (not converted here)."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    return f.make("sensor_msgs/msg/Image", header=header_msg(f, stamp_ns, frame_id), height=img.shape[0],
                  width=img.shape[1], encoding=encoding, is_bigendian=0,
                  step=img.shape[1] * (img.shape[2] if img.ndim == 3 else 1), data=img.reshape(-1))


# --- all outputs of one frame ----------------------------------------------------------------------

#: The node's per-frame output topics, relative to the node (``~/``; ``/bdc_occ/...`` with the default name).
OUTPUT_TOPICS: dict[str, str] = {
    "voxels": "occupancy/voxels",
    "points": "occupancy/points",
    "grid": "occupancy/grid",
    "objects": "objects",
    "markers": "objects/markers",
    "latency": "debug/latency_ms",
}
#: Message type of each output (``objects`` needs vision_msgs: skipped where the factory lacks it).
OUTPUT_TYPES: dict[str, str] = {
    "voxels": "bdc_occ_ros/msg/SemanticVoxelGrid",
    "points": "sensor_msgs/msg/PointCloud2",
    "grid": "nav_msgs/msg/OccupancyGrid",
    "objects": "vision_msgs/msg/Detection3DArray",
    "markers": "visualization_msgs/msg/MarkerArray",
    "latency": "diagnostic_msgs/msg/DiagnosticArray",
}


def output_messages(f: MessageFactory, result: OccupancyResult, projection: BevProjection = BevProjection(),
                    publish_free: bool = False, extra_ms: dict[str, float] | None = None,
                    keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Every output message of one frame, keyed like :data:`OUTPUT_TOPICS` (only ``keys`` when given;
    ``objects`` only when ``f`` has vision_msgs). The node and ``bdc-occ replay`` both publish these."""
    builders = {
        "voxels": lambda: voxel_grid_msg(f, result),
        "points": lambda: point_cloud_msg(f, result, publish_free),
        "grid": lambda: occupancy_grid_msg(f, result, projection),
        "objects": lambda: detection_array_msg(f, result),
        "markers": lambda: markers_msg(f, result),
        "latency": lambda: latency_msg(f, result, extra_ms),
    }
    wanted = list(OUTPUT_TOPICS) if keys is None else list(keys)
    return {k: builders[k]() for k in wanted if k != "objects" or f.has(OUTPUT_TYPES["objects"])}
