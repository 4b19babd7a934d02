"""The face worker: a thread turning video frames into per-frame face features.

Per frame it calls the face extractor (`SegmentFeaturizer.face`, the one used for
training data) and appends (t, (58,) or None) to a `FaceTrack`; the windowing
aggregates a step's frames with `hcl.features.face.aggregate_steps`.

With `observe` (the extractor's `faces`: every face in the frame) and `readouts`
(`hcl.features.readouts.FaceReadouts`) the same one landmarker call also gives each
face's readouts (stable id, smile, ..., head movement), kept beside the features:
the model still reads the speaker's features only, the readouts are for people.
"""

from __future__ import annotations

import bisect
import collections
import threading
import time
from typing import Any, Callable

import numpy as np

from hcl.features.face import FaceObservation, speaker_index
from hcl.features.readouts import FaceReadouts, FrameReadouts
from realtime.core.component import RecentStats, Worker
from realtime.core.load import Level
from realtime.core.streams import FrameFeed


class FaceTrack:
    """Per-frame face features on the session clock (thread-safe, time-ordered).

    It keeps the frames of the last `keep_seconds` before the newest one: the windowing
    reads a step's frames once the step ended, and the analysis runs at most the
    source's read-ahead in front of it, so older frames are never read again."""

    def __init__(self, *, keep_seconds: float = 60.0) -> None:
        self.keep_seconds = float(keep_seconds)
        self._times: collections.deque[float] = collections.deque()
        self._feats: collections.deque[np.ndarray | None] = collections.deque()
        self._readouts: collections.deque[FrameReadouts | None] = collections.deque()
        self._lock = threading.Lock()
        self.frames = 0
        self.faces = 0

    def add(self, t: float, feat: np.ndarray | None, readouts: FrameReadouts | None = None) -> None:
        with self._lock:
            if self._times and t < self._times[-1]:  # out of order (rare): insert in place
                i = bisect.bisect_right(self._times, t)
                self._times.insert(i, t)
                self._feats.insert(i, feat)
                self._readouts.insert(i, readouts)
            else:
                self._times.append(t)
                self._feats.append(feat)
                self._readouts.append(readouts)
            self.frames += 1
            self.faces += feat is not None
            horizon = self._times[-1] - self.keep_seconds
            while self._times and self._times[0] < horizon:
                self._times.popleft()
                self._feats.popleft()
                self._readouts.popleft()

    def between(self, t0: float, t1: float) -> tuple[list[float], list[np.ndarray | None]]:
        """Frames with t0 <= t < t1."""
        with self._lock:
            a = bisect.bisect_left(self._times, t0)
            b = bisect.bisect_left(self._times, t1)
            return [self._times[i] for i in range(a, b)], [self._feats[i] for i in range(a, b)]

    def readouts_between(self, t0: float, t1: float) -> list[FrameReadouts]:
        """The face readouts of the frames with t0 <= t < t1 (frames analysed without readouts left out)."""
        with self._lock:
            a = bisect.bisect_left(self._times, t0)
            b = bisect.bisect_left(self._times, t1)
            return [r for r in (self._readouts[i] for i in range(a, b)) if r is not None]

    def __len__(self) -> int:
        with self._lock:
            return len(self._times)


class FaceWorker(Worker):
    """Consumes `feed`; `extract(rgb, t_ms)` is the face extractor's `frame`. Or, for
    readouts of every face, `observe(rgb, t_ms)` (the extractor's `faces`) with
    `readouts` (a `FaceReadouts`): the speaker's features are taken from the same call.

    For a latest-only feed (camera) frames closer than `1 / fps` to the previous
    analysed one are skipped, so the analysis rate matches training data; a loaded
    server lowers that rate through `throttle(level)`. A feed that keeps every frame
    (a file) is analysed whole.
    """

    name = "faces"

    def __init__(
        self,
        *,
        feed: FrameFeed,
        extract: Callable[[np.ndarray, int], np.ndarray | None] | None = None,
        observe: Callable[[np.ndarray, int], list[FaceObservation]] | None = None,
        readouts: FaceReadouts | None = None,
        fps: float = 10.0,
        keep_seconds: float = 60.0,
    ) -> None:
        super().__init__()
        if (extract is None) == (observe is None):
            raise ValueError("FaceWorker needs one of extract (features of the speaker) or observe (every face)")
        if readouts is not None and observe is None:
            raise ValueError("FaceWorker readouts need observe (every face in the frame), not extract")
        self.feed = feed
        self.extract = extract
        self.observe = observe
        self.readouts = readouts
        self.readouts_ms = RecentStats()
        self.min_interval = 0.9 / fps if feed.latest_only else 0.0
        self.track = FaceTrack(keep_seconds=keep_seconds)
        self.busy_ms = RecentStats()

    def run(self) -> None:
        last = float("-inf")
        while not self.stopping:
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
                frame = None
                if self.observe is not None:
                    faces = self.observe(rgb, int(round(t * 1000)))
                    i = speaker_index(faces)
                    feat = None if i is None else faces[i].features()
                    if self.readouts is not None:
                        t1 = time.perf_counter()
                        frame = self.readouts.step(faces, t, rgb)
                        self.readouts_ms.add((time.perf_counter() - t1) * 1000)
                else:
                    feat = self.extract(rgb, int(round(t * 1000)))
                self.busy_ms.add((time.perf_counter() - t0) * 1000)
                self.track.add(t, feat, frame)
            finally:
                self.feed.task_done()

    def finish(self) -> None:
        self.feed.close()

    def throttle(self, level: Level) -> None:
        """Analyse a live feed at `level.face_fps` from now on (a file's feed is left alone)."""
        if self.feed.latest_only:
            self.min_interval = 0.9 / level.face_fps

    @property
    def fps(self) -> float | None:
        """The rate a live feed is analysed at (None: every frame of a file)."""
        return round(0.9 / self.min_interval, 1) if self.min_interval else None

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            **self.feed.stats(),
            "frames": self.track.frames,
            "faces": self.track.faces,
            "face_ms": self.busy_ms.summary(),
            **({"readouts_ms": self.readouts_ms.summary()} if self.readouts is not None else {}),
        }
