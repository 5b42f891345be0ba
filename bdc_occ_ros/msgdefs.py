"""Message definitions for offline tools (rosbags), from the same `.msg` file the live node is built from.

`typestore_with_project_msgs()` returns a rosbags Typestore holding the standard ROS 2 messages
(sensor_msgs, nav_msgs, visualization_msgs, diagnostic_msgs, tf2_msgs, geometry_msgs, std_msgs, ...)
plus ``bdc_occ_ros/msg/SemanticVoxelGrid`` parsed from ``msg/SemanticVoxelGrid.msg`` and the
vision_msgs 4.x detection types (there is no vision_msgs wheel; the definitions below are the
upstream field lists, so CDR bytes and RIHS01 type hashes match a real ROS 2 install).

The default store is ROS 2 Kilted, the distro of the developer venv's rclpy, so bags written offline
carry the same type hashes as bags recorded from the live node. Humble/Jazzy definitions of the
standard types used here are field-identical.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

PACKAGE = "bdc_occ_ros"
#: Our interface files (msg/<Name>.msg), registered as bdc_occ_ros/msg/<Name>.
PROJECT_MSGS = ("SemanticVoxelGrid",)

#: vision_msgs 4.x (Humble and later): the types needed for ~/objects (Detection3DArray).
VISION_MSGS_DEFINITIONS: dict[str, str] = {
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": (
        "vision_msgs/ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n"
    ),
    "vision_msgs/msg/BoundingBox3D": "geometry_msgs/Pose center\ngeometry_msgs/Vector3 size\n",
    "vision_msgs/msg/Detection3D": (
        "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
        "vision_msgs/BoundingBox3D bbox\nstring id\n"
    ),
    "vision_msgs/msg/Detection3DArray": "std_msgs/Header header\nvision_msgs/Detection3D[] detections\n",
}


class MessageDefinitionError(RuntimeError):
    """The project's .msg files cannot be found or parsed."""


def project_msg_dir() -> Path:
    """The directory holding our .msg files.

    Source checkout / editable install: ``<repo>/msg`` next to the package. Installed package
    (colcon install space, or the developer venv without the source tree): ``share/bdc_occ_ros/msg``
    of the ament index (AMENT_PREFIX_PATH), else of ``sys.prefix``.
    """
    candidates = [Path(__file__).resolve().parent.parent / "msg"]
    candidates += [
        Path(p) / "share" / PACKAGE / "msg" for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p
    ]
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / "msg")
    for directory in candidates:
        if all((directory / f"{name}.msg").is_file() for name in PROJECT_MSGS):
            return directory
    raise MessageDefinitionError(
        f"cannot find {', '.join(n + '.msg' for n in PROJECT_MSGS)}; looked in: " + ", ".join(map(str, candidates))
    )


def project_msg_definitions() -> dict[str, str]:
    """{"bdc_occ_ros/msg/<Name>": text of msg/<Name>.msg} for every project message."""
    directory = project_msg_dir()
    return {f"{PACKAGE}/msg/{name}": (directory / f"{name}.msg").read_text() for name in PROJECT_MSGS}


def typestore_with_project_msgs(store: Stores = Stores.ROS2_KILTED) -> Typestore:
    """A new rosbags Typestore: the standard types of `store` + vision_msgs + the project's messages."""
    typestore = get_typestore(store)
    types = {}
    for name, text in {**VISION_MSGS_DEFINITIONS, **project_msg_definitions()}.items():
        try:
            types.update(get_types_from_msg(text, name))
        except Exception as err:  # rosbags raises its own parser errors; name the file that failed
            raise MessageDefinitionError(f"cannot parse the definition of {name}: {err}") from err
    typestore.register(types)
    return typestore
