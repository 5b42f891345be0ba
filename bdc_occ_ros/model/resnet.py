"""torchvision-compatible ResNet-18/34/50 image backbone (state-dict keys identical to torchvision's).

Weights come only from a local file (a torchvision state dict, ``.pth`` loaded with weights_only=True,
or ``.safetensors``); nothing is ever downloaded. The ``fc`` head is not built; its keys are ignored.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """torchvision v1.5 bottleneck (stride on the 3x3 conv), as mmdet's pytorch-style ResNet."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


_ARCH: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """(B, 3, H, W) -> tuple of the stages in ``out_indices`` (0..3 = layer1..4, strides 4, 8, 16, 32).

    Stages after the last requested one are not built.
    """

    def __init__(self, depth: int, out_indices: tuple[int, ...] = (2, 3)) -> None:
        super().__init__()
        if depth not in _ARCH:
            raise ValueError(f"ResNet depth {depth} is not one of {sorted(_ARCH)}")
        block, counts = _ARCH[depth]
        self.depth = depth
        self.out_indices = tuple(out_indices)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        self.stage_channels: list[int] = []
        for i in range(max(self.out_indices) + 1):
            planes, stride = 64 * 2**i, 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
                    nn.BatchNorm2d(planes * block.expansion),
                )
            layers = [block(inplanes, planes, stride, downsample)]
            inplanes = planes * block.expansion
            layers += [block(inplanes, planes) for _ in range(counts[i] - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
            self.stage_channels.append(inplanes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i in range(max(self.out_indices) + 1):
            x = getattr(self, f"layer{i + 1}")(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def load_pretrained(self, path: str | Path) -> None:
        """Load a local torchvision ResNet state dict (``fc.*`` and unbuilt stages ignored); strict otherwise."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"backbone weights not found: {path} (weights are never downloaded)")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state)
        own = self.state_dict()
        state = {k: v for k, v in state.items() if k in own or not _ignorable(k)}
        problems = [f"missing: {k}" for k in own if k not in state and not k.endswith("num_batches_tracked")]
        problems += [f"unexpected: {k}" for k in state if k not in own]
        problems += [f"shape: {k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
                     if k in own and v.shape != own[k].shape]  # fmt: skip
        if problems:
            raise ValueError(f"{path}: not a ResNet-{self.depth} state dict: " + "; ".join(problems[:10]))
        self.load_state_dict(state, strict=False)


def _ignorable(key: str) -> bool:
    # The classifier and stages beyond out_indices are legitimately absent from our module.
    return key.startswith(("fc.", "layer"))
