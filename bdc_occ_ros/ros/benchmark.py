"""Measure the running node: stamp -> publish latency, per-stage times, CPU and RSS at a given input rate.

    unshare -n sh -c 'ip link set lo up; export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \
        FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_shm.xml; \
        .venv/bin/python -m bdc_occ_ros.ros.benchmark --sample ../shared/data/nuscenes_sample0 --rate 12 \
            --seconds 60 --json out/node_bench.json -- -p calibration_file:=config/calibration/nuscenes.yaml'

Starts ``bdc_occ_node`` (arguments after ``--`` go to its ``--ros-args``), publishes the sample's six
JPEGs with CameraInfo at ``--rate`` Hz stamped with the wall clock (the sample's per-camera offsets),
and records, after a warm-up: latency from the CAM_FRONT stamp to receipt of ``~/occupancy/voxels``,
the node's own ``~/debug/latency_ms`` stages, the non-inference share (decode + preprocess +
postprocess + convert + publish), and the node process's CPU (% of one core) and RSS (max) from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NON_INFERENCE_STAGES = ("decode", "preprocess", "postprocess", "convert", "publish")


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _stats(values) -> dict:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    p50, p95 = np.percentile(a, [50, 95])
    return {"n": int(a.size), "p50": round(float(p50), 1), "p95": round(float(p95), 1),
            "mean": round(float(a.mean()), 1)}


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    from bdc_occ_ros.msg import SemanticVoxelGrid
    from bdc_occ_ros.ros.convert import OUTPUT_TOPICS, OUTPUT_TYPES, RclpyFactory, stamp_to_ns
    from bdc_occ_ros.ros.sample_publisher import CameraSetPublisher
    from bdc_occ_ros.tools.infer import load_sample

    argv = sys.argv[1:] if argv is None else argv
    node_args = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", required=True)
    parser.add_argument("--rate", type=float, default=12.0)
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window after warm-up")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds after the first output not measured")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)

    sample = load_sample(args.sample)
    node_proc = subprocess.Popen([sys.executable, "-m", "bdc_occ_ros.ros.node", "--ros-args", *node_args])
    rclpy.init()
    node = rclpy.create_node("bdc_occ_benchmark")
    latencies, stages, received = [], [], []
    node.create_subscription(SemanticVoxelGrid, "/bdc_occ/occupancy/voxels",
                             lambda m: received.append((time.time_ns(), stamp_to_ns(m.header.stamp))), 1)
    factory = RclpyFactory()
    for key in ("points", "grid", "markers"):  # every output is built and published, as with RViz attached
        node.create_subscription(factory.message_class(OUTPUT_TYPES[key]), f"/bdc_occ/{OUTPUT_TOPICS[key]}",
                                 lambda m: None, 1)
    node.create_subscription(DiagnosticArray, "/bdc_occ/debug/latency_ms",
                             lambda m: stages.append({kv.key: float(kv.value) for kv in m.status[0].values}), 10)
    pub = CameraSetPublisher(node, sample.rig, sample.jpeg, "compressed")
    offsets = {c: s - sample.stamps_ns["CAM_FRONT"] for c, s in sample.stamps_ns.items()}
    period, sent = 1.0 / args.rate, 0
    first_output = measure_from = measure_to = None
    cpu0 = t_cpu0 = None
    rss = []
    try:
        next_t = time.monotonic()
        while node_proc.poll() is None:
            now_ns = time.time_ns()
            for cam in pub.cameras:
                pub.publish_info(cam, now_ns)
            pub.publish_set(sample.jpeg, {c: now_ns + o for c, o in offsets.items()}, with_info=False)
            sent += 1
            next_t += period
            while (wait := next_t - time.monotonic()) > 0:
                rclpy.spin_once(node, timeout_sec=wait)
            if first_output is None and received:
                first_output = time.monotonic()
                measure_from = first_output + args.warmup
                measure_to = measure_from + args.seconds
            if measure_from is not None and cpu0 is None and time.monotonic() >= measure_from:
                cpu0, t_cpu0, n_recv0, n_stage0, sent0 = (_proc_cpu_s(node_proc.pid), time.monotonic(),
                                                          len(received), len(stages), sent)
            if cpu0 is not None:
                rss.append(_proc_rss_mb(node_proc.pid))
                if time.monotonic() >= measure_to:
                    break
        if cpu0 is None:
            raise RuntimeError(f"node exited or produced no output (exit code {node_proc.poll()})")
        cpu = (_proc_cpu_s(node_proc.pid) - cpu0) / (time.monotonic() - t_cpu0) * 100
        window = received[n_recv0:]
        latencies = [(recv - stamp) / 1e6 for recv, stamp in window]
        measured = stages[n_stage0:]
        non_inference = [sum(s.get(k, 0.0) for k in NON_INFERENCE_STAGES) for s in measured]
        report = {
            "input_rate_hz": args.rate,
            "window_s": args.seconds,
            "sets_sent": sent - sent0,
            "outputs": len(window),
            "output_rate_hz": round(len(window) / args.seconds, 2),
            "latency_stamp_to_receipt_ms": _stats(latencies),
            "non_inference_ms": _stats(non_inference),
            "stages_ms": {k: _stats([s[k] for s in measured if k in s]) for k in (measured[0] if measured else {})},
            "node_cpu_percent_of_one_core": round(cpu, 1),
            "node_rss_mb_max": round(max(rss), 1),
            "cpu_count": os.cpu_count(),
            "load_avg": os.getloadavg(),
        }
        text = json.dumps(report, indent=2)
        print(text)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(text)
        return 0
    finally:
        node_proc.send_signal(signal.SIGINT)  # rclpy's clean shutdown
        node_proc.wait(timeout=20)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
