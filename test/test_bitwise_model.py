"""Packed units/model against the torch model (random and trained weights), packed files, engine selection."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
from pathlib import Path

import numba
import numpy as np
import pytest
import torch

from bdc_occ_ros.config import ModelConfig, UnitVariant, load_model_config
from bdc_occ_ros.engines import create_engine
from bdc_occ_ros.engines.bitwise.blocks import PACKED_BLOCKS
from bdc_occ_ros.engines.bitwise.convert import BitwiseModel, pack_model, weight_bytes
from bdc_occ_ros.engines.bitwise.layers import FUSED_MIN_PIXELS, PackedUnit
from bdc_occ_ros.geometry import NUSCENES_CAMERAS, RigCalibration
from bdc_occ_ros.model.inputs import CameraGeometry, geometry_from_calibration
from bdc_occ_ros.model.network import build_model
from bdc_occ_ros.model.units import (
    BDCUnitV1,
    BinaryBasicBlock,
    BinaryDownsampleBlock,
    BiSRConv,
    Down,
    FusionDecrease,
    Up,
    make_unit,
)
from bdc_occ_ros.preprocess import test_time_aug as _test_time_aug

REPO = Path(__file__).resolve().parents[1]
TRAINED = REPO / "models" / "bdc_occ_edge_synth.safetensors"


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Move every parameter and BN statistic away from its init so each epilogue term matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)


@pytest.mark.parametrize("variant", [UnitVariant.BISR, UnitVariant.BDC_V1, UnitVariant.BDC_V2, UnitVariant.BDC_V3])
@pytest.mark.parametrize(
    ("cin", "cout", "stride", "with_bn"), [(3, 3, 1, False), (65, 130, 2, True), (64, 64, 1, True)]
)
def test_packed_unit_equals_torch_unit(variant: UnitVariant, cin: int, cout: int, stride: int, with_bn: bool) -> None:
    unit = make_unit(variant, cin, cout, stride, with_bn).eval()
    _randomize(unit, cin + stride)
    x = torch.randn(2, cin, 10, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = unit(x)
    packed = PackedUnit.from_unit(unit)
    got = packed(x)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    # channels_last input takes the other pack kernel and must give the same result
    assert torch.equal(packed(x.contiguous(memory_format=torch.channels_last)), got)


def test_large_unit_fuses_its_convs_and_equals_torch_unit() -> None:
    # from FUSED_MIN_PIXELS on, the 3x3 and the first 1x1 conv run as one kernel
    unit = make_unit(UnitVariant.BDC_V3, 40, 40, 1, with_bn=True).eval()
    _randomize(unit, 3)
    x = torch.randn(1, 40, 90, 120, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        ref = unit(x)
    packed = PackedUnit.from_unit(unit)
    assert packed.fuse_first_pointwise(90 * 120) and not packed.fuse_first_pointwise(FUSED_MIN_PIXELS - 1)
    torch.testing.assert_close(packed(x), ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_channel_gate_equals_torch_weight_branch() -> None:
    """The gate kernel on per-range channel sums equals the float branch on the means, a saturated gate included."""
    unit = make_unit(UnitVariant.BDC_V3, 40, 40, 1).eval()
    _randomize(unit, 5)
    means = torch.randn(2, 40, generator=torch.Generator().manual_seed(9))
    means[1] *= 1e4  # drives some pre-sigmoid values far below zero: exp overflows and the gate must be 0
    with torch.no_grad():
        ref = unit.se_block.fc(means[:, :, None, None])[:, :, 0, 0]
    partial = (means[:, None, :] * torch.tensor([15.0, 10.0, 5.0])[None, :, None]).numpy()  # sums over 3 ranges
    got = PackedUnit.from_unit(unit).gate(partial, 30)
    assert got.shape == (2, 40) and np.all(np.isfinite(got))
    assert (ref[1] == 0).any() and np.array_equal(got[1][ref[1].numpy() == 0], np.zeros(int((ref[1] == 0).sum())))
    torch.testing.assert_close(torch.from_numpy(got), ref, rtol=1e-5, atol=1e-6)


#: Warms up, then runs units at the edge model's shapes and prints the kernel builds those compiled (none expected).
_WARM_UP_PROBE = """
from bdc_occ_ros.openmp import load_system_openmp
load_system_openmp()
import torch
from bdc_occ_ros.config import UnitVariant
from bdc_occ_ros.engines.bitwise import kernels
from bdc_occ_ros.engines.bitwise.layers import PackedUnit, warm_up
from bdc_occ_ros.model.units import make_unit

