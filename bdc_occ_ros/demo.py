"""``make demo``: the real node over real DDS on a synthetic nuScenes-layout bag, with pictures and numbers.

    python -m bdc_occ_ros.demo [--frames N] [--loops L] [--rate R] [--out DIR] [--engine E] ...

1. Makes a SynthOcc bag in the nuScenes layout (cached under ``data/demo/``; only the first run renders).
2. Starts three processes on loopback DDS (inside ``unshare -n`` with ``lo`` up when permitted, else
   ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` + the loopback Fast DDS profile ``config/fastdds_shm.xml``):
   the real ``bdc_occ_node`` with the shipped model and the bag's calibration YAML, a recorder of the
   node's outputs (``ros/recorder.py`` -> ``<out>/outputs.mcap``) and a player (``ros/bag_player.py``)
   that publishes the bag at its recorded 12 Hz, restamped to the wall clock like a live camera, once
   the node and the recorder are subscribed. The node is slower than 12 Hz on a CPU: it keeps the newest
   camera set and drops the rest, and the demo counts that.
3. Writes ``<out>/summary.json`` (frames in/out, dropped, latency image stamp -> output receipt,
   Occ3D mIoU of the node's answers against the bag's ground truth), ``<out>/bev.png`` (ground truth next
   to prediction, bird's eye) and ``<out>/voxels.png`` (3D view of the predicted voxels).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bdc_occ_ros.bags.layout import (
    GROUND_TRUTH_TOPIC,
    calibration_path_for,
    image_topic,
)
from bdc_occ_ros.bags.replay import DIAGNOSTICS_TOPIC, output_topic
from bdc_occ_ros.classes import FREE_LABEL, OCC_CLASSES, OCC_PALETTE
from bdc_occ_ros.ros.convert import OUTPUT_TOPICS

REPO = Path(__file__).resolve().parents[1]
#: What the recorder records: every output of the node (vision_msgs is not in the PyPI wheels) and /diagnostics.
RECORDED_TOPICS = [output_topic(k) for k in OUTPUT_TOPICS if k != "objects"] + [DIAGNOSTICS_TOPIC]
VOXELS_TOPIC = output_topic("voxels")
_NETNS_FLAG = "BDC_OCC_DEMO_NETNS"
_POLL_S = 0.2


class DemoError(RuntimeError):
    """The demo cannot run or a step failed; the message says what and where the logs are."""


# --------------------------------------------------------------------------- isolation


def network_isolated() -> bool:
    """True when this process's network namespace has only the loopback interface."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def _reexec_in_netns(argv: list[str]) -> int | None:
    """Run this demo again inside a private network namespace with ``lo`` up; None when not possible."""
    if os.environ.get(_NETNS_FLAG) or network_isolated() or os.geteuid() != 0:
        return None
    if not (shutil.which("unshare") and shutil.which("ip")):
        return None
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return None
    cmd = ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
           sys.executable, "-m", "bdc_occ_ros.demo", *argv]
    return subprocess.call(cmd, env={**os.environ, _NETNS_FLAG: "1"})


def dds_environment() -> dict[str, str]:
    """Environment for the demo's ROS processes: loopback discovery, the big-SHM Fast DDS profile, a domain id."""
    profile = str(REPO / "config" / "fastdds_shm.xml")
    env = dict(os.environ)
    env.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", FASTDDS_DEFAULT_PROFILES_FILE=profile,
               FASTRTPS_DEFAULT_PROFILES_FILE=profile, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    # Shared memory crosses network namespaces: a random domain keeps concurrent demos/tests apart.
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(102, 200)))
    return env


# --------------------------------------------------------------------------- processes


class Child:
    """A child process in its own process group with stdout+stderr in ``log``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path):
        self.name, self.log = name, log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(argv, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 25) -> str:
        return "\n".join(f"  | {line}" for line in self.text().splitlines()[-lines:])

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if not self.running():
                raise DemoError(f"{self.name} exited (code {self.popen.returncode}) before '{needle}'; "
                                f"log {self.log}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise DemoError(f"{self.name}: no '{needle}' after {timeout:.0f} s; log {self.log}:\n{self.tail()}")
            time.sleep(_POLL_S)

    def stop(self, grace: float = 15.0) -> int:
        """SIGINT to the process group (clean shutdown), SIGKILL after ``grace`` seconds."""
        if self.running():
            os.killpg(self.popen.pid, signal.SIGINT)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        return self.popen.returncode


# --------------------------------------------------------------------------- the bag


def _generator_digest() -> str:
    """Short hash of the SynthOcc generator's source: a changed generator renders a new demo bag."""
    import bdc_occ_ros.data

    sources = sorted(Path(bdc_occ_ros.data.__file__).parent.glob("*.py"))
    return hashlib.sha1(b"".join(f.read_bytes() for f in sources)).hexdigest()[:8]


