"""Binary primitives and convolution units against their equations (reference §2)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from bdc_occ_ros.config import UnitVariant
from bdc_occ_ros.model.binary import BinaryActivation, BinaryConv2d, ReDistribution, RPReLU, binary_sign
from bdc_occ_ros.model.units import (
    BDCUnitV1,
    BDCUnitV2,
    BDCUnitV3,
    BinaryBasicBlock,
    BinaryDownsampleBlock,
    BiSRConv,
    Down,
    FPConvUnit,
    FusionDecrease,
    Up,
    make_unit,
)


def _sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def _binconv(x: torch.Tensor, conv: BinaryConv2d) -> torch.Tensor:
    w = conv.weight.detach()
    alpha = w.abs().mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)
    return F.conv2d(x, alpha * _sign(w), stride=conv.stride, padding=conv.padding)


def _rprelu(x: torch.Tensor, m: RPReLU) -> torch.Tensor:
    y = x + m.pr_bias0.bias
    slope = m.pr_prelu.weight.view(1, -1, 1, 1)
    return torch.where(y >= 0, y, slope * y) + m.pr_bias1.bias


def _shortcut(x: torch.Tensor, cout: int, stride: int) -> torch.Tensor:
    if stride == 2:
        x = F.avg_pool2d(x, 2)
    return torch.cat([x, x], 1) if cout == 2 * x.shape[1] else x


def _randomize(module: torch.nn.Module) -> None:
    """Non-trivial values for every parameter (affines, biases, slopes, weights)."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


# --- primitives ----------------------------------------------------------------------------------------


def test_sign_maps_zero_to_plus_one():
    x = torch.tensor([-2.0, -1e-7, 0.0, 1e-7, 3.0])
    assert binary_sign(x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    assert BinaryActivation()(x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]


def test_activation_surrogate_gradient_is_tanh_derivative():
    act = BinaryActivation()
    with torch.no_grad():
        act.beta.fill_(1.7)
    x = torch.linspace(-2, 2, 9, requires_grad=True)
    upstream = torch.linspace(0.5, 1.5, 9)
    out = act(x)
    (out * upstream).sum().backward()
    assert torch.equal(out.detach(), _sign(x.detach()))
    # Reference: the gradient of sum(upstream * tanh(beta x)) w.r.t. x and beta.
    x2 = x.detach().clone().requires_grad_(True)
    beta = torch.tensor([1.7], requires_grad=True)
    (torch.tanh(beta * x2) * upstream).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-6)
    assert torch.allclose(act.beta.grad, beta.grad, atol=1e-5)


def test_binary_conv_hand_computed():
    conv = BinaryConv2d(2, 1, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([0.5, -1.5]).view(1, 2, 1, 1))  # alpha = 1.0, sign = (+1, -1)
    x = torch.tensor([2.0, 3.0]).view(1, 2, 1, 1)
    assert conv(x).item() == pytest.approx(2.0 - 3.0)
    sign, alpha = conv.binarized_weight()
    assert sign.view(-1).tolist() == [1.0, -1.0] and alpha.tolist() == [1.0]
    assert conv.bias is None


