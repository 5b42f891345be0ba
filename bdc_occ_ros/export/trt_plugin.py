"""TensorRT plugin ``bdc_occ::BinaryConv2d`` as a quickly deployable Python plugin (``tensorrt.plugin``).

Needs a TensorRT whose Python bindings have ``tensorrt.plugin`` (QDP; TensorRT 10.x, stable from 10.9 per
NVIDIA's sample README), torch with CUDA (scratch memory and streams) and the kernel library compiled from
``cuda/binary_conv.cu`` (:func:`bdc_occ_ros.export.cuda_build.compile_kernel`; path from the argument or
``$BDC_OCC_BINARY_CONV_LIB``). Older JetPack (TensorRT 8.x / 10.0-10.5): use the C++ route documented in
README_deployment.md (IPluginV3 / IPluginV2DynamicExt wrapping the same ``bdc_binary_conv2d_forward``).
The ONNX node must carry ``plugin_namespace="bdc_occ"`` (the exporter writes it) so the ONNX parser maps
it here. Status: never executed (no TensorRT/GPU on the development machine).

No ``from __future__ import annotations`` here: QDP reads the annotations of the ``register`` function
at runtime to tell tensor inputs from attributes, so they must be real objects, not strings.
"""

import ctypes
import os
from pathlib import Path

from bdc_occ_ros.engines.errors import EngineUnavailable

PLUGIN_ID = "bdc_occ::BinaryConv2d"
LIBRARY_ENV = "BDC_OCC_BINARY_CONV_LIB"

_registered = False


def load_kernel_library(path: str | Path | None = None) -> ctypes.CDLL:
    """dlopen the compiled kernels and declare ``bdc_binary_conv2d_forward``/``_workspace_bytes`` signatures."""
    path = path or os.environ.get(LIBRARY_ENV)
    if not path:
        raise EngineUnavailable(f"no BinaryConv2d kernel library: pass its path or set ${LIBRARY_ENV}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"BinaryConv2d kernel library {path} does not exist (see cuda/binary_conv.cu)")
    lib = ctypes.CDLL(str(path))
    lib.bdc_binary_conv2d_forward.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int] * 10 + [ctypes.c_void_p] * 2
    lib.bdc_binary_conv2d_forward.restype = ctypes.c_int
    lib.bdc_binary_conv2d_workspace_bytes.argtypes = [ctypes.c_int] * 5
    lib.bdc_binary_conv2d_workspace_bytes.restype = ctypes.c_size_t
    return lib


def register_plugin(library: str | Path | None = None) -> None:
    """Register the QDP definitions with TensorRT (idempotent). Call before parsing or deserializing."""
    global _registered
    if _registered:
        return
    try:
        import tensorrt.plugin as trtp
    except (ImportError, OSError) as exc:
        raise EngineUnavailable(f"tensorrt.plugin (QDP) is not available in this TensorRT ({exc})") from exc
    import torch

    lib = load_kernel_library(library)

    @trtp.register(PLUGIN_ID)
    def _desc(x: trtp.TensorDesc, w_packed: trtp.TensorDesc, alpha: trtp.TensorDesc, in_channels: int,
              kernel_size: int, stride: int, pad: int, binarize_input: int) -> trtp.TensorDesc:  # fmt: skip
        y = x.like()
        y.shape_expr[1] = w_packed.shape_expr[0]
        y.shape_expr[2] = (x.shape_expr[2] + 2 * pad - kernel_size) // stride + 1
        y.shape_expr[3] = (x.shape_expr[3] + 2 * pad - kernel_size) // stride + 1
        return y

    @trtp.autotune(PLUGIN_ID)
    def _autotune(x, w_packed, alpha, outputs):
        # The kernels read float32 activations; TensorRT inserts casts around the plugin in FP16 engines.
        return [trtp.AutoTuneCombination("FP32, INT32, FP32, FP32", "LINEAR")]

    @trtp.impl(PLUGIN_ID)
    def _impl(x, w_packed, alpha, in_channels, kernel_size, stride, pad, binarize_input, outputs, stream):
        n, c, h, w = (int(d) for d in x.shape)
        if c != in_channels:
            raise RuntimeError(f"{PLUGIN_ID}: input has {c} channels, the node says {in_channels}")
        cout = int(w_packed.shape[0])
        nbytes = lib.bdc_binary_conv2d_workspace_bytes(n, c, h, w, binarize_input)
        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            workspace = torch.empty(max(nbytes, 1), dtype=torch.uint8, device="cuda")
            rc = lib.bdc_binary_conv2d_forward(x.data_ptr, w_packed.data_ptr, alpha.data_ptr, outputs[0].data_ptr,
                                               n, c, h, w, cout, kernel_size, kernel_size, stride, pad,
                                               binarize_input, workspace.data_ptr(), stream)  # fmt: skip
        if rc != 0:
            raise RuntimeError(f"{PLUGIN_ID}: CUDA error {rc}")

    _registered = True
