"""``bdc-occ bench --json OUT [--config FILE] [--checkpoint FILE] [--repeats N]``: the bitwise engine side by side.

One process, the same inputs for every engine, medians over ``--repeats`` runs:

- ``layers``: every binarized conv of the model at the shape it sees in a real forward pass. ``xnor3x3``
  layers: torch fp32 ``conv2d`` of the same shape (the faster of NCHW and channels_last) vs the packed
  path (sign+pack of the input, XNOR-popcount conv, fused epilogue). ``pointwise``/``reweight`` (1x1
  binary weights on real inputs, W1A32): torch ``conv2d`` vs what the bitwise engine runs (``pointwise``: the
  table-of-signed-sums kernel with its RPReLU epilogue and channel sums; ``reweight``: the (B, C) product of the
  weight branch); a float GEMM of the +-1 weights on numpy's BLAS is timed too (``blas_gemm_ms``).
  ``bitwise_layer_speedup_min/median`` summarise the ``xnor3x3`` layers (the layers that compute with bits).
- ``end_to_end_ms``: the whole pipeline (preprocess, network, postprocess) for the FP twin (same config
  with ``unit: fp``) on torch, the BDC model on torch, and on the bitwise engine; ``stages_ms`` per stage;
  ``end_to_end_ratio``: bitwise time over each other engine's, paired within rounds (median);
  ``binarized_stages_ms``/``binarized_stages_ratio``: the same for the image neck + BEV encoder + heads, the
  stages the bitwise engine changes.
- ``label_agreement``: voxel labels bitwise vs torch engine on SynthOcc frames (``--synth DIR`` or a
  small set generated here) and, when present, the real nuScenes sample.
- ``popcount``: the CPU's XOR-popcount throughput in a tight L1-resident loop vs the 3x3 layers' rate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "config" / "models" / "bdc_occ_edge.yaml"
DEFAULT_CHECKPOINT = REPO / "models" / "bdc_occ_edge_synth.safetensors"
REAL_SAMPLE = REPO.parent / "shared" / "data" / "nuscenes_sample0"
LAYER_MIN_SECONDS = 0.5  # per distinct layer shape
# Untimed calls of the same layer before each timed one. One call was not enough: a torch fp32 conv leaves
# megabytes of dirty cache lines (its im2col buffer, its output) whose write-back slowed whatever ran in the next
# 0.5-2 ms (measured on a 200x200 map: the pack timed right after the torch conv 0.40 ms, timed next 0.10 ms).
LAYER_SETTLE_SECONDS = 0.002


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="benchmark the bitwise engine against torch (layers, end to end)")
    p.add_argument("--json", required=True, type=Path, help="output JSON file")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="binarized model config (default: edge)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help=f"trained weights (default: {DEFAULT_CHECKPOINT.name} when present, else random)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median reported)")
    p.add_argument("--synth", type=Path, default=None, help="SynthOcc directory for label agreement")
    p.add_argument("--frames", type=int, default=2, help="SynthOcc frames to use (generated when --synth is absent)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--kernel-threads", type=int, default=None,
                   help="numba/BLAS threads of the bitwise engine (default: the engine's default: torch's "
                        "threads on an OpenMP runtime shared with torch or on TBB, else 1)")  # fmt: skip
    p.add_argument("--markdown", type=Path, default=None, help="also write the README table (Markdown)")
    p.set_defaults(func=run)


def _samples_ms(
    fns: dict[str, Callable[[], Any]], repeats: int, min_seconds: float = 0.0, settle_seconds: float | None = None
) -> dict[str, list[float]]:
    """Wall times (ms) of each callable over at least ``repeats`` rounds (more, up to 200, until the rounds
    take ``min_seconds``: sub-millisecond layers need many samples on a loaded machine); sample i of every
    callable comes from round i. The callables are interleaved in every round so that load from other
    processes hits all of them alike. ``settle_seconds``: untimed calls of the same callable (at least one, and
    for at least that long) precede each timed one, so a layer is timed as it runs in a network (after layers of
    its own kind), not in the cache and allocator state the previous callable left."""
    t0 = time.perf_counter()
    for fn in fns.values():
        fn()  # warm-up (JIT, caches, allocator)
    per_round = time.perf_counter() - t0
    rounds = max(repeats, min(200, math.ceil(min_seconds / max(per_round, 1e-6))))
    times: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            if settle_seconds is not None:
                t0 = time.perf_counter()
                fn()
                while time.perf_counter() - t0 < settle_seconds:
                    fn()
            t0 = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - t0) * 1e3)
    return times


def _median_ms(
    fns: dict[str, Callable[[], Any]], repeats: int, min_seconds: float = 0.0, settle_seconds: float | None = None
) -> dict[str, float]:
    """Median of :func:`_samples_ms` per callable."""
    return {key: statistics.median(v) for key, v in _samples_ms(fns, repeats, min_seconds, settle_seconds).items()}


def paired_ratio(samples: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over rounds of ``numerator / denominator`` measured in the same round: steadier than a ratio of
    medians when the machine's speed drifts between rounds (other tenants of a shared VM)."""
    return statistics.median(a / b for a, b in zip(samples[numerator], samples[denominator], strict=True))


