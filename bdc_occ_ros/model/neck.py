"""Image necks: the two backbone stages (strides s and 2s) -> one feature map at stride s.

``CustomFPN`` is FlashOcc's full-precision neck; ``BinaryFPN`` the BDC-T neck (reference §4.1 step 2),
whose laterals halve channels by FusionDecrease steps instead of 1x1 convs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bdc_occ_ros.config import UnitVariant
from bdc_occ_ros.model.units import FusionDecrease, make_unit


class _ConvWrap(nn.Module):
    """A conv under ``.conv`` (mmcv ConvModule key layout, no norm/activation)."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _top_down(lateral: list[torch.Tensor]) -> torch.Tensor:
    # Coarse level added into the fine one, nearest resize (mmdet FPN default).
    return lateral[0] + F.interpolate(lateral[1], size=lateral[0].shape[-2:], mode="nearest")


class CustomFPN(nn.Module):
    """FP neck: 1x1 laterals (bias) -> top-down add -> 3x3 conv (bias). ((B,C4,h,w), (B,C5,h/2,w/2)) -> (B,out,h,w)."""

    def __init__(self, in_channels: tuple[int, int], out_channels: int) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(_ConvWrap(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList([_ConvWrap(out_channels, out_channels, 3)])

    def forward(self, feats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        lateral = [conv(x) for conv, x in zip(self.lateral_convs, feats, strict=True)]
        return self.fpn_convs[0](_top_down(lateral))


class BinaryFPN(nn.Module):
    """BDC neck: lateral i = log2(C_i / out) FusionDecrease steps; top-down add; one unit (out -> out).

    Lateral i is a Sequential of steps (official key ``lateral_convs.i.l_conv_i_j`` = ours ``lateral_convs.i.j``);
    a stage that already has ``out_channels`` gets zero steps, i.e. an identity lateral.
    """

    def __init__(self, in_channels: tuple[int, int], out_channels: int, variant: UnitVariant, with_bn: bool) -> None:
        super().__init__()
        laterals = []
        for cin in in_channels:
            steps, c = [], cin
            while c > out_channels:
                steps.append(FusionDecrease(c, variant, with_bn))
                c //= 2
            if c != out_channels:
                raise ValueError(f"BinaryFPN: {cin} channels cannot be halved down to {out_channels}")
            laterals.append(nn.Sequential(*steps))
        self.lateral_convs = nn.ModuleList(laterals)
        self.fpn_convs = nn.ModuleList([make_unit(variant, out_channels, out_channels, 1, with_bn)])

    def forward(self, feats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        lateral = [conv(x) for conv, x in zip(self.lateral_convs, feats, strict=True)]
        return self.fpn_convs[0](_top_down(lateral))