def demo_bag(frames: int, scenes: int, seed: int, cache: Path) -> Path:
    """The cached demo bag for these settings and generator version (rendered on first use)."""
    from tqdm import tqdm

    from bdc_occ_ros.bags.layout import write_camera_bag
    from bdc_occ_ros.bags.synth import generate_synth_data, synth_frames
    from bdc_occ_ros.ros.convert import RosbagsFactory

    scenes = min(scenes, frames)
    per_scene = math.ceil(frames / scenes)
    bag = cache / f"synth_seed{seed}_{frames}f{scenes}s_{_generator_digest()}" / "demo.mcap"
    if bag.is_file() and calibration_path_for(bag).is_file():
        print(f"demo: using cached bag {bag}")
        return bag
    shutil.rmtree(bag.parent, ignore_errors=True)
    data = bag.parent / "synthocc"
    print(f"demo: rendering {scenes * per_scene} SynthOcc frames for the demo bag (first run only, a few s/frame)")
    with tqdm(total=scenes * per_scene, desc="synth", unit="frame") as bar:
        generate_synth_data(data, scenes, seed, per_scene, workers=min(2, scenes), progress=bar.update)
    source = synth_frames(data, max_frames=frames)
    with tqdm(total=source.num_frames, desc="bag", unit="frame") as bar:
        write_camera_bag(bag, source.rig, source.frames, RosbagsFactory(), progress=bar)
    shutil.rmtree(data)
    return bag


# --------------------------------------------------------------------------- run


def model_files(args: argparse.Namespace) -> tuple[Path, Path]:
    """(model config, weights): the given files or the shipped edge model; DemoError naming a missing one."""
    from bdc_occ_ros.ros.params import DEFAULT_CHECKPOINT, DEFAULT_MODEL_CONFIG, shipped_file

    config = args.model_config or shipped_file(DEFAULT_MODEL_CONFIG)
    checkpoint = args.checkpoint or shipped_file(DEFAULT_CHECKPOINT)
    for what, path in (("model config", config), ("model weights", checkpoint)):
        if not Path(path).is_file():
            raise DemoError(f"{what} not found: {path}. The demo runs the shipped model "
                            f"({DEFAULT_CHECKPOINT}); train it (models/README.md) or pass --checkpoint/--model-config.")
    return Path(config), Path(checkpoint)


