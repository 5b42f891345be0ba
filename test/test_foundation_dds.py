"""Smoke test of the real stack: two processes exchange SemanticVoxelGrid and a 1600x900 Image over Fast DDS.

The test process publishes on /foundation/{grid,image}_in; a child process (this file run as a
script) receives, prints the SHA-256 of each payload and echoes the message unchanged on
/foundation/{grid,image}_out. Both directions must deliver every byte intact.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import pytest

GRID_SHAPE = (200, 200, 16)  # Occ3D x, y, z
IMAGE_HW = (900, 1600)
TOPICS = ("/foundation/grid", "/foundation/image")


def _qos():
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)


def make_grid(seed: int):
    """A full-size Occ3D grid message with random labels/visibility (deterministic per seed)."""
    from bdc_occ_ros.msg import SemanticVoxelGrid

    from bdc_occ_ros.classes import FREE_LABEL, OCC_CLASSES

    rng = np.random.default_rng(seed)
    msg = SemanticVoxelGrid()
    msg.header.frame_id = "base_link"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_533_151_603, 512_404_000
    msg.origin.position.x, msg.origin.position.y, msg.origin.position.z = -40.0, -40.0, -1.0
    msg.origin.orientation.w = 1.0
    msg.voxel_size = 0.4
    msg.size_x, msg.size_y, msg.size_z = GRID_SHAPE
    msg.labels = rng.integers(0, len(OCC_CLASSES), GRID_SHAPE, dtype=np.uint8).tobytes()
    msg.class_names = list(OCC_CLASSES)
    msg.free_label = FREE_LABEL
    msg.visibility = rng.integers(0, 2, GRID_SHAPE, dtype=np.uint8).tobytes()
    return msg


def make_image(seed: int):
    """A 1600x900 rgb8 sensor_msgs/Image with random pixels (4.32 MB)."""
    from sensor_msgs.msg import Image

    h, w = IMAGE_HW
    msg = Image()
    msg.header.frame_id = "CAM_FRONT"
    msg.height, msg.width, msg.encoding, msg.step = h, w, "rgb8", w * 3
    msg.data = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8).tobytes()
    return msg


def grid_digest(msg) -> str:
    h = hashlib.sha256()
    for part in (bytes(msg.labels), bytes(msg.visibility), "\n".join(msg.class_names).encode()):
        h.update(part)
    h.update(f"{msg.size_x},{msg.size_y},{msg.size_z},{msg.free_label},{np.float32(msg.voxel_size)!r}".encode())
    return h.hexdigest()


def image_digest(msg) -> str:
    h = hashlib.sha256(bytes(msg.data))
    h.update(f"{msg.height},{msg.width},{msg.encoding},{msg.step}".encode())
    return h.hexdigest()


@pytest.mark.ros
def test_grid_and_image_round_trip_between_processes(ros_processes, ros_node):
    from bdc_occ_ros.msg import SemanticVoxelGrid
    from ros_harness import wait_for_subscribers
    from sensor_msgs.msg import Image

    echo = ros_processes.python_script(Path(__file__), "echo", name="echo_peer")
    echo.wait_for_line(r"^echo ready$", timeout=60)

    node = ros_node.node
    received: dict[str, object] = {}
    for topic, msg_type in zip(TOPICS, (SemanticVoxelGrid, Image), strict=True):
        node.create_subscription(msg_type, f"{topic}_out", lambda m, t=topic: received.setdefault(t, m), _qos())
    pubs = [
        node.create_publisher(t, f"{topic}_in", _qos())
        for topic, t in zip(TOPICS, (SemanticVoxelGrid, Image), strict=True)
    ]
    for pub in pubs:
        wait_for_subscribers(pub, 1, timeout=30)

    grid, image = make_grid(seed=1), make_image(seed=2)
    pubs[0].publish(grid)
    pubs[1].publish(image)

    ros_node.spin_until(lambda: len(received) == 2, timeout=60, what="echoed grid and image")
    # The child saw the same bytes ...
    echo.wait_for_line(rf"^grid sha256={grid_digest(grid)}$", timeout=10)
    echo.wait_for_line(rf"^image sha256={image_digest(image)}$", timeout=10)
    # ... and what came back is identical, field by field.
    back_grid, back_image = received[TOPICS[0]], received[TOPICS[1]]
    assert bytes(back_grid.labels) == bytes(grid.labels)
    assert bytes(back_grid.visibility) == bytes(grid.visibility)
    assert list(back_grid.class_names) == list(grid.class_names)
    assert (back_grid.size_x, back_grid.size_y, back_grid.size_z, back_grid.free_label) == (200, 200, 16, 17)
    assert back_grid.origin == grid.origin and back_grid.header == grid.header
    assert back_grid.voxel_size == pytest.approx(0.4)
    assert bytes(back_image.data) == bytes(image.data)
    assert (back_image.height, back_image.width, back_image.encoding, back_image.step) == (900, 1600, "rgb8", 4800)
    assert echo.terminate() == 0, echo.describe()


def _echo_main() -> int:
    """Child side: echo each message from *_in to *_out once matched, printing payload digests."""
    import rclpy
    from bdc_occ_ros.msg import SemanticVoxelGrid
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("foundation_echo")
    digests = {TOPICS[0]: ("grid", grid_digest), TOPICS[1]: ("image", image_digest)}

    def make_cb(topic, pub):
        def cb(msg):
            label, digest = digests[topic]
            print(f"{label} sha256={digest(msg)}", flush=True)
            deadline = time.monotonic() + 30.0
            # The test's subscription may match later than ours; matching runs in DDS threads, no spin needed.
            while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            pub.publish(msg)

        return cb

    for topic, msg_type in zip(TOPICS, (SemanticVoxelGrid, Image), strict=True):
        pub = node.create_publisher(msg_type, f"{topic}_out", _qos())
        node.create_subscription(msg_type, f"{topic}_in", make_cb(topic, pub), _qos())
    print("echo ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["echo"]:
    sys.exit(_echo_main())
