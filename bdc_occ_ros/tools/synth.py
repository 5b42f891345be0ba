"""``bdc-occ synth --out DIR --scenes N --seed S``: generate a SynthOcc data set (images + Occ3D ground truth)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _image_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--image-size must look like 1600x900, got {text!r}") from exc
    return w, h


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("synth", help="generate SynthOcc scenes (six cameras + Occ3D ground truth)",
                              description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="output directory (index.json, samples/, gts/)")
    p.add_argument("--scenes", type=int, required=True, help="number of scenes")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed -> byte-identical output")
    p.add_argument("--frames-per-scene", type=int, default=4, help="frames per scene at 12 Hz (default 4)")
    p.add_argument("--image-size", type=_image_size, default=(1600, 900), help="WxH of the JPEGs (default 1600x900)")
    p.add_argument("--render-scale", type=float, default=0.5,
                   help="ray-cast at this fraction of the image size and upscale (default 0.5)")
    p.add_argument("--val-every", type=int, default=4, help="every N-th scene goes to the val split (default 4)")
    p.add_argument("--calibration", type=Path, default=None,
                   help="rig calibration YAML (default: config/calibration/nuscenes.yaml)")
    p.add_argument("--no-rig-jitter", dest="rig_jitter", action="store_false",
                   help="use the calibration as is for every scene (default: small per-scene mounting noise)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (one scene each)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bdc_occ_ros.data.synth import SynthConfig, generate

    cfg = SynthConfig(out=args.out, scenes=args.scenes, seed=args.seed, frames_per_scene=args.frames_per_scene,
                      image_size=args.image_size, render_scale=args.render_scale, val_every=args.val_every,
                      workers=args.workers, rig_path=args.calibration,
                      rig_jitter=args.rig_jitter)
    cfg.validate()
    start = time.perf_counter()
    with tqdm(total=cfg.scenes * cfg.frames_per_scene, unit="frame", desc="synth") as bar:
        index = generate(cfg, progress=bar.update)
    elapsed = time.perf_counter() - start
    n = len(index["frames"])
    print(f"wrote {n} frames of {cfg.scenes} scenes to {cfg.out} in {elapsed:.1f} s "
          f"({n / elapsed:.2f} frames/s, {cfg.workers} worker(s))")
    return 0
