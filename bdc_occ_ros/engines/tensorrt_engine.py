"""``engine: tensorrt`` — the exported graph as a TensorRT engine (Jetson Orin / any NVIDIA GPU).

First use: export the ONNX graph (cached by checkpoint hash), then build the engine next to it, named
after precision, GPU and TensorRT version (:mod:`bdc_occ_ros.export.tensorrt_build`), and reuse it on
later runs. ``build_only`` stops after the engine exists (provisioning). Without TensorRT or a CUDA GPU
the constructor raises :class:`EngineUnavailable` and ``create_engine`` falls back to torch.
``binary_op="custom"`` builds the graph with ``bdc_occ::BinaryConv2d`` nodes run by the bitwise CUDA
plugin (needs ``plugin_library``); ``"plain"`` runs binarized layers as +-alpha float convs (exact, no plugin).
``precision="int8"`` needs ``calibration`` batches (graph-input dicts) when the engine is not cached yet.
Status: written against the TensorRT 10 Python API, never executed (no TensorRT/GPU on the dev machine).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bdc_occ_ros.config import ModelConfig
from bdc_occ_ros.engines import EngineOutput
from bdc_occ_ros.engines.errors import EngineUnavailable
from bdc_occ_ros.engines.torch_engine import load_weights
from bdc_occ_ros.export.onnx_export import DET_PREFIX, IMAGE_INPUT, OCC_OUTPUT, BinaryOp, cached_onnx
from bdc_occ_ros.export.tensorrt_build import import_tensorrt, load_or_build
from bdc_occ_ros.model.inputs import CameraGeometry


class TensorRTEngine:
    name = "tensorrt"

    def __init__(
        self,
        cfg: ModelConfig,
        checkpoint: str | Path | None = None,
        device: str = "cuda",
        precision: str = "fp16",
        binary_op: str = "plain",
        onnx_path: str | Path | None = None,
        engine_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        build_only: bool = False,
        force_rebuild: bool = False,
        plugin_library: str | Path | None = None,
        calibration: list[dict[str, np.ndarray]] | None = None,
    ) -> None:
        trt = import_tensorrt()  # first: without TensorRT nothing else matters (EngineUnavailable)
        if not device.startswith("cuda"):
            raise EngineUnavailable(f"the tensorrt engine runs on a CUDA device, not {device!r}")
        if not torch.cuda.is_available():
            raise EngineUnavailable("the tensorrt engine needs a CUDA GPU; torch.cuda.is_available() is False")
        self.cfg = cfg
        self.device = torch.device(device)
        binary_op = BinaryOp(binary_op)
        if binary_op is BinaryOp.CUSTOM:
            from bdc_occ_ros.export.trt_plugin import register_plugin

            register_plugin(plugin_library)
        net = load_weights(cfg, checkpoint, "cpu")
        self._view_transformer = net.img_view_transformer  # computes/caches the rank inputs per geometry
        self._tmpdir = None
        if onnx_path is None:
            onnx_path, self._tmpdir = cached_onnx(net, checkpoint, binary_op, cache_dir)
        self.engine_path, self.built = load_or_build(onnx_path, precision, engine_dir, force_rebuild,
                                                     calibration=calibration)  # fmt: skip
        self.context: Any = None
        if build_only:
            return
        logger = trt.Logger(trt.Logger.WARNING)
        self._engine = trt.Runtime(logger).deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {self.engine_path}; delete it to rebuild")
        self.context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._trt = trt

    def runtime_info(self) -> dict[str, str]:
        return {"device": str(self.device), "tensorrt": self._trt.__version__, "engine_file": str(self.engine_path)}

    def infer(self, imgs: torch.Tensor, geometry: CameraGeometry) -> EngineOutput:
        if self.context is None:
            raise RuntimeError("this TensorRT engine was created with build_only=True")
        if imgs.dim() != 5 or imgs.shape[0] != 1:
            raise ValueError(f"the tensorrt engine takes one sample (1, N, 3, H, W), got {tuple(imgs.shape)}")
        t0 = time.perf_counter()
        ranks = self._view_transformer.ranks_for(geometry)
        feeds = {
            IMAGE_INPUT: imgs[0].to(self.device, torch.float32).contiguous(),
            "ranks_bev": ranks.ranks_bev.to(self.device, torch.int32),
            "ranks_depth": ranks.ranks_depth.to(self.device, torch.int32),
            "ranks_feat": ranks.ranks_feat.to(self.device, torch.int32),
        }
        for name, tensor in feeds.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outs: dict[str, torch.Tensor] = {}
        for name in self._outputs:
            dtype = torch.from_numpy(np.empty(0, dtype=self._trt.nptype(self._engine.get_tensor_dtype(name)))).dtype
            outs[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device=self.device)
            self.context.set_tensor_address(name, outs[name].data_ptr())
        stream = torch.cuda.current_stream(self.device)
        t1 = time.perf_counter()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        stream.synchronize()
        t2 = time.perf_counter()
        labels = outs[OCC_OUTPUT].to(torch.uint8).cpu()
        det = {k.removeprefix(DET_PREFIX): v.cpu() for k, v in outs.items() if k.startswith(DET_PREFIX)} or None
        timings = {"ranks": (t1 - t0) * 1e3, "tensorrt": (t2 - t1) * 1e3}
        return EngineOutput(occ_labels=labels, det=det, timings_ms=timings)
