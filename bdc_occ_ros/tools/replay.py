"""``bdc-occ replay``: the node's pipeline over a camera bag, offline and as fast as possible.

Writes every output topic of ``bdc_occ_node`` (plus the input images, CameraInfo, /tf_static and the
ground truth, so the output bag alone opens in Foxglove or plays into RViz) and, when the bag holds
``/ground_truth/occupancy``, the Occ3D mIoU of the outputs against it to ``<OUT stem>.miou.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("replay", help="run the node's pipeline over a bag without DDS, write the outputs",
                              description=__doc__)
    p.add_argument("--bag", required=True, type=Path, help="input bag (.mcap/.db3 file or rosbag2 directory)")
    p.add_argument("--out", required=True, type=Path, help="output bag file (.mcap or .db3)")
    p.add_argument("--engine", default="torch", help="inference engine (default torch)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--config", type=Path, help="model config YAML (default: the shipped edge model)")
    p.add_argument("--checkpoint", type=Path, help="safetensors checkpoint (default: the shipped edge model)")
    p.add_argument("--calibration", type=Path,
                   help="calibration YAML for the camera extrinsics (default: the bag's /tf_static)")
    p.add_argument("--decode-reduction", type=int, default=0, choices=(0, 1, 2, 4, 8),
                   help="decode JPEGs at 1/N size as the node does (default 0 = auto, the node's default; "
                        "1 = full size, as bdc-occ eval)")
    p.add_argument("--json", type=Path, help="where to write the mIoU JSON (default: <out stem>.miou.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    p.set_defaults(func=run)


def miou_path_for(out: Path) -> Path:
    return out.with_name(out.stem + ".miou.json")


def run(args) -> int:
    from bdc_occ_ros.bags.replay import replay_bag
    from bdc_occ_ros.eval.metrics import OccMetric
    from bdc_occ_ros.geometry import RigCalibration
    from bdc_occ_ros.pipeline import OccupancyPipeline
    from bdc_occ_ros.ros.params import NodeParams

    params = NodeParams.from_dict({"engine": args.engine, "device": args.device,
                                   "decode_reduction": args.decode_reduction,
                                   "model_config": str(args.config or ""), "checkpoint": str(args.checkpoint or "")})
    config, checkpoint = params.model_paths()
    calibration = RigCalibration.load(args.calibration) if args.calibration else None
    pipeline = OccupancyPipeline(config, checkpoint, engine=params.engine, device=params.device,
                                 camera_names=params.cameras, score_threshold=params.score_threshold)
    metric = OccMetric()

    def on_result(result, gt_labels, gt_visibility) -> None:
        if gt_labels is not None:
            metric.update(result.labels, gt_labels, gt_visibility)

    report = replay_bag(args.bag, args.out, pipeline, params, calibration, on_result=on_result,
                        overwrite=args.overwrite)
    print(f"replay: {report.frames_out} of {report.frames_in} frames through engine {report.engine} in "
          f"{report.wall_s:.1f} s ({report.stale_sets} stale sets, {report.decode_errors} decode errors) -> {args.out}")
    if report.gt_frames:
        path = args.json or miou_path_for(args.out)
        metrics = metric.compute()
        # strict JSON, as bdc-occ eval writes it: classes absent from ground truth and prediction are null
        metrics["per_class"] = {k: (v if math.isfinite(v) else None) for k, v in metrics["per_class"].items()}
        metrics.update(bag=str(args.bag), engine=report.engine, checkpoint=str(checkpoint))
        path.write_text(json.dumps(metrics, indent=1) + "\n")
        print(f"replay: mIoU {metrics['miou']:.2f} over {metrics['samples']} frames with ground truth -> {path}")
    return 0