def builds():
    return {(name, build): len(getattr(k, build).signatures) for name, k in vars(kernels).items()
            if isinstance(k, kernels.DualKernel) for build in ("serial", "parallel")}

warm_up()
before = builds()
for c, h, w in [(32, 200, 200), (64, 100, 100), (32, 100, 100), (64, 50, 50), (128, 25, 25), (2, 100, 100)]:
    for stride in (1, 2) if h % 2 == 0 else (1,):
        PackedUnit.from_unit(make_unit(UnitVariant.BDC_V3, c, c, stride, with_bn=False).eval())(torch.randn(1, c, h, w))
print(sorted(key for key, n in builds().items() if n != before[key]))
"""


@pytest.mark.parametrize("threads", ["1", "2"])
def test_warm_up_leaves_nothing_to_compile(threads: str) -> None:
    env = {**os.environ, "NUMBA_NUM_THREADS": threads}
    out = subprocess.run([sys.executable, "-c", _WARM_UP_PROBE], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "[]", out.stdout


def _blocks(variant: UnitVariant) -> dict[str, tuple[torch.nn.Module, int]]:
    """name -> (float block, input channels) for every block type the packed model replaces."""
    strided = make_unit(variant, 4, 8, 2, with_bn=False)
    return {
        "up": (Up(8, variant, True), 8),
        "down": (Down(4, variant, True), 4),
        "fusion_decrease": (FusionDecrease(16, variant, True), 16),
        "basic": (BinaryBasicBlock(6, 6, variant, 1, True), 6),
        "basic_strided": (BinaryBasicBlock(4, 8, variant, 2, True, strided), 4),
        "downsample": (BinaryDownsampleBlock(4, variant, True), 4),
    }


@pytest.mark.parametrize("batch", [1, 2])  # B = 2: the units' halves of Up/Down outputs are not contiguous
@pytest.mark.parametrize("variant", [UnitVariant.BISR, UnitVariant.BDC_V3])
@pytest.mark.parametrize("name", list(_blocks(UnitVariant.BDC_V3)))
def test_packed_block_equals_torch_block(name: str, variant: UnitVariant, batch: int) -> None:
    block, cin = _blocks(variant)[name]
    block.eval()
    _randomize(block, len(name))
    x = torch.randn(batch, cin, 10, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = block(x)
    packed = PACKED_BLOCKS[type(block)](block)
    got = packed(x)
    assert got.shape == ref.shape and got.is_contiguous()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    # Same state dict keys as the block with only its units packed: packed files keep their layout.
    assert packed.state_dict().keys() == _units_packed(copy.deepcopy(block)).state_dict().keys()


def _units_packed(module: torch.nn.Module) -> torch.nn.Module:
    for name, child in module.named_children():
        if isinstance(child, BiSRConv | BDCUnitV1):
            setattr(module, name, PackedUnit.from_unit(child))
        else:
            _units_packed(child)
    return module


def _tiny_cfg() -> ModelConfig:
    return ModelConfig.from_dict({
        "name": "tiny_bitwise_test", "input_size": [64, 192], "unit": "bdc_v3", "with_bn": True,
        "backbone": {"depth": 18}, "img_neck": {"out_channels": 64},
        "view_transformer": {"channels": 32, "depth_bins": [1.0, 45.0, 4.0]},
        "bev_encoder": {"channels": [32, 64, 128], "num_layers": [1, 1, 1], "neck_channels": 64},
        "occ_head": {"channels": 64, "hidden": 32}, "det_head": {},
    })  # fmt: skip


def _geometry(cfg: ModelConfig) -> CameraGeometry:
    rig = RigCalibration.load(REPO / "config" / "calibration" / "nuscenes.yaml")
    cams = [rig.cameras[name] for name in NUSCENES_CAMERAS]
    h, w = cfg.input_size
    return geometry_from_calibration(cams, [_test_time_aug(c.width, c.height, w, h) for c in cams], w, h)


@pytest.fixture(scope="module")
def tiny() -> tuple[ModelConfig, torch.nn.Module, torch.Tensor, CameraGeometry]:
    cfg = _tiny_cfg()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    _randomize(model.img_bev_encoder_backbone, 1)
    imgs = torch.randn(1, len(cfg.cameras), 3, *cfg.input_size, generator=torch.Generator().manual_seed(2))
    return cfg, model, imgs, _geometry(cfg)


@pytest.fixture(scope="module")
def tiny_packed(tiny) -> BitwiseModel:
    return pack_model(tiny[1])


def _compare(model: torch.nn.Module, packed: torch.nn.Module, imgs: torch.Tensor, geo: CameraGeometry) -> float:
    """Voxel label agreement of the packed vs the float model; logits must match within float rounding
    except where rounding flipped a sign upstream (a value within ~1e-6 of 0 before a binarized unit)."""
    with torch.no_grad():
        ref = model(imgs, geo)
        got = packed(imgs, geo)
    pairs = [(got["occ_logits"], ref["occ_logits"])] + [(got["det"][k], v) for k, v in ref.get("det", {}).items()]
    for b, a in pairs:
        close = torch.isclose(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()) + 1e-6)
        assert float(close.float().mean()) >= 0.99
    a, b = ref["occ_logits"], got["occ_logits"]
    return float((a.argmax(-1) == b.argmax(-1)).float().mean())


def test_pointwise_needs_its_rprelu() -> None:
    # the kernel reads one RPReLU per output channel without bounds checks: a missing one must not reach it
    from bdc_occ_ros.engines.bitwise.layers import Epilogue, PackedPointwise
    from bdc_occ_ros.model.binary import BinaryConv2d

    pw = PackedPointwise.from_conv(BinaryConv2d(8, 4, 1))
    with pytest.raises(ValueError, match="RPReLU of 4 channels"):
        pw.run(torch.randn(1, 8, 10).numpy(), Epilogue.fold(pw.alpha, torch.nn.Identity(), None))


def test_packed_model_equals_torch_model(tiny, tiny_packed: BitwiseModel) -> None:
    _, model, imgs, geo = tiny
    packed = tiny_packed
    assert len(packed.packed_units()) > 10
    assert not any(type(m).__name__ == "BinaryConv2d" for m in packed.modules())
    assert _compare(model, packed, imgs, geo) >= 0.999
    sizes = weight_bytes(model, packed)
    assert sizes.ratio >= 25.0, sizes


def test_packed_file_round_trip_without_float_checkpoint(tiny, tiny_packed: BitwiseModel, tmp_path: Path) -> None:
    from bdc_occ_ros.engines.bitwise.packed_file import is_packed_file, load_packed, save_packed

    cfg, _, imgs, geo = tiny
    packed = tiny_packed
    path = tmp_path / "tiny.packed.safetensors"
    save_packed(path, packed, {"source": "test"})
    assert is_packed_file(path)
    loaded, meta = load_packed(path)
    assert meta == {"source": "test"} and loaded.cfg.to_dict() == cfg.to_dict()
    with torch.no_grad():
        a, b = packed(imgs, geo)["occ_logits"], loaded(imgs, geo)["occ_logits"]
    assert torch.equal(a, b)
    # binarized weights are bits in the file: int32/int64 words, no float copy of them
    state = loaded.state_dict()
    assert {v.dtype for k, v in state.items() if k.endswith(".bits")} == {torch.int32, torch.int64}
    assert not any(k.endswith("conv3.weight") or "binary_conv_relu" in k for k in state)


def test_engine_selection_and_fallback(tiny) -> None:
    cfg = tiny[0]
    engine = create_engine("bitwise", cfg)
    assert engine.name == "bitwise"
    out = engine.infer(tiny[2], tiny[3])
    assert out.occ_labels.shape == (1, *cfg.grid.shape) and out.occ_labels.dtype == torch.uint8
    assert {"image_backbone", "image_neck", "view_transform", "bev_encoder", "heads"} <= set(out.timings_ms)
    assert out.det is not None and all(v.is_contiguous() for v in out.det.values())  # callers .view() them
    with pytest.raises(RuntimeError, match="CPU only"):  # EngineUnavailable: no silent CUDA "support"
        create_engine("bitwise", cfg, device="cuda", fallback=False)


def test_engines_run_float_convs_channels_last(tiny) -> None:
    # oneDNN's fast CPU convs are channels-last: the torch engine runs every conv so, the bitwise engine those of its
    # float image backbone, whose maps it then hands to the packed neck C-contiguous, and its detection task heads
    cfg, model, imgs, geo = tiny
    torch_engine = create_engine("torch", cfg)
    convs = [m for m in torch_engine.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    frustum = torch_engine.model.img_view_transformer.frustum  # 4-D, viewed as (-1, 3): must keep its strides
    assert frustum.dim() == 4 and frustum.is_contiguous()
    torch_engine.model.load_state_dict(model.state_dict())
    assert _compare(model, torch_engine.model, imgs, geo) >= 0.999
    out = torch_engine.infer(imgs, geo)
    assert out.det is not None and all(v.is_contiguous() for v in out.det.values())

    bitwise = create_engine("bitwise", cfg)
    network = bitwise.model.network
    for float_part in (network.img_backbone, network.det_head.heads):
        assert all(m.weight.is_contiguous(memory_format=torch.channels_last)
                   for m in float_part.modules() if isinstance(m, torch.nn.Conv2d))  # fmt: skip
    with torch.no_grad():
        feats = network.img_backbone(imgs[0])
        shared = network.det_head.shared_conv(torch.randn(1, cfg.bev_encoder.neck_channels, 8, 8))
    assert feats and all(f.is_contiguous() for f in feats)
    assert shared.is_contiguous(memory_format=torch.channels_last)
    out = bitwise.infer(imgs, geo)
    assert out.det is not None and all(v.is_contiguous() for v in out.det.values())


def test_pack_model_runs_2x2_pooling_on_the_kernel(tiny) -> None:
    # torch's avg_pool2d on an NCHW map took 8x the packed blocks' kernel: the detection head's pooling uses the kernel
    from bdc_occ_ros.engines.bitwise.convert import _is_avg_pool2x2
    from bdc_occ_ros.engines.bitwise.layers import AvgPool2x2

    _, _, imgs, geo = tiny
    cfg = ModelConfig.from_dict({**_tiny_cfg().to_dict(), "det_head": {"downsample": 2}})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    packed = pack_model(model)
    assert isinstance(packed.network.det_head.pool, AvgPool2x2)
    assert _compare(model, packed, imgs, geo) >= 0.999  # detection maps included
    x = torch.randn(2, 3, 7, 9)
    for t in (x, x.contiguous(memory_format=torch.channels_last)):
        assert torch.equal(AvgPool2x2()(t), torch.nn.functional.avg_pool2d(t, 2))
    for other in (torch.nn.AvgPool2d(2, ceil_mode=True), torch.nn.AvgPool2d(2, padding=1), torch.nn.AvgPool2d(3, 2),
                  torch.nn.AvgPool2d(2, 1), torch.nn.AvgPool2d(2, divisor_override=3)):  # fmt: skip
        assert not _is_avg_pool2x2(other)
    assert _is_avg_pool2x2(torch.nn.AvgPool2d((2, 2)))


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="one numba thread: nothing to choose")
def test_engine_runs_its_kernel_threads_in_the_calling_thread(tiny) -> None:
    # numba's thread count is per thread: the node builds the engine on one thread and infers on its worker thread
    from bdc_occ_ros.engines.bitwise import kernels

    cfg, _, imgs, geo = tiny
    engine = create_engine("bitwise", cfg)
    engine.set_kernel_threads(1)
    seen = []

    def worker() -> None:
        engine.infer(imgs, geo)
        seen.append(kernels.calling_thread_kernel_threads())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [1]
    info = engine.runtime_info()
    assert info["kernel_threads"] == "1" and info["threading_layer"] in {"omp", "tbb", "workqueue"}
    assert int(info["openmp_runtimes"]) >= 0 and info["torch_threads"] == str(torch.get_num_threads())


def test_engine_falls_back_to_torch_without_numba(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now raises ImportError
    engine = create_engine("bitwise", tiny[0])
    assert engine.name == "torch"
    assert engine.runtime_info() == {"device": "cpu", "torch_threads": str(torch.get_num_threads())}


@pytest.mark.skipif(not TRAINED.is_file(), reason=f"trained checkpoint {TRAINED.name} not present")
def test_trained_checkpoint_agreement() -> None:
    from bdc_occ_ros.model.checkpoint import load_checkpoint

    cfg, state, _ = load_checkpoint(TRAINED)
    model = build_model(cfg).eval()
    model.load_state_dict(state)
    imgs = torch.randn(1, len(cfg.cameras), 3, *cfg.input_size, generator=torch.Generator().manual_seed(5))
    assert _compare(model, pack_model(model), imgs, _geometry(cfg)) >= 0.999


def test_fp_config_is_rejected() -> None:
    edge = REPO / "config" / "models" / "flashocc_r50.yaml"
    cfg = load_model_config(edge) if edge.is_file() else ModelConfig(unit=UnitVariant.FP)
    with pytest.raises(ValueError, match="no binarized units"):
        create_engine("bitwise", cfg)
