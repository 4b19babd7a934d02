"""One monotonic session clock: every timestamp in a live session is seconds on it."""

from __future__ import annotations

import threading
import time


class SessionClock:
    """Seconds since the session started, from `time.monotonic()`.

    A clock made with `running=False` exists before it counts: the sources that stamp
    on it and the parts that wait on it get it at construction, and the pipeline
    `begin()`s it once its models are loaded (so loading is not session time).
    All arithmetic uses the monotonic clock so that system clock changes do not matter.
    """

    def __init__(self, *, start: float | None = None, running: bool = True) -> None:
        self._lock = threading.Lock()
        self._t0: float | None = float(start) if start is not None else (time.monotonic() if running else None)

    def begin(self) -> None:
        """Start counting now; a clock that counts already goes on (idempotent)."""
        with self._lock:
            if self._t0 is None:
                self._t0 = time.monotonic()

    @property
    def started(self) -> bool:
        return self._t0 is not None

    def now(self) -> float:
        t0 = self._t0
        if t0 is None:
            raise RuntimeError("the session clock has not begun (SessionClock.begin())")
        return time.monotonic() - t0

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        """Sleep until session time `t`; returns False when `stop` was set first."""
        delay = t - self.now()
        if delay <= 0:
            return not (stop is not None and stop.is_set())
        if stop is None:
            time.sleep(delay)
            return True
        return not stop.wait(delay)
