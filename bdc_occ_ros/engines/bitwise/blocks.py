"""Packed counterparts of the blocks built from binarized units (``bdc_occ_ros.model.units``): same math, with
the glue between the units fused into the units' last pass instead of separate torch ops.

- :class:`PackedUp` / :class:`PackedDown`: the two units write straight into their halves of the block's
  output (no ``cat``) when B = 1; the x2 bilinear upsampling / 2x2 pooling in front of them are numba kernels.
- :class:`PackedFusionDecrease`: the second unit adds the first one's output and halves the sum in its last pass.
- :class:`PackedBasicBlock` / :class:`PackedDownsampleBlock`: the second unit adds the block's shortcut and
  applies the block's RPReLU in its last pass.

Submodule names equal the float blocks', so state dicts (and packed files) keep the same keys.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bdc_occ_ros.engines.bitwise import kernels
from bdc_occ_ros.engines.bitwise.layers import BlockOps, PackedUnit, empty32, nchw, pool2x2, rprelu_vectors
from bdc_occ_ros.model.units import BinaryBasicBlock, BinaryDownsampleBlock, Down, FusionDecrease, Up


def _run_halves(first: PackedUnit, second: PackedUnit, a: torch.Tensor, b: torch.Tensor, out: np.ndarray) -> None:
    """first(a) -> out[:, :C/2], second(b) -> out[:, C/2:]; in place when the halves are contiguous (B = 1)."""
    half = out.shape[1] // 2
    for unit, x, target in ((first, a, out[:, :half]), (second, b, out[:, half:])):
        if target.flags.c_contiguous:
            unit.run(x, target)
        else:
            target[...] = unit.run(x)


class _UnitPair(nn.Module):
    """A block of two units, ``biconv_1`` and ``biconv_2`` (the float block's names), packed."""

    def __init__(self, block: Up | Down | FusionDecrease) -> None:
        super().__init__()
        self.biconv_1 = PackedUnit.from_unit(block.biconv_1)
        self.biconv_2 = PackedUnit.from_unit(block.biconv_2)


class PackedUp(_UnitPair):
    """:class:`~bdc_occ_ros.model.units.Up`: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        upsampled = empty32(b, c, 2 * h, 2 * w)
        kernels.upsample2x_bilinear(nchw(x), upsampled)
        halves = torch.from_numpy(upsampled).chunk(2, dim=1)
        out = empty32(b, c, 2 * h, 2 * w)
        _run_halves(self.biconv_1, self.biconv_2, *halves, out)
        return torch.from_numpy(out)


class PackedDown(_UnitPair):
    """:class:`~bdc_occ_ros.model.units.Down`: (B, C, H, W) -> (B, 2C, H/2, W/2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.units(pool2x2(x))

    def units(self, pooled: torch.Tensor) -> torch.Tensor:
        """The two units on the already pooled input (B, C, H/2, W/2) -> (B, 2C, H/2, W/2)."""
        b, c, h, w = pooled.shape
        out = empty32(b, 2 * c, h, w)
        _run_halves(self.biconv_1, self.biconv_2, pooled, pooled, out)
        return torch.from_numpy(out)


class PackedFusionDecrease(_UnitPair):
    """:class:`~bdc_occ_ros.model.units.FusionDecrease`: (B, C, H, W) -> (B, C/2, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.chunk(x, 2, dim=1)
        first = self.biconv_1.run(a)
        return torch.from_numpy(self.biconv_2.run(b, post=BlockOps(extra=first, scale=0.5)))


class PackedResidualBlock(nn.Module):
    """A block that ends in ``relu`` (an RPReLU) after adding its shortcut: the RPReLU's vectors are folded once
    by :meth:`prepare`, not converted on every forward."""

    relu: nn.Module

    def prepare(self) -> None:
        """Fold the block's RPReLU into the vectors its second unit's last pass applies (after load_state_dict)."""
        self.act = rprelu_vectors(self.relu)


class PackedBasicBlock(PackedResidualBlock):
    """:class:`~bdc_occ_ros.model.units.BinaryBasicBlock`: RPReLU(conv2(conv1(x)) + shortcut)."""

    def __init__(self, block: BinaryBasicBlock) -> None:
        super().__init__()
        self.conv1 = PackedUnit.from_unit(block.conv1)
        self.conv2 = PackedUnit.from_unit(block.conv2)
        self.downsample = None if block.downsample is None else PackedUnit.from_unit(block.downsample)
        self.relu = block.relu
        self.prepare()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = nchw(x if self.downsample is None else self.downsample(x))
        return torch.from_numpy(self.conv2.run(self.conv1(x), post=BlockOps(extra=shortcut, act=self.act)))


class PackedDownsampleBlock(PackedResidualBlock):
    """:class:`~bdc_occ_ros.model.units.BinaryDownsampleBlock`: RPReLU(conv2(Down(x)) + Down'(x))."""

    def __init__(self, block: BinaryDownsampleBlock) -> None:
        super().__init__()
        self.conv1 = PackedDown(block.conv1)
        self.conv2 = PackedUnit.from_unit(block.conv2)
        self.downsample = PackedDown(block.downsample)
        self.relu = block.relu
        self.prepare()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = pool2x2(x)  # both Downs pool the same input: once here
        post = BlockOps(extra=nchw(self.downsample.units(pooled)), act=self.act)
        return torch.from_numpy(self.conv2.run(self.conv1.units(pooled), post=post))


#: Float block type -> its packed counterpart (used by ``pack_model``).
PACKED_BLOCKS: dict[type[nn.Module], type[nn.Module]] = {
    Up: PackedUp,
    Down: PackedDown,
    FusionDecrease: PackedFusionDecrease,
    BinaryBasicBlock: PackedBasicBlock,
    BinaryDownsampleBlock: PackedDownsampleBlock,
}
