"""TensorRT engine building and the engine cache (Autoware / Isaac ROS conventions).

* Build on first use, reuse afterwards: the engine file sits next to its ONNX graph (Autoware: "saved in
  the same directory as specified ONNX files with .engine extension and reused from the next run").
* The file name carries everything that makes an engine non-portable — precision, GPU architecture and
  name, TensorRT version: ``<onnx stem>.<precision>.<sm87-orin>.trt<10.3.0>.engine`` — so a JetPack
  upgrade or another GPU builds a new engine instead of failing to deserialize an old one.
* ``build_only``: build (or find) the engine and stop (CI/provisioning step; Autoware keeps it out of
  the param file, we expose it as a CLI/launch argument). ``force_rebuild`` = Isaac ROS' ``force_engine_update``.
TensorRT is imported only inside functions; without it :class:`EngineUnavailable` says what to install.
Status: this module never ran against a real TensorRT (none installable on the development machine).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bdc_occ_ros.engines.errors import EngineUnavailable
from bdc_occ_ros.export.onnx_export import MAX_POINTS_KEY, RANK_INPUTS

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or EngineUnavailable with install hints (ImportError and missing libnvinfer)."""
    try:
        import tensorrt
    except (ImportError, OSError) as exc:
        raise EngineUnavailable(
            f"TensorRT is not importable ({exc}). On Jetson it comes with JetPack (apt: python3-libnvinfer, "
            "nvidia-tensorrt); on x86 install NVIDIA's `tensorrt` wheel together with its libraries."
        ) from exc
    return tensorrt


@dataclass(frozen=True)
class GpuInfo:
    """A CUDA device: name and compute capability."""

    name: str
    major: int
    minor: int

    @property
    def tag(self) -> str:
        """File-name-safe identity, e.g. ``sm87-orin`` or ``sm90-nvidia-h100-80gb-hbm3``."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")
        return f"sm{self.major}{self.minor}-{slug}"


def current_gpu(device_index: int = 0) -> GpuInfo:
    """The GPU that would run the engine; EngineUnavailable when CUDA (via torch) sees none."""
    import torch

    if not torch.cuda.is_available():
        raise EngineUnavailable("no CUDA GPU is visible (torch.cuda.is_available() is False)")
    props = torch.cuda.get_device_properties(device_index)
    return GpuInfo(props.name, props.major, props.minor)


def engine_file_name(onnx_path: str | Path, precision: str, gpu: GpuInfo, trt_version: str) -> str:
    """``<onnx stem>.<precision>.<gpu tag>.trt<version>.engine``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    return f"{Path(onnx_path).stem}.{precision}.{gpu.tag}.trt{trt_version}.engine"


def engine_cache_path(
    onnx_path: str | Path, precision: str, gpu: GpuInfo, trt_version: str, engine_dir: str | Path | None = None
) -> Path:
    """Where the engine for this graph/precision/GPU/TensorRT lives (default: beside the ONNX file)."""
    directory = Path(engine_dir) if engine_dir is not None else Path(onnx_path).parent
    return directory / engine_file_name(onnx_path, precision, gpu, trt_version)


def max_points_of(onnx_path: str | Path) -> int:
    """Largest rank-vector length M the graph can see (from the metadata written by the exporter)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if MAX_POINTS_KEY not in props:
        raise ValueError(f"{onnx_path}: no {MAX_POINTS_KEY} metadata; export it with `bdc-occ export onnx`")
    return int(props[MAX_POINTS_KEY])


def _int8_calibrator(trt: Any, batches: list[dict[str, np.ndarray]], cache_file: Path) -> Any:
    """Entropy calibrator over host batches (feeds of the graph's inputs). Uses torch for device memory."""
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self._batches = iter(batches)
            self._keep: list[torch.Tensor] = []

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            feeds = next(self._batches, None)
            if feeds is None:
                return None
            self._keep = [torch.from_numpy(np.ascontiguousarray(feeds[n])).cuda() for n in names]
            return [t.data_ptr() for t in self._keep]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.exists() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            cache_file.write_bytes(bytes(cache))

    return Calibrator()


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    precision: str = "fp16",
    workspace_bytes: int = 1 << 30,
    opt_points: int | None = None,
    calibration: list[dict[str, np.ndarray]] | None = None,
    verbose: bool = False,
) -> Path:
    """Parse ``onnx_path`` and serialize an engine to ``engine_path`` (written atomically).

    The rank inputs get an optimization profile M in [1, max_points] (opt: ``opt_points`` or half the max).
    ``int8`` needs ``calibration`` batches (dicts of graph inputs), plus FP16 fallback for other layers.
    Graphs with ``bdc_occ::BinaryConv2d`` need the plugin registered first
    (:func:`bdc_occ_ros.export.trt_plugin.register_plugin`).
    """
    trt = import_tensorrt()
    if precision not in PRECISIONS:
        raise ValueError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "int8" and not calibration:
        raise ValueError("precision int8 needs calibration batches (--calibration-npz); use fp16 otherwise")
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    max_points = max_points_of(onnx_path)
    opt = min(opt_points or max_points // 2, max_points)
    profile = builder.create_optimization_profile()
    for name in RANK_INPUTS:
        profile.set_shape(name, (1,), (opt,), (max_points,))
    config.add_optimization_profile(profile)
    engine_path = Path(engine_path)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_calibration_profile(profile)
        config.int8_calibrator = _int8_calibrator(trt, calibration, engine_path.with_suffix(".calib"))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (run with verbose for details)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(engine_path.name + ".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(engine_path)
    info = {"onnx": str(onnx_path), "precision": precision, "tensorrt": trt.__version__, "max_points": max_points}
    engine_path.with_suffix(".json").write_text(json.dumps({**info, "opt_points": opt}, indent=2))
    return engine_path


def load_or_build(
    onnx_path: str | Path,
    precision: str = "fp16",
    engine_dir: str | Path | None = None,
    force_rebuild: bool = False,
    **build_kwargs: Any,
) -> tuple[Path, bool]:
    """The cached engine for this graph on this GPU/TensorRT (built when missing or forced): (path, built)."""
    trt = import_tensorrt()
    path = engine_cache_path(onnx_path, precision, current_gpu(), trt.__version__, engine_dir)
    if path.exists() and not force_rebuild:
        return path, False
    return build_engine(onnx_path, path, precision, **build_kwargs), True
