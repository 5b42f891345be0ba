"""A minimal ``ros2 bag record`` for installs without ros2cli: records topics to a rosbag2 file with rosbags.

    python -m bdc_occ_ros.ros.recorder --out OUT.mcap TOPIC [TOPIC ...] [--wait-timeout S]

Each topic's type is taken from the ROS graph once a publisher appears (as ``ros2 bag record`` does);
messages arrive serialized (``raw=True`` subscriptions, no Python deserialization) and are written
unchanged with the *receipt* time (system clock, ns) as log time, so ``log time - header.stamp`` is the
end-to-end latency. Prints ``recording <n> topics`` once subscribed to all, one ``received <topic>
<header stamp ns or -1> <receipt ns>`` line per message when ``--print`` is set, and closes the bag cleanly on SIGINT
or SIGTERM. Subscriptions (depth 10) match the publishers' QoS as ``ros2 bag record`` does: reliable
for reliable publishers (the node's outputs) so nothing is lost, best effort for sensor-data ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bdc_occ_ros.bags.io import BagWriter, offered_qos
from bdc_occ_ros.ros.convert import RosbagsFactory, stamp_to_ns
from bdc_occ_ros.ros.signals import stop_on_signals

_POLL_S = 0.1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bdc_occ_recorder", description=__doc__.splitlines()[0])
    ap.add_argument("topics", nargs="+", help="fully qualified topics to record")
    ap.add_argument("--out", required=True, type=Path, help="bag file to write (.mcap or .db3)")
    ap.add_argument("--wait-timeout", type=float, default=120.0,
                    help="seconds to wait for a publisher of every topic (default 120)")
    ap.add_argument("--print", dest="print_each", action="store_true", help="print one line per received message")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    stop = stop_on_signals()
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("bdc_occ_recorder")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    factory = RosbagsFactory()
    try:
        types = _wait_for_types(node, args.topics, args.wait_timeout, stop.is_set)
        if types is None:
            return 130 if stop.is_set() else 1
        with BagWriter(args.out, factory.typestore, overwrite=args.overwrite) as bag:
            def callback(topic: str, msgtype: str):
                def on_message(raw: bytes) -> None:
                    receipt = time.time_ns()
                    bag.write_raw(topic, msgtype, raw, receipt, qos=offered_qos(depth=1))
                    if args.print_each:
                        msg = factory.typestore.deserialize_cdr(raw, msgtype)  # zero-copy for arrays
                        stamp = stamp_to_ns(msg.header.stamp) if hasattr(msg, "header") else -1
                        print(f"received {topic} {stamp} {receipt}", flush=True)
                return on_message

            for topic, msgtype in types.items():
                pkg, _, name = msgtype.split("/")
                cls = getattr(__import__(f"{pkg}.msg", fromlist=[name]), name)
                node.create_subscription(cls, topic, callback(topic, msgtype), _matching_qos(node, topic), raw=True)
            print(f"recording {len(types)} topics to {args.out}", flush=True)
            while not stop.is_set():
                executor.spin_once(timeout_sec=_POLL_S)
            counts = dict(bag.counts)
        print(f"recorder: wrote {sum(counts.values())} messages to {args.out}: {counts}", flush=True)
        return 0
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()


def _matching_qos(node, topic: str):
    """Depth-10 QoS that every current publisher of ``topic`` is compatible with (as ``ros2 bag record``
    adapts): reliable unless one offers best effort, transient-local only if all offer it."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    offered = [info.qos_profile for info in node.get_publishers_info_by_topic(topic)]
    reliable = all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
    latched = bool(offered) and all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
    return QoSProfile(depth=10,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def _wait_for_types(node, topics: list[str], timeout: float, stopped) -> dict[str, str] | None:
    """Topic -> ROS type (``pkg/msg/Name``) from the graph, once every topic has a publisher."""
    deadline = time.monotonic() + timeout
    while True:
        graph = dict(node.get_topic_names_and_types())
        missing = [t for t in topics if not graph.get(t)]
        if not missing:
            return {t: graph[t][0] for t in topics}
        if stopped():
            return None
        if time.monotonic() > deadline:
            print(f"recorder: no publisher for {missing} after {timeout} s", file=sys.stderr, flush=True)
            return None
        time.sleep(_POLL_S)


if __name__ == "__main__":
    sys.exit(main())