def run_demo(args: argparse.Namespace) -> dict:
    from bdc_occ_ros.ros.params import shipped_file

    config, checkpoint = model_files(args)
    t_start = time.monotonic()
    bag = demo_bag(args.frames, args.scenes, args.seed, args.cache)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for old in ("outputs.mcap", "metadata.yaml", "summary.json", "bev.png", "voxels.png", "player.json"):
        (out / old).unlink(missing_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    loops = args.loops or max(1, round(args.duration * 12.0 * args.rate / args.frames))
    env = dds_environment()
    env["ROS_LOG_DIR"] = str(logs / "ros")
    isolation = ("network namespace (unshare -n)" if network_isolated()
                 else "loopback only (LOCALHOST + Fast DDS profile)")
    print(f"demo: DDS {isolation}, domain {env['ROS_DOMAIN_ID']}; bag {bag} ({args.frames} frames x {loops} loops "
          f"at {12 * args.rate:g} Hz)")

    node_bin = Path(sys.executable).parent / "bdc_occ_node"
    node_cmd = [str(node_bin)] if node_bin.is_file() else [sys.executable, "-m", "bdc_occ_ros.ros.node"]
    node_cmd += ["--ros-args", "--params-file", str(shipped_file("config/bdc_occ.param.yaml")),
                 "-p", f"calibration_file:={calibration_path_for(bag)}", "-p", f"model_config:={config}",
                 "-p", f"checkpoint:={checkpoint}", "-p", f"engine:={args.engine}"]
    children: list[Child] = []
    try:
        node = Child("node", node_cmd, env, logs / "node.log")
        children.append(node)
        recorder_cmd = [sys.executable, "-m", "bdc_occ_ros.ros.recorder", "--out", str(out / "outputs.mcap"),
                        "--print", *RECORDED_TOPICS]
        recorder = Child("recorder", recorder_cmd, env, logs / "recorder.log")
        children.append(recorder)
        recorder.wait_for("recording", timeout=args.timeout)
        player = Child("player", [sys.executable, "-m", "bdc_occ_ros.ros.bag_player", str(bag), "--restamp",
                                  "--rate", str(args.rate), "--loops", str(loops), "--report", str(out / "player.json"),
                                  "--wait-timeout", str(args.timeout), "--wait-subscribers", VOXELS_TOPIC,
                                  *[image_topic(c) for c in _cameras()]], env, logs / "player.log")
        children.append(player)
        player.wait_for("bag_player: playing", timeout=args.timeout + 10)
        print("demo: node ready, playing the bag ...")
        t_play = time.monotonic()
        while player.running():
            if not node.running():
                raise DemoError(f"the node exited (code {node.popen.returncode}); log {node.log}:\n{node.tail()}")
            time.sleep(_POLL_S)
        if player.popen.returncode != 0:
            raise DemoError(f"player failed (code {player.popen.returncode}); log {player.log}:\n{player.tail()}")
        playback_s = time.monotonic() - t_play
        published = json.loads((out / "player.json").read_text())["stamps"]
        _settle(recorder, published[-1][1] if published else 0, args.timeout)
        recorder.stop()
        node.stop()
    finally:
        for child in reversed(children):
            child.stop(grace=5)
    summary = analyse(bag, out, args.engine, checkpoint)
    summary.update(playback_s=round(playback_s, 1), wall_s=round(time.monotonic() - t_start, 1),
                   isolation=isolation, logs=str(logs))
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _cameras() -> list[str]:
    from bdc_occ_ros.ros.params import NodeParams

    return list(NodeParams().cameras)


def _recorded_grids(recorder: Child) -> list[tuple[int, int]]:
    """(header stamp, receipt time) ns of every voxel grid the recorder reported so far."""
    prefix = f"received {VOXELS_TOPIC} "
    return [tuple(int(v) for v in line.split()[-2:]) for line in recorder.text().splitlines()
            if line.startswith(prefix)]


def _wait_for_siblings(recorder: Child, frames: int, deadline: float) -> None:
    """The node publishes a frame's outputs one after the other: wait until every output topic has ``frames``."""
    topics = [t for t in RECORDED_TOPICS if t != DIAGNOSTICS_TOPIC]
    while time.monotonic() < deadline:
        lines = recorder.text().splitlines()
        if all(sum(line.startswith(f"received {t} ") for line in lines) >= frames for t in topics):
            return
        time.sleep(_POLL_S)


def _settle(recorder: Child, last_stamp_ns: int, timeout_s: float) -> None:
    """Wait until the node's answer to the last camera set is recorded: it keeps the newest set, so it
    always answers the last one. Should that set never complete (a lost image), stop once no grid came
    for three inference periods."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        grids = _recorded_grids(recorder)
        if grids and max(stamp for stamp, _ in grids) >= last_stamp_ns:
            _wait_for_siblings(recorder, len(grids), deadline=min(deadline, time.monotonic() + 10.0))
            return
        if len(grids) >= 2:
            period_s = float(np.median(np.diff([r for _, r in grids]))) / 1e9
            if (time.time_ns() - grids[-1][1]) / 1e9 > max(10.0, 3.0 * period_s):
                return
        time.sleep(_POLL_S)
    print(f"demo: warning: no answer to the last camera set within {timeout_s:.0f} s", file=sys.stderr)


# --------------------------------------------------------------------------- results


def analyse(bag: Path, out: Path, engine: str, checkpoint: Path) -> dict:
    """summary dict + bev.png + voxels.png from the recorded outputs, the player's report and the bag."""
    from bdc_occ_ros.bags.io import bag_topics, read_messages
    from bdc_occ_ros.eval.metrics import OccMetric
    from bdc_occ_ros.eval.visualize import bev_image, save_png, side_by_side
    from bdc_occ_ros.ros.convert import stamp_to_ns, voxel_grid_arrays

    report = json.loads((out / "player.json").read_text())
    to_bag = {published: original for original, published in report["stamps"]}
    gts = {}
    for m in read_messages(bag, [GROUND_TRUTH_TOPIC]):
        labels, vis = voxel_grid_arrays(m.msg)
        gts[stamp_to_ns(m.msg.header.stamp)] = (labels.copy(), vis.copy() if vis is not None else None)
    metric = OccMetric()
    latencies, receipts, last = [], [], None
    for m in read_messages(out / "outputs.mcap", [VOXELS_TOPIC]):
        stamp = stamp_to_ns(m.msg.header.stamp)
        latencies.append((m.log_time_ns - stamp) / 1e6)
        receipts.append(m.log_time_ns)
        gt = gts.get(to_bag.get(stamp, -1))
        if gt is not None:
            pred, _ = voxel_grid_arrays(m.msg)
            metric.update(pred, gt[0], gt[1])
            last = (pred.copy(), gt)
    frames_out = len(latencies)
    metrics = metric.compute() if last is not None else {"miou": float("nan"), "per_class": {}, "samples": 0}
    lat = np.asarray(latencies) if latencies else np.full(1, np.nan)
    summary = {
        "frames_in": int(report["frames"]),
        "frames_out": frames_out,
        "dropped": int(report["frames"]) - frames_out,
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1),
                       "max": round(float(lat.max()), 1)},
        "miou": round(float(metrics["miou"]), 2),
        "miou_frames": int(metrics["samples"]),
        "per_class_iou": {k: (round(float(v), 2) if math.isfinite(v) else None)  # None: class absent
                          for k, v in metrics["per_class"].items()},
        "output_rate_hz": None,
        "engine": engine,
        "checkpoint": str(checkpoint),
        "bag": str(bag),
        "outputs": str(out / "outputs.mcap"),
        "output_topics": {t: c for t, (_, c) in sorted(bag_topics(out / "outputs.mcap").items())},
    }
    if frames_out >= 2:  # the node's answer rate while it was busy
        summary["output_rate_hz"] = round((frames_out - 1) / ((receipts[-1] - receipts[0]) / 1e9), 2)
    if last is not None:
        pred, (gt_labels, gt_vis) = last
        save_png(out / "bev.png", side_by_side([bev_image(gt_labels, gt_vis), bev_image(pred, gt_vis)],
                                               ["ground truth (camera-visible)", "bdc_occ_node output"]))
        save_png(out / "voxels.png", render_voxels(pred))
    return summary


