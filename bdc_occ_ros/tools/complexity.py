"""``bdc-occ complexity --config FILE [--json]``: parameters, MACs and weight storage of a model config.

Counting rules (documented because the paper's numbers depend on them):

- Operations are multiply-accumulates of one forward pass at the config's ``input_size`` with its
  cameras, batch 1, counted by forward hooks on the real modules (no analytic shortcut).
- ``paper``: the counting of the paper's Table 1 (mmcv ``get_model_complexity_info``, reference §1.1 /
  §10.3). Only modules of *exactly* these types count: ``nn.Conv2d`` (MACs + one op per output for a
  bias), BatchNorm (2 ops per input element when affine), ReLU/PReLU family (1 op per output element),
  pooling (1 per input element), ``nn.Upsample`` (1 per output element), ``nn.Linear`` (MACs + bias
  once). Their parameters are the "paper" parameters. Binarized convs subclass ``nn.Conv2d`` and so
  count zero params and zero ops, as do parameter holders that are no such module (the sign's beta,
  ReDistribution k/b, RPReLU's two biases) and functional ops (softmax, lift-splat, interpolate).
- ``bnn``: paper + binarized MACs / 64 (ops) and paper + binarized params / 32 (params), the usual
  BNN convention (64-bit popcount; 1-bit weights).
- ``binary``: the raw binarized-conv parameters / MACs; ``total`` params: every parameter.
- ``storage_bytes``: ``fp32`` = 4 bytes per parameter; ``packed`` = binarized weights as bits (each
  output channel's kernel rounded up to whole 64-bit words along input channels, as the bitwise
  engine packs them, plus one float32 alpha per output channel) + 4 bytes per other parameter.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("complexity", help="params / MACs / storage of a model config (paper counting rule)")
    p.add_argument("--config", required=True, help="model config YAML (config/models/*.yaml)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bdc_occ_ros.config import load_model_config

    report = model_complexity(load_model_config(args.config))
    if args.json:
        print(json.dumps(report))
    else:
        for section in ("params", "ops", "storage_bytes"):
            for key, value in report[section].items():
                print(f"{section}.{key:8s} {value / 1e6:12.3f} M" if section != "storage_bytes"
                      else f"{section}.{key:8s} {value / 2**20:12.3f} MiB")  # fmt: skip
    return 0


def model_complexity(cfg: Any) -> dict[str, dict[str, int]]:
    """The report dict of ``cfg`` (a ModelConfig).

    The model is built on PyTorch's ``meta`` device (shapes only, no arithmetic), so even the R50 configs
    take about a second; every module still runs its real forward on correctly shaped tensors. The only
    step replaced is the lift-splat scatter (data-dependent, and not counted by the paper's rule either):
    its output is an empty BEV tensor of the right shape.
    """
    import dataclasses

    import torch

    from bdc_occ_ros.model.network import build_model

    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, pretrained=None))
    with torch.device("meta"):
        model = build_model(cfg).eval()
    h, w = cfg.input_size
    imgs = torch.empty(1, len(cfg.cameras), 3, h, w, device="meta")
    counts = count_ops(model, imgs)
    return _report(model, counts)


def count_ops(model: Any, imgs: Any) -> dict[str, int]:
    """{"paper": ops by the mmcv rule, "binary": binarized-conv MACs} of one forward of ``model`` on
    ``imgs`` (B, N, 3, H, W), lift-splat output replaced by an empty BEV map (see :func:`model_complexity`)."""
    import torch
    from torch import nn

    from bdc_occ_ros.model.binary import BinaryConv2d

    totals = {"paper": 0, "binary": 0}
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm)
    acts = (nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6)
    pools = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

    def conv_macs(m: nn.Conv2d, out: torch.Tensor) -> int:
        return out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        kind = type(m)
        if kind is BinaryConv2d:
            totals["binary"] += conv_macs(m, out)
        elif kind is nn.Conv2d:
            totals["paper"] += conv_macs(m, out) + (out.numel() if m.bias is not None else 0)
        elif kind in norms:
            totals["paper"] += inp[0].numel() * (2 if getattr(m, "affine", False) else 1)
        elif kind in acts:
            totals["paper"] += out.numel()
        elif kind in pools:
            totals["paper"] += inp[0].numel()
        elif kind is nn.Upsample:
            totals["paper"] += out.numel()
        elif kind is nn.Linear:
            totals["paper"] += inp[0].numel() * m.out_features + (m.out_features if m.bias is not None else 0)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            feats = model.image_features(imgs)
            vt = model.img_view_transformer
            _, context = vt.lift(feats)
            bev = context.new_empty(imgs.shape[0], vt.out_channels, *vt.bev_size)
            model.heads(model.bev_features(bev))
    finally:
        for h in handles:
            h.remove()
    return totals


def _paper_param_modules() -> tuple[type, ...]:
    from torch import nn

    return (nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Linear, nn.PReLU, nn.GroupNorm,
            nn.LayerNorm)  # fmt: skip


def _report(model: Any, ops: dict[str, int]) -> dict[str, dict[str, int]]:
    from bdc_occ_ros.model.binary import BinaryConv2d

    counted = _paper_param_modules()
    total = sum(p.numel() for p in model.parameters())
    paper = sum(p.numel() for m in model.modules() if type(m) in counted for p in m.parameters(recurse=False))
    binary_convs = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    binary = sum(m.weight.numel() for m in binary_convs)
    packed_bits = sum(m.out_channels * -(-m.in_channels // 64) * 64 * m.kernel_size[0] * m.kernel_size[1]
                      for m in binary_convs)  # fmt: skip
    packed = packed_bits // 8 + 4 * sum(m.out_channels for m in binary_convs) + 4 * (total - binary)
    return {
        "params": {"total": total, "binary": binary, "paper": paper, "bnn": paper + binary // 32},
        "ops": {"paper": ops["paper"], "bnn": ops["paper"] + ops["binary"] // 64, "binary": ops["binary"]},
        "storage_bytes": {"fp32": 4 * total, "packed": packed},
    }
