"""Exponential moving average of model weights (MEGVII/BEVDet ``MEGVIIEMAHook``).

decay(u) = decay_max * (1 - exp(-u / ramp)) after u updates: early on the average follows the model
closely, later it smooths over ~1 / (1 - decay_max) steps. Every floating-point entry of the state dict
is averaged (parameters and BatchNorm running statistics, as the reference does); integer buffers
(``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """An averaged copy of ``model`` (kept in eval mode, no gradients)."""

    def __init__(self, model: nn.Module, decay: float = 0.999, ramp: float = 2000.0, updates: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        if ramp <= 0:
            raise ValueError(f"ema ramp must be > 0, got {ramp}")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay_max = decay
        self.ramp = ramp
        self.updates = updates

    def decay(self) -> float:
        """Decay used by the next update."""
        return self.decay_max * (1.0 - math.exp(-(self.updates + 1) / self.ramp))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.decay()
        source = model.state_dict()
        for name, value in self.module.state_dict().items():
            new = source[name].detach()
            if value.dtype.is_floating_point:
                value.mul_(d).add_(new.to(value.dtype), alpha=1.0 - d)
            else:
                value.copy_(new)
        self.updates += 1
