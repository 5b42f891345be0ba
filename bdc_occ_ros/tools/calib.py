"""``bdc-occ calib from-info INFO.yaml --out calib.yaml``: an mmdet3d-style info record to the calibration YAML.

The info record is the ``sample0000.yaml`` layout of the nuScenes sample (``cams.<NAME>.cam_intrinsic``,
``sensor2ego_rotation`` (w, x, y, z), ``sensor2ego_translation``); the output is the schema the node reads
with ``calibration_file`` (see ``RigCalibration.load``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from bdc_occ_ros.geometry import RigCalibration


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("calib", help="convert calibration formats (from-info)")
    verbs = parser.add_subparsers(dest="calib_verb", required=True, metavar="<from-info>")
    p = verbs.add_parser("from-info", help="mmdet3d/BEVDet info record (YAML or JSON) -> calibration YAML")
    p.add_argument("info", type=Path, help="info record, e.g. nuscenes_sample0/sample0000.yaml")
    p.add_argument("--out", type=Path, required=True, help="calibration YAML to write")
    p.add_argument("--width", type=int, default=1600, help="image width the intrinsics refer to (default 1600)")
    p.add_argument("--height", type=int, default=900, help="image height the intrinsics refer to (default 900)")
    p.add_argument("--base-frame", default="base_link", help="frame the extrinsics are expressed in")
    p.add_argument("--comment", default=None, help="header comment written at the top of the file")
    p.set_defaults(func=run)


def load_info(path: Path) -> dict:
    """Read an info record (YAML, which also parses JSON); the error names the file."""
    if not path.is_file():
        raise FileNotFoundError(f"info record not found: {path}")
    try:
        info = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML/JSON: {exc}") from exc
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected a mapping (an mmdet3d info record with 'cams')")
    return info


def from_info_file(info_path: Path, out: Path, width: int = 1600, height: int = 900,
                   base_frame: str = "base_link", comment: str | None = None) -> RigCalibration:
    """Convert ``info_path`` and write ``out``; returns the calibration."""
    rig = RigCalibration.from_info(load_info(info_path), width=width, height=height, base_frame=base_frame)
    header = comment if comment is not None else f"Camera calibration converted from {info_path.name} by bdc-occ calib"
    body = yaml.safe_dump(rig.to_dict(), sort_keys=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"# {line}\n" for line in header.splitlines()) + body)
    return rig


def run(args: argparse.Namespace) -> int:
    rig = from_info_file(args.info, args.out, args.width, args.height, args.base_frame, args.comment)
    print(f"wrote {args.out}: {len(rig.cameras)} cameras {rig.names} in {rig.base_frame}")
    return 0
