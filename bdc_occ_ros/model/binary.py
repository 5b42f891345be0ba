"""Binary primitives of BDC-Occ (reference §2.1): sign activation, binarized conv, RPReLU, affines.

Sign convention (project-wide): ``sign(x) = +1 for x >= 0, -1 otherwise``. This deliberately deviates
from ``torch.sign`` (which maps 0 to 0, as the official code does) so that every value is exactly one
bit and the bit-packed engine, ONNX export and training agree; a packed bit is 1 for +1, 0 for -1.
The same convention binarizes weights (a latent weight of exactly 0 becomes +alpha).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def binary_sign(x: torch.Tensor) -> torch.Tensor:
    """Elementwise +1 (x >= 0) / -1 (x < 0), same dtype as ``x``, no gradient."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class _TanhSurrogateSign(torch.autograd.Function):
    """Forward sign(x); backward d/dx tanh(beta x) = beta (1 - tanh^2(beta x)), and the matching d/dbeta."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, beta)
        return binary_sign(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, beta = ctx.saved_tensors
        sech2 = 1.0 - torch.tanh(beta * x).square()
        grad_x = grad * beta * sech2
        grad_beta = (grad * x * sech2).sum().reshape(beta.shape)
        return grad_x, grad_beta


class _ClippedSTEWeight(torch.autograd.Function):
    """Forward alpha * sign(W) exactly (alpha detached); backward passes the gradient where |W| <= 1."""

    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w)
        alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
        return alpha * binary_sign(w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1.0).to(grad.dtype)


class BinaryActivation(nn.Module):
    """Sign with the learnable tanh surrogate gradient ("Spectral_Binary_Activation"); one scalar ``beta``.

    (B, C, H, W) real -> (B, C, H, W) in {-1, +1}. Without autograd (inference, export) it is the plain
    sign, so traced graphs contain only comparison ops.
    """

    def __init__(self) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or self.beta.requires_grad):
            return _TanhSurrogateSign.apply(x, self.beta)
        return binary_sign(x)


class BinaryConv2d(nn.Conv2d):
    """Conv with weights binarized to ``alpha[o] * sign(W[o])`` ("HardBinaryConv"), never a bias.

    alpha = per-output-channel mean |W| (detached). Gradient to the latent W: straight-through, clipped
    to |W| <= 1. The convolution itself is an ordinary float conv of the input with the binarized
    weights; the bitwise engine replaces it by XNOR/popcount using :meth:`binarized_weight`.
    Being a ``nn.Conv2d`` subclass matters for the paper's complexity counting (§1.1): exact-type
    counters skip it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)

    def binarized_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(sign (Cout, Cin, k, k) in {-1, +1}, alpha (Cout,)), both detached."""
        w = self.weight.detach()
        return binary_sign(w), w.abs().mean(dim=(1, 2, 3))

    def effective_weight(self) -> torch.Tensor:
        """alpha * sign(W) (exactly two values per output channel) with the clipped straight-through
        gradient to W (equal to the official ``sign - clamp.detach() + clamp`` trick without its rounding)."""
        w = self.weight
        if torch.is_grad_enabled() and w.requires_grad:
            return _ClippedSTEWeight.apply(w)
        return w.abs().mean(dim=(1, 2, 3), keepdim=True) * binary_sign(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), None, self.stride, self.padding, self.dilation, self.groups)


class LearnableBias(nn.Module):
    """x + b, b (1, C, 1, 1) init 0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class RPReLU(nn.Module):
    """y = PReLU(x + gamma) + zeta with per-channel gamma, zeta (init 0) and slope (init 0.25).

    Attribute names follow the official checkpoints (pr_bias0, pr_prelu, pr_bias1).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pr_bias0 = LearnableBias(channels)
        self.pr_prelu = nn.PReLU(channels)
        self.pr_bias1 = LearnableBias(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pr_bias1(self.pr_prelu(self.pr_bias0(x)))


class ReDistribution(nn.Module):
    """Per-channel affine before the sign, k * x + b; k, b (1, C, 1, 1) init 1 and 0 ("move0")."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.k + self.b
