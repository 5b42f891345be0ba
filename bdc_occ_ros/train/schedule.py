"""Learning-rate schedule as a pure function of the optimizer step (so resuming only needs the step)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim import Optimizer

SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class LRSchedule:
    """Linear warm-up from ``warmup_ratio * lr`` over ``warmup_steps``, then constant (the reference's step
    policy never steps within 24 epochs) or cosine decay to ``min_ratio * lr`` at ``total_steps``."""

    base_lr: float
    warmup_steps: int = 200
    warmup_ratio: float = 0.001
    kind: str = "constant"
    total_steps: int = 0
    min_ratio: float = 0.01

    def __post_init__(self) -> None:
        if self.base_lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.base_lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.kind not in SCHEDULES:
            raise ValueError(f"lr schedule must be one of {SCHEDULES}, got {self.kind!r}")
        if self.kind == "cosine" and self.total_steps <= self.warmup_steps:
            raise ValueError(
                f"cosine schedule needs total_steps ({self.total_steps}) > warmup_steps ({self.warmup_steps}); "
                "give --max-steps or --epochs"
            )

    def lr(self, step: int, time_fraction: float = 0.0) -> float:
        """Learning rate for optimizer step ``step`` (0-based). ``time_fraction``: share of a time budget used;
        the cosine follows whichever of steps and time is further along, so a run stopped by its time budget
        still ends at the low learning rate."""
        if step < self.warmup_steps:
            k = step / self.warmup_steps
            return self.base_lr * (self.warmup_ratio + (1.0 - self.warmup_ratio) * k)
        if self.kind == "constant":
            return self.base_lr
        progress = min(1.0, max(time_fraction, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)))
        return self.base_lr * (self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))

    def apply(self, optimizer: Optimizer, step: int, time_fraction: float = 0.0) -> float:
        lr = self.lr(step, time_fraction)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr
