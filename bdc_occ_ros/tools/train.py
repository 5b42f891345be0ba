"""``bdc-occ train --config FILE --data DIR --out DIR``: train a model on SynthOcc or Occ3D-nuScenes.

Single process: ``bdc-occ train ...``. Several processes / nodes: ``torchrun --nproc-per-node K
$(which bdc-occ) train ...`` (DDP; gloo on CPU, nccl on CUDA; ``--batch-size`` is per process).
The final EMA weights are ``OUT/final.safetensors``; see ``bdc_occ_ros.train.loop`` for every output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bdc_occ_ros.train.losses import CLASS_WEIGHTINGS
from bdc_occ_ros.train.schedule import SCHEDULES

SPLITS = ("train", "val", "all")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model (AdamW, EMA, DDP via torchrun, --resume)")
    p.add_argument("--config", type=Path, required=True, help="model config YAML (config/models/*.yaml)")
    p.add_argument("--data", type=Path, required=True, help="SynthOcc directory or nuScenes dataroot")
    p.add_argument("--out", type=Path, required=True, help="output directory (checkpoints, metrics.csv)")
    p.add_argument("--info", type=Path, default=None, help="nuScenes info export (see bdc_occ_ros.data.nuscenes)")
    p.add_argument("--split", choices=SPLITS, default="train", help="frames to train on (default train)")
    p.add_argument("--epochs", type=int, default=24, help="epochs (default 24, the reference)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
    p.add_argument("--time-budget-min", type=float, default=None, help="stop cleanly (and save) after M minutes")
    p.add_argument("--batch-size", type=int, default=4, help="samples per process and step (default 4)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak AdamW learning rate (default 1e-4)")
    p.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay (default 0.01)")
    p.add_argument("--warmup-steps", type=int, default=200, help="linear warm-up steps (default 200)")
    p.add_argument("--lr-schedule", choices=SCHEDULES, default="constant",
                   help="after warm-up: constant (reference) or cosine to 1%% at the last step")
    p.add_argument("--grad-clip", type=float, default=5.0, help="gradient L2 norm clip (default 5)")
    p.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay (default 0.999)")
    p.add_argument("--ema-ramp", type=float, default=2000.0, help="EMA ramp: decay*(1-exp(-updates/ramp))")
    p.add_argument("--class-weighting", choices=CLASS_WEIGHTINGS, default="none",
                   help="occupancy CE class weights from the training set's visible-voxel counts (default none)")
    p.add_argument("--unobserved-weight", type=float, default=0.0,
                   help="CE weight of voxels outside the camera mask (default 0, the reference; SynthOcc's ground "
                        "truth is complete there, so training them keeps never-visible voxels free)")
    p.add_argument("--det-weight", type=float, default=1.0, help="weight of the detection losses (default 1)")
    p.add_argument("--no-augment", action="store_true", help="disable image and BEV augmentation")
    p.add_argument("--workers", type=int, default=2, help="data loader processes per training process")
    p.add_argument("--seed", type=int, default=0, help="seed of init, shuffling and augmentation")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads per process")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda when available")
    p.add_argument("--log-every", type=int, default=10, help="metrics.csv row every N steps")
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.safetensors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from bdc_occ_ros.config import load_model_config
    from bdc_occ_ros.data.dataset import OccDataset
    from bdc_occ_ros.model.network import build_model
    from bdc_occ_ros.train.distributed import init_distributed, shutdown
    from bdc_occ_ros.train.loop import STATE_FILE, Trainer, TrainOptions, git_commit

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    state_exists = (args.out / STATE_FILE).is_file()
    if state_exists and not args.resume:
        raise ValueError(f"{args.out} already holds a training run; pass --resume or choose another --out")
    if args.resume and not state_exists:
        raise FileNotFoundError(f"--resume: no {STATE_FILE} in {args.out}")
    cfg = load_model_config(args.config)
    opts = TrainOptions(
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, lr_schedule=args.lr_schedule,
        grad_clip=args.grad_clip, ema_decay=args.ema_decay, ema_ramp=args.ema_ramp,
        class_weighting=args.class_weighting, unobserved_weight=args.unobserved_weight, det_weight=args.det_weight,
        split=None if args.split == "all" else args.split, augment=not args.no_augment, workers=args.workers,
        seed=args.seed, time_budget_min=args.time_budget_min, log_every=args.log_every,
    )  # fmt: skip
    opts.validate()
    ctx = init_distributed(args.device)
    try:
        torch.manual_seed(args.seed)  # same init on every rank (DDP also broadcasts rank 0's weights)
        model = build_model(cfg).to(ctx.device)
        dataset = OccDataset(args.data, opts.split, cfg.input_size, cfg.cameras, augment=opts.augment,
                             info=args.info, seed=args.seed)  # fmt: skip
        run_info = {
            "config": str(args.config), "model": cfg.name, "data": str(args.data.resolve()), "split": args.split,
            "frames": len(dataset), "seed": args.seed, "world_size": ctx.world_size, "batch_size": args.batch_size,
            "data_generator": _data_generator(args.data), "git_commit": git_commit(Path(__file__).parent),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
        }  # fmt: skip
        trainer = Trainer(model, cfg, dataset, opts, ctx, args.out, run_info)
        if args.resume:
            trainer.resume()
        if ctx.is_main:
            print(f"training {cfg.name} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params) on "
                  f"{len(dataset)} frames, {ctx.world_size} process(es) x batch {opts.batch_size}, "
                  f"{trainer.steps_per_epoch} steps/epoch, up to {trainer.total_steps} steps, device {ctx.device}")
        result = trainer.run()
    finally:
        shutdown(ctx)
    if ctx.is_main:
        print(f"stopped by {result.stopped_by} at step {result.step} (epoch {result.epoch}) after "
              f"{result.elapsed_s / 60:.1f} min; EMA weights: {result.final_checkpoint}")
    return 0


def _data_generator(root: Path) -> dict | None:
    """SynthOcc's generator record (seed, scenes, ...) from index.json, None for other data."""
    index = root / "index.json"
    if not index.is_file():
        return None
    return json.loads(index.read_text()).get("generator")
