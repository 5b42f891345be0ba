"""TensorRT path without TensorRT: engine-cache naming, the guarded import and the torch fallback."""

from __future__ import annotations

import importlib.util
import logging

import pytest

from bdc_occ_ros import cli
from bdc_occ_ros.config import ModelConfig
from bdc_occ_ros.engines import create_engine
from bdc_occ_ros.engines.errors import EngineUnavailable
from bdc_occ_ros.export.tensorrt_build import GpuInfo, engine_cache_path, engine_file_name, import_tensorrt

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
ORIN = GpuInfo("Orin", 8, 7)


def test_engine_file_name_carries_precision_gpu_and_tensorrt_version(tmp_path):
    onnx_path = tmp_path / "bdc_occ_edge-0123456789abcdef-plain.onnx"
    name = engine_file_name(onnx_path, "fp16", ORIN, "10.3.0")
    assert name == "bdc_occ_edge-0123456789abcdef-plain.fp16.sm87-orin.trt10.3.0.engine"
    # Another GPU, precision or TensorRT version never reuses the engine.
    others = {
        engine_file_name(onnx_path, "int8", ORIN, "10.3.0"),
        engine_file_name(onnx_path, "fp16", GpuInfo("NVIDIA H100 80GB HBM3", 9, 0), "10.3.0"),
        engine_file_name(onnx_path, "fp16", ORIN, "8.6.2"),
    }
    assert name not in others and len(others) == 3
    assert "sm90-nvidia-h100-80gb-hbm3" in " ".join(others)
    # Autoware convention: beside the ONNX file unless an engine directory is given.
    assert engine_cache_path(onnx_path, "fp16", ORIN, "10.3.0").parent == tmp_path
    assert engine_cache_path(onnx_path, "fp16", ORIN, "10.3.0", tmp_path / "e").parent == tmp_path / "e"
    with pytest.raises(ValueError, match="precision"):
        engine_file_name(onnx_path, "fp8", ORIN, "10.3.0")


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed")
def test_missing_tensorrt_is_a_clear_engine_unavailable():
    with pytest.raises(EngineUnavailable, match=r"TensorRT is not importable.*JetPack"):
        import_tensorrt()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed")
def test_tensorrt_engine_falls_back_to_torch_with_a_warning(caplog):
    cfg = ModelConfig.from_dict({
        "name": "tiny", "input_size": [64, 128], "unit": "fp", "backbone": {"depth": 18},
        "img_neck": {"out_channels": 32}, "view_transformer": {"channels": 16, "depth_bins": [1.0, 45.0, 4.0]},
        "bev_encoder": {"channels": [16, 32, 64], "neck_channels": 32}, "occ_head": {"channels": 32, "hidden": 32},
    })  # fmt: skip
    with pytest.raises(EngineUnavailable):
        create_engine("tensorrt", cfg, fallback=False)
    with caplog.at_level(logging.WARNING):
        engine = create_engine("tensorrt", cfg)
    assert engine.name == "torch"
    assert "tensorrt" in caplog.text and "TensorRT is not importable" in caplog.text


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed")
def test_cli_export_tensorrt_without_tensorrt_says_so(tmp_path, capsys):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"")
    assert cli.main(["export", "tensorrt", "--onnx", str(onnx_path), "--precision", "fp16"]) == 3
    assert "TensorRT is not importable" in capsys.readouterr().out


def test_cli_export_tensorrt_missing_onnx_is_named(tmp_path, capsys):
    assert cli.main(["export", "tensorrt", "--onnx", str(tmp_path / "nope.onnx")]) == 2
    assert "nope.onnx" in capsys.readouterr().err
