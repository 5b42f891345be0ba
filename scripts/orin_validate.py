#!/usr/bin/env python3
"""Validate the TensorRT deployment on a Jetson Orin (or any NVIDIA GPU with TensorRT).

Run from the repository root with the project installed (pip install -e .) in a Python that has
JetPack's TensorRT bindings and a CUDA build of torch:

    python3 scripts/orin_validate.py --sample ../shared/data/nuscenes_sample0 \
        --config config/models/bdc_occ_edge.yaml --checkpoint models/bdc_occ_edge.safetensors --out orin_report.json

What it does, in order, printing each result:
 1. platform: L4T release, GPU / compute capability, TensorRT and CUDA versions, `nvpmodel -q` and
    `jetson_clocks --show` (run `sudo nvpmodel -m 0 && sudo jetson_clocks` first for stable timings);
 2. the BinaryConv2d CUDA kernels (cuda/binary_conv.cu, compiled here with nvcc for this GPU unless
    --plugin-lib is given) against torch's conv on the GPU: generic XNOR path, the 1-bit tensor-core
    path (Cin % 128 == 0) and the real-input path, with per-call timings next to cuDNN float convs;
 3. reference labels from the torch engine (on the GPU) for the sample;
 4. TensorRT engines, built on first use into --engine-dir with the cache names of the tensorrt engine:
    plain graph fp16 (and int8 with --calibration-npz), and the plugin graph (--binary-op custom) fp16
    when the kernel library is available; for each: label agreement with torch (%), end-to-end pipeline
    and engine-only latency (median over --repeats), and the slowest layers from TensorRT's profiler;
 5. everything as JSON in --out.
Exit status 1 when any label agreement is below --min-agreement (default 99.9 %) or a kernel mismatches;
3 when TensorRT or a CUDA GPU is missing.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def shell(cmd: list[str]) -> str:
    """Output of a diagnostic command, or why it could not run (never fails the script)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"<{' '.join(cmd)}: {exc}>"
    return (proc.stdout + proc.stderr).strip() or f"<{' '.join(cmd)}: no output, exit {proc.returncode}>"


def platform_report() -> dict:
    import torch

    from bdc_occ_ros.export.tensorrt_build import current_gpu, import_tensorrt

    trt = import_tensorrt()
    gpu = current_gpu()
    tegra = Path("/etc/nv_tegra_release")
    report = {
        "machine": platform.machine(),
        "l4t": tegra.read_text().strip() if tegra.exists() else None,
        "gpu": gpu.name,
        "compute_capability": f"{gpu.major}.{gpu.minor}",
        "tensorrt": trt.__version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "nvpmodel": shell(["nvpmodel", "-q"]),
        "jetson_clocks": shell(["jetson_clocks", "--show"]),
    }
    for key, value in report.items():
        print(f"  {key}: {value}")
    return report


def kernel_library(args: argparse.Namespace, gpu_arch: str) -> Path | None:
    from bdc_occ_ros.export.cuda_build import compile_kernel, nvcc_path

    if args.plugin_lib is not None:
        return args.plugin_lib
    if nvcc_path() is None:
        print("  nvcc not found: skipping the plugin (pass --plugin-lib to use a prebuilt library)")
        return None
    out = args.engine_dir / f"libbdc_occ_binary_conv_sm{gpu_arch}.so"
    print(f"  compiling cuda/binary_conv.cu for sm_{gpu_arch} -> {out}")
    return compile_kernel(out, arch=gpu_arch)


def cuda_median_ms(fn, repeats: int) -> float:
    import torch

    fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def run_kernel(lib, x, packed, alpha, y, workspace, k: int, stride: int, pad: int, binarize: int) -> None:
    """One bdc_binary_conv2d_forward call on torch CUDA tensors (NCHW float32, packed int32 weights)."""
    import torch

    n, cin, h, w = x.shape
    rc = lib.bdc_binary_conv2d_forward(x.data_ptr(), packed.data_ptr(), alpha.data_ptr(), y.data_ptr(), n, cin, h, w,
                                       y.shape[1], k, k, stride, pad, binarize, workspace.data_ptr(),
                                       torch.cuda.current_stream().cuda_stream)  # fmt: skip
    if rc != 0:
        raise RuntimeError(f"bdc_binary_conv2d_forward: CUDA error {rc}")