def _blas_entry(lib: dict[str, Any]) -> dict[str, Any]:
    return {k: lib.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "filepath")}


def _machine() -> dict[str, Any]:
    import llvmlite.binding as llvm
    import numba
    import torch
    from threadpoolctl import threadpool_info

    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "numba_threads": numba.get_num_threads(),
        "host_cpu_llvm": llvm.get_host_cpu_name(),
        "numba_cpu_features": numba.config.CPU_FEATURES or "host",  # "-prefer-256-bit": kernels.full_width_features
        "torch": torch.__version__,
        "numba": numba.__version__,
        "blas": [_blas_entry(lib) for lib in threadpool_info() if lib.get("user_api") == "blas"],
        "loadavg_start": list(os.getloadavg()),
    }


# --------------------------------------------------------------------------------------------- layers


def _unit_inputs(model, imgs, geometry) -> dict[str, tuple[int, ...]]:
    """Name -> input shape of every binarized unit in one forward pass of the float model."""
    import torch

    from bdc_occ_ros.model.units import BDCUnitV1, BiSRConv

    shapes: dict[str, tuple[int, ...]] = {}

    def recorder(name: str):
        def hook(_module, args) -> None:  # returns None: the inputs pass unchanged
            shapes.setdefault(name, tuple(args[0].shape))

        return hook

    hooks = [m.register_forward_pre_hook(recorder(name)) for name, m in model.named_modules()
             if isinstance(m, BiSRConv | BDCUnitV1)]  # fmt: skip
    try:
        with torch.no_grad():
            model(imgs, geometry)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _time_xnor3x3(shape: tuple[int, ...], cout: int, stride: int, repeats: int) -> dict[str, float]:
    import numpy as np
    import torch
    from torch.nn import functional as F

    from bdc_occ_ros.engines.bitwise import kernels
    from bdc_occ_ros.engines.bitwise.layers import Epilogue, PackedConv3x3, pack_activation
    from bdc_occ_ros.model.binary import BinaryConv2d

    b, cin, h, w = shape
    x = torch.randn(shape)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    binary = BinaryConv2d(cin, cout, 3, stride=stride, padding=1)
    weight = binary.weight.detach()
    conv = PackedConv3x3.from_conv(binary)
    ones, zeros = np.ones(cin, np.float32), np.zeros(cin, np.float32)
    ch = np.ones(cout, np.float32)
    epi = Epilogue(ch, ch * 0, ch * 0, ch * 0.25, ch * 0)  # alpha/BN fold + RPReLU, as in a unit
    phased = stride == 2  # how a packed unit packs a stride-2 conv's input
    xp = pack_activation(x, ones, zeros, phased)  # packed units pass NCHW maps to each other
    t = _median_ms({
        "nchw": lambda: F.conv2d(x, weight, stride=stride, padding=1),
        "cl": lambda: F.conv2d(x_cl, weight, stride=stride, padding=1),
        "pack": lambda: pack_activation(x, ones, zeros, phased),
        "conv": lambda: conv.run(xp, (h, w), epi),
    }, repeats, LAYER_MIN_SECONDS, LAYER_SETTLE_SECONDS)  # fmt: skip
    t_nchw, t_cl, t_pack, t_conv = t["nchw"], t["cl"], t["pack"], t["conv"]
    ho, wo = kernels.conv_out_size(h, stride), kernels.conv_out_size(w, stride)
    macs = b * ho * wo * cout * 9 * cin
    torch_ms = min(t_nchw, t_cl)
    bitwise_ms = t_pack + t_conv
    return {
        "torch_ms": torch_ms, "bitwise_ms": bitwise_ms, "speedup": torch_ms / bitwise_ms,
        "conv_only_speedup": torch_ms / t_conv,
        "torch_nchw_ms": t_nchw, "torch_channels_last_ms": t_cl, "pack_ms": t_pack, "conv_ms": t_conv,
        "binary_gmacs_per_s": macs / (t_conv * 1e-3) / 1e9,
    }  # fmt: skip


