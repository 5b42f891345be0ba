"""Errors shared by the engines (kept import-light: no torch)."""


class EngineUnavailable(RuntimeError):
    """The back end cannot run on this machine (package missing, no GPU, no TensorRT); callers may fall back."""
