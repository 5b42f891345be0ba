"""``bdc-occ infer --sample DIR --out DIR``: one camera set through the same pipeline as the node.

A *sample directory* has the nuscenes_sample0 layout: ``DIR/imgs/<CAMERA>.jpg`` (six images, any
size) and one mmdet3d-style info record ``DIR/sample*.yaml`` (calibration in ``cams``, per-camera
``timestamp`` in µs). Outputs in ``--out``:

* ``labels.npz`` — Occ3D keys ``semantics`` (200, 200, 16) uint8 and ``mask_camera`` (visibility), plus
  ``stamp_ns``;
* ``bev.png`` — the top-down view of the labels (``eval.visualize.bev_image``: highest observed non-free voxel
  per column, x forward up, unobserved black);
* ``cameras.png`` — the predicted voxels projected into each camera image (2 x 3 grid, nuScenes order);
* ``timings.json`` — per-stage milliseconds.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bdc_occ_ros.classes import OCC_PALETTE
from bdc_occ_ros.geometry import NUSCENES_CAMERAS, RigCalibration
from bdc_occ_ros.ros.convert import occupied_points


@dataclass
class Sample:
    """One sample directory loaded: encoded images and their stamps per camera, the info record, the rig."""

    root: Path
    info: dict
    rig: RigCalibration
    jpeg: dict[str, bytes]  # camera -> encoded image bytes
    stamps_ns: dict[str, int]  # camera -> acquisition stamp

    def rgb(self, camera: str, input_size: tuple[int, int] | None = None) -> np.ndarray:
        """The camera's image, RGB: full size, or decoded for a network of ``input_size`` (H, W) exactly as
        the node does by default (ros.decode.decode_for_input)."""
        from bdc_occ_ros.ros.decode import decode_compressed, decode_for_input

        data = self.jpeg[camera]
        return decode_compressed("jpeg", data) if input_size is None else decode_for_input("jpeg", data, input_size)


def load_sample(root: str | Path, cameras: tuple[str, ...] = NUSCENES_CAMERAS) -> Sample:
    """Read a sample directory; errors name the missing file or field."""
    import cv2
    import yaml

    root = Path(root)
    infos = sorted(root.glob("sample*.yaml"))
    if not infos:
        raise FileNotFoundError(f"{root}: no info record sample*.yaml (expected the nuscenes_sample0 layout)")
    info = yaml.safe_load(infos[0].read_text())
    if not isinstance(info, dict) or "cams" not in info:
        raise ValueError(f"{infos[0]}: not an mmdet3d info record (no 'cams')")
    jpeg, sizes, stamps = {}, {}, {}
    for cam in cameras:
        path = root / "imgs" / f"{cam}.jpg"
        if not path.is_file():
            raise FileNotFoundError(f"{root}: missing image {path}")
        jpeg[cam] = path.read_bytes()
        img = cv2.imdecode(np.frombuffer(jpeg[cam], np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"{path}: not a decodable image")
        sizes[cam] = (img.shape[1], img.shape[0])
        stamps[cam] = int(info["cams"].get(cam, {}).get("timestamp", info.get("timestamp", 0))) * 1000
    widths = {w for w, _ in sizes.values()}
    heights = {h for _, h in sizes.values()}
    if len(widths) != 1 or len(heights) != 1:
        raise ValueError(f"{root}: images differ in size {sizes}; the info record has one size")
    rig = RigCalibration.from_info(info, width=widths.pop(), height=heights.pop())
    rig.ordered(cameras)
    return Sample(root, info, rig, jpeg, stamps)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("infer", help="run the occupancy pipeline on one sample directory")
    p.add_argument("--sample", type=Path, required=True, help="sample dir: imgs/CAM_*.jpg + sample*.yaml")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--engine", default="torch", help="torch | bitwise | onnxruntime | tensorrt (default torch)")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--config", type=Path, default=None, help="model config YAML (default: the shipped edge model)")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the shipped edge model)")
    p.add_argument("--calibration", type=Path, default=None,
                   help="calibration YAML overriding the info record's (e.g. to check a calibration)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bdc_occ_ros.pipeline import OccupancyPipeline
    from bdc_occ_ros.ros.params import NodeParams

    sample = load_sample(args.sample)
    defaults = NodeParams(model_config=str(args.config or ""), checkpoint=str(args.checkpoint or ""))
    model_config, checkpoint = defaults.model_paths()
    pipeline = OccupancyPipeline(model_config, checkpoint, engine=args.engine, device=args.device)
    rig = RigCalibration.load(args.calibration) if args.calibration else sample.rig
    pipeline.set_calibration(rig)
    # decoded as the node does by default (decode_reduction 0 = auto), so infer and node agree
    images = [sample.rgb(name, pipeline.input_size) for name in pipeline.camera_names]
    anchor = sample.stamps_ns.get("CAM_FRONT", 0)
    result = pipeline(images, stamp_ns=anchor)
    full_size = [sample.rgb(name) for name in pipeline.camera_names]  # the pictures at the original resolution
    write_outputs(args.out, result, rig, pipeline.camera_names, full_size)
    print(f"engine {pipeline.engine.name}: {int((result.labels != result.free_label).sum())} occupied voxels, "
          f"{len(result.detections)} detections; wrote {args.out}/labels.npz, bev.png, cameras.png, timings.json")
    return 0


def write_outputs(out: Path, result, rig: RigCalibration, cameras, images) -> None:
    """labels.npz, bev.png, cameras.png and timings.json of one result (see the module docstring)."""
    import cv2

    from bdc_occ_ros.eval.visualize import bev_image
    from bdc_occ_ros.tools.calib_check import camera_grid, project_points

    out.mkdir(parents=True, exist_ok=True)
    arrays = {"semantics": result.labels, "stamp_ns": np.int64(result.stamp_ns)}
    if result.visibility is not None:
        arrays["mask_camera"] = result.visibility.astype(bool)
    np.savez_compressed(out / "labels.npz", **arrays)
    bev = bev_image(result.labels, result.visibility, scale=3)
    cv2.imwrite(str(out / "bev.png"), cv2.cvtColor(bev, cv2.COLOR_RGB2BGR))
    points = occupied_points(result)
    xyz = np.stack([points["x"], points["y"], points["z"]], axis=1)
    colors = OCC_PALETTE[points["label"]]
    views = [project_points(img, xyz, colors, cam, radius=4)
             for img, cam in zip(images, rig.ordered(cameras), strict=True)]
    cv2.imwrite(str(out / "cameras.png"), cv2.cvtColor(camera_grid(views, cameras), cv2.COLOR_RGB2BGR))
    (out / "timings.json").write_text(json.dumps(result.timings_ms, indent=2))