def test_binarized_weights_take_two_values_per_output_channel():
    conv = BinaryConv2d(5, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = 0.0  # sign(0) -> +alpha
    w = conv.effective_weight().detach()
    for o in range(4):
        alpha = conv.weight[o].detach().abs().mean()
        assert set(w[o].unique().tolist()) <= {alpha.item(), -alpha.item()}
        assert torch.allclose(w[o].abs(), alpha.expand_as(w[o]))
    assert w[0, 0, 0, 0] > 0


def test_binary_conv_gradient_is_clipped_straight_through():
    conv = BinaryConv2d(1, 1, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([0.3]).view(1, 1, 1, 1))
    conv(torch.full((1, 1, 2, 2), 2.0)).sum().backward()
    assert conv.weight.grad.item() == pytest.approx(8.0)  # d(sum(x * w))/dw through the STE
    conv.weight.grad = None
    with torch.no_grad():
        conv.weight.fill_(1.5)  # |W| > 1: no gradient
    conv(torch.full((1, 1, 2, 2), 2.0)).sum().backward()
    assert conv.weight.grad.item() == 0.0


def test_rprelu_and_redistribution_equations():
    r, d = RPReLU(3), ReDistribution(3)
    _randomize(r)
    _randomize(d)
    x = torch.randn(2, 3, 4, 4)
    assert torch.allclose(r(x), _rprelu(x, r), atol=1e-6)
    assert torch.allclose(d(x), x * d.k + d.b)


# --- units ---------------------------------------------------------------------------------------------


def _main_v1(unit: BDCUnitV1, t: torch.Tensor) -> torch.Tensor:
    seq = unit.binary_conv_relu
    m = _rprelu(_binconv(t, seq[0]), seq[2])
    m = _rprelu(_binconv(m, seq[3]), seq[5])
    for i in range(6, len(seq), 3):
        m = _rprelu(_binconv(m, seq[i]), seq[i + 2])
    return m


@pytest.mark.parametrize(("cin", "cout", "stride"), [(4, 4, 1), (4, 8, 2), (4, 8, 1), (6, 6, 2)])
def test_bdc_v3_matches_equations(cin, cout, stride):
    unit = BDCUnitV3(cin, cout, stride).eval()
    _randomize(unit)
    x = torch.randn(2, cin, 6, 6)
    t = _sign(x * unit.move0.k + unit.move0.b)
    m = _main_v1(unit, t)
    fc = unit.se_block.fc
    w = torch.sigmoid(_binconv(_rprelu(_binconv(m.mean(dim=(2, 3), keepdim=True), fc[0]), fc[1]), fc[2]))
    expected = m * w + _shortcut(x, cout, stride)
    assert torch.allclose(unit(x), expected, atol=1e-5)


@pytest.mark.parametrize("cls", [BDCUnitV1, BDCUnitV2])
def test_bdc_v1_v2_match_equations(cls):
    unit = cls(4, 8, 2).eval()
    _randomize(unit)
    x = torch.randn(1, 4, 6, 6)
    t = _sign(x * unit.move0.k + unit.move0.b)
    expected = _main_v1(unit, t) + _shortcut(x, 8, 2)
    assert torch.allclose(unit(x), expected, atol=1e-5)
    assert len(unit.binary_conv_relu) == (12 if cls is BDCUnitV2 else 6)
    assert not hasattr(unit, "se_block")


def test_bisr_matches_equations():
    unit = BiSRConv(4, 8, 2).eval()
    _randomize(unit)
    x = torch.randn(1, 4, 6, 6)
    t = _sign(x * unit.move0.k + unit.move0.b)
    seq = unit.binary_conv_relu
    expected = _rprelu(_binconv(t, seq[0]), seq[2]) + _shortcut(x, 8, 2)
    assert torch.allclose(unit(x), expected, atol=1e-5)


def test_with_bn_puts_bn_on_shortcut_and_main_path():
    unit = BDCUnitV3(4, 4, 1, with_bn=True)
    keys = set(unit.state_dict())
    assert {"bn_fp.running_mean", "binary_conv_relu.1.weight", "binary_conv_relu.4.weight"} <= keys
    assert not any(k.startswith("bn_fp") for k in BDCUnitV3(4, 4, 1).state_dict())


def test_official_unit_key_layout():
    keys = {k: tuple(v.shape) for k, v in BDCUnitV3(8, 16, 2).state_dict().items()}
    assert keys == {
        "move0.k": (1, 8, 1, 1), "move0.b": (1, 8, 1, 1), "binary_activation.beta": (1,),
        "binary_conv_relu.0.weight": (8, 8, 3, 3),
        "binary_conv_relu.2.pr_bias0.bias": (1, 8, 1, 1), "binary_conv_relu.2.pr_prelu.weight": (8,),
        "binary_conv_relu.2.pr_bias1.bias": (1, 8, 1, 1),
        "binary_conv_relu.3.weight": (16, 8, 1, 1),
        "binary_conv_relu.5.pr_bias0.bias": (1, 16, 1, 1), "binary_conv_relu.5.pr_prelu.weight": (16,),
        "binary_conv_relu.5.pr_bias1.bias": (1, 16, 1, 1),
        "se_block.fc.0.weight": (16, 16, 1, 1),
        "se_block.fc.1.pr_bias0.bias": (1, 16, 1, 1), "se_block.fc.1.pr_prelu.weight": (16,),
        "se_block.fc.1.pr_bias1.bias": (1, 16, 1, 1),
        "se_block.fc.2.weight": (16, 16, 1, 1),
    }  # fmt: skip


def test_gradients_reach_every_parameter_of_a_unit():
    unit = BDCUnitV3(4, 8, 2)
    with torch.no_grad():
        for conv in (unit.binary_conv_relu[0], unit.binary_conv_relu[3], unit.se_block.fc[0], unit.se_block.fc[2]):
            conv.weight.mul_(0.1)  # keep latent weights inside the STE clip range
    x = torch.randn(2, 4, 6, 6)
    (unit(x) * torch.randn(2, 8, 3, 3)).sum().backward()
    for name, p in unit.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("variant", list(UnitVariant))
@pytest.mark.parametrize(("cin", "cout", "stride"), [(8, 8, 1), (8, 16, 2)])
def test_every_variant_shares_the_interface(variant, cin, cout, stride):
    unit = make_unit(variant, cin, cout, stride, with_bn=False)
    assert (unit.in_channels, unit.out_channels, unit.stride) == (cin, cout, stride)
    assert unit(torch.randn(1, cin, 8, 8)).shape == (1, cout, 8 // stride, 8 // stride)
    expected = {UnitVariant.FP: FPConvUnit, UnitVariant.BISR: BiSRConv, UnitVariant.BDC_V1: BDCUnitV1,
                UnitVariant.BDC_V2: BDCUnitV2, UnitVariant.BDC_V3: BDCUnitV3}[variant]  # fmt: skip
    assert type(unit) is expected


def test_unit_rejects_unsupported_channel_ratio():
    with pytest.raises(ValueError, match="out must equal in or twice in"):
        make_unit(UnitVariant.BDC_V3, 8, 24)


def test_composite_wrappers():
    x = torch.randn(1, 8, 6, 6)
    down, up, fd = Down(8, UnitVariant.BDC_V3).eval(), Up(8, UnitVariant.BDC_V3).eval(), FusionDecrease(8, "bdc_v3")
    pooled = F.avg_pool2d(x, 2)
    assert torch.allclose(down(x), torch.cat([down.biconv_1(pooled), down.biconv_2(pooled)], 1))
    big = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    assert torch.allclose(up(x), torch.cat([up.biconv_1(big[:, :4]), up.biconv_2(big[:, 4:])], 1))
    assert torch.allclose(fd(x), (fd.biconv_1(x[:, :4]) + fd.biconv_2(x[:, 4:])) / 2)
    block = BinaryBasicBlock(8, 8, UnitVariant.BDC_V3)
    assert torch.allclose(block(x), block.relu(block.conv2(block.conv1(x)) + x))
    dblock = BinaryDownsampleBlock(8, UnitVariant.BISR)
    assert dblock(x).shape == (1, 16, 3, 3)
