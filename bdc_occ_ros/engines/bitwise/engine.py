"""``engine: bitwise``: the packed network on the CPU (same interface as the torch engine)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from bdc_occ_ros.config import ModelConfig
from bdc_occ_ros.engines import EngineOutput
from bdc_occ_ros.engines.errors import EngineUnavailable
from bdc_occ_ros.engines.labels import occupancy_labels, warm_up_labels
from bdc_occ_ros.model.inputs import CameraGeometry
from bdc_occ_ros.openmp import openmp_runtimes


def default_kernel_threads() -> int:
    """Threads of the numba kernels unless asked otherwise: torch's thread count where a parallel kernel starts at
    once, i.e. on numba's OpenMP layer sharing torch's runtime (``bdc_occ_ros.openmp``) or on TBB; else 1
    (workqueue wakes sleeping pool threads on every call; a second OpenMP runtime stalls against torch's).

    Measured with ``bdc-occ bench`` on the 2-core dev VM (2026-12-07, torch at 2 threads), end to end bitwise / FP
    twin: 0.945-1.010 in eight runs on one OpenMP runtime and 2 kernel threads, 0.985-1.031 in eight with TBB and 2,
    1.048-1.053 in two with TBB and 1, 1.037-1.067 in three with workqueue and 1, 1.094-1.117 in two with workqueue
    and 2 (each parallel call waits 40-80 us for sleeping pool threads).
    """
    import numba

    from bdc_occ_ros.engines.bitwise import kernels  # noqa: F401  (picks the threading layer, starts the pool)

    layer = numba.threading_layer()
    one_openmp_pool = layer == "omp" and len(openmp_runtimes()) == 1
    return torch.get_num_threads() if layer == "tbb" or one_openmp_pool else 1


def set_kernel_threads(n: int | None = None) -> int:
    """Use ``n`` threads (capped by NUMBA_NUM_THREADS; None: :func:`default_kernel_threads`) for the numba kernels
    and for numpy's BLAS (the weight branches' small products); returns n. torch's thread count is left as it is."""
    import numba
    from threadpoolctl import threadpool_limits

    n = default_kernel_threads() if n is None else n
    n = max(1, min(n, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    threadpool_limits(limits=n, user_api="blas")  # process-wide; torch's own MKL/OpenMP pools are not affected
    return n


def _contiguous_outputs(_module: torch.nn.Module, _args: tuple, outputs: tuple[torch.Tensor, ...]) -> tuple:
    return tuple(t.contiguous() for t in outputs)


def _channels_last_output(_module: torch.nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.contiguous(memory_format=torch.channels_last)


class BitwiseEngine:
    """XNOR-popcount engine. ``checkpoint``: a packed file (``bdc-occ bench``/:func:`save_packed`), a float
    checkpoint (packed on load) or None (random init). CPU only; its kernels run on :func:`default_kernel_threads`
    numba and BLAS threads (:meth:`set_kernel_threads` after construction changes that), in whichever thread calls
    :meth:`infer`: numba's thread count is per calling thread, and the node infers on its worker thread, not on the
    one that built the engine (that thread ran the kernels on every core, whatever the engine had chosen)."""

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
        from bdc_occ_ros.engines.torch_engine import convs_channels_last, load_weights

        self.set_kernel_threads()
        if checkpoint is not None and is_packed_file(checkpoint):
            self.model, _ = load_packed(checkpoint)
            if self.model.cfg.to_dict() != cfg.to_dict():
                raise ValueError(f"packed model {checkpoint} was built from another model config than the one given")
        else:
            self.model = pack_model(load_weights(cfg, checkpoint, "cpu"))
        self.cfg = cfg
        # The float image backbone runs channels-last, as in the torch engine (oneDNN's fast kernels: 64 -> 50 ms at
        # 2 threads, Intel Xeon, 2026-12-07), and hands the binarized neck C-contiguous maps: with channels-last
        # ones the neck's shortcuts copied them piecemeal, 1.6 ms more than this one copy.
        network = self.model.network
        convs_channels_last(network.img_backbone)
        network.img_backbone.register_forward_hook(_contiguous_outputs)
        if network.det_head is not None:
            # Its six float task heads run channels-last too, on the packed shared conv's map converted once for all:
            # the detection head took 2.73 instead of 2.99 ms (2 threads, AMD EPYC Zen 5, 2026-12-08).
            convs_channels_last(network.det_head.heads)
            network.det_head.shared_conv.register_forward_hook(_channels_last_output)
        warm_up()  # JIT/cache load now, at start-up, not on the first frame
        warm_up_labels()

    def set_kernel_threads(self, n: int | None = None) -> int:
        """Run the kernels on ``n`` threads (None: :func:`default_kernel_threads`); returns the count used."""
        self.threads = set_kernel_threads(n)
        return self.threads

    def runtime_info(self) -> dict[str, str]:
        """How the kernels run, for /diagnostics: a slow threading layer or a second OpenMP runtime shows here."""
        import numba

        from bdc_occ_ros.engines.bitwise import kernels

        return {
            "kernel_threads": str(self.threads),
            "threading_layer": numba.threading_layer(),
            "openmp_runtimes": str(len(openmp_runtimes())),
            "llvm_prefer_256_bit": "off" if kernels.full_width_vectors() else "cpu default",
            "torch_threads": str(torch.get_num_threads()),
        }

    @torch.inference_mode()
    def infer(self, imgs: torch.Tensor, geometry: CameraGeometry) -> EngineOutput:
        import numba

        from bdc_occ_ros.engines.bitwise import kernels
        from bdc_occ_ros.engines.bitwise.convert import run_stages

        if kernels.calling_thread_kernel_threads() != self.threads:
            numba.set_num_threads(self.threads)
        out, timings = run_stages(self.model.network, imgs.cpu(), geometry.to("cpu"))
        t0 = time.perf_counter()
        labels = occupancy_labels(out["occ_logits"])
        timings["argmax"] = (time.perf_counter() - t0) * 1e3
        det = out.get("det")
        det = None if det is None else {k: v.contiguous() for k, v in det.items()}  # as the torch engine's
        return EngineOutput(occ_labels=labels, det=det, timings_ms=timings)
