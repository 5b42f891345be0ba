"""Checkpoints: safetensors files carrying the model config (JSON) and free-form metadata in the header.

Header metadata keys: ``bdc_occ.config`` (``ModelConfig.to_dict()`` as JSON), ``bdc_occ.metadata``
(JSON of the caller's dict), ``bdc_occ.format`` (version). Weights are the latent float weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from bdc_occ_ros.config import ModelConfig

FORMAT_VERSION = "1"
_CONFIG_KEY, _META_KEY, _FORMAT_KEY = "bdc_occ.config", "bdc_occ.metadata", "bdc_occ.format"


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model."""


def save_checkpoint(
    path: str | Path, model: nn.Module, cfg: ModelConfig, metadata: dict[str, Any] | None = None
) -> None:
    """Write ``model.state_dict()`` with ``cfg`` and ``metadata`` (JSON-serialisable) embedded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    header = {
        _FORMAT_KEY: FORMAT_VERSION,
        _CONFIG_KEY: json.dumps(cfg.to_dict()),
        _META_KEY: json.dumps(metadata or {}),
    }
    save_file(state, str(path), metadata=header)


def read_safetensors(path: Path, what: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(header metadata, tensors) of a safetensors file; ``what`` names the file kind in errors."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        return header, load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors {what} ({exc})") from None


def load_checkpoint(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """(config, state dict on the CPU, metadata) of a file written by :func:`save_checkpoint`."""
    path = Path(path)
    header, state = read_safetensors(path, "checkpoint")
    if _CONFIG_KEY not in header:
        raise CheckpointError(f"{path}: no embedded model config (not written by bdc_occ_ros save_checkpoint)")
    try:
        cfg = ModelConfig.from_dict(json.loads(header[_CONFIG_KEY]))
        metadata = json.loads(header.get(_META_KEY, "{}"))
    except (json.JSONDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid embedded config/metadata: {exc}") from None
    return cfg, state, metadata


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise one :class:`CheckpointError` listing every missing, unexpected and wrongly shaped key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if own[k].shape != state[k].shape
    )
    if missing or unexpected or shapes:
        lines = [f"{source} does not fit the model:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                shown = items[:20] + ([f"... and {len(items) - 20} more"] if len(items) > 20 else [])
                lines.append(f"  {title} ({len(items)}): " + ", ".join(shown))
        raise CheckpointError("\n".join(lines))


def load_model(
    checkpoint_path: str | Path, cfg: ModelConfig | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelConfig]:
    """Build the model of the checkpoint's config (or ``cfg`` when given; it must fit) and load the weights.

    Returns (model in eval mode on ``device``, the config used).
    """
    from bdc_occ_ros.model.network import build_model

    saved_cfg, state, _ = load_checkpoint(checkpoint_path)
    use_cfg = cfg or saved_cfg
    model = build_model(use_cfg)
    check_state_dict(model, state, f"checkpoint {checkpoint_path}")
    model.load_state_dict(state)
    return model.to(device).eval(), use_cfg
