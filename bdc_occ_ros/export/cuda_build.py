"""Compiling the BinaryConv2d CUDA kernel (cuda/binary_conv.cu) and its CPU reference.

Used by the tests (compile-only here: no GPU), scripts/orin_validate.py (builds the plugin library on
the Orin) and the deployment docs. The sources live in the repository's top-level ``cuda/`` folder.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CUDA_DIR = Path(__file__).resolve().parents[2] / "cuda"
KERNEL_SOURCE = CUDA_DIR / "binary_conv.cu"
REFERENCE_SOURCE = CUDA_DIR / "binary_conv_ref.cpp"
#: Orin (Ampere, sm_87) is the deployment target; sm_90 checks the source against a newer architecture.
DEFAULT_ARCHS: tuple[str, ...] = ("87", "90")


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.strip()}")


def nvcc_path() -> str | None:
    """The nvcc on PATH (or /usr/local/cuda/bin), None when absent."""
    return shutil.which("nvcc") or (shutil.which("nvcc", path="/usr/local/cuda/bin"))


def compile_kernel(out: str | Path, arch: str = "87", shared: bool = True) -> Path:
    """nvcc-compile binary_conv.cu for ``sm_<arch>``: a shared library (the plugin's kernels) or an object."""
    nvcc = nvcc_path()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found (install the CUDA toolkit; on Jetson it is /usr/local/cuda/bin/nvcc)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    mode = ["-shared"] if shared else ["-c"]
    _run([nvcc, "-O3", f"-arch=sm_{arch}", "-Xcompiler", "-fPIC", *mode, str(KERNEL_SOURCE), "-o", str(out)])
    return out


def compile_reference(out: str | Path, cxx: str = "g++") -> Path:
    """The CPU build of the plugin's per-output math (binary_conv_ref.cpp) as a shared library for ctypes."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _run([cxx, "-O2", "-shared", "-fPIC", str(REFERENCE_SOURCE), "-o", str(out)])
    return out