def render_voxels(labels: np.ndarray, free_label: int = FREE_LABEL, voxel_px: float = 5.0,
                  yaw_deg: float = 35.0, pitch_deg: float = 40.0) -> np.ndarray:
    """An RGB picture of the non-free voxels of a (X, Y, Z) label grid: orthographic view from behind-right
    of the ego and above, every voxel a shaded cube (top light, sides darker), far-to-near painter's order,
    faces hidden by a neighbouring voxel skipped, with a legend of the classes present."""
    import cv2

    occupied = labels != free_label
    # camera basis: view direction d (into the scene), screen right r, screen up u (world frame: x fwd, y left, z up)
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    d = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), -math.sin(pitch)])
    r = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    u = np.cross(r, d)
    faces = []  # (normal axis, sign, shade) of faces turned towards the viewer
    for axis in range(3):
        sign = -1 if d[axis] > 0 else 1
        shade = (1.0, 0.8, 0.6)[[2, 0, 1].index(axis)]  # top brightest
        faces.append((axis, sign, shade))
    idx = np.argwhere(occupied)
    if idx.size == 0:
        return np.full((200, 400, 3), 255, np.uint8)
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.float64)
    polys, depths, colors = [], [], []
    for axis, sign, shade in faces:
        nb = idx.copy()
        nb[:, axis] += sign
        inside = np.all((nb >= 0) & (nb < labels.shape), axis=1)
        hidden = np.zeros(len(idx), bool)
        hidden[inside] = occupied[tuple(nb[inside].T)]
        vis = idx[~hidden]
        side = 1 if sign > 0 else 0
        quad = corners[corners[:, axis] == side]
        quad = quad[[0, 1, 3, 2]]  # cyclic order of the face's 4 corners
        pts = vis[:, None, :] + quad[None]  # (N, 4, 3) voxel units
        polys.append(np.stack([pts @ r, -(pts @ u)], axis=-1) * voxel_px)
        depths.append((vis + 0.5) @ d)
        colors.append(OCC_PALETTE[labels[tuple(vis.T)]] * shade)
    polys, depths, colors = np.concatenate(polys), np.concatenate(depths), np.concatenate(colors)
    order = np.argsort(-depths, kind="stable")  # far first
    lo = polys.reshape(-1, 2).min(axis=0) - 10
    size = (polys.reshape(-1, 2).max(axis=0) + 10 - lo).astype(int)
    img = np.full((size[1], size[0] + 230, 3), 255, np.uint8)
    pix = np.round((polys - lo) * 4).astype(np.int32)  # 2 fractional bits (cv2 shift=2)
    for i in order:
        cv2.fillConvexPoly(img, pix[i], tuple(int(c) for c in colors[i]), lineType=cv2.LINE_AA, shift=2)
    present = [int(c) for c in np.unique(labels[occupied])]
    for n, c in enumerate(present):
        y = 20 + 22 * n
        x = size[0] + 10
        cv2.rectangle(img, (x, y - 12), (x + 16, y + 4), tuple(int(v) for v in OCC_PALETTE[c]), -1)
        cv2.rectangle(img, (x, y - 12), (x + 16, y + 4), (0, 0, 0), 1)
        cv2.putText(img, OCC_CLASSES[c], (x + 24, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def print_summary(summary: dict, out: Path) -> None:
    lat = summary["latency_ms"]
    print(f"""
demo: done in {summary['wall_s']:.0f} s
  frames in {summary['frames_in']}, answered {summary['frames_out']}, dropped {summary['dropped']} (the node keeps the
  newest camera set while it computes; {summary['output_rate_hz']} Hz output on this CPU)
  latency image stamp -> output received: p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms
  Occ3D mIoU of the node's answers vs ground truth: {summary['miou']:.2f} ({summary['miou_frames']} frames)
  {out / 'summary.json'}
  {out / 'bev.png'}      (ground truth | prediction, bird's eye)
  {out / 'voxels.png'}   (3D view of the last predicted grid)
  {out / 'outputs.mcap'} (the node's outputs, receipt times as log times)
Open the outputs:
  Foxglove: open {out / 'outputs.mcap'} (File > Open local file); 3D panel with /bdc_occ/occupancy/points
  RViz (ROS 2 install): ros2 bag play {out} & rviz2 -d config/bdc_occ.rviz
""")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m bdc_occ_ros.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=24, help="frames in the demo bag, 12 Hz (default 24)")
    ap.add_argument("--scenes", type=int, default=2, help="SynthOcc scenes in the bag (default 2)")
    ap.add_argument("--seed", type=int, default=7, help="SynthOcc seed of the demo bag (default 7)")
    ap.add_argument("--loops", type=int, default=0, help="times the bag is played (default: ~--duration seconds)")
    ap.add_argument("--duration", type=float, default=45.0, help="playback seconds when --loops is 0 (default 45)")
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1 = recorded 12 Hz)")
    ap.add_argument("--engine", default="bitwise",
                    help="node engine (default bitwise: the binarized model as XNOR-popcount; torch for the reference)")
    ap.add_argument("--model-config", type=Path, help="model YAML (default: the shipped edge model)")
    ap.add_argument("--checkpoint", type=Path, help="weights (default: models/bdc_occ_edge_synth.safetensors)")
    ap.add_argument("--out", type=Path, default=Path("demo_output"), help="output directory (default demo_output)")
    ap.add_argument("--cache", type=Path, default=REPO / "data" / "demo", help="bag cache (default data/demo)")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for the node to start (default 240)")
    args = ap.parse_args(argv)
    if args.frames < 1 or args.scenes < 1 or args.rate <= 0 or args.loops < 0:
        ap.error("--frames and --scenes must be >= 1, --rate > 0, --loops >= 0")
    os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)  # ament index lookups (make demo sets it too)
    try:
        model_files(args)  # fail before anything starts
        code = _reexec_in_netns(argv)
        if code is not None:
            return code
        summary = run_demo(args)
    except DemoError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    print_summary(summary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
