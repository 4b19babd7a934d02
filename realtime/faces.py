"""The face worker: a thread turning video frames into per-frame face features.

Per frame it calls the features engineer's extractor (`SegmentFeaturizer.face`,
the one used for training data) and appends (t, (58,) or None) to a `FaceTrack`;
the windowing aggregates a step's frames with `hcl.features.face.aggregate_steps`.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from typing import Callable

import numpy as np

from realtime.streams import FrameFeed

log = logging.getLogger(__name__)


class FaceTrack:
    """Per-frame face features on the session clock (thread-safe, time-ordered)."""

    def __init__(self) -> None:
        self._times: list[float] = []
        self._feats: list[np.ndarray | None] = []
        self._lock = threading.Lock()
        self.frames = 0
        self.faces = 0

    def add(self, t: float, feat: np.ndarray | None) -> None:
        with self._lock:
            i = bisect.bisect_right(self._times, t)
            self._times.insert(i, t)
            self._feats.insert(i, feat)
            self.frames += 1
            self.faces += feat is not None

    def between(self, t0: float, t1: float) -> tuple[list[float], list[np.ndarray | None]]:
        """Frames with t0 <= t < t1."""
        with self._lock:
            a = bisect.bisect_left(self._times, t0)
            b = bisect.bisect_left(self._times, t1)
            return self._times[a:b], self._feats[a:b]

    def prune(self, before: float) -> None:
        with self._lock:
            k = bisect.bisect_left(self._times, before)
            del self._times[:k], self._feats[:k]


class FaceWorker:
    """Consumes `feed`; `extract(rgb, t_ms)` is the face extractor's `frame`.

    For a latest-only feed (camera) frames closer than `1 / fps` to the previous
    analysed one are skipped, so the analysis rate matches training data.
    """

    def __init__(
        self,
        *,
        feed: FrameFeed,
        extract: Callable[[np.ndarray, int], np.ndarray | None],
        fps: float = 10.0,
        on_frame: Callable[[float, np.ndarray], None] | None = None,
    ) -> None:
        self.feed = feed
        self.extract = extract
        self.min_interval = 0.9 / fps if feed.latest_only else 0.0
        self.on_frame = on_frame
        self.track = FaceTrack()
        self.busy_ms: list[float] = []
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="faces", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = float("-inf")
        try:
            while not self._stop.is_set():
                item = self.feed.get(timeout=0.2)
                if item is None:
                    if self.feed.ended:
                        break
                    continue
                t, rgb = item
                try:
                    if t - last < self.min_interval:
                        continue
                    last = t
                    t0 = time.perf_counter()
                    feat = self.extract(rgb, int(round(t * 1000)))
                    self.busy_ms.append((time.perf_counter() - t0) * 1000)
                    if len(self.busy_ms) > 1000:
                        del self.busy_ms[:500]
                    self.track.add(t, feat)
                    if self.on_frame is not None:
                        self.on_frame(t, rgb)
                finally:
                    self.feed.task_done()
        except BaseException as exc:
            self.error = exc
            log.exception("face worker stopped")
        finally:
            self.done.set()
            self.feed.close()

    def complete_until(self, t: float) -> bool:
        """True when every frame before `t` that reached the feed has been analysed."""
        return self.done.is_set() or not self.feed.pending_before(t)

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
