"""``bdc-occ bag synth|from-nuscenes|info``: camera bags in the nuScenes rosbag2 layout, written with rosbags.

The bag is one file (``X.mcap``, or ``X.db3`` with ``--storage sqlite3``) with the standard rosbag2
``metadata.yaml`` beside it (so write one bag per directory) and the rig's calibration YAML
``X.calibration.yaml`` (for the node's ``calibration_file`` where tf2 is unavailable).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bdc_occ_ros.bags.io import STORAGE_SUFFIXES
from bdc_occ_ros.tools.synth import _image_size as image_size_arg


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("bag", help="write camera rosbags (SynthOcc, nuScenes) and inspect them",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="bag_verb", required=True, metavar="<synth|from-nuscenes|info>")

    synth = sub.add_parser("synth", help="SynthOcc frames as a bag (generated, or from --data)")
    synth.add_argument("--out", required=True, type=Path, help="bag file to write, e.g. demo.mcap")
    synth.add_argument("--scenes", type=int, default=1, help="scenes to generate (default 1)")
    synth.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    synth.add_argument("--frames-per-scene", type=int, default=24, help="frames per scene at 12 Hz (default 24)")
    synth.add_argument("--data", type=Path,
                       help="SynthOcc directory: used as is when it has index.json, else generated into it and kept "
                            "(default: a temporary directory, removed afterwards)")
    synth.add_argument("--image-size", type=image_size_arg, default=(1600, 900),
                       help="WxH of the generated JPEGs (default 1600x900, as nuScenes)")
    synth.add_argument("--workers", type=int, default=1, help="generator processes (default 1)")
    _common(synth)
    synth.set_defaults(func=run_synth)

    nus = sub.add_parser("from-nuscenes", help="one nuScenes scene as a bag (devkit JSON tables + images)")
    nus.add_argument("--dataroot", required=True, type=Path, help="nuScenes root (holds <version>/ and samples/)")
    nus.add_argument("--version", default="v1.0-mini", help="table directory (default v1.0-mini)")
    nus.add_argument("--scene", required=True, help="scene name, e.g. scene-0061")
    nus.add_argument("--out", required=True, type=Path, help="bag file to write")
    nus.add_argument("--gts", type=Path, help="Occ3D gts/ directory (default: <dataroot>/gts when present)")
    nus.add_argument("--sweeps", action="store_true", help="add the 12 Hz non-keyframe images (default: keyframes)")
    nus.add_argument("--max-frames", type=int, help="write only the first N camera sets")
    _common(nus)
    nus.set_defaults(func=run_from_nuscenes)

    info = sub.add_parser("info", help="topics, types and message counts of a bag")
    info.add_argument("bag", type=Path)
    info.set_defaults(func=run_info)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", choices=sorted(STORAGE_SUFFIXES), default="mcap", help="storage plugin (default mcap)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag file")


def _write(args, source) -> int:
    from tqdm import tqdm

    from bdc_occ_ros.bags.io import bag_file_for
    from bdc_occ_ros.bags.layout import calibration_path_for, write_camera_bag
    from bdc_occ_ros.ros.convert import RosbagsFactory

    out = bag_file_for(args.out, args.storage)
    with tqdm(total=source.num_frames, desc=f"bag {out.name}", unit="frame") as bar:
        counts = write_camera_bag(out, source.rig, source.frames, RosbagsFactory(), overwrite=args.overwrite,
                                  progress=bar)
    print(f"wrote {out} ({sum(counts.values())} messages, {len(counts)} topics, {out.stat().st_size / 1e6:.1f} MB), "
          f"{out.parent / 'metadata.yaml'} and {calibration_path_for(out)}")
    return 0


def run_synth(args) -> int:
    from tqdm import tqdm

    from bdc_occ_ros.bags.synth import generate_synth_data, synth_frames

    if args.data is not None and (args.data / "index.json").is_file():
        return _write(args, synth_frames(args.data))
    data = args.data or Path(tempfile.mkdtemp(prefix="bdc_occ_synth_"))
    try:
        with tqdm(total=args.scenes * args.frames_per_scene, desc="synth", unit="frame") as bar:
            generate_synth_data(data, args.scenes, args.seed, args.frames_per_scene, args.image_size, args.workers,
                                progress=bar.update)
        return _write(args, synth_frames(data))
    finally:
        if args.data is None:
            shutil.rmtree(data, ignore_errors=True)


def run_from_nuscenes(args) -> int:
    from bdc_occ_ros.bags.nuscenes import NuScenesTables, nuscenes_frames

    tables = NuScenesTables.load(args.dataroot, args.version)
    gts = args.gts if args.gts is not None else args.dataroot / "gts"
    if args.gts is not None and not gts.is_dir():
        raise FileNotFoundError(f"--gts directory not found: {gts}")
    source = nuscenes_frames(tables, args.scene, sweeps=args.sweeps, gts=gts if gts.is_dir() else None,
                             max_frames=args.max_frames)
    return _write(args, source)


def run_info(args) -> int:
    from bdc_occ_ros.bags.io import bag_topics

    topics = bag_topics(args.bag)
    width = max(len(t) for t in topics) if topics else 0
    for topic, (msgtype, count) in sorted(topics.items()):
        print(f"{topic:<{width}}  {count:6d}  {msgtype}")
    print(f"{len(topics)} topics, {sum(c for _, c in topics.values())} messages")
    return 0
