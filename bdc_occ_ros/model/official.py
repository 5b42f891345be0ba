"""Import official FlashOcc / BDC-Occ (mmdet3d) single-frame checkpoints into our modules.

Our module names were chosen to equal the official ones (reference §10.2): ``img_backbone`` (torchvision
ResNet names), ``img_neck``, ``img_view_transformer.depth_net``, ``img_bev_encoder_backbone.layers.s.b``,
``img_bev_encoder_neck.{up,conv,up2}``, ``occ_head.{final_conv,predicter}`` and, inside every BDC unit,
``move0.{k,b}``, ``binary_activation.beta``, ``binary_conv_relu.N``, ``se_block.fc.N``, ``bn_fp``. The
only renamed keys are the binary image-neck laterals, a Sequential of FusionDecrease steps here:
``img_neck.lateral_convs.i.l_conv_i_j.*`` -> ``img_neck.lateral_convs.i.j.*``. A ``module.`` prefix
(DataParallel) is stripped. Stored weights are the latent float weights; binarization happens in forward.
Temporal/stereo parts (``pre_process_net``, the stereo depth net) have no counterpart here.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch

from bdc_occ_ros.config import ModelConfig
from bdc_occ_ros.model.checkpoint import CheckpointError, check_state_dict

_LATERAL = re.compile(r"^img_neck\.lateral_convs\.(\d+)\.l_conv_\1_(\d+)\.")


def official_to_ours(key: str) -> str:
    """One official state-dict key -> our key."""
    key = key.removeprefix("module.")
    return _LATERAL.sub(r"img_neck.lateral_convs.\1.\2.", key)


def ours_to_official(key: str) -> str:
    """Inverse of :func:`official_to_ours` for binary-neck keys (used to write official-layout files in tests)."""
    return re.sub(r"^img_neck\.lateral_convs\.(\d+)\.(\d+)\.biconv_", r"img_neck.lateral_convs.\1.l_conv_\1_\2.biconv_",
                  key)  # fmt: skip


def import_official_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Official mmdet3d state dict -> our state dict for ``build_model(cfg)``.

    Raises :class:`CheckpointError` listing every missing, unexpected and wrongly shaped key (e.g. a stereo
    checkpoint given a single-frame config, or with_bn not matching the checkpoint).
    """
    from bdc_occ_ros.model.network import build_model

    ours = {official_to_ours(k): v for k, v in state.items()}
    with torch.device("meta"):  # keys and shapes only: no memory, no init cost
        reference = build_model(dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, pretrained=None)))
    check_state_dict(reference, ours, f"official checkpoint for config {cfg.name!r}")
    return ours


def load_official_checkpoint(path: str | Path, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Read an official ``.pth`` (mmcv ``{"state_dict": ...}`` or EMA file) with ``weights_only=True`` and
    return our state dict (see :func:`import_official_state_dict`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or non-tensor pickles
        raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True): {exc}") from None
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no state_dict of tensors inside")
    return import_official_state_dict(state, cfg)
