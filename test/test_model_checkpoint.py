"""safetensors checkpoints and the import of official (mmdet3d) state dicts (reference §10.2)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from test_model_network import CONFIG_DIR, run_tiny, tiny_config

from bdc_occ_ros.config import load_model_config
from bdc_occ_ros.model.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from bdc_occ_ros.model.network import build_model
from bdc_occ_ros.model.official import (
    import_official_state_dict,
    load_official_checkpoint,
    ours_to_official,
)


def _randomized_model(cfg):
    torch.manual_seed(1)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model.eval()


def _same_outputs(a, b, cfg) -> bool:
    torch.manual_seed(5)
    imgs_out_a = run_tiny(a, cfg)
    torch.manual_seed(5)
    imgs_out_b = run_tiny(b, cfg)
    return torch.equal(imgs_out_a["occ_logits"], imgs_out_b["occ_logits"])


def test_save_load_round_trip(tmp_path: Path):
    cfg = tiny_config(with_bn=True)
    model = _randomized_model(cfg)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, cfg, {"epoch": 3, "miou": 12.5})
    loaded_cfg, state, meta = load_checkpoint(path)
    assert loaded_cfg == cfg and meta == {"epoch": 3, "miou": 12.5}
    assert state.keys() == model.state_dict().keys()
    restored, used_cfg = load_model(path)
    assert used_cfg == cfg and not restored.training
    with torch.no_grad():
        assert _same_outputs(model, restored, cfg)


def test_mismatch_lists_missing_unexpected_and_shape(tmp_path: Path):
    cfg = tiny_config()
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, build_model(cfg), cfg)
    other = tiny_config(with_bn=True, det=False)
    other = dataclasses.replace(other, occ_head=dataclasses.replace(other.occ_head, hidden=64))
    with pytest.raises(CheckpointError) as err:
        load_model(path, other)
    text = str(err.value)
    assert "missing (" in text and "bn_fp.running_mean" in text
    assert "unexpected (" in text and "det_head.heads.heatmap" in text
    assert "shape mismatch (" in text and "occ_head.predicter.0.weight: checkpoint (32, 16) vs model (64, 16)" in text


def test_unreadable_checkpoints_are_clear_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_checkpoint(corrupt)
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="no embedded model config"):
        load_checkpoint(plain)


# --- official checkpoints ---------------------------------------------------------------------------------


def _official_layout(cfg) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = build_model(cfg)
    return {ours_to_official(k): tuple(v.shape) for k, v in model.state_dict().items()}


def test_bdc_t_official_key_names_and_shapes():
    """The documented single-frame BDC-T key layout (reference §10.2, §4.2, with_bn False)."""
    keys = _official_layout(load_model_config(CONFIG_DIR / "bdc_occ_r50.yaml"))
    expected = {
        "img_backbone.conv1.weight": (64, 3, 7, 7),
        "img_backbone.layer4.2.bn3.running_var": (2048,),
        "img_backbone.layer3.0.downsample.0.weight": (1024, 512, 1, 1),
        "img_neck.lateral_convs.0.l_conv_0_0.biconv_1.binary_conv_relu.0.weight": (512, 512, 3, 3),
        "img_neck.lateral_convs.0.l_conv_0_1.biconv_2.move0.k": (1, 256, 1, 1),
        "img_neck.lateral_convs.1.l_conv_1_2.biconv_1.se_block.fc.0.weight": (256, 256, 1, 1),
        "img_neck.lateral_convs.1.l_conv_1_0.biconv_1.binary_conv_relu.0.weight": (1024, 1024, 3, 3),
        "img_neck.fpn_convs.0.binary_activation.beta": (1,),
        "img_view_transformer.depth_net.weight": (152, 256, 1, 1),
        "img_view_transformer.depth_net.bias": (152,),
        "img_bev_encoder_backbone.layers.0.0.conv1.binary_conv_relu.0.weight": (64, 64, 3, 3),
        "img_bev_encoder_backbone.layers.0.0.conv1.binary_conv_relu.3.weight": (128, 64, 1, 1),
        "img_bev_encoder_backbone.layers.0.0.downsample.move0.k": (1, 64, 1, 1),
        "img_bev_encoder_backbone.layers.1.0.conv1.biconv_1.binary_conv_relu.0.weight": (128, 128, 3, 3),
        "img_bev_encoder_backbone.layers.1.0.downsample.biconv_2.se_block.fc.2.weight": (128, 128, 1, 1),
        "img_bev_encoder_backbone.layers.1.0.conv2.binary_conv_relu.5.pr_prelu.weight": (256,),
        "img_bev_encoder_backbone.layers.2.1.relu.pr_prelu.weight": (512,),
        "img_bev_encoder_backbone.layers.2.1.relu.pr_bias0.bias": (1, 512, 1, 1),
        "img_bev_encoder_neck.up.0.biconv_1.binary_conv_relu.0.weight": (256, 256, 3, 3),
        "img_bev_encoder_neck.up.1.biconv_2.move0.b": (1, 256, 1, 1),
        "img_bev_encoder_neck.conv.0.weight": (512, 640, 3, 3),
        "img_bev_encoder_neck.conv.1.running_mean": (512,),
        "img_bev_encoder_neck.conv.3.move0.b": (1, 512, 1, 1),
        "img_bev_encoder_neck.up2.0.biconv_1.binary_conv_relu.3.weight": (256, 256, 1, 1),
        "img_bev_encoder_neck.up2.1.biconv_2.binary_conv_relu.0.weight": (256, 256, 3, 3),
        "img_bev_encoder_neck.up2.2.se_block.fc.0.weight": (256, 256, 1, 1),
        "occ_head.final_conv.binary_conv_relu.0.weight": (256, 256, 3, 3),
        "occ_head.predicter.0.weight": (512, 256),
        "occ_head.predicter.2.weight": (288, 512),
        "occ_head.predicter.2.bias": (288,),
    }
    for key, shape in expected.items():
        assert keys.get(key) == shape, key
    assert not any(".bn_fp." in k or "binary_conv_relu.1." in k for k in keys)  # with_bn False
    assert not any(k.startswith("img_neck.lateral_convs.0.0") for k in keys)


def test_flashocc_m1_official_key_names_and_shapes():
    keys = _official_layout(load_model_config(CONFIG_DIR / "flashocc_r50.yaml"))
    expected = {
        "img_neck.lateral_convs.0.conv.weight": (256, 1024, 1, 1),
        "img_neck.lateral_convs.1.conv.bias": (256,),
        "img_neck.fpn_convs.0.conv.weight": (256, 256, 3, 3),
        "img_bev_encoder_backbone.layers.0.0.conv1.weight": (128, 64, 3, 3),
        "img_bev_encoder_backbone.layers.0.0.bn2.running_var": (128,),
        "img_bev_encoder_backbone.layers.0.0.downsample.weight": (128, 64, 3, 3),
        "img_bev_encoder_backbone.layers.2.0.downsample.bias": (512,),
        "img_bev_encoder_neck.conv.0.weight": (512, 640, 3, 3),
        "img_bev_encoder_neck.conv.3.weight": (512, 512, 3, 3),
        "img_bev_encoder_neck.up2.1.weight": (256, 512, 3, 3),
        "img_bev_encoder_neck.up2.4.weight": (256, 256, 1, 1),
        "img_bev_encoder_neck.up2.4.bias": (256,),
        "occ_head.final_conv.conv.weight": (256, 256, 3, 3),
        "occ_head.final_conv.conv.bias": (256,),
    }
    for key, shape in expected.items():
        assert keys.get(key) == shape, key


@pytest.mark.parametrize("unit", ["bdc_v3", "fp"])
def test_official_import_round_trip(tmp_path: Path, unit):
    cfg = tiny_config(unit, det=False)
    source = _randomized_model(cfg)
    official = {ours_to_official(k): v.clone() for k, v in source.state_dict().items()}
    if unit == "bdc_v3":
        assert any(".l_conv_1_2." in k for k in official)
    path = tmp_path / "epoch_24_ema.pth"
    torch.save({"meta": {"mmcv_version": "1.5.3", "config": "model = dict(...)", "epoch": 24},
                "state_dict": official, "optimizer": {"state": {}, "param_groups": []}}, path)  # fmt: skip
    restored = build_model(cfg).eval()
    restored.load_state_dict(load_official_checkpoint(path, cfg))
    with torch.no_grad():
        assert _same_outputs(source, restored, cfg)
    # The same dict through the in-memory entry point, with a DataParallel prefix.
    state = import_official_state_dict({f"module.{k}": v for k, v in official.items()}, cfg)
    assert state.keys() == source.state_dict().keys()


def test_official_import_rejects_other_layouts():
    cfg = tiny_config(det=False)
    official = {ours_to_official(k): v for k, v in build_model(cfg).state_dict().items()}
    official["pre_process_net.layers.0.0.conv1.move0.k"] = torch.zeros(1, 16, 1, 1)  # stereo-only part
    del official["occ_head.predicter.0.bias"]
    with pytest.raises(CheckpointError, match=r"(?s)missing \(1\): occ_head\.predicter\.0\.bias.*unexpected \(1\)"):
        import_official_state_dict(official, cfg)
