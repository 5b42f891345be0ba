"""The reference engine: the PyTorch model as trained (binarized layers simulated with float convs)."""

from __future__ import annotations

from pathlib import Path

import torch

from bdc_occ_ros.config import ModelConfig
from bdc_occ_ros.engines import EngineOutput
from bdc_occ_ros.model.checkpoint import load_checkpoint
from bdc_occ_ros.model.inputs import CameraGeometry
from bdc_occ_ros.model.network import build_model


def load_weights(cfg: ModelConfig, checkpoint: str | Path | None, device: str = "cpu") -> torch.nn.Module:
    """The network of ``cfg`` in eval mode, with the checkpoint's weights (random init when None).

    The checkpoint's embedded config must describe the same network as ``cfg``.
    """
    model = build_model(cfg)
    if checkpoint is not None:
        ckpt_cfg, state_dict, _ = load_checkpoint(checkpoint)
        if ckpt_cfg.to_dict() != cfg.to_dict():
            raise ValueError(
                f"checkpoint {checkpoint} was trained with a different model config than the one given; "
                "pass the config embedded in the checkpoint (or omit model_config)"
            )
        model.load_state_dict(state_dict)
    return model.to(device).eval()


class TorchEngine:
    name = "torch"

    def __init__(self, cfg: ModelConfig, checkpoint: str | Path | None = None, device: str = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        self.model = load_weights(cfg, checkpoint, device)

    def runtime_info(self) -> dict[str, str]:
        return {"device": str(self.device), "torch_threads": str(torch.get_num_threads())}

    @torch.inference_mode()
    def infer(self, imgs: torch.Tensor, geometry: CameraGeometry) -> EngineOutput:
        out = self.model(imgs.to(self.device), geometry.to(self.device))
        labels = out["occ_logits"].argmax(dim=-1).to(torch.uint8).cpu()
        det = out.get("det")
        return EngineOutput(occ_labels=labels, det=None if det is None else {k: v.cpu() for k, v in det.items()})
