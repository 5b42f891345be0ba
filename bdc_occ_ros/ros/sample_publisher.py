"""Publish a sample directory's six images with CameraInfo on the node's default topics.

``python -m bdc_occ_ros.ros.sample_publisher --sample ../shared/data/nuscenes_sample0 [--rate 12]
[--count N] [--transport compressed|raw] [--original-stamps]`` plays the nuscenes_sample0 layout
(``imgs/CAM_*.jpg`` + ``sample*.yaml``) as a camera rig would: per set, every camera gets its image
stamped ``t + offset`` with the sample's real per-camera offsets (CAM_FRONT is the anchor, offset 0),
and CameraInfo with the same stamp. ``--original-stamps`` keeps the sample's own stamps (the same set
each time; useful to check that outputs carry the CAM_FRONT stamp). The same :class:`CameraSetPublisher`
drives the node tests.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from bdc_occ_ros.geometry import RigCalibration
from bdc_occ_ros.ros.convert import RclpyFactory, camera_info_msg, compressed_image_msg, image_msg
from bdc_occ_ros.ros.params import DEFAULT_IMAGE_TOPICS


class CameraSetPublisher:
    """Image + CameraInfo publishers for each camera of ``rig`` on the node's topic patterns."""

    def __init__(self, node: Node, rig: RigCalibration, cameras, transport: str = "compressed",
                 image_topic: str | None = None, camera_info_topic: str = "/{camera}/camera_info", depth: int = 10):
        self.rig = rig
        self.cameras = list(cameras)
        self.transport = transport
        self.f = RclpyFactory()
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        image_type = "sensor_msgs/msg/CompressedImage" if transport == "compressed" else "sensor_msgs/msg/Image"
        pattern = image_topic or DEFAULT_IMAGE_TOPICS[transport]
        self.image_pubs = {c: node.create_publisher(self.f.message_class(image_type), pattern.format(camera=c), qos)
                           for c in self.cameras}
        info_cls = self.f.message_class("sensor_msgs/msg/CameraInfo")
        self.info_pubs = {c: node.create_publisher(info_cls, camera_info_topic.format(camera=c), qos)
                          for c in self.cameras}

    def all_publishers(self) -> list:
        return list(self.image_pubs.values()) + list(self.info_pubs.values())

    def publish_info(self, camera: str, stamp_ns: int) -> None:
        self.info_pubs[camera].publish(camera_info_msg(self.f, self.rig.cameras[camera], stamp_ns))

    def publish_image(self, camera: str, image, stamp_ns: int, encoding: str = "rgb8", fmt: str = "jpeg") -> None:
        """``image``: encoded bytes (compressed transport) or an (H, W[, 3]) uint8 array (raw transport)."""
        frame_id = self.rig.cameras[camera].frame_id
        if self.transport == "compressed":
            msg = compressed_image_msg(self.f, bytes(image), stamp_ns, frame_id, fmt)
        else:
            msg = image_msg(self.f, image, stamp_ns, frame_id, encoding)
        self.image_pubs[camera].publish(msg)

    def publish_set(self, images: Mapping[str, object], stamps_ns: Mapping[str, int], with_info: bool = True) -> None:
        """One image (and CameraInfo) per camera, in stamp order as a real rig's drivers would send them."""
        for cam in sorted(images, key=lambda c: stamps_ns[c]):
            if with_info:
                self.publish_info(cam, stamps_ns[cam])
            self.publish_image(cam, images[cam], stamps_ns[cam])


def main(argv: list[str] | None = None) -> int:
    import rclpy

    from bdc_occ_ros.tools.infer import load_sample

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", required=True, help="sample dir (imgs/CAM_*.jpg + sample*.yaml)")
    parser.add_argument("--rate", type=float, default=12.0, help="sets per second (default 12)")
    parser.add_argument("--count", type=int, default=0, help="number of sets (0: until interrupted)")
    parser.add_argument("--transport", choices=("compressed", "raw"), default="compressed")
    parser.add_argument("--original-stamps", action="store_true", help="publish the sample's own stamps every time")
    args, ros_args = parser.parse_known_args(argv)

    sample = load_sample(args.sample)
    rclpy.init(args=ros_args)
    node = rclpy.create_node("bdc_occ_sample_publisher")
    try:
        pub = CameraSetPublisher(node, sample.rig, sample.jpeg, args.transport)
        images = dict(sample.jpeg) if args.transport == "compressed" else {c: sample.rgb(c) for c in sample.jpeg}
        anchor = sample.stamps_ns.get("CAM_FRONT", min(sample.stamps_ns.values()))
        offsets = {c: s - anchor for c, s in sample.stamps_ns.items()}
        node.get_logger().info(f"publishing {args.sample} ({args.transport}) at {args.rate} Hz; offsets ms "
                               f"{ {c: round(o / 1e6, 1) for c, o in offsets.items()} }")
        sent = 0
        period = 1.0 / args.rate
        next_t = time.monotonic()
        while rclpy.ok() and (args.count == 0 or sent < args.count):
            base = anchor if args.original_stamps else node.get_clock().now().nanoseconds
            pub.publish_set(images, {c: base + o for c, o in offsets.items()})
            sent += 1
            next_t += period
            rclpy.spin_once(node, timeout_sec=max(0.0, next_t - time.monotonic()))
        node.get_logger().info(f"published {sent} sets")
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