def kernel_checks(lib_path: Path, repeats: int) -> list[dict]:
    """The plugin kernels alone vs torch (cuDNN) on the GPU, at shapes like the edge model's BEV encoder."""
    import torch
    from torch.nn import functional as F

    from bdc_occ_ros.export.packing import pack_weights
    from bdc_occ_ros.export.trt_plugin import load_kernel_library
    from bdc_occ_ros.model.binary import binary_sign

    lib = load_kernel_library(lib_path)
    cases = [  # (name, cin, cout, k, stride, pad, h, w, binarize_input, disable_mma)
        ("xnor3x3 generic", 96, 96, 3, 1, 1, 100, 100, 1, True),
        ("xnor3x3 s2 generic", 96, 96, 3, 2, 1, 100, 100, 1, True),
        ("xnor3x3 mma", 128, 128, 3, 1, 1, 100, 100, 1, False),
        ("xnor3x3 mma s2", 256, 256, 3, 2, 1, 50, 50, 1, False),
        ("real-input 1x1", 128, 128, 1, 1, 0, 100, 100, 0, True),
    ]
    rows = []
    for name, cin, cout, k, stride, pad, h, w, binarize, no_mma in cases:
        os.environ["BDC_OCC_DISABLE_MMA"] = "1" if no_mma else "0"
        gen = torch.Generator().manual_seed(cin + k)
        x = torch.randn(1, cin, h, w, generator=gen).cuda()
        weight = torch.randn(cout, cin, k, k, generator=gen)
        alpha = torch.rand(cout, generator=gen).add(0.1).cuda()
        packed = torch.from_numpy(pack_weights(weight.numpy())).cuda()
        ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        y = torch.empty(1, cout, ho, wo, device="cuda")
        ws = torch.empty(max(lib.bdc_binary_conv2d_workspace_bytes(1, cin, h, w, binarize), 1), dtype=torch.uint8,
                         device="cuda")  # fmt: skip
        w_bin = (binary_sign(weight) * alpha.cpu().view(-1, 1, 1, 1)).cuda()
        inp = binary_sign(x) if binarize else x
        plugin = functools.partial(run_kernel, lib, x, packed, alpha, y, ws, k, stride, pad, binarize)
        reference = functools.partial(F.conv2d, inp, w_bin, None, stride, pad)
        plugin_ms = cuda_median_ms(plugin, repeats)
        torch_ms = cuda_median_ms(reference, repeats)
        err = float((y - reference()).abs().max())
        ok = err <= 1e-3 * float(alpha.max()) * cin * k * k
        rows.append({"name": name, "shape": f"{cin}->{cout} k{k} s{stride} {h}x{w}", "plugin_ms": plugin_ms,
                     "torch_fp32_ms": torch_ms, "max_abs_err": err, "ok": ok})  # fmt: skip
        print(f"  {name:20s} {rows[-1]['shape']:26s} plugin {plugin_ms:7.3f} ms  torch fp32 {torch_ms:7.3f} ms  "
              f"max|err| {err:.2e} {'OK' if ok else 'MISMATCH'}")  # fmt: skip
    os.environ.pop("BDC_OCC_DISABLE_MMA", None)
    return rows


