"""One OpenMP runtime for torch and the bitwise engine's numba kernels.

torch's PyPI wheels bundle a copy of GNU OpenMP (``torch/lib/libgomp.so.1``); numba's ``omp`` threading layer
links the system's. Two runtimes are two thread pools on the same cores, and a GNU OpenMP worker spins for
milliseconds after each parallel region (``GOMP_SPINCOUNT``), so on a 2-core machine the other pool's worker
shares a core with a spinning thread (measured on the 2-core dev VM, numba on TBB: a parallel 32x200x200 binary conv
took 0.72 ms after torch convs, 0.24 ms back to back).

Loaded before torch, the system runtime is the one torch binds to: the dynamic loader reuses an already loaded
library of the soname torch asks for (``libgomp.so.1``) instead of the copy next to it. torch and numba's ``omp``
layer then share one pool, and the worker still spinning after a torch op takes the next kernel's work at once.
The entry points (``bdc-occ`` and the node, which the demo and the launch files start) call
:func:`load_system_openmp` first; library users who want it call it before importing torch.
``BDC_OCC_SHARED_OPENMP=0`` turns it off. Without it the engine uses numba's TBB layer (see
``engines/bitwise/kernels.py``).
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

#: What torch's libraries ask the loader for (their DT_NEEDED entry).
OPENMP_SONAME = "libgomp.so.1"

#: Environment switch: "0" keeps torch on its own OpenMP runtime.
SHARED_OPENMP_ENV = "BDC_OCC_SHARED_OPENMP"


def load_system_openmp() -> bool:
    """Load the system's GNU OpenMP runtime for torch to bind to; call before torch is imported.

    Returns whether it is loaded now: False when torch was imported first (it keeps the runtime it has), when
    the system has no ``libgomp.so.1`` or when ``BDC_OCC_SHARED_OPENMP=0``."""
    if os.environ.get(SHARED_OPENMP_ENV) == "0" or "torch" in sys.modules:
        return False
    try:
        ctypes.CDLL(OPENMP_SONAME, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return False
    return True


def openmp_runtimes(maps: Path = Path("/proc/self/maps")) -> list[Path]:
    """The distinct GNU OpenMP libraries mapped into this process (one path per file; [] where ``maps`` is
    unreadable, i.e. off Linux)."""
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return []
    found: dict[tuple[int, int], Path] = {}
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not Path(fields[5]).name.startswith("libgomp"):
            continue
        path = Path(fields[5])
        try:
            stat = path.stat()
        except OSError:
            continue
        found.setdefault((stat.st_dev, stat.st_ino), path.resolve())
    return list(found.values())


def torch_uses_system_openmp() -> bool:
    """Whether torch runs on a GNU OpenMP runtime outside its own package, the only one in the process: the
    runtime numba's ``omp`` layer links, so one pool would serve both. Imports torch."""
    import torch

    runtimes = openmp_runtimes()
    bundled = Path(torch.__file__).resolve().parent
    return len(runtimes) == 1 and not runtimes[0].is_relative_to(bundled)
