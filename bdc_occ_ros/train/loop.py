"""The training loop behind ``bdc-occ train``: one process per device (torchrun for several), AdamW with
warm-up, gradient clipping, EMA, occupancy (+ detection) losses, CSV log, per-epoch safetensors
checkpoints, a time budget and exact resume.

Output directory (written by rank 0 only):
    metrics.csv               step, epoch, lr, time_s, loss terms, grad_norm
    epoch_<EEE>.safetensors   EMA weights at the end of epoch EEE (``model.checkpoint`` format)
    final.safetensors         EMA weights when training ends (epochs done, --max-steps or time budget)
    train_state.safetensors   raw + EMA weights, optimizer, counters: what ``--resume`` reads
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from bdc_occ_ros.config import ModelConfig
from bdc_occ_ros.data.dataset import OccDataset, collate
from bdc_occ_ros.data.records import load_labels
from bdc_occ_ros.model.checkpoint import save_checkpoint
from bdc_occ_ros.train.detection import build_targets, detection_loss
from bdc_occ_ros.train.distributed import DistContext, any_rank, barrier, from_rank0, mean_over_ranks
from bdc_occ_ros.train.ema import ModelEMA
from bdc_occ_ros.train.losses import class_weights_from_counts, occupancy_loss
from bdc_occ_ros.train.metrics import MetricsLog
from bdc_occ_ros.train.sampler import ResumableSampler
from bdc_occ_ros.train.schedule import LRSchedule
from bdc_occ_ros.train.state import Progress, load_train_state, save_train_state

STATE_FILE = "train_state.safetensors"
FINAL_FILE = "final.safetensors"
METRICS_FILE = "metrics.csv"


@dataclass
class TrainOptions:
    """Hyper-parameters and run control (defaults: the reference recipe, §5, except where noted)."""

    epochs: int = 24
    max_steps: int | None = None  # stop after this many optimizer steps (global)
    batch_size: int = 4  # per process
    lr: float = 1e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 200
    lr_schedule: str = "constant"
    grad_clip: float = 5.0
    ema_decay: float = 0.999
    ema_ramp: float = 2000.0
    class_weighting: str = "none"
    unobserved_weight: float = 0.0  # CE weight of voxels outside the camera mask (complete ground truth only)
    det_weight: float = 1.0
    split: str | None = "train"
    augment: bool = True
    workers: int = 2
    seed: int = 0
    time_budget_min: float | None = None
    log_every: int = 10
    keep_checkpoints: int = 2  # per-epoch files kept (oldest deleted); final/state always kept

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.unobserved_weight < 0:
            raise ValueError(f"unobserved_weight must be >= 0, got {self.unobserved_weight}")
        if self.time_budget_min is not None and self.time_budget_min <= 0:
            raise ValueError(f"time_budget_min must be > 0, got {self.time_budget_min}")


@dataclass
class TrainResult:
    step: int
    epoch: int
    elapsed_s: float
    final_checkpoint: Path | None
    stopped_by: str  # "epochs", "max_steps" or "time_budget"


class Trainer:
    """Train ``model`` (already on ``ctx.device``) on ``dataset``; rank 0 writes to ``out``."""

    def __init__(self, model: nn.Module, cfg: ModelConfig, dataset: OccDataset, opts: TrainOptions,
                 ctx: DistContext, out: Path, run_info: dict[str, Any]) -> None:  # fmt: skip
        opts.validate()
        self.cfg, self.dataset, self.opts, self.ctx, self.out = cfg, dataset, opts, ctx, Path(out)
        self.model = model
        self.ddp = DistributedDataParallel(model) if ctx.enabled else model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
        self.ema = ModelEMA(model, opts.ema_decay, opts.ema_ramp)
        self.sampler = ResumableSampler(dataset, ctx.rank, ctx.world_size, opts.seed, shuffle=True)
        self.steps_per_epoch = len(self.sampler) // opts.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"{len(dataset)} frames give no full batch of {opts.batch_size} per process "
                             f"on {ctx.world_size} process(es)")  # fmt: skip
        total = self.steps_per_epoch * opts.epochs
        self.total_steps = min(total, opts.max_steps) if opts.max_steps else total
        self.schedule = LRSchedule(opts.lr, min(opts.warmup_steps, self.total_steps - 1), kind=opts.lr_schedule,
                                   total_steps=self.total_steps)  # fmt: skip
        self.class_weights = self._class_weights()
        self.progress = Progress(run=run_info)
        self.budget_s = opts.time_budget_min * 60.0 if opts.time_budget_min else None
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.log = MetricsLog(self.out / METRICS_FILE) if ctx.is_main else None

    def resume(self) -> None:
        """Continue from ``out/train_state.safetensors`` (the run description must match)."""
        saved = load_train_state(self.out / STATE_FILE, self.model, self.ema, self.optimizer, self.ctx.device)
        for key in ("seed", "world_size", "batch_size", "config", "split"):
            if saved.run.get(key) != self.progress.run.get(key):
                raise ValueError(f"cannot resume: {key} was {saved.run.get(key)!r}, now {self.progress.run.get(key)!r}")
        saved.run = self.progress.run
        self.progress = saved

    def run(self) -> TrainResult:
        opts, ctx, p = self.opts, self.ctx, self.progress
        start = time.monotonic() - p.elapsed_s
        stopped_by = "epochs"
        while p.epoch < opts.epochs and stopped_by == "epochs":
            self.sampler.set_position(p.epoch, p.batch_in_epoch * opts.batch_size)
            self.dataset.set_epoch(p.epoch)
            loader = DataLoader(self.dataset, batch_size=opts.batch_size, sampler=self.sampler, drop_last=True,
                                num_workers=opts.workers, collate_fn=collate, pin_memory=ctx.device.type == "cuda")
            bar = tqdm(loader, total=len(loader), desc=f"epoch {p.epoch + 1}/{opts.epochs}", disable=not ctx.is_main,
                       dynamic_ncols=True)  # fmt: skip
            for batch in bar:
                terms = self._train_step(batch)
                p.step += 1
                p.batch_in_epoch += 1
                p.elapsed_s = time.monotonic() - start
                if p.step % opts.log_every == 0 or p.batch_in_epoch == self.steps_per_epoch:
                    self._log(terms, bar)
                if self.total_steps and p.step >= self.total_steps:
                    stopped_by = "max_steps"
                elif any_rank(self.budget_s is not None and p.elapsed_s >= self.budget_s, ctx):
                    stopped_by = "time_budget"
                if stopped_by != "epochs":
                    break
            bar.close()
            if p.batch_in_epoch >= self.steps_per_epoch:
                p.epoch += 1
                p.batch_in_epoch = 0
                self._save(epoch_file=True)
            elif stopped_by != "epochs":
                self._save(epoch_file=False)
        final = self._save_final()
        return TrainResult(p.step, p.epoch, p.elapsed_s, final, stopped_by)

    def _train_step(self, batch: dict) -> dict[str, float]:
        dev = self.ctx.device
        # Rank 0's clock sets the time share so every rank applies the same learning rate.
        used = from_rank0(self.progress.elapsed_s / self.budget_s, self.ctx) if self.budget_s else 0.0
        lr = self.schedule.apply(self.optimizer, self.progress.step, used)
        out = self.ddp(batch["images"].to(dev, non_blocking=True), batch["geometry"].to(dev))
        losses = {"loss_occ": occupancy_loss(out["occ_logits"], batch["semantics"].to(dev),
                                             batch["mask_camera"].to(dev), self.class_weights,
                                             self.opts.unobserved_weight)}  # fmt: skip
        if "det" in out:
            det = out["det"]
            targets = build_targets(batch["gt_boxes"], batch["gt_labels"], det["heatmap"].shape[1],
                                    tuple(det["heatmap"].shape[-2:]), self.cfg.grid.spec())  # fmt: skip
            losses.update({k: self.opts.det_weight * v for k, v in detection_loss(det, targets).items()})
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite loss at step {self.progress.step}: "
                                     f"{ {k: float(v) for k, v in losses.items()} }")  # fmt: skip
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.opts.grad_clip)
        self.optimizer.step()
        self.ema.update(self.model)
        terms = {k: float(v.detach()) for k, v in losses.items()}
        terms.update(loss=float(total.detach()), grad_norm=float(grad_norm), lr=lr)
        return terms

    def _log(self, terms: dict[str, float], bar: tqdm) -> None:
        terms = mean_over_ranks(terms, self.ctx)
        if self.log is None:
            return
        p = self.progress
        self.log.write({"step": p.step, "epoch": p.epoch, "time_s": round(p.elapsed_s, 2), **terms})
        bar.set_postfix(loss=f"{terms['loss']:.4f}", lr=f"{terms['lr']:.2e}")

    def _metadata(self) -> dict[str, Any]:
        p = self.progress
        return {"epoch": p.epoch, "step": p.step, "elapsed_s": round(p.elapsed_s, 1), "ema_updates": self.ema.updates,
                "ema_decay": self.opts.ema_decay, **p.run, "options": asdict(self.opts)}  # fmt: skip

    def _save(self, epoch_file: bool) -> None:
        if self.ctx.is_main:
            save_train_state(self.out / STATE_FILE, self.model, self.ema, self.optimizer, self.progress)
            if epoch_file:
                save_checkpoint(self.out / f"epoch_{self.progress.epoch:03d}.safetensors", self.ema.module, self.cfg,
                                self._metadata())  # fmt: skip
                self._prune()
        barrier(self.ctx)

    def _save_final(self) -> Path | None:
        path = self.out / FINAL_FILE
        if self.ctx.is_main:
            save_checkpoint(path, self.ema.module, self.cfg, self._metadata())
        barrier(self.ctx)
        return path if self.ctx.is_main else None

    def _prune(self) -> None:
        epochs = sorted(self.out.glob("epoch_*.safetensors"))
        for old in epochs[: max(0, len(epochs) - self.opts.keep_checkpoints)]:
            old.unlink()

    def _class_weights(self) -> torch.Tensor | None:
        if self.opts.class_weighting == "none":
            return None
        counts = visible_class_counts(self.dataset, self.cfg.occ_head.num_classes)
        weights = class_weights_from_counts(counts, self.opts.class_weighting)
        return torch.from_numpy(weights).to(self.ctx.device)


def visible_class_counts(dataset: OccDataset, num_classes: int) -> np.ndarray:
    """Camera-visible voxel count per class over the dataset's frames (C,) int64."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for rec in dataset.records:
        labels = load_labels(rec)
        visible = labels["semantics"][labels["mask_camera"].astype(bool)]
        counts += np.bincount(visible.ravel(), minlength=num_classes)[:num_classes]
    return counts


def git_commit(repo: Path) -> str | None:
    """HEAD commit of the repository holding ``repo`` (None when not a git checkout)."""
    try:
        res = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() if res.returncode == 0 else None
