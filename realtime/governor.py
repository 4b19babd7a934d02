"""Load shedding for many live sessions on one machine: when the shared models cannot
keep up, every session's speech passes and face analysis are thinned by the same
amount, and a new session is refused when even the thinnest setting would not hold.

    governor = LoadGovernor(speech_service)          # realtime.services.SpeechService
    governor.tick(pipelines)                         # once a second: measure, decide, apply
    governor.apply(pipeline)                         # a session that just started
    governor.refusal(live_sessions)                  # None, or why a new session would not fit
    governor.state()                                 # for /metrics and the operator view

What is measured: the busy fraction of the shared speech thread over the last
`window` s (realtime.services: wall time spent in Whisper passes). It is the
signal that saturates first (Whisper is about half of a session's CPU), and it
also rises when the face models and other sessions' threads crowd the cores,
because a pass then takes longer in wall time.

What is changed: one level for all sessions (so they degrade evenly and none
starves), each level a little cheaper than the one before, in order of what it
costs the result:

    level  face analysis   speech passes every
    0      10 fps          1.0 s      (the defaults)
    1       5 fps          1.0 s      (a step is 0.5 s: 2-3 frames still average into it)
    2       5 fps          1.5 s
    3       5 fps          2.0 s
    4       5 fps          3.0 s

Pause passes (a pass as soon as a phrase ends) are never thinned: they commit a
phrase's words at once, so most words keep their lag; periodic passes only
commit the middle of long phrases. The level rises by one when the busy fraction is
above `high` (by two when the thread is saturated), once the last change had
`settle` s to show its effect, and falls by one after `calm` s below `low`.

Admission: `refusal(n)` says why an (n + 1)-th session would not fit: the busy
fraction measured now is over `high` (the running sessions are being thinned to keep
up; sessions arriving faster than the level can follow are refused here), or, scaled to the thinnest level (by the ratio of the periods,
but never below `min_speech_scale` of it: pause passes are not thinned) and to one
more session, would be above `high`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Level:
    face_fps: float
    speech_period: float  # s between periodic speech passes


DEFAULT_LEVELS: tuple[Level, ...] = (
    Level(10.0, 1.0),
    Level(5.0, 1.0),
    Level(5.0, 1.5),
    Level(5.0, 2.0),
    Level(5.0, 3.0),
)


@dataclass(frozen=True)
class GovernorConfig:
    """When to thin and by how much (see the module docstring)."""

    levels: tuple[Level, ...] = DEFAULT_LEVELS
    high: float = 0.8  # speech busy fraction above which the level rises
    saturated: float = 0.95  # ... rises by two levels
    low: float = 0.4  # below which (for `calm` s) it falls
    window: float = 4.0  # s of busy fraction measured
    settle: float = 3.0  # s after a change before the next rise
    calm: float = 10.0  # s below `low` before a fall
    enabled: bool = True  # False: measure and report only, level stays 0
    admission: bool = True  # refusal() may refuse a new session (False: thin only)
    # the least share of its speech work a level change can leave: thinning periodic passes
    # does not touch pause passes, so busy does not fall in proportion to the period
    min_speech_scale: float = 0.5

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError("a governor needs at least one level")
        if not 0 < self.low < self.high <= self.saturated <= 1:
            raise ValueError("need 0 < low < high <= saturated <= 1")
        if self.window <= 0 or self.settle < 0 or self.calm < 0:
            raise ValueError("window must be > 0 s, settle and calm >= 0 s")


class LoadGovernor:
    """Measures the shared speech thread, picks one level for every session, applies it.

    `speech`: anything with `busy_fraction(recent_s)` (a `SpeechService`); None measures
    nothing and keeps level 0. Thread-safe: `tick` runs on a monitor thread while
    sessions start (`apply`) and the operator view reads `state()`."""

    def __init__(self, speech=None, config: GovernorConfig = GovernorConfig()) -> None:
        self.speech = speech
        self.config = config
        self.level = 0
        self.busy: float | None = None
        self.changes = 0
        self.history: list[tuple[float, int, float | None]] = []  # (monotonic, level, busy) per change, the last 64
        self._changed_at = time.monotonic()
        self._calm_since: float | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> Level:
        return self.config.levels[self.level]

    def reset(self) -> None:
        with self._lock:
            self.level, self.busy, self.changes, self._calm_since = 0, None, 0, None
            self._changed_at = time.monotonic()
            self.history.clear()

    # ---------------------------------------------------------------- the loop
    def decide(self, busy: float | None, now: float) -> int:
        """The level for a measured busy fraction at monotonic time `now` (updates the
        governor's state; `tick` = measure + decide + apply)."""
        cfg = self.config
        with self._lock:
            self.busy = busy
            top = len(cfg.levels) - 1
            if not cfg.enabled or busy is None:
                return self.level
            new = self.level
            if busy > cfg.high:
                self._calm_since = None
                if now - self._changed_at >= cfg.settle:
                    new = min(top, self.level + (2 if busy >= cfg.saturated else 1))
            elif busy < cfg.low:
                if self._calm_since is None:
                    self._calm_since = now
                if now - max(self._calm_since, self._changed_at) >= cfg.calm:
                    new = max(0, self.level - 1)
            else:
                self._calm_since = None
            if new != self.level:
                log.info("load level %d -> %d (speech busy %.2f): face %g fps, speech passes every %g s",
                         self.level, new, busy, cfg.levels[new].face_fps, cfg.levels[new].speech_period)
                self._calm_since = now if new < self.level else None  # a fall: the next one needs `calm` s more
                self.level = new
                self.changes += 1
                self._changed_at = now
                self.history = (self.history + [(now, new, round(busy, 3))])[-64:]
            return self.level

    def measure(self) -> float | None:
        if self.speech is None:
            return None
        return self.speech.busy_fraction(self.config.window)

    def tick(self, pipelines: Iterable[Any], now: float | None = None) -> int:
        """Measure, decide, and apply the level to every pipeline; the level."""
        self.decide(self.measure(), time.monotonic() if now is None else now)
        for p in pipelines:
            self.apply(p)
        return self.level

    def apply(self, pipeline) -> None:
        """Give a running `LivePipeline` the current level (its face rate, its speech
        passes' period). Only live capture is thinned: a face feed that keeps every frame
        (a file played for a reproducible run) and non-live speech are left alone."""
        level = self.current
        faces = getattr(pipeline, "faces", None)
        if faces is not None and getattr(faces.feed, "latest_only", False):
            faces.min_interval = 0.9 / level.face_fps
        speech = getattr(pipeline, "speech", None)
        stream = getattr(speech, "stream", None)
        if stream is not None and stream.catch_up and abs(stream.period - level.speech_period) > 1e-9:
            stream.set_period(level.speech_period)

    # ---------------------------------------------------------------- admission
    def refusal(self, sessions: int) -> str | None:
        """Why one more session (beyond `sessions` live ones) would not fit, or None: the
        busy fraction now, scaled to the thinnest level and to sessions + 1, over `high`."""
        cfg = self.config
        with self._lock:
            busy, level = self.busy, self.level
        if not (cfg.enabled and cfg.admission) or busy is None or sessions < 1:
            return None
        now_period, thin_period = cfg.levels[level].speech_period, cfg.levels[-1].speech_period
        if busy > cfg.high:  # over the mark now: the sessions there are being thinned to keep up
            return (f"the server is not keeping up: speech recognition is busy {100 * busy:.0f} % of the time with "
                    f"{sessions} sessions (passes every {now_period:g} s); try again later")
        scale = max(now_period / thin_period, min(1.0, cfg.min_speech_scale))
        predicted = busy * scale * (sessions + 1) / sessions
        if predicted > cfg.high:
            return (f"the server is at capacity: speech recognition is busy {100 * busy:.0f} % of the time with "
                    f"{sessions} sessions (passes every {now_period:g} s); one more would need about "
                    f"{100 * predicted:.0f} % even at its thinnest; try again when one ends")
        return None

    def state(self) -> dict[str, Any]:
        level = self.current
        return {
            "enabled": self.config.enabled,
            "level": self.level,
            "levels": len(self.config.levels),
            "face_fps": level.face_fps,
            "speech_period_s": level.speech_period,
            "speech_busy": None if self.busy is None else round(self.busy, 3),
            "changes": self.changes,
        }