def _time_pointwise(shape: tuple[int, ...], cout: int, repeats: int, branch: bool) -> dict[str, float]:
    """Binary-weight 1x1 conv on real inputs: torch conv2d (no epilogue) vs what the packed unit runs
    (``PackedPointwise.run`` with an RPReLU epilogue on the main path; ``branch``: the weight branch's (B, C)
    product in ``ChannelGate``), and a +-1 GEMM on numpy's BLAS."""
    import numpy as np
    import torch
    from torch.nn import functional as F

    from bdc_occ_ros.engines.bitwise.layers import Epilogue, PackedPointwise
    from bdc_occ_ros.model.binary import BinaryConv2d, RPReLU

    cin = shape[1]
    x = torch.randn(shape)
    binary = BinaryConv2d(cin, cout, 1)
    weight = binary.weight.detach()
    pw = PackedPointwise.from_conv(binary)
    epi = Epilogue.fold(pw.alpha, torch.nn.Identity(), RPReLU(cout))
    x3d = np.ascontiguousarray(x.reshape(x.shape[0], cin, -1).numpy())
    sign = pw.sign.numpy()
    gemm_out = np.empty((cout, x3d.shape[2]), np.float32)
    gap = x3d[:, :, 0]  # the branch's (B, C) channel means, as ChannelGate multiplies them
    t = _median_ms({
        "torch": lambda: F.conv2d(x, weight),
        "bitwise": (lambda: (gap @ sign.T) * epi.mul) if branch else (lambda: pw.run(x3d, epi)),
    }, repeats, LAYER_MIN_SECONDS, LAYER_SETTLE_SECONDS)  # fmt: skip
    # Timed on its own: OpenBLAS's threads spin after each GEMM, and interleaved with the others they held the cores
    # that torch's and the kernels' OpenMP threads waited for (measured: torch's 1x1 conv 24 ms instead of 0.85).
    blas = _median_ms({"blas": lambda: [np.matmul(sign, image, out=gemm_out) for image in x3d]},
                      repeats, LAYER_MIN_SECONDS, LAYER_SETTLE_SECONDS)  # fmt: skip
    return {"torch_ms": t["torch"], "bitwise_ms": t["bitwise"], "speedup": t["torch"] / t["bitwise"],
            "blas_gemm_ms": blas["blas"]}  # fmt: skip


def _layer_table(float_model, packed_model, imgs, geometry, repeats: int) -> list[dict[str, Any]]:
    """One row per binarized conv of the packed model, measured once per distinct (kind, shape)."""
    from tqdm import tqdm

    inputs = _unit_inputs(float_model, imgs, geometry)
    rows, cache = [], {}
    units = packed_model.packed_units()
    for name, unit in tqdm(units.items(), desc="layers", unit="unit"):
        b, cin, h, w = inputs[name]
        s = unit.stride
        ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
        specs = [("xnor3x3", f"{name}.conv3x3", (b, cin, h, w), unit.conv3.cout, s)]
        specs += [("pointwise", f"{name}.conv1x1_{i}", (b, pw.cin, ho, wo), pw.cout, 1)
                  for i, pw in enumerate(unit.pointwise)]  # fmt: skip
        if unit.se_block is not None:
            c = unit.out_channels
            specs += [("reweight", f"{name}.se_block.fc.{i}", (b, c, 1, 1), c, 1) for i in (0, 2)]
        for kind, lname, shape, cout, stride in specs:
            key = (kind, shape, cout, stride)
            if key not in cache:
                if kind == "xnor3x3":
                    cache[key] = _time_xnor3x3(shape, cout, stride, repeats)
                else:
                    cache[key] = _time_pointwise(shape, cout, repeats, branch=kind == "reweight")
            shape_str = f"{'x'.join(map(str, shape))}->{cout}" + (f" s{stride}" if kind == "xnor3x3" else "")
            rows.append({"name": lname, "kind": kind, "shape": shape_str, **cache[key]})
    return rows


