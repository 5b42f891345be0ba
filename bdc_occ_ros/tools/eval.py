"""``bdc-occ eval --config FILE --checkpoint FILE --data DIR --json OUT``: Occ3D mIoU (+ detection mAP) of a model.

Runs the same pipeline as the node over the frames of one split of a SynthOcc or Occ3D-nuScenes tree,
writes the metrics as JSON and BEV pictures (prediction next to ground truth) for the first frames.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="Occ3D mIoU / detection mAP of a model on SynthOcc or Occ3D-nuScenes",
                              description=__doc__)
    p.add_argument("--config", type=Path, default=None, help="model config YAML (default: the checkpoint's)")
    p.add_argument("--checkpoint", type=Path, default=None, help="safetensors checkpoint (omit: random weights)")
    p.add_argument("--data", type=Path, required=True, help="SynthOcc directory (index.json) or nuScenes dataroot")
    p.add_argument("--json", type=Path, required=True, help="where to write the metrics")
    p.add_argument("--split", default="val", help="split to evaluate: val (default), train or all")
    p.add_argument("--info", type=Path, default=None,
                   help="real nuScenes: info export (JSON/YAML) or devkit table dir, e.g. DATA/v1.0-mini")
    p.add_argument("--engine", default="torch", help="inference engine (torch, bitwise, onnxruntime, tensorrt)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--pictures", type=int, default=4, help="BEV pictures of the first N frames (default 4)")
    p.add_argument("--pictures-dir", type=Path, default=None, help="default: <json name>_bev/ beside the JSON")
    p.add_argument("--max-samples", type=int, default=None, help="evaluate only the first N frames")
    p.add_argument("--score-threshold", type=float, default=0.05, help="detection score threshold for mAP")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bdc_occ_ros.data.records import load_records
    from bdc_occ_ros.eval.evaluate import EvalOptions, evaluate

    if args.config is None and args.checkpoint is None:
        raise ValueError("give --config (random weights) and/or --checkpoint")
    records = load_records(args.data, None if args.split == "all" else args.split, args.info)
    if args.max_samples is not None:
        records = records[: args.max_samples]
    if not records:
        raise ValueError(f"no frames of split {args.split!r} in {args.data}")
    from bdc_occ_ros.pipeline import OccupancyPipeline  # torch and the model: only once the data is there

    pipeline = OccupancyPipeline(args.config, args.checkpoint, engine=args.engine, device=args.device,
                                 score_threshold=args.score_threshold)
    picture_dir = args.pictures_dir or args.json.with_name(args.json.stem + "_bev")
    options = EvalOptions(pictures=args.pictures, picture_dir=picture_dir,
                          detection=pipeline.cfg.det_head is not None)
    with tqdm(total=len(records), unit="frame", desc="eval") as bar:
        metrics = evaluate(pipeline, records, pipeline.camera_names, options, progress=bar.update)
    metrics.update(
        split=args.split,
        data=str(args.data),
        config=str(args.config) if args.config else None,
        checkpoint=str(args.checkpoint) if args.checkpoint else None,
        engine=getattr(pipeline.engine, "name", args.engine),
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(_finite(metrics), indent=1) + "\n")
    print(f"mIoU {metrics['miou']:.2f} % over {metrics['samples']} frames ({args.split}); free IoU "
          f"{metrics['free_iou']:.2f} %" + (f"; det mAP {metrics['det']['map']:.4f}" if "det" in metrics else "")
          + f" -> {args.json}")
    return 0


def _finite(value):
    """JSON has no NaN: classes absent from ground truth and prediction are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
