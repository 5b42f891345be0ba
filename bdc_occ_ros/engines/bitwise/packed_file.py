"""Packed model files: a safetensors file loadable without the float checkpoint.

Tensors: the :class:`BitwiseModel` state dict (binarized weights as uint32/uint64 words stored as int32/int64 plus
alpha; every FP parameter and buffer). Header metadata: ``bdc_occ.format`` = ``bitwise-1``,
``bdc_occ.config`` (the ModelConfig as JSON, so the network skeleton can be rebuilt) and
``bdc_occ.metadata`` (free-form JSON, e.g. the source checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file

from bdc_occ_ros.config import ModelConfig
from bdc_occ_ros.engines.bitwise.convert import BitwiseModel, pack_model
from bdc_occ_ros.model.checkpoint import CheckpointError, check_state_dict, read_safetensors
from bdc_occ_ros.model.network import build_model

PACKED_FORMAT = "bitwise-1"
_FORMAT_KEY, _CONFIG_KEY, _META_KEY = "bdc_occ.format", "bdc_occ.config", "bdc_occ.metadata"


def is_packed_file(path: str | Path) -> bool:
    """True when ``path`` is a safetensors file written by :func:`save_packed`."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get(_FORMAT_KEY) == PACKED_FORMAT
    except (SafetensorError, OSError, ValueError):
        return False


def save_packed(path: str | Path, model: BitwiseModel, metadata: dict[str, Any] | None = None) -> int:
    """Write ``model`` (config embedded) to ``path``; returns the file size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {
        _FORMAT_KEY: PACKED_FORMAT,
        _CONFIG_KEY: json.dumps(model.cfg.to_dict()),
        _META_KEY: json.dumps(metadata or {}),
    }
    save_file(state, str(path), metadata=header)
    return path.stat().st_size


def load_packed(path: str | Path) -> tuple[BitwiseModel, dict[str, Any]]:
    """(packed model ready to run, metadata) from a file of :func:`save_packed`."""
    header, state = read_safetensors(Path(path), "packed model")
    if header.get(_FORMAT_KEY) != PACKED_FORMAT:
        raise CheckpointError(f"{path}: not a packed bitwise model (format {header.get(_FORMAT_KEY)!r})")
    cfg = ModelConfig.from_dict(json.loads(header[_CONFIG_KEY]))
    # Skeleton: random init (no pretrained backbone file needed), units packed from it, then every tensor
    # is overwritten from the file.
    skeleton = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, pretrained=None))
    model = pack_model(build_model(skeleton).eval())
    model.cfg = cfg
    check_state_dict(model, state, str(path))
    model.load_state_dict(state)
    model.prepare()
    return model, json.loads(header.get(_META_KEY, "{}"))
