"""Clean shutdown for the small ROS tools (bag player, recorder)."""

from __future__ import annotations

import signal
import threading


def stop_on_signals() -> threading.Event:
    """An Event set by SIGINT/SIGTERM, installed instead of rclpy's handlers (init rclpy with
    ``SignalHandlerOptions.NO``), so a tool finishes the message it is on and closes its bag cleanly."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop
