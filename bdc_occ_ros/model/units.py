"""Convolution units (BiSR-Conv, BDC V1/V2/V3, and the full-precision counterpart) and their wrappers.

Every unit maps (B, Cin, H, W) -> (B, Cout, H/stride, W/stride) with ``Cout in {Cin, 2*Cin}`` and
``stride in {1, 2}`` (the residual is an identity, average-pooled for stride 2 and duplicated along
channels for Cout = 2*Cin). Attribute names follow the official BDC-Occ checkpoints (reference §10.2)
so importing them is a key-for-key copy.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bdc_occ_ros.config import UnitVariant
from bdc_occ_ros.model.binary import BinaryActivation, BinaryConv2d, ReDistribution, RPReLU


def _norm(channels: int, with_bn: bool) -> nn.Module:
    # Identity keeps the Sequential indices of the official layout when BN is off.
    return nn.BatchNorm2d(channels) if with_bn else nn.Identity()


def _check_shape(cin: int, cout: int, stride: int) -> None:
    if cin <= 0 or cout not in (cin, 2 * cin):
        raise ValueError(f"unit channels {cin}->{cout}: out must equal in or twice in (residual shortcut)")
    if stride not in (1, 2):
        raise ValueError(f"unit stride {stride}: must be 1 or 2")


class _ResidualBinaryUnit(nn.Module):
    """Shared shortcut of the binarized units: identity, avgpool2 for stride 2, channel duplication for
    Cout = 2*Cin, then BN (``bn_fp``) on the shortcut when with_bn (as the official code; not on the main path)."""

    def __init__(self, cin: int, cout: int, stride: int, with_bn: bool) -> None:
        super().__init__()
        _check_shape(cin, cout, stride)
        self.in_channels, self.out_channels, self.stride = cin, cout, stride
        self.pool = nn.AvgPool2d(2, 2) if stride == 2 else nn.Identity()
        self.bn_fp = _norm(cout, with_bn)
        self.move0 = ReDistribution(cin)
        self.binary_activation = BinaryActivation()

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        if self.out_channels == 2 * self.in_channels:
            x = torch.cat([x, x], dim=1)
        return self.bn_fp(x)

    def binarize_input(self, x: torch.Tensor) -> torch.Tensor:
        """The unit's only binarized activation: sign(k * x + b), values in {-1, +1}."""
        return self.binary_activation(self.move0(x))


class BiSRConv(_ResidualBinaryUnit):
    """V0 (BiSR-Conv baseline): RPReLU(BN?(BinConv3x3_{Cin->Cout, stride}(Sign(k x + b)))) + shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1, with_bn: bool = False) -> None:
        super().__init__(cin, cout, stride, with_bn)
        self.binary_conv_relu = nn.Sequential(
            BinaryConv2d(cin, cout, 3, stride=stride, padding=1), _norm(cout, with_bn), RPReLU(cout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.binary_conv_relu(self.binarize_input(x)) + self.shortcut(x)


class ChannelReweight(nn.Module):
    """V3 weight branch: sigmoid(BinConv1x1(RPReLU(BinConv1x1(GAP(x))))) multiplies x per channel.

    The GAP output is real-valued (no sign inside the branch); only the weights are binary.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            BinaryConv2d(channels, channels, 1), RPReLU(channels), BinaryConv2d(channels, channels, 1), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(self.avg_pool(x))


