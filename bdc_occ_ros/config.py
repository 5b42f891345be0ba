"""Typed model configuration, loaded from ``config/models/*.yaml``.

``load_model_config(path)`` / ``ModelConfig.from_dict(d)`` check every field; a bad value raises
:class:`ConfigError` naming its path, e.g. ``bev_encoder.channels[1]: must be twice channels[0] (128)``.
Unknown keys are errors too (typos must not silently fall back to defaults).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bdc_occ_ros.classes import DET_CLASSES, NUM_OCC_CLASSES, OCC3D_GRID, GridSpec
from bdc_occ_ros.geometry import NUSCENES_CAMERAS


class ConfigError(ValueError):
    """A configuration value is invalid; the message starts with the field path."""


class UnitVariant(str, enum.Enum):
    """Convolution unit of the binarized modules; ``fp`` builds the full-precision FlashOcc modules."""

    FP = "fp"
    BISR = "bisr"  # V0, BiSR-Conv baseline
    BDC_V1 = "bdc_v1"
    BDC_V2 = "bdc_v2"
    BDC_V3 = "bdc_v3"  # the final BDC unit


@dataclass
class BackboneConfig:
    """torchvision ResNet; ``out_indices`` pick layer1..4 (0..3), the neck takes the last two.
    ``pretrained``: optional local torchvision state-dict file (never downloaded)."""

    depth: int = 50
    out_indices: tuple[int, int] = (2, 3)
    pretrained: str | None = None


@dataclass
class ImageNeckConfig:
    """FPN on the two backbone stages -> ``out_channels`` at stride 16. ``binary`` False keeps the FP
    CustomFPN in a binarized network (the paper's "-B" variants); ignored when the unit is ``fp``."""

    out_channels: int = 256
    binary: bool = True


@dataclass
class ViewTransformerConfig:
    """LSS: ``channels`` BEV context channels, depth bins ``arange(*depth_bins)`` in metres (start, stop,
    step), image feature stride ``downsample``."""

    channels: int = 64
    depth_bins: tuple[float, float, float] = (1.0, 45.0, 0.5)
    downsample: int = 16

    @property
    def num_depth_bins(self) -> int:
        start, stop, step = self.depth_bins
        return len(range(math.ceil((stop - start) / step - 1e-9)))


@dataclass
class BevEncoderConfig:
    """BEV encoder backbone stages (strides 2, 2, 2) with ``channels`` and ``num_layers`` blocks each, and
    the BEV neck (FPN_LSS) fusing stage 0 and the last stage to ``neck_channels`` at full BEV resolution."""

    channels: tuple[int, ...] = (128, 256, 512)
    num_layers: tuple[int, ...] = (2, 2, 2)
    neck_channels: int = 256


@dataclass
class OccHeadConfig:
    """Channel-to-height head: conv (``channels``) then MLP ``channels -> hidden -> Dz * num_classes``."""

    channels: int = 256
    hidden: int = 512
    num_classes: int = NUM_OCC_CLASSES


@dataclass
class DetHeadConfig:
    """CenterPoint-style head for ``classes``: shared conv to ``share_channels`` (binarized by
    FusionDecrease steps in binary configs), FP task heads of ``num_conv`` convs (``head_channels``,
    last kernel ``final_kernel``), run on the BEV neck output average-pooled by ``downsample``."""

    classes: tuple[str, ...] = DET_CLASSES
    share_channels: int = 64
    head_channels: int = 64
    num_conv: int = 2
    final_kernel: int = 3
    downsample: int = 1


@dataclass
class GridConfig:
    """The occupancy grid (Occ3D): voxel ``(i, j, k)`` starts at ``lower + (i, j, k) * voxel_size``."""

    lower: tuple[float, float, float] = OCC3D_GRID.lower
    voxel_size: float = OCC3D_GRID.voxel_size
    shape: tuple[int, int, int] = OCC3D_GRID.shape

    def spec(self) -> GridSpec:
        return GridSpec(lower=self.lower, voxel_size=self.voxel_size, shape=self.shape)


@dataclass
class ModelConfig:
    """The whole single-frame network. ``input_size`` is the network input (H, W) per camera."""

    name: str = "model"
    input_size: tuple[int, int] = (256, 704)
    cameras: tuple[str, ...] = NUSCENES_CAMERAS
    grid: GridConfig = field(default_factory=GridConfig)
    unit: UnitVariant = UnitVariant.BDC_V3
    with_bn: bool = False
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    img_neck: ImageNeckConfig = field(default_factory=ImageNeckConfig)
    view_transformer: ViewTransformerConfig = field(default_factory=ViewTransformerConfig)
    bev_encoder: BevEncoderConfig = field(default_factory=BevEncoderConfig)
    occ_head: OccHeadConfig = field(default_factory=OccHeadConfig)
    det_head: DetHeadConfig | None = None

    @property
    def binary(self) -> bool:
        """True when the binarizable modules use binarized units."""
        return self.unit is not UnitVariant.FP

    @property
    def feature_size(self) -> tuple[int, int]:
        """Image feature map (fH, fW) seen by the view transformer."""
        h, w = self.input_size
        return h // self.view_transformer.downsample, w // self.view_transformer.downsample

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        cfg = _build(cls, data, "")
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON types (lists, str), loadable again by :meth:`from_dict`."""
        return _plain(self)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field."""
        _validate(self)


def load_model_config(path: str | Path) -> ModelConfig:
    """Read a model YAML file into a validated :class:`ModelConfig`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model config not found: {path}")
    with path.open() as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    try:
        return ModelConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# --- construction ---------------------------------------------------------------------------------

_NESTED: dict[str, type] = {
    "grid": GridConfig,
    "backbone": BackboneConfig,
    "img_neck": ImageNeckConfig,
    "view_transformer": ViewTransformerConfig,
    "bev_encoder": BevEncoderConfig,
    "occ_head": OccHeadConfig,
    "det_head": DetHeadConfig,
}


def _build(kind: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip('.') or 'config'}: must be a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}{unknown[0]}: unknown field (allowed: {', '.join(sorted(names))})")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        if f.name not in data:
            continue
        value, path = data[f.name], f"{where}{f.name}"
        if kind is ModelConfig and f.name in _NESTED:
            optional = value is None and f.name == "det_head"  # the only optional section
            values[f.name] = None if optional else _build(_NESTED[f.name], value, path + ".")
        elif f.name == "unit":
            try:
                values[f.name] = UnitVariant(value)
            except ValueError:
                allowed = ", ".join(v.value for v in UnitVariant)
                raise ConfigError(f"{path}: {value!r} is not one of {allowed}") from None
        elif isinstance(value, list):
            values[f.name] = tuple(value)
        else:
            values[f.name] = value
    return kind(**values)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


# --- validation -----------------------------------------------------------------------------------


def _fail(path: str, message: str) -> None:
    raise ConfigError(f"{path}: {message}")


def _check_int(path: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(path, f"must be an integer >= {minimum}, got {value!r}")


def _check_number(path: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(path, f"must be a number, got {value!r}")


def _check_bool(path: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(path, f"must be true or false, got {value!r}")


def _check_seq(path: str, value: Any, length: int | None = None) -> None:
    if not isinstance(value, tuple):
        _fail(path, f"must be a list, got {value!r}")
    if length is not None and len(value) != length:
        _fail(path, f"must have {length} entries, got {len(value)}")


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


_BACKBONE_WIDTHS = {18: (64, 128, 256, 512), 34: (64, 128, 256, 512), 50: (256, 512, 1024, 2048)}


def backbone_channels(cfg: BackboneConfig) -> tuple[int, int]:
    """Channels of the two backbone stages fed to the image neck."""
    widths = _BACKBONE_WIDTHS[cfg.depth]
    return widths[cfg.out_indices[0]], widths[cfg.out_indices[1]]


def _validate(cfg: ModelConfig) -> None:
    if not isinstance(cfg.name, str) or not cfg.name:
        _fail("name", "must be a non-empty string")
    _check_seq("input_size", cfg.input_size, 2)
    vt = cfg.view_transformer
    _check_int("view_transformer.downsample", vt.downsample)
    for i, v in enumerate(cfg.input_size):
        _check_int(f"input_size[{i}]", v)
        if v % (2 * vt.downsample):
            _fail(f"input_size[{i}]", f"{v} must be a multiple of {2 * vt.downsample} (2 x feature stride)")
    _check_seq("cameras", cfg.cameras)
    if not cfg.cameras or len(set(cfg.cameras)) != len(cfg.cameras) or not all(isinstance(c, str) for c in cfg.cameras):
        _fail("cameras", "must be a non-empty list of distinct names")
    _check_bool("with_bn", cfg.with_bn)

    g = cfg.grid
    _check_seq("grid.lower", g.lower, 3)
    for i, v in enumerate(g.lower):
        _check_number(f"grid.lower[{i}]", v)
    _check_number("grid.voxel_size", g.voxel_size)
    if g.voxel_size <= 0:
        _fail("grid.voxel_size", "must be > 0")
    _check_seq("grid.shape", g.shape, 3)
    for i, v in enumerate(g.shape):
        _check_int(f"grid.shape[{i}]", v)
    if g.shape[0] % 8 or g.shape[1] % 8:
        _fail("grid.shape", f"{g.shape}: x and y sizes must be multiples of 8 (three stride-2 BEV stages)")

    b = cfg.backbone
    if b.depth not in _BACKBONE_WIDTHS:
        _fail("backbone.depth", f"{b.depth!r} is not one of {sorted(_BACKBONE_WIDTHS)}")
    _check_seq("backbone.out_indices", b.out_indices, 2)
    if tuple(b.out_indices) not in ((0, 1), (1, 2), (2, 3)):
        _fail("backbone.out_indices", "must be two consecutive stage indices, e.g. [2, 3]")
    if 2 ** (b.out_indices[0] + 2) != vt.downsample:
        _fail("view_transformer.downsample", f"must be {2 ** (b.out_indices[0] + 2)}, the stride of backbone "
              f"stage {b.out_indices[0]}")  # fmt: skip
    if b.pretrained is not None and not isinstance(b.pretrained, str):
        _fail("backbone.pretrained", "must be a file path or null")

    neck = cfg.img_neck
    _check_int("img_neck.out_channels", neck.out_channels)
    _check_bool("img_neck.binary", neck.binary)
    if cfg.binary and neck.binary:
        for i, cin in enumerate(backbone_channels(b)):
            if cin < neck.out_channels or not _is_pow2(cin // neck.out_channels) or cin % neck.out_channels:
                _fail("img_neck.out_channels", f"{neck.out_channels}: backbone stage channels {cin} (input {i}) must "
                      "be out_channels times a power of two (binary FusionDecrease steps)")  # fmt: skip

    _check_int("view_transformer.channels", vt.channels)
    _check_seq("view_transformer.depth_bins", vt.depth_bins, 3)
    for i, v in enumerate(vt.depth_bins):
        _check_number(f"view_transformer.depth_bins[{i}]", v)
    start, stop, step = vt.depth_bins
    if not (0 < start < stop and step > 0):
        _fail("view_transformer.depth_bins", "must be [start, stop, step] with 0 < start < stop and step > 0")

    be = cfg.bev_encoder
    _check_seq("bev_encoder.channels", be.channels, 3)
    _check_seq("bev_encoder.num_layers", be.num_layers, 3)
    for i, v in enumerate(be.num_layers):
        _check_int(f"bev_encoder.num_layers[{i}]", v)
    for i, v in enumerate(be.channels):
        _check_int(f"bev_encoder.channels[{i}]", v)
        if cfg.binary and i > 0 and v != 2 * be.channels[i - 1]:
            _fail(f"bev_encoder.channels[{i}]", f"must be twice channels[{i - 1}] ({2 * be.channels[i - 1]}): "
                  "binary stages start with a Down unit that doubles the channels")  # fmt: skip
    if cfg.binary and be.channels[0] not in (vt.channels, 2 * vt.channels):
        _fail("bev_encoder.channels[0]", f"must be view_transformer.channels ({vt.channels}) or twice it")
    if cfg.binary and be.channels[2] % 4:
        _fail("bev_encoder.channels[2]", "must be a multiple of 4 (split into halves by the binary Up units)")
    _check_int("bev_encoder.neck_channels", be.neck_channels)
    if cfg.binary and be.neck_channels % 2:
        _fail("bev_encoder.neck_channels", "must be even")

    oh = cfg.occ_head
    _check_int("occ_head.channels", oh.channels)
    _check_int("occ_head.hidden", oh.hidden)
    _check_int("occ_head.num_classes", oh.num_classes, 2)
    if cfg.binary and oh.channels not in (be.neck_channels, 2 * be.neck_channels):
        _fail("occ_head.channels", f"must be bev_encoder.neck_channels ({be.neck_channels}) or twice it (binary unit)")

    dh = cfg.det_head
    if dh is not None:
        _check_seq("det_head.classes", dh.classes)
        if not dh.classes:
            _fail("det_head.classes", "must not be empty")
        for name in ("share_channels", "head_channels", "num_conv", "downsample"):
            _check_int(f"det_head.{name}", getattr(dh, name))
        if dh.final_kernel not in (1, 3):
            _fail("det_head.final_kernel", f"{dh.final_kernel!r} is not one of 1, 3")
        if dh.downsample not in (1, 2, 4):
            _fail("det_head.downsample", f"{dh.downsample!r} is not one of 1, 2, 4")
        if cfg.binary:
            ratio = be.neck_channels // dh.share_channels
            if be.neck_channels % dh.share_channels or not _is_pow2(ratio):
                _fail("det_head.share_channels", f"bev_encoder.neck_channels ({be.neck_channels}) must be "
                      "share_channels times a power of two (binary FusionDecrease steps)")  # fmt: skip
