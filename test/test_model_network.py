"""Config loading/validation, whole-network shapes for every config and unit, gradients, heads."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bdc_occ_ros.classes import DET_CLASSES, GridSpec
from bdc_occ_ros.config import ConfigError, ModelConfig, UnitVariant, load_model_config
from bdc_occ_ros.model.binary import BinaryActivation, BinaryConv2d, ReDistribution, RPReLU
from bdc_occ_ros.model.heads import BevCellMapping, OccupancyHead, decode_detections
from bdc_occ_ros.model.network import build_model, predict_labels
from bdc_occ_ros.model.view_transformer import ring_geometry

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "models"
ALL_CONFIGS = ["bdc_occ_edge", "flashocc_edge", "bdc_occ_r50", "flashocc_r50", "bisr_r50"]


def tiny_config(unit: str = "bdc_v3", with_bn: bool = False, det: bool = True) -> ModelConfig:
    """A network small enough for unit tests: R18 at 64x160, two cameras, a 32x32x4 grid."""
    return ModelConfig.from_dict({
        "name": "tiny", "input_size": [64, 160], "cameras": ["CAM_FRONT", "CAM_BACK"],
        "grid": {"lower": [-40.0, -40.0, -1.0], "voxel_size": 2.5, "shape": [32, 32, 4]},
        "unit": unit, "with_bn": with_bn, "backbone": {"depth": 18}, "img_neck": {"out_channels": 64},
        "view_transformer": {"channels": 16, "depth_bins": [1.0, 41.0, 4.0]},
        "bev_encoder": {"channels": [16, 32, 64], "num_layers": [1, 1, 1], "neck_channels": 16},
        "occ_head": {"channels": 16, "hidden": 32},
        "det_head": {"share_channels": 8, "head_channels": 8, "num_conv": 2} if det else None,
    })  # fmt: skip


def run_tiny(model, cfg: ModelConfig, batch: int = 1):
    imgs = torch.randn(batch, len(cfg.cameras), 3, *cfg.input_size)
    return model(imgs, ring_geometry(len(cfg.cameras), cfg.input_size, batch))


# --- config --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_shipped_configs_load_and_round_trip(name):
    cfg = load_model_config(CONFIG_DIR / f"{name}.yaml")
    assert cfg.name == name
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.grid.shape == (200, 200, 16)


def test_edge_config_is_the_binary_default_with_detection():
    cfg = load_model_config(CONFIG_DIR / "bdc_occ_edge.yaml")
    assert cfg.unit is UnitVariant.BDC_V3 and cfg.binary and cfg.backbone.depth == 18
    assert cfg.det_head is not None and cfg.det_head.classes == DET_CLASSES


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"bev_encoder": {"channels": [16, 48, 64]}}, r"bev_encoder\.channels\[1\]: must be twice"),
        ({"bev_encoder": {"channels": [16, 32, -4]}}, r"bev_encoder\.channels\[2\]: must be an integer >= 1"),
        ({"unit": "xnor"}, r"unit: 'xnor' is not one of fp, bisr, bdc_v1, bdc_v2, bdc_v3"),
        ({"input_size": [64, 150]}, r"input_size\[1\]: 150 must be a multiple of 32"),
        ({"occ_head": {"channel": 3}}, r"occ_head\.channel: unknown field"),
        ({"backbone": {"depth": 101}}, r"backbone\.depth: 101 is not one of"),
        ({"det_head": {"share_channels": 12}}, r"det_head\.share_channels"),
        ({"img_neck": {"out_channels": 96}}, r"img_neck\.out_channels: 96"),
        ({"with_bn": "yes"}, r"with_bn: must be true or false"),
        ({"grid": None}, r"grid: must be a mapping, got NoneType"),
        ({"view_transformer": {"depth_bins": [5.0, 1.0, 1.0]}}, r"view_transformer\.depth_bins: must be \[start"),
    ],
)
def test_validation_names_the_bad_field(patch, message):
    d = tiny_config().to_dict()
    for key, value in patch.items():
        if isinstance(value, dict):
            d[key] = {**(d[key] or {}), **value}
        else:
            d[key] = value
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(d)


def test_fp_config_accepts_widths_binary_units_cannot_take():
    d = tiny_config().to_dict()
    d["unit"], d["bev_encoder"]["channels"] = "fp", [24, 40, 72]
    assert ModelConfig.from_dict(d).bev_encoder.channels == (24, 40, 72)


def test_load_model_config_reports_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("unit: bdc_v9\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unit:"):
        load_model_config(bad)
    with pytest.raises(FileNotFoundError):
        load_model_config(tmp_path / "missing.yaml")


# --- network -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", [v.value for v in UnitVariant])
@pytest.mark.parametrize("with_bn", [False, True])
def test_tiny_network_output_shapes(unit, with_bn):
    torch.manual_seed(0)
    cfg = tiny_config(unit, with_bn)
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = run_tiny(model, cfg, batch=2)
    assert out["occ_logits"].shape == (2, 32, 32, 4, 18)
    assert set(out["det"]) == {"heatmap", "reg", "height", "dim", "rot", "vel"}
    assert out["det"]["heatmap"].shape == (2, 10, 32, 32)
    assert out["det"]["dim"].shape == (2, 3, 32, 32)
    labels = predict_labels(out["occ_logits"])
    assert labels.dtype == torch.uint8 and labels.shape == (2, 32, 32, 4)
    assert bool(model.binary_modules()) == (unit != "fp")


def test_without_det_head_there_is_no_det_output():
    cfg = tiny_config(det=False)
    with torch.no_grad():
        out = run_tiny(build_model(cfg).eval(), cfg)
    assert set(out) == {"occ_logits"}


def test_wrong_image_shape_is_a_clear_error():
    cfg = tiny_config()
    with pytest.raises(ValueError, match=r"imgs must be \(B, N, 3, 64, 160\)"):
        build_model(cfg)(torch.zeros(1, 2, 3, 64, 64), ring_geometry(2, (64, 64)))


@pytest.mark.parametrize("name", ["bdc_occ_edge", "flashocc_edge"])
def test_edge_configs_full_size_forward(name):
    cfg = load_model_config(CONFIG_DIR / f"{name}.yaml")
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 6, 3, *cfg.input_size), ring_geometry(6, cfg.input_size))
    assert out["occ_logits"].shape == (1, 200, 200, 16, 18)
    side = 200 // cfg.det_head.downsample
    assert out["det"]["heatmap"].shape == (1, 10, side, side)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bdc_occ_r50", "flashocc_r50", "bisr_r50"])
def test_paper_configs_forward_at_reduced_size(name):
    # Full size is ~400 GMAC; one camera at 64x160 and a 16x16 grid exercise every module in ~1 s.
    cfg = load_model_config(CONFIG_DIR / f"{name}.yaml")
    cfg = dataclasses.replace(cfg, input_size=(64, 160), cameras=("CAM_FRONT",),
                              grid=dataclasses.replace(cfg.grid, shape=(16, 16, 16)))  # fmt: skip
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 3, 64, 160), ring_geometry(1, (64, 160)))
    assert out["occ_logits"].shape == (1, 16, 16, 16, 18)


def test_gradients_reach_latent_weights_beta_rprelu_and_affine():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg).train()
    out = run_tiny(model, cfg)
    loss = torch.nn.functional.cross_entropy(out["occ_logits"].reshape(-1, 18), torch.randint(0, 18, (32 * 32 * 4,)))
    loss = loss + out["det"]["heatmap"].sigmoid().mean()
    loss.backward()
    kinds = {BinaryConv2d: ["weight"], BinaryActivation: ["beta"], ReDistribution: ["k", "b"]}
    reached = {k: 0 for k in (*kinds, RPReLU)}
    for m in model.modules():
        for kind, names in kinds.items():
            if type(m) is kind and all(getattr(m, n).grad is not None and getattr(m, n).grad.abs().sum() > 0
                                       for n in names):  # fmt: skip
                reached[kind] += 1
        if type(m) is RPReLU and all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters()):
            reached[RPReLU] += 1
    total = {k: sum(type(m) is k for m in model.modules()) for k in reached}
    for kind in reached:  # (a few units whose latent weights all sit outside the clip range may be silent)
        assert reached[kind] >= 0.9 * total[kind], (kind.__name__, reached[kind], total[kind])


# --- heads ---------------------------------------------------------------------------------------------


def test_occupancy_head_maps_bev_rows_and_columns_to_x_y():
    head = OccupancyHead(4, 4, 8, 3, 5, UnitVariant.FP, False).eval()
    head.final_conv = torch.nn.Identity()  # isolate the permute + channel-to-height
    bev = torch.zeros(1, 4, 6, 7)  # (B, C, Dy=6, Dx=7)
    bev[0, :, 2, 5] = 1.0  # row y = 2, column x = 5
    with torch.no_grad():
        logits = head(bev)
    assert logits.shape == (1, 7, 6, 3, 5)  # (B, X, Y, Z, K)
    changed = (logits - logits[0, 0, 0]).abs().sum(dim=(-1, -2))[0]
    assert torch.nonzero(changed > 1e-4).tolist() == [[5, 2]]  # (float noise of batched matmuls below that)


def test_decode_detections_cell_to_metres():
    grid = GridSpec(lower=(-40.0, -40.0, -1.0), voxel_size=2.5, shape=(32, 32, 4))
    h = w = 32
    det = {name: torch.zeros(1, k, h, w) for name, k in (("reg", 2), ("height", 1), ("dim", 3), ("rot", 2), ("vel", 2))}
    det["heatmap"] = torch.full((1, 10, h, w), -10.0)
    iy, ix, yaw = 10, 20, 0.3
    det["heatmap"][0, 2, iy, ix] = 3.0
    det["reg"][0, :, iy, ix] = torch.tensor([0.5, 0.25])
    det["height"][0, 0, iy, ix] = 1.0
    det["dim"][0, :, iy, ix] = torch.tensor([4.0, 2.0, 1.5]).log()
    det["rot"][0, :, iy, ix] = torch.tensor([math.sin(yaw), math.cos(yaw)])
    det["vel"][0, :, iy, ix] = torch.tensor([1.0, -2.0])
    (boxes,) = decode_detections(det, score_threshold=0.5, max_objects=10, grid=grid)
    assert len(boxes) == 1
    box = boxes[0]
    assert box.label == DET_CLASSES[2] and box.score == pytest.approx(1 / (1 + math.exp(-3.0)))
    np.testing.assert_allclose(box.center, [-40 + 20.5 * 2.5, -40 + 10.25 * 2.5, 1.0], atol=1e-5)
    np.testing.assert_allclose(box.size, [4.0, 2.0, 1.5], atol=1e-5)
    np.testing.assert_allclose(box.velocity, [1.0, -2.0])
    assert box.yaw == pytest.approx(yaw)
    mapping = BevCellMapping.from_grid(grid, (h, w))
    cx, cy, off = mapping.cell_of(box.center[None, :2])
    assert (cx[0], cy[0]) == (ix, iy)
    np.testing.assert_allclose(off[0], [0.5, 0.25], atol=1e-5)


def test_backbone_weights_load_from_a_local_torchvision_file(tmp_path: Path):
    from bdc_occ_ros.model.resnet import ResNet

    source = ResNet(18, (2, 3))
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in source.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)  # torchvision's classifier
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, pretrained=str(path)))
    model = build_model(cfg)
    assert torch.equal(model.img_backbone.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    wrong = tmp_path / "resnet50.pth"
    torch.save(ResNet(50, (2, 3)).state_dict(), wrong)
    with pytest.raises(ValueError, match=r"not a ResNet-18 state dict: shape: layer1\.0\.conv1\.weight"):
        ResNet(18, (2, 3)).load_pretrained(wrong)
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        ResNet(18, (2, 3)).load_pretrained(tmp_path / "absent.pth")
