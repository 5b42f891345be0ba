"""One OpenMP runtime for torch and numba (``bdc_occ_ros.openmp``): which runtime torch binds to, and the threading
layer and kernel threads the bitwise engine picks from it. Each case runs in a fresh process: the loader binds
torch's runtime at ``import torch``, numba fixes its layer when its pool starts."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bdc_occ_ros.openmp import SHARED_OPENMP_ENV, openmp_runtimes

needs_system_openmp = pytest.mark.skipif(ctypes.util.find_library("gomp") is None, reason="no system libgomp")

#: Prints whether the system runtime was loaded, the kernel threads, numba's layer and the runtimes mapped.
_PROBE = """
from bdc_occ_ros.openmp import load_system_openmp, openmp_runtimes
if {torch_first}:
    import torch
loaded = load_system_openmp()
import numba, torch
torch.set_num_threads({threads})
from bdc_occ_ros.engines.bitwise.engine import default_kernel_threads
print(loaded, default_kernel_threads(), numba.threading_layer(), len(openmp_runtimes()), torch.get_num_threads())
"""


def _probe(torch_first: bool, threads: int = 2, **env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", SHARED_OPENMP_ENV)}
    code = _PROBE.format(torch_first=torch_first, threads=threads)
    out = subprocess.run([sys.executable, "-c", code], env={**environ, **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@needs_system_openmp
@pytest.mark.parametrize("threads", [1, 2])
def test_torch_and_numba_share_the_system_runtime(threads: int) -> None:
    """Loaded first, the system runtime is the only one: numba takes its OpenMP layer and torch's thread count,
    and starting numba's pool leaves torch's thread count as it was (the launch sets the runtime's)."""
    assert _probe(torch_first=False, threads=threads) == ["True", str(threads), "omp", "1", str(threads)]


@needs_system_openmp
def test_torch_imported_first_keeps_its_runtime() -> None:
    """Too late to share: torch keeps its bundled runtime and numba stays off OpenMP (TBB or workqueue)."""
    loaded, threads, layer, runtimes, _ = _probe(torch_first=True)
    assert (loaded, layer, runtimes) == ("False", "tbb", "1") or (loaded, threads, layer) == ("False", "1", "workqueue")


@needs_system_openmp
def test_opt_out_and_forced_second_runtime() -> None:
    """``BDC_OCC_SHARED_OPENMP=0`` leaves torch on its own runtime; numba's OpenMP layer forced beside it is a
    second runtime, whose kernels then run on one thread."""
    assert _probe(torch_first=False, **{SHARED_OPENMP_ENV: "0", "NUMBA_THREADING_LAYER": "omp"}) == [
        "False", "1", "omp", "2", "2"]  # fmt: skip


@pytest.mark.parametrize("layer", ["tbb", "workqueue"])
def test_default_kernel_threads_follow_the_threading_layer(layer: str) -> None:
    """Beside torch's own runtime: torch's thread count with TBB, 1 with workqueue (each parallel call wakes
    sleeping pool threads)."""
    if layer == "tbb":
        pytest.importorskip("numba.np.ufunc.tbbpool", reason="numba's TBB layer is not usable here")
    _, threads, picked, _, _ = _probe(torch_first=True, NUMBA_THREADING_LAYER=layer)
    assert [threads, picked] == (["2", "tbb"] if layer == "tbb" else ["1", "workqueue"])


def test_openmp_runtimes_counts_files_not_names(tmp_path: Path) -> None:
    lib = tmp_path / "libgomp.so.1.0.0"
    lib.write_bytes(b"")
    (tmp_path / "libgomp.so.1").symlink_to(lib.name)
    other = tmp_path / "torch" / "libgomp.so.1"
    other.parent.mkdir()
    other.write_bytes(b"")
    maps = tmp_path / "maps"
    maps.write_text("\n".join([
        f"7f00-7f01 r-xp 00000000 00:1f 11 {tmp_path / 'libgomp.so.1'}",
        f"7f01-7f02 r--p 00001000 00:1f 11 {lib}",
        f"7f02-7f03 r-xp 00000000 00:1f 12 {other}",
        f"7f03-7f04 r-xp 00000000 00:1f 13 {tmp_path / 'libc.so.6'}",
        f"7f04-7f05 r-xp 00000000 00:1f 14 {tmp_path / 'libgomp-gone.so.1'}",  # deleted since: skipped
        "7f05-7f06 rw-p 00000000 00:00 0",
    ]))  # fmt: skip
    assert openmp_runtimes(maps) == [lib.resolve(), other.resolve()]
    assert openmp_runtimes(tmp_path / "absent") == []