class BDCUnitV1(_ResidualBinaryUnit):
    """BDC-V1: Sign(k x + b) -> BinConv3x3_{Cin->Cin, stride} [BN] -> RPReLU -> BinConv1x1_{Cin->Cout} [BN]
    -> RPReLU, + shortcut. The 1x1 conv sees the real-valued RPReLU output (weights binary, W1A32).

    Subclasses add ``extra_pointwise`` more BinConv1x1_{Cout->Cout} [BN] -> RPReLU layers (V2) and/or the
    per-channel weight branch (V3).
    """

    extra_pointwise: int = 0
    reweight: bool = False

    def __init__(self, cin: int, cout: int, stride: int = 1, with_bn: bool = False) -> None:
        super().__init__(cin, cout, stride, with_bn)
        layers: list[nn.Module] = [
            BinaryConv2d(cin, cin, 3, stride=stride, padding=1), _norm(cin, with_bn), RPReLU(cin),
            BinaryConv2d(cin, cout, 1), _norm(cout, with_bn), RPReLU(cout),
        ]  # fmt: skip
        for _ in range(self.extra_pointwise):
            layers += [BinaryConv2d(cout, cout, 1), _norm(cout, with_bn), RPReLU(cout)]
        self.binary_conv_relu = nn.Sequential(*layers)
        if self.reweight:
            self.se_block = ChannelReweight(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.binary_conv_relu(self.binarize_input(x))
        if self.reweight:
            main = self.se_block(main)
        return main + self.shortcut(x)


class BDCUnitV2(BDCUnitV1):
    """BDC-V2: V1 + "MulBiconv" in the main path. Our reading of the figure (the paper body was not
    available): two more BinConv1x1 [BN] + RPReLU layers after V1's 1x1 (``binary_conv_relu.6..11``)."""

    extra_pointwise = 2


class BDCUnitV3(BDCUnitV1):
    """BDC-V3, the final unit (= official ``BinaryConv2dBDC``, reference §2.4): V1 with its output multiplied
    by the per-channel weight branch (``se_block``) before the residual add."""

    reweight = True


class FPConvUnit(nn.Module):
    """Full-precision counterpart: Conv3x3_{Cin->Cout, stride} (no bias) + BN + ReLU (FlashOcc's ConvModule).

    Same constructor and shapes as the binarized units; BN is always on (``with_bn`` is accepted for the
    common interface), and there is no residual.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, with_bn: bool = True) -> None:
        super().__init__()
        _check_shape(cin, cout, stride)
        self.in_channels, self.out_channels, self.stride = cin, cout, stride
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


UNIT_CLASSES: dict[UnitVariant, type[nn.Module]] = {
    UnitVariant.FP: FPConvUnit,
    UnitVariant.BISR: BiSRConv,
    UnitVariant.BDC_V1: BDCUnitV1,
    UnitVariant.BDC_V2: BDCUnitV2,
    UnitVariant.BDC_V3: BDCUnitV3,
}


def make_unit(variant: UnitVariant, cin: int, cout: int, stride: int = 1, with_bn: bool = False) -> nn.Module:
    """The unit of ``variant`` mapping (B, cin, H, W) -> (B, cout, H/stride, W/stride)."""
    return UNIT_CLASSES[UnitVariant(variant)](cin, cout, stride, with_bn)


class Down(nn.Module):
    """AvgPool2 -> two units (C -> C) on the same tensor -> concat: (B, C, H, W) -> (B, 2C, H/2, W/2)."""

    def __init__(self, channels: int, variant: UnitVariant, with_bn: bool = False) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(2, 2)
        self.biconv_1 = make_unit(variant, channels, channels, 1, with_bn)
        self.biconv_2 = make_unit(variant, channels, channels, 1, with_bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        return torch.cat([self.biconv_1(x), self.biconv_2(x)], dim=1)


class Up(nn.Module):
    """Bilinear x2 (align_corners=False) -> split channels in halves -> one unit per half -> concat:
    (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int, variant: UnitVariant, with_bn: bool = False) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"Up: channels {channels} must be even")
        self.biconv_1 = make_unit(variant, channels // 2, channels // 2, 1, with_bn)
        self.biconv_2 = make_unit(variant, channels // 2, channels // 2, 1, with_bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        a, b = torch.chunk(x, 2, dim=1)
        return torch.cat([self.biconv_1(a), self.biconv_2(b)], dim=1)


class FusionDecrease(nn.Module):
    """Split channels in halves -> one unit (C/2 -> C/2) per half -> mean: (B, C, H, W) -> (B, C/2, H, W)."""

    def __init__(self, channels: int, variant: UnitVariant, with_bn: bool = False) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"FusionDecrease: channels {channels} must be even")
        self.biconv_1 = make_unit(variant, channels // 2, channels // 2, 1, with_bn)
        self.biconv_2 = make_unit(variant, channels // 2, channels // 2, 1, with_bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.chunk(x, 2, dim=1)
        return (self.biconv_1(a) + self.biconv_2(b)) * 0.5


class BinaryBasicBlock(nn.Module):
    """y = RPReLU(unit_{Cout->Cout}(unit_{Cin->Cout, stride}(x)) + shortcut), shortcut = downsample(x) or x
    (official ``BasicBinaryBlockBDC``)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        variant: UnitVariant,
        stride: int = 1,
        with_bn: bool = False,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = make_unit(variant, cin, cout, stride, with_bn)
        self.conv2 = make_unit(variant, cout, cout, 1, with_bn)
        self.downsample = downsample
        self.relu = RPReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + shortcut)


class BinaryDownsampleBlock(nn.Module):
    """Stage entry C -> 2C at half resolution: y = RPReLU(unit_{2C}(Down(x)) + Down'(x)); the shortcut
    ``Down'`` never has BN (official ``DownsampleBinaryBlockBDC`` inside ``BinaryResNetBDCDown``)."""

    def __init__(self, cin: int, variant: UnitVariant, with_bn: bool = False) -> None:
        super().__init__()
        self.conv1 = Down(cin, variant, with_bn)
        self.conv2 = make_unit(variant, 2 * cin, 2 * cin, 1, with_bn)
        self.downsample = Down(cin, variant, with_bn=False)
        self.relu = RPReLU(2 * cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.downsample(x))
