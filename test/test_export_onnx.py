"""ONNX export + onnxruntime parity with the torch engine, for the shipped FP and BDC edge models.

Random-initialised weights (seeded) saved as a checkpoint, the real nuScenes sample when present
(random images otherwise), the shipped nuScenes calibration. Exports run the TorchScript tracer over
the full edge network, hence ``slow``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bdc_occ_ros import cli
from bdc_occ_ros.config import load_model_config
from bdc_occ_ros.engines.onnxruntime_engine import OnnxRuntimeEngine
from bdc_occ_ros.export.custom_op import DOMAIN, OP_TYPE, register_schema
from bdc_occ_ros.export.onnx_export import RANK_INPUTS, export_onnx, plain_conv, rank_inputs
from bdc_occ_ros.geometry import NUSCENES_CAMERAS, RigCalibration
from bdc_occ_ros.model.binary import BinaryActivation, BinaryConv2d
from bdc_occ_ros.model.checkpoint import load_model, save_checkpoint
from bdc_occ_ros.model.network import build_model
from bdc_occ_ros.pipeline import OccupancyPipeline

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "config" / "models"
CALIBRATION = REPO / "config" / "calibration" / "nuscenes.yaml"
SAMPLE = REPO.parent / "shared" / "data" / "nuscenes_sample0"
MIN_AGREEMENT = 0.999


def _config(name: str):
    path = MODELS / f"{name}.yaml"
    if not path.exists():
        pytest.skip(f"{path} not present")
    return load_model_config(path)


def _checkpoint(cfg, path: Path) -> Path:
    torch.manual_seed(0)
    save_checkpoint(path, build_model(cfg), cfg)
    return path


def _model_from(ckpt: Path):
    return load_model(ckpt)[0]


def _images() -> list[np.ndarray]:
    if SAMPLE.is_dir():
        import cv2

        paths = [SAMPLE / "imgs" / f"{c}.jpg" for c in NUSCENES_CAMERAS]
        return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (900, 1600, 3), dtype=np.uint8) for _ in NUSCENES_CAMERAS]


def _agreement(cfg, ckpt: Path, engine: str) -> float:
    rig = RigCalibration.load(CALIBRATION)
    labels = []
    for name in ("torch", engine):
        pipe = OccupancyPipeline(cfg, ckpt, engine=name)
        assert pipe.engine.name == name  # no silent fallback
        pipe.set_calibration(rig)
        labels.append(pipe(_images()).labels)
    return float((labels[0] == labels[1]).mean())


@pytest.mark.slow
def test_fp_edge_model_onnxruntime_engine_matches_torch(tmp_path, monkeypatch):
    cfg = _config("flashocc_edge")
    monkeypatch.setenv("BDC_OCC_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = _checkpoint(cfg, tmp_path / "fp.safetensors")
    assert _agreement(cfg, ckpt, "onnxruntime") >= MIN_AGREEMENT
    cached = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(cached) == 1  # exported once, keyed by the checkpoint hash
    mtime = cached[0].stat().st_mtime_ns
    OnnxRuntimeEngine(cfg, ckpt)  # second use: the cached graph, no re-export
    assert cached[0].stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_bdc_edge_model_cli_export_and_onnxruntime_parity(tmp_path, monkeypatch):
    cfg = _config("bdc_occ_edge")
    ckpt = _checkpoint(cfg, tmp_path / "bdc.safetensors")
    out = tmp_path / "bdc.onnx"
    rc = cli.main(["export", "onnx", "--config", str(MODELS / "bdc_occ_edge.yaml"), "--checkpoint", str(ckpt),
                   "--out", str(out), "--calibration", str(CALIBRATION)])  # fmt: skip
    assert rc == 0 and out.exists()
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert "Sign" not in ops and {"GreaterOrEqual", "Where", "ScatterElements"} <= ops  # sign(0) = +1, plain splat
    assert [i.name for i in model.graph.input] == ["img", *RANK_INPUTS]
    ranks = np.load(out.with_suffix(".ranks.npz"))
    assert set(ranks.files) == set(RANK_INPUTS) and ranks["ranks_bev"].dtype == np.int32
    # The engine runs the given graph; the pipeline compares it with torch on the same weights.
    monkeypatch.setenv("BDC_OCC_CACHE_DIR", str(tmp_path / "cache"))
    engine = OnnxRuntimeEngine(cfg, ckpt, onnx_path=out)
    assert engine.runtime_info() == {"providers": "CPUExecutionProvider", "intra_op_threads": "onnxruntime default"}
    rig = RigCalibration.load(CALIBRATION)
    torch_pipe = OccupancyPipeline(cfg, ckpt, engine="torch")
    torch_pipe.set_calibration(rig)
    images = _images()
    expected = torch_pipe(images).labels
    torch_pipe.engine = engine
    got = torch_pipe(images).labels
    assert float((got == expected).mean()) >= MIN_AGREEMENT


@pytest.mark.slow
def test_custom_op_graph_passes_onnx_checker_and_is_refused_by_onnxruntime(tmp_path):
    cfg = _config("bdc_occ_edge")
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    out = export_onnx(net, tmp_path / "custom.onnx", "custom")
    register_schema()
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    nodes = [n for n in model.graph.node if n.op_type == OP_TYPE]
    assert len(nodes) == len(net.binary_modules())
    assert all(n.domain == DOMAIN for n in nodes)
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in nodes]
    assert all(a["plugin_namespace"] == DOMAIN.encode() for a in attrs)
    assert {a["binarize_input"] for a in attrs} == {0, 1}  # 3x3 convs on signs, 1x1 convs on real values
    with pytest.raises(Exception, match="BinaryConv2d"):
        ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="only the TensorRT plugin implements"):
        OnnxRuntimeEngine(cfg, None, onnx_path=out)


def _sample_inputs(cfg):
    """(imgs (1, N, 3, H, W), geometry) of the real sample (random images without it) + shipped calibration."""
    from bdc_occ_ros.model.inputs import geometry_from_calibration
    from bdc_occ_ros.preprocess import apply_aug, normalize, test_time_aug

    cams = RigCalibration.load(CALIBRATION).ordered(list(cfg.cameras))
    in_h, in_w = cfg.input_size
    augs = [test_time_aug(c.width, c.height, in_w, in_h) for c in cams]
    batch = np.stack([apply_aug(img, aug, in_w, in_h) for img, aug in zip(_images(), augs, strict=True)])
    return torch.from_numpy(normalize(batch))[None], geometry_from_calibration(cams, augs, in_w, in_h)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["flashocc_edge", "bdc_occ_edge"])
def test_exported_logits_match_torch(tmp_path, name):
    """Labels alone are a weak check with random weights; compare the logits (extra graph output)."""
    cfg = _config(name)
    ckpt = _checkpoint(cfg, tmp_path / "m.safetensors")
    onnx_path = export_onnx(_model_from(ckpt), tmp_path / "m.onnx", with_logits=True)
    engine = OnnxRuntimeEngine(cfg, ckpt, onnx_path=onnx_path)
    imgs, geometry = _sample_inputs(cfg)
    with torch.no_grad():
        expected = _model_from(ckpt)(imgs, geometry)["occ_logits"].numpy()
    labels = engine.infer(imgs, geometry).occ_labels.numpy()
    logits = engine.last_outputs["occ_logits"]
    assert len(np.unique(expected.argmax(-1))) > 5  # the check is not degenerate (one class everywhere)
    assert float((labels == expected.argmax(-1)).mean()) >= MIN_AGREEMENT
    if cfg.binary:
        # Float summation order can flip a sign activation near 0; such flips stay rare and local.
        assert float((np.abs(logits - expected) <= 1e-3).mean()) >= MIN_AGREEMENT
    else:
        np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)


def test_sign_at_zero_is_exact_in_the_plain_graph(tmp_path):
    """ONNX Sign(0) = 0, ours is +1: the exported sign must be GreaterOrEqual + Where."""
    torch.manual_seed(0)
    block = torch.nn.Sequential(BinaryActivation(), BinaryConv2d(40, 8, 3, stride=2, padding=1)).eval()
    block[1] = plain_conv(block[1])
    x = torch.randn(1, 40, 9, 11)
    x[:, :, ::2] = 0.0  # many exact zeros
    path = tmp_path / "sign.onnx"
    torch.onnx.export(block, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, block(x).numpy(), rtol=1e-5, atol=1e-5)


def test_rank_inputs_follow_the_calibration():
    cfg = _config("bdc_occ_edge")
    net = build_model(cfg).eval()
    from bdc_occ_ros.model.inputs import geometry_from_calibration
    from bdc_occ_ros.preprocess import test_time_aug

    cams = RigCalibration.load(CALIBRATION).ordered(list(cfg.cameras))
    in_h, in_w = cfg.input_size
    augs = [test_time_aug(c.width, c.height, in_w, in_h) for c in cams]
    a = rank_inputs(net, geometry_from_calibration(cams, augs, in_w, in_h))
    moved = geometry_from_calibration(cams, augs, in_w, in_h)
    moved.cam_to_ego[..., 0, 3] += 3.0  # the rig moved 3 m forward: other BEV cells
    b = rank_inputs(net, moved)
    assert all(a[k].dtype == np.int32 for k in RANK_INPUTS)
    assert not np.array_equal(a["ranks_bev"], b["ranks_bev"])