# ------------------------------------------------------------------------------------------ end to end


class _Capture:
    """Wraps an engine and keeps the last (imgs, geometry) the pipeline gave it."""

    def __init__(self, engine) -> None:
        self.inner, self.name, self.cfg = engine, engine.name, engine.cfg
        self.last = None

    def infer(self, imgs, geometry):
        self.last = (imgs, geometry)
        return self.inner.infer(imgs, geometry)


def _frames(args: argparse.Namespace, workdir: Path) -> list[tuple[str, Any, list]]:
    """(name, rig, RGB images) of the SynthOcc frames (given or generated) and the real sample if present."""
    from bdc_occ_ros.data.records import load_images, load_records
    from bdc_occ_ros.geometry import NUSCENES_CAMERAS

    root = args.synth
    if root is None:
        from bdc_occ_ros.data.synth import SynthConfig, generate

        root = workdir / "synth"
        print(f"bench: generating {args.frames} SynthOcc frames in {root}")
        generate(SynthConfig(out=root, scenes=1, seed=0, frames_per_scene=args.frames, workers=1))
    frames = [(f"synth:{r.token}", r.rig, load_images(r, NUSCENES_CAMERAS))
              for r in load_records(root)[: args.frames]]  # fmt: skip
    if REAL_SAMPLE.is_dir():
        from bdc_occ_ros.tools.infer import load_sample

        sample = load_sample(REAL_SAMPLE)
        frames.append(("nuscenes_sample0", sample.rig, [sample.rgb(c) for c in NUSCENES_CAMERAS]))
    return frames


def _network(engine):
    inner = engine.inner if isinstance(engine, _Capture) else engine
    return inner.model.network if inner.name == "bitwise" else inner.model


#: The stages the bitwise engine changes (everything binarized is in them); the rest is shared torch code.
BINARIZED_STAGES = ("image_neck", "bev_encoder", "heads")


def _end_to_end(pipes: dict[str, Any], frame, repeats: int) -> tuple[dict[str, list[float]], dict[str, list[dict]]]:
    """Pipeline wall times and per-stage times of every engine on one frame, per round (engines interleaved
    within each round, so round i of every engine saw the same machine state)."""
    from bdc_occ_ros.engines.bitwise.convert import run_stages

    _, rig, images = frame
    # Only the timings are kept: with every result kept alive, each bitwise frame faulted about 1,250 fresh pages
    # in (4.9 MB, none when the results are dropped, as the node does; measured), heap growth a node never sees.
    timings: dict[str, list[dict[str, float]]] = {key: [] for key in pipes}
    for pipe in pipes.values():
        pipe.set_calibration(rig)
    totals = _samples_ms({key: lambda key=key: timings[key].append(pipes[key](images).timings_ms) for key in pipes},
                         repeats)  # fmt: skip
    stages: dict[str, list[dict]] = {key: [] for key in pipes}
    for i in range(1, len(timings[next(iter(pipes))])):  # call 0 is the warm-up
        for key, pipe in pipes.items():
            imgs, geometry = pipe.engine.last
            _, model_times = run_stages(_network(pipe.engine), imgs, geometry)
            frame_times = timings[key][i]
            stages[key].append({"preprocess": frame_times["preprocess"], **model_times,
                                "postprocess": frame_times["postprocess"]})  # fmt: skip
    return totals, stages


