"""Where exported graphs and engines are cached, and their names.

ONNX graphs are keyed by the checkpoint's content hash (plus config, binary-op mode and exporter
version), so a retrained checkpoint never reuses a stale graph. Default directory:
``$BDC_OCC_CACHE_DIR`` or ``~/.cache/bdc_occ_ros``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from bdc_occ_ros.config import ModelConfig

#: Bump when the exported graph's interface or contents change, to invalidate cached graphs.
EXPORT_FORMAT_VERSION = 1


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache directory (created): ``cache_dir``, else $BDC_OCC_CACHE_DIR, else ~/.cache/bdc_occ_ros."""
    root = Path(cache_dir or os.environ.get("BDC_OCC_CACHE_DIR") or Path.home() / ".cache" / "bdc_occ_ros")
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def onnx_cache_path(
    cfg: ModelConfig, checkpoint: str | Path, binary_op: str, cache_dir: str | Path | None = None
) -> Path:
    """``<cache>/onnx/<model name>-<16 hex key>-<binary_op>.onnx`` for this checkpoint + config."""
    h = hashlib.sha256()
    h.update(file_digest(checkpoint).encode())
    h.update(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    h.update(f"{binary_op}|v{EXPORT_FORMAT_VERSION}".encode())
    return cache_root(cache_dir) / "onnx" / f"{cfg.name}-{h.hexdigest()[:16]}-{binary_op}.onnx"
