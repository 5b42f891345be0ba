"""The BinaryConv2d CUDA plugin sources: nvcc compiles them for Orin (sm_87) and sm_90, and the plugin's
per-output math (compiled for the CPU from the same header) equals torch's conv on +-1 weights, with
the packing layout the ONNX custom op carries. No GPU here: the kernels are compiled, never executed."""

from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from bdc_occ_ros.export.cuda_build import compile_kernel, compile_reference, nvcc_path
from bdc_occ_ros.export.custom_op import reference_binary_conv2d
from bdc_occ_ros.export.packing import pack_activations, pack_weights, unpack_weights, words_for
from bdc_occ_ros.model.binary import binary_sign

F32P = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
I32P = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")


@pytest.mark.parametrize("arch", ["87", "90"])
def test_kernel_compiles_for_orin_and_hopper(tmp_path, arch):
    if nvcc_path() is None:
        pytest.skip("nvcc not installed")
    obj = compile_kernel(tmp_path / f"binary_conv_sm{arch}.o", arch=arch, shared=False)
    assert obj.stat().st_size > 0


def test_kernel_uses_the_1bit_tensor_core_mma_on_orin(tmp_path):
    if nvcc_path() is None:
        pytest.skip("nvcc not installed")
    import subprocess

    from bdc_occ_ros.export.cuda_build import KERNEL_SOURCE

    ptx = tmp_path / "k.ptx"
    subprocess.run([nvcc_path(), "-arch=sm_87", "-ptx", str(KERNEL_SOURCE), "-o", str(ptx)], check=True)
    text = ptx.read_text()
    assert "wmma.mma.xor.popc.sync.aligned.row.col.m8n8k128.s32.b1.b1.s32" in text


@pytest.fixture(scope="module")
def ref_lib(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    lib = ctypes.CDLL(str(compile_reference(tmp_path_factory.mktemp("ref") / "libbdc_ref.so")))
    lib.bdc_pack_weights.argtypes = [F32P, *[ctypes.c_int] * 4, I32P]
    lib.bdc_pack_activations.argtypes = [F32P, *[ctypes.c_int] * 4, I32P]
    lib.bdc_binary_conv2d_ref.argtypes = [F32P, I32P, F32P, F32P, *[ctypes.c_int] * 10]
    return lib


def test_packing_layout_matches_the_onnx_op(ref_lib):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 70, 3, 3)).astype(np.float32)
    w[0, 3, 1, 1] = 0.0  # sign(0) = +1 -> bit 1
    x = rng.standard_normal((2, 70, 4, 6)).astype(np.float32)
    cw = np.zeros((5, 3, 3, words_for(70)), np.int32)
    ref_lib.bdc_pack_weights(w, 5, 70, 3, 3, cw)
    np.testing.assert_array_equal(cw, pack_weights(w))
    ca = np.zeros((2, 4, 6, words_for(70)), np.int32)
    ref_lib.bdc_pack_activations(x, 2, 70, 4, 6, ca)
    np.testing.assert_array_equal(ca, pack_activations(x))
    np.testing.assert_array_equal(unpack_weights(pack_weights(w), 70), binary_sign(torch.from_numpy(w)).numpy())
    assert (cw[0, 1, 1, 0] >> 3) & 1 == 1
    assert np.all(cw[..., -1].view(np.uint32) >> (70 - 64) == 0)  # channels past Cin are 0 bits


@pytest.mark.parametrize(
    ("cin", "cout", "k", "stride", "pad", "hw", "binarize"),
    [(64, 16, 3, 1, 1, (7, 9), 1), (70, 8, 3, 2, 1, (9, 8), 1), (128, 8, 3, 2, 1, (6, 5), 1),
     (33, 12, 1, 1, 0, (5, 5), 1), (40, 24, 1, 1, 0, (4, 7), 0), (24, 8, 3, 1, 1, (5, 6), 0)],
)  # fmt: skip
def test_plugin_math_equals_torch_conv(ref_lib, cin, cout, k, stride, pad, hw, binarize):
    """Channel counts that are not multiples of 32, stride 2, borders (valid-tap counting), both input modes."""
    rng = np.random.default_rng(cin * 7 + k)
    x = rng.standard_normal((2, cin, *hw)).astype(np.float32)
    x[0, 0, 0, 0] = 0.0  # sign(0) = +1 on the input side too
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    alpha = rng.uniform(0.1, 1.0, cout).astype(np.float32)
    packed = pack_weights(w)
    ho, wo = ((s + 2 * pad - k) // stride + 1 for s in hw)
    y = np.zeros((2, cout, ho, wo), np.float32)
    ref_lib.bdc_binary_conv2d_ref(x, packed, alpha, y, 2, cin, *hw, cout, k, k, stride, pad, binarize)
    xt = torch.from_numpy(x)
    inp = binary_sign(xt) if binarize else xt
    wt = binary_sign(torch.from_numpy(w)) * torch.from_numpy(alpha).view(-1, 1, 1, 1)
    expected = F.conv2d(inp, wt, None, stride, pad).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(reference_binary_conv2d(x, packed, alpha, stride, pad, bool(binarize)), expected,
                               rtol=1e-5, atol=1e-4)  # fmt: skip
