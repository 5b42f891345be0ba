"""The single-frame occupancy network (FlashOcc M1 / BDC-T layout, reference §4.2) built from a ModelConfig.

Submodule names equal the official mmdet3d prefixes (img_backbone, img_neck, img_view_transformer,
img_bev_encoder_backbone, img_bev_encoder_neck, occ_head) so official checkpoints map almost 1:1.
"""

from __future__ import annotations

import torch
from torch import nn

from bdc_occ_ros.config import ModelConfig, backbone_channels
from bdc_occ_ros.model.bev_encoder import FPNLSS, BinaryFPNLSS, BinaryResNet, CustomResNet
from bdc_occ_ros.model.heads import CenterHead, OccupancyHead, predict_labels
from bdc_occ_ros.model.inputs import CameraGeometry
from bdc_occ_ros.model.neck import BinaryFPN, CustomFPN
from bdc_occ_ros.model.resnet import ResNet
from bdc_occ_ros.model.view_transformer import BevPoolRanks, LiftSplat

__all__ = ["OccupancyNetwork", "build_model", "predict_labels"]


class OccupancyNetwork(nn.Module):
    """imgs (B, N, 3, H, W) normalised + geometry -> {"occ_logits": (B, X, Y, Z, K), "det": {...}}.

    The stages are public methods so engines/export/benchmarks can run or time them separately:
    :meth:`image_features` -> :attr:`img_view_transformer` -> :meth:`bev_features` -> :meth:`heads`.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        unit, bn = cfg.unit, cfg.with_bn
        vt, be, grid = cfg.view_transformer, cfg.bev_encoder, cfg.grid.spec()
        self.img_backbone = ResNet(cfg.backbone.depth, cfg.backbone.out_indices)
        if cfg.backbone.pretrained:
            self.img_backbone.load_pretrained(cfg.backbone.pretrained)
        c4c5 = backbone_channels(cfg.backbone)
        neck_out = cfg.img_neck.out_channels
        if cfg.binary and cfg.img_neck.binary:
            self.img_neck: nn.Module = BinaryFPN(c4c5, neck_out, unit, bn)
        else:
            self.img_neck = CustomFPN(c4c5, neck_out)
        self.img_view_transformer = LiftSplat(neck_out, vt.channels, vt.depth_bins, cfg.input_size,
                                              cfg.feature_size, grid)  # fmt: skip
        if cfg.binary:
            self.img_bev_encoder_backbone: nn.Module = BinaryResNet(vt.channels, be.channels, be.num_layers, unit, bn)
            self.img_bev_encoder_neck: nn.Module = BinaryFPNLSS(be.channels[0], be.channels[-1], be.neck_channels,
                                                                unit, bn)  # fmt: skip
        else:
            self.img_bev_encoder_backbone = CustomResNet(vt.channels, be.channels, be.num_layers)
            self.img_bev_encoder_neck = FPNLSS(be.channels[0] + be.channels[-1], be.neck_channels)
        oh = cfg.occ_head
        self.occ_head = OccupancyHead(be.neck_channels, oh.channels, oh.hidden, grid.shape[2], oh.num_classes,
                                      unit, bn)  # fmt: skip
        self.det_head = CenterHead(be.neck_channels, cfg.det_head, unit, bn) if cfg.det_head is not None else None

    def image_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, H, W) -> neck features (B*N, C, H/16, W/16)."""
        b, n = imgs.shape[:2]
        return self.img_neck(self.img_backbone(imgs.reshape(b * n, *imgs.shape[2:])))

    def bev_features(self, bev: torch.Tensor) -> torch.Tensor:
        """BEV (B, C_vt, Dy, Dx) -> BEV neck features (B, C_neck, Dy, Dx)."""
        return self.img_bev_encoder_neck(self.img_bev_encoder_backbone(bev))

    def heads(self, feats: torch.Tensor) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        out: dict[str, torch.Tensor | dict[str, torch.Tensor]] = {"occ_logits": self.occ_head(feats)}
        if self.det_head is not None:
            out["det"] = self.det_head(feats)
        return out

    def forward(
        self, imgs: torch.Tensor, geometry: CameraGeometry | None = None, ranks: BevPoolRanks | None = None
    ) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """``geometry`` for normal use (lift-splat ranks cached per geometry); ``ranks`` instead when they
        were precomputed (ONNX export)."""
        if imgs.dim() != 5 or imgs.shape[2] != 3 or tuple(imgs.shape[-2:]) != tuple(self.cfg.input_size):
            raise ValueError(f"imgs must be (B, N, 3, {self.cfg.input_size[0]}, {self.cfg.input_size[1]}), "
                             f"got {tuple(imgs.shape)}")  # fmt: skip
        bev = self.img_view_transformer(self.image_features(imgs), geometry, ranks)
        return self.heads(self.bev_features(bev))

    def binary_modules(self) -> dict[str, nn.Module]:
        """Name -> every binarized conv (``BinaryConv2d``), for engines and complexity counting."""
        from bdc_occ_ros.model.binary import BinaryConv2d

        return {name: m for name, m in self.named_modules() if isinstance(m, BinaryConv2d)}


def build_model(cfg: ModelConfig) -> OccupancyNetwork:
    """Construct the network of ``cfg`` (random init; backbone weights from ``cfg.backbone.pretrained``)."""
    return OccupancyNetwork(cfg)
