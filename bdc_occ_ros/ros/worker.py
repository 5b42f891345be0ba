"""A worker thread with a queue of one: the newest item wins, the replaced one is counted as dropped.

Callbacks hand work over with :meth:`LatestWorker.submit`, which never blocks, so inference (seconds
on a slow CPU) never stalls the ROS executor and memory stays bounded at one pending item.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
_log = logging.getLogger(__name__)


class LatestWorker(Generic[T]):
    def __init__(self, handle: Callable[[T], None], name: str = "bdc_occ_worker"):
        self._handle = handle
        self._cond = threading.Condition()
        self._pending: T | None = None
        self._stop = False
        self._busy = False
        self.dropped = 0
        self.processed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> None:
        """Queue ``item``; a still-pending older item is dropped (counted)."""
        with self._cond:
            if self._pending is not None:
                self.dropped += 1
            self._pending = item
            self._cond.notify()

    @property
    def idle(self) -> bool:
        with self._cond:
            return self._pending is None and not self._busy

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                item, self._pending, self._busy = self._pending, None, True
            try:
                self._handle(item)
            except Exception:  # the handler reports its own errors; this only keeps the thread alive
                _log.exception("worker: unhandled error")
            finally:
                with self._cond:
                    self._busy = False
                    self.processed += 1
