"""Resumable training state in one safetensors file (never pickle).

Tensors: ``model.*`` (raw weights), ``ema.*`` (averaged weights), ``optim.<param index>.<name>`` (AdamW
moments and step) and ``rng.torch``. Everything else (counters, optimizer hyper-parameters, run
description) is JSON in the safetensors metadata under ``"train_state"``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.optim import Optimizer

from bdc_occ_ros.train.ema import ModelEMA

FORMAT = "bdc_occ_ros.train_state/1"


@dataclass
class Progress:
    """Where training stands: optimizer steps done, current epoch and batches done within it."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed_s: float = 0.0
    run: dict[str, Any] = field(default_factory=dict)  # seed, data, config, world size, batch: checked on resume


def save_train_state(
    path: str | Path, model: nn.Module, ema: ModelEMA, optimizer: Optimizer, progress: Progress
) -> None:
    """Write the state atomically (temp file + rename, so an interrupted save never corrupts the last one)."""
    tensors: dict[str, torch.Tensor] = {}
    tensors.update(_prefixed("model.", model.state_dict()))
    tensors.update(_prefixed("ema.", ema.module.state_dict()))
    opt = optimizer.state_dict()
    for index, entries in opt["state"].items():
        for name, value in entries.items():
            if not isinstance(value, torch.Tensor):
                value = torch.tensor(value)
            tensors[f"optim.{index}.{name}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {
        "format": FORMAT,
        "progress": asdict(progress),
        "ema_updates": ema.updates,
        "param_groups": opt["param_groups"],
    }
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(
        {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()},
        str(tmp),
        metadata={"train_state": json.dumps(meta)},
    )
    tmp.replace(path)


def load_train_state(
    path: str | Path, model: nn.Module, ema: ModelEMA, optimizer: Optimizer, device: torch.device | str = "cpu"
) -> Progress:
    """Restore model, EMA, optimizer and torch RNG in place; return the progress counters."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training state to resume at {path}")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        raw_meta = (f.metadata() or {}).get("train_state")
        if raw_meta is None:
            raise ValueError(f"{path} is not a training state file (no 'train_state' metadata)")
        meta = json.loads(raw_meta)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: unsupported training state format {meta.get('format')!r}, expected {FORMAT}")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model.load_state_dict(_unprefixed("model.", tensors), strict=True)
    ema.module.load_state_dict(_unprefixed("ema.", tensors), strict=True)
    ema.updates = int(meta["ema_updates"])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in _unprefixed("optim.", tensors).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value.to(device)
    groups = meta["param_groups"]
    for group in groups:  # JSON turned tuples into lists
        for k, v in group.items():
            if isinstance(v, list) and k != "params":
                group[k] = tuple(v)
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    torch.set_rng_state(tensors["rng.torch"])
    return Progress(**meta["progress"])


def _prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


def _unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
