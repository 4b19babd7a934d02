"""Thread-safe containers between the capture threads and the consumers.

Every container has a *horizon*: the session time up to which it is complete,
and an *ended* flag (the source is finished). Consumers wait on the horizon.
"""

from __future__ import annotations

import collections
import threading

import numpy as np

from hcl.features.config import SAMPLE_RATE
from realtime.core.component import Policy


class AudioRing:
    """16 kHz mono audio on the session clock, keeping the last `capacity_seconds`.

    Sample n of the stream lies at `start_time + n / sample_rate`. `read(t0, t1)`
    returns exactly round((t1 - t0) * rate) samples, zeros where nothing was captured.
    """

    def __init__(self, *, sample_rate: int = SAMPLE_RATE, capacity_seconds: float = 120.0) -> None:
        self.sample_rate = int(sample_rate)
        self._cap = int(capacity_seconds * sample_rate)
        self._buf = np.zeros(self._cap, np.float32)
        self._written = 0  # samples appended in total
        self.start_time: float | None = None
        self.ended = False
        self._cond = threading.Condition()

    def append(self, samples: np.ndarray, *, start_time: float | None = None) -> None:
        """Append samples; `start_time` (session seconds of the first sample ever) is
        only used by the first call (default 0)."""
        x = np.asarray(samples, np.float32).reshape(-1)
        with self._cond:
            if self.start_time is None:
                self.start_time = 0.0 if start_time is None else float(start_time)
            if len(x) >= self._cap:
                x = x[-self._cap :]
            pos = self._written % self._cap
            first = min(len(x), self._cap - pos)
            self._buf[pos : pos + first] = x[:first]
            self._buf[: len(x) - first] = x[first:]
            self._written += len(x)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    @property
    def horizon(self) -> float:
        """Session time of the end of the last sample (-inf before the first)."""
        with self._cond:
            return self._horizon()

    def _horizon(self) -> float:
        if self.start_time is None:
            return float("-inf")
        return self.start_time + self._written / self.sample_rate

    def wait_until(self, t: float, timeout: float | None = None) -> bool:
        """Wait until the horizon reaches `t` or the stream ended; True if reached."""
        with self._cond:
            self._cond.wait_for(lambda: self._horizon() >= t or self.ended, timeout)
            return self._horizon() >= t

    def read(self, t0: float, t1: float) -> np.ndarray:
        n = max(0, int(round((t1 - t0) * self.sample_rate)))
        out = np.zeros(n, np.float32)
        with self._cond:
            if self.start_time is None or n == 0:
                return out
            first = int(round((t0 - self.start_time) * self.sample_rate))
            lo = max(first, self._written - self._cap, 0)
            hi = min(first + n, self._written)
            if hi <= lo:
                return out
            idx = np.arange(lo, hi) % self._cap
            out[lo - first : hi - first] = self._buf[idx]
        return out

    def covered(self, t0: float, t1: float) -> float:
        """Fraction of [t0, t1) for which samples exist."""
        with self._cond:
            if self.start_time is None or t1 <= t0:
                return 0.0
            lo = max(t0, self.start_time)
            hi = min(t1, self._horizon())
            return max(0.0, hi - lo) / (t1 - t0)


class FrameFeed:
    """Video frames from a source to the face worker.

    `latest_only=True` (a camera): one slot, a new frame replaces an unread one, so
    the consumer never works on stale frames. Otherwise (a file) a bounded FIFO;
    when full, `put` either waits (the FAST policy: nothing is lost) or drops the
    oldest frame (counted in `dropped`).
    """

    def __init__(self, *, latest_only: bool, maxsize: int = 32, policy: Policy = Policy.LIVE) -> None:
        self.latest_only = latest_only
        self.maxsize = 1 if latest_only else max(1, maxsize)
        self.block = not policy.drops_when_full and not latest_only
        self._q: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        self._cond = threading.Condition()
        self.dropped = 0
        self.replaced = 0
        self.ended = False
        self.horizon = float("-inf")  # time of the newest frame put
        self.present = True  # False while the video device is missing
        self._inflight: float | None = None  # time of the frame the consumer is working on

    def put(self, t: float, rgb: np.ndarray) -> None:
        with self._cond:
            if self.block:
                self._cond.wait_for(lambda: len(self._q) < self.maxsize or self.ended)
            if len(self._q) >= self.maxsize:
                self._q.popleft()
                if self.latest_only:
                    self.replaced += 1
                else:
                    self.dropped += 1
            self._q.append((t, rgb))
            self.horizon = max(self.horizon, t)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> tuple[float, np.ndarray] | None:
        """The next frame, or None on timeout / when ended and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._q or self.ended, timeout) or not self._q:
                return None
            item = self._q.popleft()
            self._inflight = item[0]
            self._cond.notify_all()
            return item

    def task_done(self) -> None:
        """The consumer finished the frame it got last."""
        with self._cond:
            self._inflight = None
            self._cond.notify_all()

    def pending_before(self, t: float) -> bool:
        """Whether a frame earlier than `t` is queued or being worked on."""
        with self._cond:
            return self._pending_before(t)

    def _pending_before(self, t: float) -> bool:
        if self._inflight is not None and self._inflight < t:
            return True
        return bool(self._q) and self._q[0][0] < t

    def wait_idle_before(self, t: float, timeout: float | None = None) -> bool:
        """Wait until no frame earlier than `t` is queued or being worked on; True if so."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending_before(t), timeout)

    def stats(self) -> dict:
        with self._cond:
            return {"present": bool(self.present), "dropped_frames": self.dropped, "replaced_frames": self.replaced}

    def close(self) -> None:
        with self._cond:
            self.ended = True
            self._cond.notify_all()


class Horizon:
    """A monotonically advancing time a consumer can wait on."""

    def __init__(self) -> None:
        self._t = float("-inf")
        self.ended = False
        self._cond = threading.Condition()

    @property
    def value(self) -> float:
        return self._t

    def advance(self, t: float) -> None:
        with self._cond:
            if t > self._t:
                self._t = t
                self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    def wait_until(self, t: float, timeout: float | None = None) -> bool:
        """Wait until the value reaches `t` or it ended; True if reached."""
        with self._cond:
            self._cond.wait_for(lambda: self._t >= t or self.ended, timeout)
            return self._t >= t


