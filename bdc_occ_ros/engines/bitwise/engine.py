"""``engine: bitwise``: the packed network on the CPU (same interface as the torch engine)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from bdc_occ_ros.config import ModelConfig
from bdc_occ_ros.engines import EngineOutput
from bdc_occ_ros.engines.errors import EngineUnavailable
from bdc_occ_ros.model.inputs import CameraGeometry

#: Threads of the numba kernels unless asked otherwise: one, whatever torch uses. Measured on the 2-core dev VM
#: (2026-11-22, image neck + BEV encoder + heads, torch at 2 threads): 138-146 ms with serial kernels, 171-200 ms
#: with 2 numba threads, 207 ms with only kernels of >= 0.5-1 M elements parallel, although each parallel kernel
#: alone ran up to 2x faster; the cause is not found (docs/performance.md). torch's threads still serve the torch
#: layers.
DEFAULT_KERNEL_THREADS = 1


def set_kernel_threads(n: int = DEFAULT_KERNEL_THREADS) -> int:
    """Use ``n`` threads (capped by NUMBA_NUM_THREADS) for the numba kernels and for numpy's BLAS (the weight
    branches' small products); returns n. torch's thread count is left as it is."""
    import numba
    from threadpoolctl import threadpool_limits

    n = max(1, min(n, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    threadpool_limits(limits=n, user_api="blas")  # process-wide; torch's own MKL/OpenMP pools are not affected
    return n


class BitwiseEngine:
    """XNOR-popcount engine. ``checkpoint``: a packed file (``bdc-occ bench``/:func:`save_packed`), a float
    checkpoint (packed on load) or None (random init). CPU only; its kernels run on :data:`DEFAULT_KERNEL_THREADS`
    numba and BLAS threads (:func:`set_kernel_threads` after construction changes that)."""

    name = "bitwise"

    def __init__(self, cfg: ModelConfig, checkpoint: str | Path | None = None, device: str = "cpu") -> None:
        if torch.device(device).type != "cpu":
            raise EngineUnavailable(f"the bitwise engine runs on the CPU only (device {device!r} requested)")
        if not cfg.binary:
            raise ValueError(f"engine bitwise: model {cfg.name!r} has no binarized units (unit: fp)")
        try:
            import numba  # noqa: F401
        except ImportError as exc:  # numba/llvmlite missing or broken
            raise EngineUnavailable(f"numba is not usable: {exc}") from exc
        from bdc_occ_ros.engines.bitwise.convert import pack_model
        from bdc_occ_ros.engines.bitwise.layers import warm_up
        from bdc_occ_ros.engines.bitwise.packed_file import is_packed_file, load_packed

        self.threads = set_kernel_threads()
        if checkpoint is not None and is_packed_file(checkpoint):
            self.model, _ = load_packed(checkpoint)
            if self.model.cfg.to_dict() != cfg.to_dict():
                raise ValueError(f"packed model {checkpoint} was built from another model config than the one given")
        else:
            from bdc_occ_ros.engines.torch_engine import load_weights

            self.model = pack_model(load_weights(cfg, checkpoint, "cpu"))
        self.cfg = cfg
        warm_up()  # JIT/cache load now, at start-up, not on the first frame

    @torch.inference_mode()
    def infer(self, imgs: torch.Tensor, geometry: CameraGeometry) -> EngineOutput:
        from bdc_occ_ros.engines.bitwise.convert import run_stages

        out, timings = run_stages(self.model.network, imgs.cpu(), geometry.to("cpu"))
        t0 = time.perf_counter()
        labels = out["occ_logits"].argmax(dim=-1).to(torch.uint8)
        timings["argmax"] = (time.perf_counter() - t0) * 1e3
        return EngineOutput(occ_labels=labels, det=out.get("det"), timings_ms=timings)
