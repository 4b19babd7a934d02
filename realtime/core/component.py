"""The contract every live component follows, and the pieces they share.

A live component (a source, the face worker, the speech worker, the window
assembler, the scoring loop) is

    start()          begin work (a thread, a device callback)
    stop()           ask it to finish; returns at once, idempotent
    join(timeout)    wait until it finished
    error            the exception that ended it, or None
    stats()          a small dict of its own figures for /metrics, cheap at any age

It gets its collaborators in its constructor and bounds its own memory: what it
keeps for figures is a `RecentStats` (the last `keep` values and running
totals), never a list that grows with the session.

`Policy` is the one name for how a session runs (live / reproducible / as fast
as possible); every component reads what it needs from it.
"""

from __future__ import annotations

import collections
import enum
import logging
import math
import threading
from typing import Any, Iterable, Protocol, runtime_checkable

log = logging.getLogger(__name__)


@runtime_checkable
class Component(Protocol):
    name: str
    error: BaseException | None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class Policy(enum.Enum):
    """How a session runs.

    LIVE: a device, or a file played like one: windows never wait past their end
    for late inputs, full queues drop their oldest item, Whisper decodes greedily
    and catches up by skipping.
    REPRODUCIBLE: real-time pace, but every window waits for its audio, frames and
    transcript, so a file gives the same windows as `hcl-annotate`.
    FAST: as fast as possible (files): windows wait for their inputs and every queue
    blocks instead of dropping, so nothing is lost.
    """

    LIVE = "live"
    REPRODUCIBLE = "reproducible"
    FAST = "fast"

    @property
    def waits_for_inputs(self) -> bool:
        """A window waits until its inputs are complete (same windows at any pace)."""
        return self is not Policy.LIVE

    @property
    def follows_clock(self) -> bool:
        """Items are delivered and windows emitted at the session clock's pace."""
        return self is not Policy.FAST

    @property
    def drops_when_full(self) -> bool:
        """A full queue drops its oldest item (else the producer waits)."""
        return self is not Policy.FAST

    @classmethod
    def of(cls, *, strict: bool, realtime: bool) -> "Policy":
        """The policy of the older pair of flags (strict = waits for inputs, realtime = follows the clock)."""
        if not realtime:
            if not strict:
                raise ValueError("as fast as possible needs windows that wait for their inputs (strict)")
            return cls.FAST
        return cls.REPRODUCIBLE if strict else cls.LIVE


# ------------------------------------------------------------------ figures
def percentile(values: Iterable[float | None], q: float) -> float | None:
    """Nearest-rank percentile of the finite values; None when there are none."""
    data = sorted(v for v in values if v is not None and math.isfinite(v))
    if not data:
        return None
    k = max(0, min(len(data) - 1, int(math.ceil(q / 100 * len(data))) - 1))
    return data[k]


def percentiles(values: Iterable[float | None], qs: Iterable[float] = (50, 95), nd: int = 2) -> dict[str, float | None]:
    """{"p50": ..., "p95": ...} rounded to `nd` places (None when empty)."""
    values = list(values)
    out: dict[str, float | None] = {}
    for q in qs:
        p = percentile(values, q)
        out[f"p{q:g}"] = None if p is None else round(p, nd)
    return out


class RecentStats:
    """Figures of one measured quantity with memory bounded by `keep`: percentiles
    over the last `keep` values, count / mean / max over all of them. Thread-safe."""

    def __init__(self, keep: int = 1024) -> None:
        self._recent: collections.deque[float] = collections.deque(maxlen=max(1, int(keep)))
        self._lock = threading.Lock()
        self.count = 0
        self.total = 0.0
        self.max: float | None = None

    def add(self, value: float) -> None:
        value = float(value)
        with self._lock:
            self._recent.append(value)
            self.count += 1
            if math.isfinite(value):
                self.total += value
                self.max = value if self.max is None else max(self.max, value)

    def clear(self) -> None:
        with self._lock:
            self._recent.clear()
            self.count, self.total, self.max = 0, 0.0, None

    def recent(self) -> list[float]:
        with self._lock:
            return list(self._recent)

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        return iter(self.recent())

    def summary(self, nd: int = 2) -> dict[str, float | int | None]:
        """{"p50", "p95"} of the recent values and "n" = every value ever added."""
        return {**percentiles(self.recent(), nd=nd), "n": self.count}


# ------------------------------------------------------------------ a thread
class Worker:
    """The thread lifecycle of a component, written once.

    A subclass implements `run()` (loop until `self.stopping`) and may implement
    `finish()` (always called on the thread as it ends, after an error too: close
    the outputs so consumers see the end). An exception out of `run` is kept in
    `error` and logged; `done` is set when the thread is over.
    """

    name = "worker"
    thread_name: str | None = None  # the thread's name when `name` is for people ("file clip.mp4")

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} was started already")
        self._thread = threading.Thread(target=self._main, name=self.thread_name or self.name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self.run()
        except BaseException as exc:
            self.error = exc
            log.exception("%s stopped", self.name)
        finally:
            try:
                self.finish()
            finally:
                self.done.set()

    def run(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        pass

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def thread(self) -> threading.Thread | None:
        """The worker's thread once started (for its CPU time)."""
        return self._thread

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        return {"running": self.running, "error": None if self.error is None else f"{type(self.error).__name__}: {self.error}"}
