"""BEV encoder: backbone (three stride-2 stages) and neck back to full BEV resolution (reference §4.1/4.2).

Full precision = FlashOcc's ``CustomResNet`` + ``FPN_LSS``; binarized = BDC's ``BinaryResNetBDCDown`` +
``Binary_FPN_LSS_BDC_Up``. Both take/return the same shapes:
backbone (B, C_in, Dy, Dx) -> [(B, c0, Dy/2, Dx/2), (B, c1, Dy/4, Dx/4), (B, c2, Dy/8, Dx/8)];
neck those -> (B, C_out, Dy, Dx).
"""

from __future__ import annotations

import torch
from torch import nn

from bdc_occ_ros.config import UnitVariant
from bdc_occ_ros.model.resnet import BasicBlock
from bdc_occ_ros.model.units import BinaryBasicBlock, BinaryDownsampleBlock, FusionDecrease, Up, make_unit


class _Stages(nn.Module):
    """Runs ``self.layers`` (one Sequential per stage) and returns every stage's output."""

    layers: nn.Sequential

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.layers:
            x = stage(x)
            feats.append(x)
        return feats


class CustomResNet(_Stages):
    """FP stages of BasicBlocks; each stage's first block strides 2 with a 3x3 conv (bias) shortcut."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], num_layers: tuple[int, ...]) -> None:
        super().__init__()
        stages, cin = [], in_channels
        for cout, n in zip(channels, num_layers, strict=True):
            blocks = [BasicBlock(cin, cout, 2, nn.Conv2d(cin, cout, 3, 2, 1))]
            blocks += [BasicBlock(cout, cout) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layers = nn.Sequential(*stages)


class BinaryResNet(_Stages):
    """Binarized stages (``BinaryResNetBDCDown``): stage 0 opens with a strided BinaryBasicBlock whose
    shortcut is a strided unit (never BN); later stages open with a BinaryDownsampleBlock (C -> 2C)."""

    def __init__(
        self,
        in_channels: int,
        channels: tuple[int, ...],
        num_layers: tuple[int, ...],
        variant: UnitVariant,
        with_bn: bool,
    ) -> None:
        super().__init__()
        stages = []
        for i, (cout, n) in enumerate(zip(channels, num_layers, strict=True)):
            if i == 0:
                shortcut = make_unit(variant, in_channels, cout, 2, with_bn=False)
                first: nn.Module = BinaryBasicBlock(in_channels, cout, variant, 2, with_bn, shortcut)
            else:
                if cout != 2 * channels[i - 1]:
                    raise ValueError(f"BinaryResNet: stage {i} must double the channels ({channels})")
                first = BinaryDownsampleBlock(channels[i - 1], variant, with_bn)
            blocks = [first] + [BinaryBasicBlock(cout, cout, variant, 1, with_bn) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)


class FPNLSS(nn.Module):
    """FP ``FPN_LSS``: last stage bilinear x4 (align_corners=True), concat with stage 0, two conv3x3+BN+ReLU
    to 2*out, bilinear x2, conv3x3+BN+ReLU to out, conv1x1 (bias)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = 2 * out_channels
        self.up = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=True)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.up2 = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(mid, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 1),
        )  # fmt: skip

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([feats[0], self.up(feats[-1])], dim=1)
        return self.up2(self.conv(x))


class BinaryFPNLSS(nn.Module):
    """``Binary_FPN_LSS_BDC_Up``: last stage through two Up units (x4), concat with stage 0, FP
    conv3x3+BN+ReLU to 2*out then a unit; Up (x2), FusionDecrease (2*out -> out), a unit."""

    def __init__(
        self, low_channels: int, high_channels: int, out_channels: int, variant: UnitVariant, with_bn: bool
    ) -> None:
        super().__init__()
        mid = 2 * out_channels
        self.up = nn.Sequential(Up(high_channels, variant, with_bn), Up(high_channels, variant, with_bn))
        self.conv = nn.Sequential(
            nn.Conv2d(low_channels + high_channels, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True), make_unit(variant, mid, mid, 1, with_bn),
        )  # fmt: skip
        self.up2 = nn.Sequential(
            Up(mid, variant, with_bn), FusionDecrease(mid, variant, with_bn),
            make_unit(variant, out_channels, out_channels, 1, with_bn),
        )  # fmt: skip

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([feats[0], self.up(feats[-1])], dim=1)
        return self.up2(self.conv(x))
