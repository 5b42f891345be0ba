"""A minimal ``ros2 bag play`` for installs without ros2cli (PyPI wheels): plays a rosbag2 over DDS.

    python -m bdc_occ_ros.ros.bag_player BAG [--rate R] [--loops N] [--restamp] [--wait-subscribers TOPIC ...]
                                             [--report FILE.json] [--skip TOPIC ...]

Messages are published at their recorded log times (scaled by ``--rate``), images and CameraInfo with
sensor-data QoS (best effort, as camera drivers do), ``/tf_static`` transient-local (skipped when
``tf2_msgs`` is not importable, as in the PyPI wheels: the node then reads the bag's calibration YAML),
other topics reliable. Topics whose message type cannot be imported are skipped with a warning.

Start-up for a node with a two-phase start (CameraInfo first, then engine, then image subscriptions):
until every ``--wait-subscribers`` topic has a subscriber in the graph, the first CameraInfo of every
camera is re-published twice a second; then playback starts. ``--restamp`` rewrites header stamps to
the wall-clock time of playback (stamp' = start + (stamp - first) / rate), as a live camera would
stamp them, so receivers can measure latency against the system clock. ``--loops N`` plays the bag N
times back to back (one sample period apart; needs ``--restamp`` so time keeps moving forward). The
report (``--report``) lists, per anchor image published, the bag stamp and the published stamp. The
bag is loaded into memory first (meant for short bags such as the demo's).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from bdc_occ_ros.bags.io import read_messages
from bdc_occ_ros.bags.layout import ANCHOR_CAMERA, GROUND_TRUTH_TOPIC, SAMPLE_PERIOD_NS, TF_STATIC_TOPIC, image_topic
from bdc_occ_ros.ros.convert import stamp_to_ns
from bdc_occ_ros.ros.signals import stop_on_signals

_PRIME_PERIOD_S = 0.5
_SENSOR_SUFFIXES = ("/camera_info", "/image_rect_compressed", "/image_rect", "/image_raw", "/image")


def _message_class(msgtype: str):
    pkg, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError):
        return None


def _set_stamp(msg, stamp_ns: int) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)


class Player:
    """Publishers per topic (created on first use) and the playback clock."""

    def __init__(self, node, rate: float, restamp: bool):
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

        self.node = node
        self.rate = rate
        self.restamp = restamp
        self._sensor_qos = qos_profile_sensor_data
        self._reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                   durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.publishers: dict[str, object] = {}
        self.classes: dict[str, object] = {}
        self.skipped: dict[str, str] = {}
        self.published = 0
        self.start_ns = 0  # wall clock of the first message's playback
        self.first_ns = 0  # log time of the bag's first played message

    def publisher(self, topic: str, msgtype: str):
        if topic in self.publishers or topic in self.skipped:
            return self.publishers.get(topic)
        cls = _message_class(msgtype)
        if cls is None:
            self.skipped[topic] = f"{msgtype} is not importable"
            print(f"bag_player: skipping {topic}: {msgtype} is not importable here", flush=True)
            return None
        if topic == TF_STATIC_TOPIC:
            qos = self._latched
        elif topic.endswith(_SENSOR_SUFFIXES):
            qos = self._sensor_qos
        else:
            qos = self._reliable
        self.classes[topic] = cls
        self.publishers[topic] = self.node.create_publisher(cls, topic, qos)
        return self.publishers[topic]

    def playback_ns(self, log_ns: int) -> int:
        """Wall-clock time at which a message with this log time is published (and its new stamp)."""
        return self.start_ns + int((log_ns - self.first_ns) / self.rate)

    def publish(self, topic: str, raw: bytes, stamp_ns: int | None) -> None:
        """Publish CDR bytes; with restamping (and a header) deserialize, set the stamp, publish the object."""
        from rclpy.serialization import deserialize_message

        pub = self.publishers[topic]
        if stamp_ns is None:
            pub.publish(bytes(raw))
        else:
            msg = deserialize_message(bytes(raw), self.classes[topic])
            _set_stamp(msg, stamp_ns)
            pub.publish(msg)
        self.published += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bdc_occ_bag_player", description=__doc__.splitlines()[0])
    ap.add_argument("bag", type=Path, help="bag file (.mcap/.db3) or rosbag2 directory")
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    ap.add_argument("--loops", type=int, default=1, help="play the bag this many times (default 1)")
    ap.add_argument("--restamp", action="store_true", help="stamp headers with the playback wall-clock time")
    ap.add_argument("--wait-subscribers", nargs="*", default=[], metavar="TOPIC",
                    help="wait until each of these topics has a subscriber before playing")
    ap.add_argument("--wait-timeout", type=float, default=300.0, help="seconds to wait for them (default 300)")
    ap.add_argument("--skip", nargs="*", default=[GROUND_TRUTH_TOPIC], metavar="TOPIC",
                    help=f"topics not to publish (default: {GROUND_TRUTH_TOPIC})")
    ap.add_argument("--anchor", default=ANCHOR_CAMERA, help="camera whose images the report lists")
    ap.add_argument("--report", type=Path, help="write a JSON report (frames, stamp mapping) here")
    args = ap.parse_args(argv)
    if args.rate <= 0:
        ap.error(f"--rate must be > 0, got {args.rate}")
    if args.loops < 1 or (args.loops > 1 and not args.restamp):
        ap.error(f"--loops must be >= 1 and needs --restamp when > 1, got {args.loops}")
    if not args.bag.exists():
        ap.error(f"bag not found: {args.bag}")

    import rclpy
    from rclpy.signals import SignalHandlerOptions

    stop = stop_on_signals()
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("bdc_occ_bag_player")
    player = Player(node, args.rate, args.restamp)
    anchor_topic = image_topic(args.anchor)
    frames: list[list[int]] = []  # [bag stamp, published stamp] per anchor image
    try:
        messages = [m for m in read_messages(args.bag) if m.topic not in args.skip]
        if not messages:
            print(f"bag_player: {args.bag} has no messages to play", file=sys.stderr, flush=True)
            return 1
        for m in messages:
            player.publisher(m.topic, m.msgtype)
        if not _prime(node, player, messages, args.wait_subscribers, args.wait_timeout, stop.is_set):
            return 130 if stop.is_set() else 1
        player.published = 0  # count played messages only, not the priming CameraInfo
        player.first_ns = messages[0].log_time_ns
        loop_ns = messages[-1].log_time_ns - player.first_ns + SAMPLE_PERIOD_NS
        player.start_ns = time.time_ns()
        print(f"bag_player: playing {len(messages)} messages from {args.bag} at rate {args.rate}, "
              f"{args.loops} time(s)", flush=True)
        for loop in range(args.loops):
            for m in messages:
                if stop.is_set():
                    break
                if m.topic not in player.publishers or (loop and m.topic == TF_STATIC_TOPIC):
                    continue
                shift = loop * loop_ns
                delay = (player.playback_ns(m.log_time_ns + shift) - time.time_ns()) / 1e9
                if delay > 0:
                    time.sleep(delay)
                new_stamp = None
                if args.restamp and hasattr(m.msg, "header"):
                    new_stamp = player.playback_ns(stamp_to_ns(m.msg.header.stamp) + shift)
                player.publish(m.topic, m.raw, new_stamp)
                if m.topic == anchor_topic:
                    bag_stamp = stamp_to_ns(m.msg.header.stamp)
                    frames.append([bag_stamp, bag_stamp if new_stamp is None else new_stamp])
        wall = (time.time_ns() - player.start_ns) / 1e9
        print(f"bag_player: published {player.published} messages, {len(frames)} {args.anchor} frames "
              f"in {wall:.1f} s", flush=True)
        if args.report:
            args.report.write_text(json.dumps({
                "bag": str(args.bag), "rate": args.rate, "loops": args.loops, "restamp": args.restamp,
                "messages": player.published,
                "frames": len(frames), "anchor": args.anchor, "wall_s": wall, "skipped_topics": player.skipped,
                "stamps": frames}, indent=1))
        return 130 if stop.is_set() else 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def _prime(node, player: Player, messages, wait_topics: list[str], timeout: float, stopped) -> bool:
    """Re-publish each camera's first CameraInfo until every ``wait_topics`` topic has a subscriber."""
    first_infos = {}
    for m in messages:
        if m.topic.endswith("/camera_info") and m.topic in player.publishers and m.topic not in first_infos:
            first_infos[m.topic] = m
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        missing = [t for t in wait_topics if node.count_subscribers(t) < 1]
        if not missing:
            return True
        if stopped():
            return False
        if time.monotonic() > deadline:
            print(f"bag_player: no subscriber on {missing} after {timeout} s", file=sys.stderr, flush=True)
            return False
        if not announced:
            print(f"bag_player: waiting for subscribers on {missing}", flush=True)
            announced = True
        for topic, m in first_infos.items():
            player.publish(topic, m.raw, time.time_ns() if player.restamp else None)
        time.sleep(_PRIME_PERIOD_S)


if __name__ == "__main__":
    sys.exit(main())