def layer_profile(engine, pipeline, images, top: int = 15) -> list[dict]:
    """Per-layer times (ms, median over runs) from TensorRT's IProfiler on the engine's context."""
    trt = engine._trt
    per_layer: dict[str, list[float]] = {}

    class Profiler(trt.IProfiler):
        def report_layer_time(self, layer_name: str, ms: float) -> None:
            per_layer.setdefault(layer_name, []).append(ms)

    engine.context.profiler = Profiler()
    for _ in range(5):
        pipeline(images)
    engine.context.profiler = None
    rows = sorted(({"layer": k, "ms": statistics.median(v)} for k, v in per_layer.items()), key=lambda r: -r["ms"])
    return rows[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=Path, default=REPO.parent / "shared" / "data" / "nuscenes_sample0",
                        help="sample directory (imgs/CAM_*.jpg + sample*.yaml)")  # fmt: skip
    parser.add_argument("--config", type=Path, default=REPO / "config" / "models" / "bdc_occ_edge.yaml")
    parser.add_argument("--checkpoint", type=Path, default=None, help="safetensors (default: random weights)")
    parser.add_argument("--calibration-npz", type=Path, default=None, help="enables the int8 engine")
    parser.add_argument("--plugin-lib", type=Path, default=None, help="prebuilt cuda/binary_conv.cu library")
    parser.add_argument("--engine-dir", type=Path, default=REPO / "data" / "trt_engines")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--min-agreement", type=float, default=0.999)
    parser.add_argument("--out", type=Path, default=Path("orin_report.json"))
    args = parser.parse_args()

    from bdc_occ_ros.config import load_model_config
    from bdc_occ_ros.engines.errors import EngineUnavailable
    from bdc_occ_ros.engines.tensorrt_engine import TensorRTEngine
    from bdc_occ_ros.export.onnx_export import RANK_INPUTS
    from bdc_occ_ros.pipeline import OccupancyPipeline
    from bdc_occ_ros.tools.infer import load_sample

    args.engine_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("BDC_OCC_CACHE_DIR", str(args.engine_dir))
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    print("[1/5] platform")
    try:
        report["platform"] = platform_report()
    except EngineUnavailable as exc:
        print(f"cannot validate here: {exc}")
        return 3
    arch = report["platform"]["compute_capability"].replace(".", "")

    print("[2/5] BinaryConv2d kernels vs torch on the GPU")
    lib = kernel_library(args, arch)
    report["kernels"] = kernel_checks(lib, args.repeats) if lib is not None else []

    print("[3/5] torch reference")
    cfg = load_model_config(args.config)
    sample = load_sample(args.sample, tuple(cfg.cameras))
    pipeline = OccupancyPipeline(cfg, args.checkpoint, engine="torch", device="cuda")
    pipeline.set_calibration(sample.rig)
    images = [sample.rgb(c) for c in pipeline.camera_names]
    reference = pipeline(images).labels
    torch_ms = [pipeline(images).timings_ms["inference"] for _ in range(args.repeats)]
    report["torch"] = {"inference_ms_median": statistics.median(torch_ms)}
    print(f"  torch (cuda) inference {statistics.median(torch_ms):.1f} ms")

    print("[4/5] TensorRT engines")
    variants = [("plain", "fp16")]
    calibration = None
    if args.calibration_npz is not None:
        data = np.load(args.calibration_npz)
        calibration = [{"img": img, **{k: data[k] for k in RANK_INPUTS}} for img in data["img"]]
        variants.append(("plain", "int8"))
    if lib is not None:
        variants.append(("custom", "fp16"))
    report["engines"] = []
    failed = False
    for binary_op, precision in variants:
        t0 = time.perf_counter()
        engine = TensorRTEngine(cfg, args.checkpoint, "cuda", precision=precision, binary_op=binary_op,
                                engine_dir=args.engine_dir, plugin_library=lib, calibration=calibration)  # fmt: skip
        ready_s = time.perf_counter() - t0
        pipeline.engine = engine
        labels = pipeline(images).labels
        agreement = float((labels == reference).mean())
        runs = [pipeline(images).timings_ms for _ in range(args.repeats)]
        row = {
            "binary_op": binary_op,
            "precision": precision,
            "engine": str(engine.engine_path),
            "built_now": engine.built,
            "build_or_load_s": ready_s,
            "label_agreement": agreement,
            "engine_ms_median": statistics.median(r["tensorrt"] for r in runs),
            "pipeline_ms_median": statistics.median(r["preprocess"] + r["inference"] + r["postprocess"] for r in runs),
            "layers": layer_profile(engine, pipeline, images),
        }
        report["engines"].append(row)
        failed |= agreement < args.min_agreement
        state = "built" if engine.built else "cached"
        print(f"  {binary_op:6s} {precision}: agreement {100 * agreement:.3f} %"
              f"  engine {row['engine_ms_median']:.2f} ms  pipeline {row['pipeline_ms_median']:.1f} ms"
              f"  ({state} {engine.engine_path.name} in {ready_s:.0f} s)")  # fmt: skip
        for layer in row["layers"][:8]:
            print(f"      {layer['ms']:7.3f} ms  {layer['layer']}")
    failed |= any(not k["ok"] for k in report["kernels"])

    print(f"[5/5] writing {args.out}")
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print("FAILED: see above" if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
