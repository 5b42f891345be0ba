"""Inference engines: the same network computed by different back ends.

Every engine takes the preprocessed images and their camera geometry and returns the occupancy labels
(and the raw detection-head outputs when the model has a detection head):

    engine.infer(imgs (1, N, 3, H, W) float32, geometry: CameraGeometry) -> EngineOutput

``create_engine`` builds one by name and falls back to the torch engine, with a warning, when the
requested back end cannot run here (missing package, no GPU, no TensorRT).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bdc_occ_ros.engines.allocator import retain_freed_memory
from bdc_occ_ros.engines.errors import EngineUnavailable

if TYPE_CHECKING:
    import torch

    from bdc_occ_ros.config import ModelConfig
    from bdc_occ_ros.model.inputs import CameraGeometry

ENGINE_NAMES: tuple[str, ...] = ("torch", "bitwise", "onnxruntime", "tensorrt")

_log = logging.getLogger(__name__)


@dataclass
class EngineOutput:
    """occ_labels: (B, X, Y, Z) uint8 tensor in Occ3D order. det: raw detection-head outputs or None.
    timings_ms: optional per-stage times measured inside the engine (image backbone, neck, ...)."""

    occ_labels: torch.Tensor
    det: dict[str, torch.Tensor] | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class Engine(Protocol):
    name: str
    cfg: ModelConfig

    def infer(self, imgs: torch.Tensor, geometry: CameraGeometry) -> EngineOutput: ...

    def runtime_info(self) -> dict[str, str]:
        """How the engine runs (device, threads, runtimes), as the node's /diagnostics report it."""
        ...


def create_engine(
    name: str,
    cfg: ModelConfig,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    fallback: bool = True,
) -> Engine:
    """Build engine ``name`` for the model ``cfg`` with weights from ``checkpoint`` (None: random init).

    With ``fallback`` an unavailable back end (EngineUnavailable) degrades to the torch engine with a
    warning; bad names and bad checkpoints always raise. Sets the process allocator policy of
    :func:`~bdc_occ_ros.engines.allocator.retain_freed_memory` (freed feature maps are reused, not faulted in
    again every frame).
    """
    if name not in ENGINE_NAMES:
        raise ValueError(f"engine: unknown engine {name!r}; allowed: {', '.join(ENGINE_NAMES)}")
    if not retain_freed_memory():
        _log.debug("allocator policy not set (not glibc): freed feature maps go back to the OS")
    try:
        return _build(name, cfg, checkpoint, device)
    except EngineUnavailable as exc:
        if not fallback or name == "torch":
            raise
        _log.warning("engine %r unavailable (%s); falling back to the torch engine", name, exc)
        return _build("torch", cfg, checkpoint, device)


def _build(name: str, cfg: ModelConfig, checkpoint: str | Path | None, device: str) -> Engine:
    # Imported here so a back end's heavy or missing dependencies only matter when it is chosen.
    if name == "torch":
        from bdc_occ_ros.engines.torch_engine import TorchEngine

        return TorchEngine(cfg, checkpoint, device)
    if name == "bitwise":
        from bdc_occ_ros.engines.bitwise import BitwiseEngine

        return BitwiseEngine(cfg, checkpoint, device)
    if name == "onnxruntime":
        from bdc_occ_ros.engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(cfg, checkpoint, device)
    from bdc_occ_ros.engines.tensorrt_engine import TensorRTEngine

    return TensorRTEngine(cfg, checkpoint, device)


__all__ = ["ENGINE_NAMES", "Engine", "EngineOutput", "EngineUnavailable", "create_engine"]