def timing_report(rounds: dict[str, list[float]], stage_rounds: dict[str, list[dict]]) -> dict[str, Any]:
    """Per-round end-to-end times and stage times of each engine -> the report's medians and the bitwise
    engine's within-round ratios to the other engines (whole pipeline and :data:`BINARIZED_STAGES`)."""
    binarized = {key: [sum(r[s] for s in BINARIZED_STAGES) for r in per_round]
                 for key, per_round in stage_rounds.items()}  # fmt: skip
    stages = {key: {stage: statistics.median(r[stage] for r in per_round) for stage in per_round[0]}
              for key, per_round in stage_rounds.items()}  # fmt: skip
    others = [key for key in rounds if key != "bdc_bitwise"]
    return {
        "end_to_end_ms": {key: statistics.median(v) for key, v in rounds.items()},
        "end_to_end_ratio": {f"bdc_bitwise/{key}": paired_ratio(rounds, "bdc_bitwise", key) for key in others},
        "stages_ms": stages,
        "binarized_stages_ms": {key: statistics.median(v) for key, v in binarized.items()},
        "binarized_stages_ratio": {f"bdc_bitwise/{key}": paired_ratio(binarized, "bdc_bitwise", key) for key in others},
    }


#: How long the popcount limit is sampled: the VM's fast and slow phases switch every few hundred ms.
POPCOUNT_SECONDS = 1.0


def _rate_samples(call: Callable[[], Any], work: float, seconds: float) -> list[float]:
    """``work`` / wall time of each ``call()``, calling it back to back for ``seconds`` (at least once)."""
    rates = []
    end = time.perf_counter() + seconds
    while not rates or time.perf_counter() < end:
        t0 = time.perf_counter()
        call()
        rates.append(work / (time.perf_counter() - t0))
    return rates


def _popcount(threads: int, seconds: float = POPCOUNT_SECONDS) -> dict[str, float]:
    """The CPU's XOR-popcount rate in a tight L1-resident loop, sampled (about 1 ms each) for ``seconds``: the
    best sample is the limit, the median shows the phase the machine spent most of the time in."""
    import numpy as np

    from bdc_occ_ros.engines.bitwise import kernels

    words = np.random.default_rng(0).integers(0, 2**63, size=(threads, 512), dtype=np.uint64)
    repeats = 20000
    kernel = kernels.popcount_peak.parallel if threads > 1 else kernels.popcount_peak.serial
    kernel(words, 10)
    rates = _rate_samples(lambda: kernel(words, repeats), words.size * repeats * 64 / 1e9, seconds)
    return {"binary_gmacs_per_s": max(rates), "binary_gmacs_per_s_median": statistics.median(rates),
            "samples": len(rates), "threads": threads}  # fmt: skip


#: Bytes (input + output) each thread streams per pass in the memory probe: within this VM's 2 MB L2, within its
#: 32 MB L3, beyond it. A 32x200x200 float map is 5 MB.
STREAM_BYTES = {"l2": 1 << 20, "l3": 1 << 23, "dram": 1 << 27}

#: Sampling time of the memory probe per buffer size and thread count, in calls of about 5 ms (a parallel call
#: pays the pool's wake-up, 40-80 us here, once).
STREAM_SECONDS = 0.5


def _stream_rate(kernel, x, out, seconds: float) -> float:
    """Best read+write GB/s of ``kernel(x, out, repeats)`` over calls of about 5 ms for ``seconds``."""
    kernel(x, out, 1)  # compile or load
    start = time.perf_counter()
    kernel(x, out, 1)
    repeats = max(1, round(0.005 / max(time.perf_counter() - start, 1e-6)))
    return max(_rate_samples(lambda: kernel(x, out, repeats), (x.nbytes + out.nbytes) * repeats / 1e9, seconds))


