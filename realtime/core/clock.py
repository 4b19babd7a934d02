"""One monotonic session clock: every timestamp in a live session is seconds on it."""

from __future__ import annotations

import threading
import time


class SessionClock:
    """Seconds since the session started, from `time.monotonic()`.

    All arithmetic uses the monotonic clock so that system clock changes do not matter.
    """

    def __init__(self, *, start: float | None = None) -> None:
        self._t0 = time.monotonic() if start is None else float(start)

    def now(self) -> float:
        return time.monotonic() - self._t0

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        """Sleep until session time `t`; returns False when `stop` was set first."""
        delay = t - self.now()
        if delay <= 0:
            return not (stop is not None and stop.is_set())
        if stop is None:
            time.sleep(delay)
            return True
        return not stop.wait(delay)
