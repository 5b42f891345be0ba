"""``engine: onnxruntime`` — the exported ONNX graph (plain binary ops) run by onnxruntime.

On first use the graph is exported from config + checkpoint into the cache
(:func:`bdc_occ_ros.export.cache.onnx_cache_path`, keyed by the checkpoint hash) and reused afterwards.
The lift-splat ranks are graph inputs computed from the camera geometry and cached per geometry, so a
calibration change recomputes them and nothing else. Graphs exported with ``--binary-op custom`` contain
``bdc_occ::BinaryConv2d`` nodes that onnxruntime cannot run (TensorRT plugin only).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from bdc_occ_ros.config import ModelConfig
from bdc_occ_ros.engines import EngineOutput
from bdc_occ_ros.engines.errors import EngineUnavailable
from bdc_occ_ros.engines.torch_engine import load_weights
from bdc_occ_ros.export.onnx_export import DET_PREFIX, IMAGE_INPUT, OCC_OUTPUT, BinaryOp, cached_onnx, ranks_to_inputs
from bdc_occ_ros.model.inputs import CameraGeometry

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineUnavailable(f"onnxruntime is not installed ({exc}); pip install onnxruntime") from exc
    return onnxruntime


class OnnxRuntimeEngine:
    """Same interface as the torch engine: ``infer(imgs (1, N, 3, H, W), geometry) -> EngineOutput``.

    ``onnx_path`` runs a given graph instead of exporting one (it must come from the same config and
    checkpoint); ``cache_dir`` overrides where exported graphs live; ``threads`` sets intra-op threads.
    """

    name = "onnxruntime"

    def __init__(
        self,
        cfg: ModelConfig,
        checkpoint: str | Path | None = None,
        device: str = "cpu",
        onnx_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        ort = _import_onnxruntime()
        provider = _PROVIDERS.get(device.split(":")[0])
        if provider is None:
            raise ValueError(f"device: {device!r} is not supported by the onnxruntime engine (cpu or cuda)")
        if provider not in ort.get_available_providers():
            raise EngineUnavailable(f"onnxruntime here has no {provider} (available: {ort.get_available_providers()})")
        self.cfg = cfg
        net = load_weights(cfg, checkpoint, "cpu")
        # Only the view transformer is kept: it computes (and caches per geometry) the rank inputs.
        self._view_transformer = net.img_view_transformer
        self._tmpdir = None
        if onnx_path is None:
            onnx_path, self._tmpdir = cached_onnx(net, checkpoint, BinaryOp.PLAIN, cache_dir)
        self.onnx_path = Path(onnx_path)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), options, providers=[provider])
        except Exception as exc:  # onnxruntime raises its own exception types (e.g. NOT_IMPLEMENTED)
            if "BinaryConv2d" in str(exc):
                raise ValueError(f"{self.onnx_path} uses the bdc_occ::BinaryConv2d custom op (--binary-op custom), "
                                 "which only the TensorRT plugin implements; export with --binary-op plain "
                                 "for onnxruntime") from exc  # fmt: skip
            raise
        self._outputs = [o.name for o in self.session.get_outputs()]
        self.last_outputs: dict[str, np.ndarray] = {}
        if self._outputs[0] != OCC_OUTPUT:
            raise ValueError(f"{self.onnx_path}: first output is {self._outputs[0]!r}, expected {OCC_OUTPUT!r}")

    def rank_inputs(self, geometry: CameraGeometry) -> dict[str, np.ndarray]:
        """The graph's calibration inputs for ``geometry`` (cached per geometry by the view transformer)."""
        return ranks_to_inputs(self._view_transformer.ranks_for(geometry))

    def runtime_info(self) -> dict[str, str]:
        threads = self.session.get_session_options().intra_op_num_threads
        return {"providers": ",".join(self.session.get_providers()),
                "intra_op_threads": str(threads) if threads else "onnxruntime default"}  # fmt: skip

    def infer(self, imgs: torch.Tensor, geometry: CameraGeometry) -> EngineOutput:
        if imgs.dim() != 5 or imgs.shape[0] != 1:
            raise ValueError(f"the onnxruntime engine takes one sample (1, N, 3, H, W), got {tuple(imgs.shape)}")
        t0 = time.perf_counter()
        feeds = {IMAGE_INPUT: imgs[0].detach().cpu().numpy().astype(np.float32), **self.rank_inputs(geometry)}
        t1 = time.perf_counter()
        outs = dict(zip(self._outputs, self.session.run(self._outputs, feeds), strict=True))
        t2 = time.perf_counter()
        labels = torch.from_numpy(outs[OCC_OUTPUT].astype(np.uint8))
        det = {k.removeprefix(DET_PREFIX): torch.from_numpy(v) for k, v in outs.items() if k.startswith(DET_PREFIX)}
        self.last_outputs = outs  # every graph output of the last call (e.g. occ_logits of a parity graph)
        return EngineOutput(occ_labels=labels, det=det or None,
                            timings_ms={"ranks": (t1 - t0) * 1e3, "onnxruntime": (t2 - t1) * 1e3})  # fmt: skip