def _memory(
    cores: int, seconds: float = STREAM_SECONDS, sizes: dict[str, int] = STREAM_BYTES
) -> dict[str, dict[str, float]]:
    """Streaming bandwidth per buffer size (bytes per thread, :data:`STREAM_BYTES`) on 1 thread and on ``cores``
    threads each with its own buffer, and their ratio: how much more the passes over the maps get from more cores
    at each cache level."""
    import numba
    import numpy as np

    from bdc_occ_ros.engines.bitwise import kernels

    report = {}
    previous = numba.get_num_threads()
    numba.set_num_threads(cores)
    try:
        for level, nbytes in sizes.items():
            row = {"bytes_per_thread": nbytes}
            for threads in sorted({1, cores}):
                x = np.ones((threads, nbytes // 8), np.float32)
                kernel = kernels.stream_peak.parallel if threads > 1 else kernels.stream_peak.serial
                row[f"gb_per_s_{threads}_threads"] = _stream_rate(kernel, x, np.empty_like(x), seconds)
            row["scaling"] = row[f"gb_per_s_{cores}_threads"] / row["gb_per_s_1_threads"]
            report[level] = row
    finally:
        numba.set_num_threads(previous)
    return report


# ------------------------------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import numba
    import torch
    from tqdm import tqdm

    from bdc_occ_ros.config import UnitVariant, load_model_config
    from bdc_occ_ros.engines.bitwise.convert import pack_model, weight_bytes
    from bdc_occ_ros.engines.bitwise.packed_file import save_packed
    from bdc_occ_ros.model.checkpoint import load_checkpoint, load_model, save_checkpoint
    from bdc_occ_ros.model.network import build_model
    from bdc_occ_ros.openmp import openmp_runtimes
    from bdc_occ_ros.pipeline import OccupancyPipeline

    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_model_config(args.config)
    if not cfg.binary:
        raise ValueError(f"--config {args.config}: unit is fp; give the binarized model (its FP twin is derived)")
    checkpoint = args.checkpoint or (DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None)
    report: dict[str, Any] = {"machine": _machine(), "config": str(args.config), "repeats": args.repeats}

    with tempfile.TemporaryDirectory(prefix="bdc_bench_") as tmp:
        if checkpoint is not None:
            cfg = load_checkpoint(checkpoint)[0]  # the config the weights were trained with
            report["checkpoint"] = str(checkpoint)
        else:  # both BDC engines must see the same (random) weights
            torch.manual_seed(0)
            checkpoint = Path(tmp) / "random_init.safetensors"
            save_checkpoint(checkpoint, build_model(cfg).eval(), cfg, {"note": "random init, seed 0"})
            report["checkpoint"] = "random init (seed 0): no trained checkpoint given"
        float_bdc = load_model(checkpoint)[0]
        packed = pack_model(float_bdc)
        packed_file = Path(tmp) / "packed.safetensors"
        packed_bytes = save_packed(packed_file, packed, {"source": str(checkpoint)})
        fp_cfg = dataclasses.replace(cfg, name=f"{cfg.name}_fp_twin", unit=UnitVariant.FP)
        pipes = {
            "flashocc_torch": OccupancyPipeline(fp_cfg, None, engine="torch"),
            "bdc_torch": OccupancyPipeline(cfg, checkpoint, engine="torch"),
            "bdc_bitwise": OccupancyPipeline(cfg, packed_file, engine="bitwise"),  # deployed form: packed file
        }
        for pipe in pipes.values():
            pipe.engine = _Capture(pipe.engine)
        if pipes["bdc_bitwise"].engine.name != "bitwise":
            raise RuntimeError("the bitwise engine is unavailable here (fell back to torch); see the warning above")
        # after the engine's own default, so an explicit choice wins for the whole run
        kernel_threads = pipes["bdc_bitwise"].engine.inner.set_kernel_threads(args.kernel_threads)
        report["machine"]["numba_threads"] = kernel_threads
        report["machine"]["numba_threading_layer"] = numba.threading_layer()
        report["machine"]["openmp_runtimes"] = [str(path) for path in openmp_runtimes()]  # one: shared with torch

        frames = _frames(args, Path(tmp))
        agreement: dict[str, float] = {}
        for frame in tqdm(frames, desc="label agreement", unit="frame"):
            labels = {}
            for key in ("bdc_torch", "bdc_bitwise"):
                pipes[key].set_calibration(frame[1])
                labels[key] = pipes[key](frame[2]).labels
            agreement[frame[0]] = float((labels["bdc_torch"] == labels["bdc_bitwise"]).mean())
        synth = [v for k, v in agreement.items() if k.startswith("synth:")]
        report["label_agreement"] = statistics.mean(synth) if synth else statistics.mean(agreement.values())
        report["label_agreement_per_frame"] = agreement

        timed_frame = frames[-1]
        report.update(timing_report(*_end_to_end(pipes, timed_frame, args.repeats)))
        report["end_to_end_frame"] = timed_frame[0]

        float_model = _network(pipes["bdc_torch"].engine)
        imgs, geometry = pipes["bdc_torch"].engine.last
        report["layers"] = _layer_table(float_model, packed, imgs, geometry, args.repeats)
        xnor = [r["speedup"] for r in report["layers"] if r["kind"] == "xnor3x3"]
        pointwise = [r["speedup"] for r in report["layers"] if r["kind"] == "pointwise"]
        report["bitwise_layer_speedup_min"] = min(xnor)
        report["bitwise_layer_speedup_median"] = statistics.median(xnor)
        conv_only = [r["conv_only_speedup"] for r in report["layers"] if r["kind"] == "xnor3x3"]
        report["bitwise_conv_only_speedup_min"] = min(conv_only)  # without packing the input
        report["pointwise_speedup_median"] = statistics.median(pointwise) if pointwise else None

        sizes = weight_bytes(float_model, packed)
        report["weights_bytes"] = {
            "binarized_float32": sizes.binarized_float32,
            "binarized_packed": sizes.binarized_packed,
            "binarized_ratio": sizes.ratio,
            "other_float32": sizes.other_float32,
            "packed_file": packed_bytes,
            "float_checkpoint": checkpoint.stat().st_size,
        }

    peak = _popcount(kernel_threads)
    best = max(r["binary_gmacs_per_s"] for r in report["layers"] if r["kind"] == "xnor3x3")
    report["popcount"] = {**peak, "best_layer_binary_gmacs_per_s": best,
                          "best_layer_fraction_of_limit": best / peak["binary_gmacs_per_s"]}  # fmt: skip
    report["memory_bandwidth"] = _memory(numba.config.NUMBA_NUM_THREADS)
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["machine"]["loadavg_end"] = list(os.getloadavg())

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    if args.markdown:
        args.markdown.write_text(markdown_table(report))
    e2e = report["end_to_end_ms"]
    print(f"bench: 3x3 speedup min {report['bitwise_layer_speedup_min']:.1f}x median "
          f"{report['bitwise_layer_speedup_median']:.1f}x (conv only: min "
          f"{report['bitwise_conv_only_speedup_min']:.1f}x); end to end ms: "
          + ", ".join(f"{k} {v:.0f}" for k, v in e2e.items())
          + " (paired: " + ", ".join(f"{k} {v:.3f}" for k, v in report["end_to_end_ratio"].items()) + ")"
          + f"; label agreement {report['label_agreement']:.5f}; wrote {args.json}")  # fmt: skip
    return 0


def markdown_table(report: dict[str, Any]) -> str:
    """The README "Performance" tables from a bench report (layers grouped by kind and shape)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in report["layers"]:
        groups.setdefault((r["kind"], r["shape"]), []).append(r)
    lines = ["| kind | input -> out (stride) | layers | e.g. | torch fp32 ms | bitwise ms | speedup | conv only |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for (kind, shape), rows in groups.items():
        r = rows[0]
        conv_only = f"{r['conv_only_speedup']:.1f}x" if "conv_only_speedup" in r else "-"
        lines.append(f"| {kind} | {shape} | {len(rows)} | `{r['name']}` | {r['torch_ms']:.2f} | {r['bitwise_ms']:.2f} "
                     f"| {r['speedup']:.1f}x | {conv_only} |")  # fmt: skip
    stage_names = list(next(iter(report["stages_ms"].values())))
    lines += ["", "| engine | end to end ms | " + " | ".join(stage_names) + " |", "|---" * (2 + len(stage_names)) + "|"]
    for key, total in report["end_to_end_ms"].items():
        stages = report["stages_ms"][key]
        lines.append(f"| {key} | {total:.0f} | " + " | ".join(f"{stages[n]:.0f}" for n in stage_names) + " |")
    ratios = (("End to end", "end_to_end_ratio"), ("Image neck + BEV encoder + heads", "binarized_stages_ratio"))
    for label, key in ratios:
        if report.get(key):
            lines += ["", f"{label}, median over rounds of the time ratio within a round: "
                      + ", ".join(f"{k} = {v:.3f}" for k, v in report[key].items()) + "."]  # fmt: skip
    if report.get("memory_bandwidth"):
        lines += ["", "Streaming bandwidth (read + write, best call), 1 thread -> all cores: " + ", ".join(
            f"{level} {row['bytes_per_thread'] / 2**20:g} MB per thread {row['gb_per_s_1_threads']:.0f} GB/s "
            f"x{row['scaling']:.2f}" for level, row in report["memory_bandwidth"].items()) + "."]  # fmt: skip
    return "\n".join(lines) + "\n"
