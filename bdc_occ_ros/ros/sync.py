"""Anchor-camera synchronisation of N camera streams, without ROS.

Each camera keeps its last few frames. A set is formed for an anchor frame (stamp ``t``) once every
camera has its frame closest to ``t`` within ``max_diff`` *and* no later frame of that camera could be
closer: either the camera already has a frame at or after ``t``, or its next frame (expected one
estimated period after its newest) would be farther from ``t`` than the chosen one. That keeps the
latency low (nuScenes: CAM_FRONT_LEFT fires 8 ms before CAM_FRONT, so the set does not wait for its
next frame) and matches the frames of one sample even when ``max_diff`` exceeds half a period.

Anchor frames that can no longer be completed (a camera skipped that time, or is silent) are counted
as *stale sets*. A stamp going backwards on any camera (a bag loop) resets all buffers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Frames kept per camera; 4 frames at 12 Hz cover 0.33 s, more than any sensible max_diff.
HISTORY = 4


@dataclass
class Frame:
    stamp_ns: int
    payload: Any  # the undecoded image message (decoding happens on the worker)


@dataclass
class FrameSet:
    """One synchronised set: the anchor stamp and one frame per camera, in camera order."""

    stamp_ns: int
    frames: list[Frame]


class AnchorSync:
    def __init__(self, cameras: list[str] | tuple[str, ...], anchor: str, max_diff_s: float):
        self.cameras = list(cameras)
        self.anchor = anchor
        self.max_diff_ns = int(max_diff_s * 1e9)
        self.stale_sets = 0
        self.resets = 0
        self._frames: dict[str, deque[Frame]] = {c: deque(maxlen=HISTORY) for c in self.cameras}
        self._last_emitted_ns = -1

    def reset(self) -> None:
        for q in self._frames.values():
            q.clear()
        self._last_emitted_ns = -1

    def add(self, camera: str, stamp_ns: int, payload: Any) -> FrameSet | None:
        """Add a frame; returns the newest set completed by it (older pending anchors count as stale)."""
        q = self._frames[camera]
        if q and stamp_ns < q[-1].stamp_ns:  # time went backwards: bag loop or clock reset
            self.resets += 1
            self.reset()
        if q and stamp_ns == q[-1].stamp_ns:
            q[-1] = Frame(stamp_ns, payload)  # duplicate stamp: keep the newer message
        else:
            if camera == self.anchor and len(q) == q.maxlen and q[0].stamp_ns > self._last_emitted_ns:
                self.stale_sets += 1  # an anchor that never completed leaves the history
            q.append(Frame(stamp_ns, payload))
        return self._try_emit()

    def _try_emit(self) -> FrameSet | None:
        anchors = [f for f in self._frames[self.anchor] if f.stamp_ns > self._last_emitted_ns]
        for anchor in reversed(anchors):  # newest first: the newest completable set wins
            frames = self._match(anchor.stamp_ns)
            if frames is not None:
                self.stale_sets += sum(1 for a in anchors if a.stamp_ns < anchor.stamp_ns)
                self._last_emitted_ns = anchor.stamp_ns
                return FrameSet(anchor.stamp_ns, frames)
        # anchors that fell out of every other camera's reach can never complete
        for anchor in anchors:
            if self._unreachable(anchor.stamp_ns):
                self.stale_sets += 1
                self._last_emitted_ns = anchor.stamp_ns
        return None

    def _match(self, t: int) -> list[Frame] | None:
        out = []
        for cam in self.cameras:
            q = self._frames[cam]
            if not q:
                return None
            best = min(q, key=lambda f: abs(f.stamp_ns - t))
            if abs(best.stamp_ns - t) > self.max_diff_ns:
                return None
            if q[-1].stamp_ns < t:  # all frames before t: could the next one be closer?
                # A camera with one frame so far borrows the anchor's period (rig cameras share a rate), so
                # a stale frame of the previous set is not taken when the current one is still to come.
                # With neither known (a stream's first set, or one sample republished with its own stamps)
                # only a frame within half the window is taken at once.
                gap = t - best.stamp_ns
                period = _period_ns(q) or _period_ns(self._frames[self.anchor])
                if period is None and 2 * gap > self.max_diff_ns:
                    return None
                if period is not None and q[-1].stamp_ns + period - t < gap:
                    return None
            out.append(best)
        return out

    def _unreachable(self, t: int) -> bool:
        """True when some camera already moved past ``t + max_diff`` without a frame inside the window."""
        for cam in self.cameras:
            q = self._frames[cam]
            if q and q[-1].stamp_ns > t + self.max_diff_ns and all(abs(f.stamp_ns - t) > self.max_diff_ns for f in q):
                return True
        return False


def _period_ns(q: deque[Frame]) -> int | None:
    if len(q) < 2:
        return None
    stamps = np.array([f.stamp_ns for f in q], dtype=np.int64)
    return int(np.median(np.diff(stamps)))
