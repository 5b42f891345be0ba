"""Float BDC network -> bit-packed network (:func:`pack_model`), and per-stage timing shared by the benchmark."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from bdc_occ_ros.engines.bitwise.blocks import PACKED_BLOCKS, PackedResidualBlock
from bdc_occ_ros.engines.bitwise.layers import AvgPool2x2, PackedConv3x3, PackedPointwise, PackedUnit
from bdc_occ_ros.model.binary import BinaryConv2d
from bdc_occ_ros.model.inputs import CameraGeometry
from bdc_occ_ros.model.network import OccupancyNetwork
from bdc_occ_ros.model.units import BDCUnitV1, BiSRConv


class BitwiseModel(nn.Module):
    """An :class:`OccupancyNetwork` whose binarized units are :class:`PackedUnit` and whose blocks of units are
    their packed counterparts (``blocks.py``); same forward contract:
    ``(imgs (B, N, 3, H, W), geometry) -> {"occ_logits": (B, X, Y, Z, K), "det": ...}``.

    Everything outside them (image backbone, LSS, FP convs, MLP head) is the original torch module, except 2x2
    average pooling, which runs on the pooling kernel of the packed blocks (:class:`AvgPool2x2`, same values).
    """

    def __init__(self, network: OccupancyNetwork) -> None:
        super().__init__()
        self.network = network
        self.cfg = network.cfg

    def forward(self, imgs: torch.Tensor, geometry: CameraGeometry | None = None) -> dict:
        with torch.no_grad():
            return self.network(imgs, geometry)

    def packed_units(self) -> dict[str, PackedUnit]:
        return {name: m for name, m in self.network.named_modules() if isinstance(m, PackedUnit)}

    def prepare(self) -> None:
        """Refresh the folded vectors of every packed unit and residual block (after load_state_dict)."""
        for module in self.network.modules():
            if isinstance(module, PackedUnit | PackedResidualBlock):
                module.prepare()


def pack_model(model: OccupancyNetwork) -> BitwiseModel:
    """Copy ``model`` (eval mode) with every BiSR-Conv / BDC-V1/V2/V3 unit replaced by a packed unit, every
    block of units (Up, Down, FusionDecrease, basic/downsample blocks) by its packed counterpart and every other
    ``AvgPool2d(2)`` by :class:`AvgPool2x2`.

    The input model is not modified. Raises ValueError when a binarized conv is left outside a unit
    (it would run as a float conv and the packed model would silently not be binary there).
    """
    net = copy.deepcopy(model).eval()
    _replace_units(net)
    leftovers = [name for name, m in net.named_modules() if isinstance(m, BinaryConv2d)]
    if leftovers:
        raise ValueError(f"pack_model: binarized convs outside a packable unit: {', '.join(leftovers)}")
    return BitwiseModel(net)


def _replace_units(module: nn.Module) -> None:
    for name, child in module.named_children():
        if type(child) in PACKED_BLOCKS:
            setattr(module, name, PACKED_BLOCKS[type(child)](child.eval()))
        elif isinstance(child, BiSRConv | BDCUnitV1):
            setattr(module, name, PackedUnit.from_unit(child.eval()))
        elif _is_avg_pool2x2(child):
            setattr(module, name, AvgPool2x2())
        else:
            _replace_units(child)


def _is_avg_pool2x2(module: nn.Module) -> bool:
    """An ``AvgPool2d`` that :class:`AvgPool2x2` computes exactly: 2x2 windows, stride 2, no padding, floor mode."""
    if not isinstance(module, nn.AvgPool2d):
        return False
    pairs = [v if isinstance(v, tuple) else (v, v) for v in (module.kernel_size, module.stride, module.padding)]
    return pairs == [(2, 2), (2, 2), (0, 0)] and not module.ceil_mode and module.divisor_override is None


@dataclass
class WeightBytes:
    """Storage of the binarized convs as float32 latent weights vs bits + alpha, and of all other parameters."""

    binarized_float32: int
    binarized_packed: int
    other_float32: int

    @property
    def ratio(self) -> float:
        return self.binarized_float32 / max(self.binarized_packed, 1)


def weight_bytes(float_model: OccupancyNetwork, packed: BitwiseModel) -> WeightBytes:
    """Byte counts of the binarized weights before/after packing and of the remaining FP parameters/buffers."""
    binarized_float = sum(m.weight.numel() * 4 for m in float_model.modules() if isinstance(m, BinaryConv2d))
    packed_ids: set[int] = set()
    binarized_packed = 0
    for m in packed.modules():
        if isinstance(m, PackedConv3x3 | PackedPointwise):
            for t in (m.bits, m.alpha):
                binarized_packed += t.numel() * t.element_size()
                packed_ids.add(id(t))
    other = sum(t.numel() * t.element_size() for t in packed.state_dict().values() if id(t) not in packed_ids)
    return WeightBytes(binarized_float, binarized_packed, other)


def run_stages(net: OccupancyNetwork, imgs: torch.Tensor, geometry: CameraGeometry) -> tuple[dict, dict[str, float]]:
    """Forward ``net`` stage by stage -> (outputs, {stage: ms}) for image backbone, image neck, view transform,
    BEV encoder, heads. Works for the float and the packed network (same module tree around the units)."""
    times: dict[str, float] = {}

    def timed(stage: str, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        times[stage] = (time.perf_counter() - t0) * 1e3
        return out

    with torch.no_grad():
        b, n = imgs.shape[:2]
        feats = timed("image_backbone", net.img_backbone, imgs.reshape(b * n, *imgs.shape[2:]))
        feats = timed("image_neck", net.img_neck, feats)
        bev = timed("view_transform", net.img_view_transformer, feats, geometry, None)
        bev = timed("bev_encoder", net.bev_features, bev)
        out = timed("heads", net.heads, bev)
    return out, times
