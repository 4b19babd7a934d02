"""Load shedding for many live sessions on one machine: when the shared models cannot
keep up, every session's speech passes and face analysis are thinned by the same
amount, and a new session is refused when even the thinnest setting would not hold.

    governor = LoadGovernor(speech_service)          # realtime.sessions.services.SpeechService
    governor.tick(pipelines)                         # once a second: measure, decide, apply
    governor.apply(pipeline)                         # a session that just started
    governor.refusal(live_sessions)                  # None, or why a new session would not fit
    governor.state()                                 # for /metrics and the operator view

What is measured, once a tick (a second), over the live sessions (the evidence that
they fall behind, not how busy the shared threads are):
  - lateness: how far each live speech stream's passes are behind its audio (the audio
    beyond one period past its latest pass, `SpeechStream.lateness`); a tick counts as
    late when some session is more than `late` s behind;
  - passes skipped to catch up (`SpeechStream.skipped`) and windows dropped (the
    pipeline's queue), since the last tick.
And the busy fraction of the shared speech thread over the last `window` s
(realtime.sessions.services: wall time spent in Whisper passes): the headroom to fall back
by, and admission's measure of capacity.

Why not the busy fraction for rising: with several sessions the shared thread is busy
in bursts (their phrase-end passes coincide) well above 0.9 for a few seconds while
every pass still finishes within its period; thinning on that thinned 4 sessions to
the lowest level on an idle machine (3 s passes, transcript lag p95 3.5 s) where 1 s
passes held. A session that really falls behind shows it: its passes wait (lateness
that lasts), it skips passes, or it drops windows.

What is changed: one level for all sessions (so they degrade evenly and none
starves), each level a little cheaper than the one before, in order of what it
costs the result:

    level  face analysis   speech passes every
    0      10 fps          0.75 s     (faster than the pipeline's 1 s: see below)
    1       5 fps          0.75 s     (a step is 0.5 s: 2-3 frames still average into it)
    2       5 fps          1.0 s      (the pipeline's default period)
    3       5 fps          1.5 s
    4       5 fps          2.0 s
    5       5 fps          3.0 s

Level 0 passes every 0.75 s because the period sets the floor of the transcript lag
(a word is committed when two passes agree on it, or by the pass at its phrase's end):
one session on this 2-core CPU measured lag p95 2.0 s at 0.75 s (bench/sessions_bench.py,
the pass's own time counted) and about 2.6 s at 1 s (an offline replay of the same clip),
for about 25 % more Whisper passes (36 instead of 29); with more sessions the governor
gives that back first.

Pause passes (a pass as soon as a phrase ends) are never thinned: they commit a
phrase's words at once, so most words keep their lag; periodic passes only
commit the middle of long phrases.

Rules (only the ticks from `grace` s after the last change count, so a change is
judged on its own effect and not on the backlog the level before it left): the level rises by one, at most every `settle` s, when the sessions fall
behind: at least `late_share` of the ticks of the last `window` s were late, or they
skipped `max_skipped` passes per session in that time, or a window was dropped (then by
two). It falls by one after `calm` s with none of that and the speech thread busy less
than `low` (the next level down costs more, so it needs the room).

Admission: `refusal(n)` says why an (n + 1)-th session would not fit: the sessions
fall behind now (the evidence above, in the last `window` s), or the speech thread is
saturated now (busy over `saturated`: sessions arriving faster than the level can
follow are refused here), or the busy fraction scaled to the thinnest level (by the
ratio of the periods, but never below `min_speech_scale` of it: pause passes are not
thinned) and to one more session would be above `high`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable

from realtime.core.load import Level

log = logging.getLogger(__name__)


DEFAULT_LEVELS: tuple[Level, ...] = (
    Level(10.0, 0.75),
    Level(5.0, 0.75),
    Level(5.0, 1.0),
    Level(5.0, 1.5),
    Level(5.0, 2.0),
    Level(5.0, 3.0),
)


@dataclass(frozen=True)
class GovernorConfig:
    """When to thin and by how much (see the module docstring)."""

    levels: tuple[Level, ...] = DEFAULT_LEVELS
    late: float = 0.5  # s: a tick is late when some session's passes are this far behind its audio
    late_share: float = 0.75  # ... and the level rises when this share of the window's ticks were late
    max_skipped: float = 1.0  # passes skipped per session in the window that raise the level
    low: float = 0.4  # speech busy fraction below which (for `calm` s, nothing behind) it falls
    high: float = 0.8  # admission: the predicted busy fraction with one more session must stay under
    saturated: float = 0.95  # admission: refuse while the speech thread is busy above this now
    window: float = 4.0  # s of evidence (and of busy fraction) considered
    settle: float = 3.0  # s after a change before the next rise
    # s after a change whose evidence is not held against the new level: the passes then
    # in flight were set up under the old one (a backlog it left is skipped just after)
    grace: float = 1.0
    calm: float = 10.0  # s without evidence and below `low` before a fall
    enabled: bool = True  # False: measure and report only, level stays 0
    admission: bool = True  # refusal() may refuse a new session (False: thin only)
    # the least share of its speech work a level change can leave: thinning periodic passes
    # does not touch pause passes, so busy does not fall in proportion to the period
    # (measured, bench/sessions_bench.py: 4 sessions at 1 s passes and 5 at 3 s kept the speech
    # thread equally busy, 0.82: per session, 3 s passes left 80 % of its busy time)
    min_speech_scale: float = 0.8

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError("a governor needs at least one level")
        if not 0 < self.low < self.high <= self.saturated <= 1:
            raise ValueError("need 0 < low < high <= saturated <= 1")
        if self.window <= 0 or self.settle < 0 or self.calm < 0 or self.late < 0 or not 0 <= self.grace < self.window:
            raise ValueError("window must be > 0 s, settle, calm and late >= 0 s, 0 <= grace < window")
        if not 0 < self.late_share <= 1 or self.max_skipped <= 0:
            raise ValueError("need 0 < late_share <= 1 and max_skipped > 0")


@dataclass(frozen=True)
class Behind:
    """One tick's evidence of the live sessions falling behind (`LoadGovernor.observe`)."""

    lateness: float = 0.0  # s, the most any live session's speech passes are behind its audio
    skipped: int = 0  # speech passes skipped to catch up since the last tick, all sessions
    dropped: int = 0  # windows dropped since the last tick, all sessions
    sessions: int = 0  # live sessions measured


class LoadGovernor:
    """Watches the live sessions for falling behind, picks one level for every session,
    applies it; measures the shared speech thread's busy fraction for falling back and
    for admission.

    `speech`: anything with `busy_fraction(recent_s)` (the hub's shared models: the
    `SpeechService`'s, None while there is none); None measures nothing and keeps level 0.
    The pipelines it is given offer `backlog()` (a `realtime.core.load.Backlog`, None when
    not live) and `throttle(level)`. Thread-safe: `tick` runs on a monitor thread while
    sessions start (`apply`) and the operator view reads `state()`."""

    def __init__(self, speech=None, config: GovernorConfig = GovernorConfig()) -> None:
        self.speech = speech
        self.config = config
        self.level = 0
        self.busy: float | None = None
        self.changes = 0
        self.reason = ""  # why the level last rose (or fell)
        self.history: list[tuple[float, int, float | None]] = []  # (monotonic, level, busy) per change, the last 64
        self._changed_at = time.monotonic()
        self._calm_since: float | None = None
        self._samples: collections.deque[tuple[float, Behind]] = collections.deque()
        self._counts: dict[int, tuple[int, int]] = {}  # id(pipeline) -> (skipped, dropped) at the last tick
        self._lock = threading.Lock()

    @property
    def current(self) -> Level:
        return self.config.levels[self.level]

    def reset(self) -> None:
        with self._lock:
            self.level, self.busy, self.changes, self._calm_since, self.reason = 0, None, 0, None, ""
            self._changed_at = time.monotonic()
            self._samples.clear()
            self._counts.clear()
            self.history.clear()

    # ---------------------------------------------------------------- evidence
    def observe(self, pipelines: Iterable[Any]) -> Behind:
        """This tick's evidence from the running pipelines' `backlog()` (None: no live
        speech): the most lateness, and the passes skipped and windows dropped since the
        last tick."""
        lateness, skipped, dropped, n = 0.0, 0, 0, 0
        counts: dict[int, tuple[int, int]] = {}
        for p in pipelines:
            backlog = p.backlog()
            if backlog is None:  # only live speech falls behind this way
                continue
            n += 1
            lateness = max(lateness, backlog.lateness)
            now = (backlog.skipped_passes, backlog.dropped_windows)
            last = self._counts.get(id(p), (0, 0))
            skipped += max(0, now[0] - last[0])
            dropped += max(0, now[1] - last[1])
            counts[id(p)] = now
        self._counts = counts  # ended sessions are forgotten
        return Behind(round(lateness, 3), skipped, dropped, n)

    def _ticks(self, since: float, now: float) -> list[Behind]:
        """The evidence of the ticks in (since, now] (under _lock)."""
        return [b for t, b in self._samples if since + 1e-9 < t <= now + 1e-9]

    def _evidence(self, now: float, *, since_change: bool = True) -> tuple[int, str]:
        """How many levels the evidence of the last `window` s calls for (since the last
        change, unless `since_change` is False), and why: (0, "") when the sessions keep
        up, (2, ...) for dropped windows, (1, ...) otherwise (under _lock)."""
        cfg = self.config
        grace = cfg.grace if self.changes and since_change else 0.0  # only after a change
        since = max(now - cfg.window, self._changed_at + grace) if since_change else now - cfg.window
        recent = self._ticks(since, now)
        if not recent:
            return 0, ""
        dropped = sum(b.dropped for b in recent)
        if dropped:
            return 2, f"{dropped} windows dropped"
        skipped = sum(b.skipped for b in recent)
        sessions = max(1, max(b.sessions for b in recent))
        if skipped >= cfg.max_skipped * sessions:
            return 1, f"{skipped} speech passes skipped by {sessions} sessions"
        late = sum(b.lateness > cfg.late for b in recent)
        # the share counts only once the window is covered (a short burst at its start is not a trend)
        covered = now - since >= min(cfg.window, cfg.settle) - grace - 1e-9
        if covered and len(recent) >= 2 and late >= cfg.late_share * len(recent):
            worst = max(b.lateness for b in recent)
            return 1, f"speech passes late in {late} of {len(recent)} ticks (up to {worst:.1f} s behind)"
        return 0, ""

    def _unsettled(self, now: float) -> bool:
        """Any sign of falling behind (a late tick, a skipped pass, a dropped window) in the
        last `window` s (under _lock): no fall then, even with the speech thread idle."""
        cfg = self.config
        return any(b.lateness > cfg.late or b.skipped or b.dropped for b in self._ticks(now - cfg.window, now))

    # ---------------------------------------------------------------- the loop
    def decide(self, busy: float | None, now: float, behind: Behind | None = None) -> int:
        """The level for this tick's measured busy fraction and evidence at monotonic time
        `now` (updates the governor's state; `tick` = observe + measure + decide + apply)."""
        cfg = self.config
        with self._lock:
            self.busy = busy
            if behind is not None:
                self._samples.append((now, behind))
            while self._samples and self._samples[0][0] < now - max(cfg.window, cfg.calm) - 1.0:
                self._samples.popleft()
            top = len(cfg.levels) - 1
            if not cfg.enabled or busy is None:
                return self.level
            (rise, why), new = self._evidence(now), self.level
            if rise:
                self._calm_since = None
                if now - self._changed_at >= cfg.settle:
                    new = min(top, self.level + rise)
            elif busy < cfg.low and not self._unsettled(now):
                if self._calm_since is None:
                    self._calm_since = now
                if now - max(self._calm_since, self._changed_at) >= cfg.calm:
                    new = max(0, self.level - 1)
                    why = f"calm: speech busy {100 * busy:.0f} %"
            else:
                self._calm_since = None
            if new != self.level:
                log.info("load level %d -> %d (%s; speech busy %.2f): face %g fps, speech passes every %g s",
                         self.level, new, why, busy, cfg.levels[new].face_fps, cfg.levels[new].speech_period)
                self._calm_since = now if new < self.level else None  # a fall: the next one needs `calm` s more
                self.level = new
                self.changes += 1
                self.reason = why
                self._changed_at = now
                self.history = (self.history + [(now, new, round(busy, 3))])[-64:]
            return self.level

    def measure(self) -> float | None:
        if self.speech is None:
            return None
        return self.speech.busy_fraction(self.config.window)

    def tick(self, pipelines: Iterable[Any], now: float | None = None) -> int:
        """Observe the pipelines, measure, decide, and apply the level to every pipeline; the level."""
        pipelines = list(pipelines)
        behind = self.observe(pipelines)
        self.decide(self.measure(), time.monotonic() if now is None else now, behind)
        for p in pipelines:
            self.apply(p)
        return self.level

    def apply(self, pipeline) -> None:
        """Give a running pipeline the current level (`pipeline.throttle(level)`: only live
        capture is thinned, a file's frames and non-live speech are left alone)."""
        pipeline.throttle(self.current)

    # ---------------------------------------------------------------- admission
    def refusal(self, sessions: int, now: float | None = None) -> str | None:
        """Why one more session (beyond `sessions` live ones) would not fit, or None: the
        sessions fall behind now, the speech thread is saturated now, or its busy fraction
        scaled to the thinnest level and to sessions + 1 would be over `high`."""
        cfg = self.config
        now = time.monotonic() if now is None else now
        with self._lock:
            busy, level = self.busy, self.level
            why = self._evidence(now, since_change=False)[1]
        if not (cfg.enabled and cfg.admission) or busy is None or sessions < 1:
            return None
        now_period, thin_period = cfg.levels[level].speech_period, cfg.levels[-1].speech_period
        if why:
            return (f"the server is not keeping up: the {sessions} sessions fall behind ({why}); try again later")
        if busy > cfg.saturated:  # no headroom now: sessions arriving faster than the level can follow
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
        with self._lock:
            last = self._samples[-1][1] if self._samples else None
        return {
            "enabled": self.config.enabled,
            "level": self.level,
            "levels": len(self.config.levels),
            "face_fps": level.face_fps,
            "speech_period_s": level.speech_period,
            "speech_busy": None if self.busy is None else round(self.busy, 3),
            "speech_late_s": None if last is None else last.lateness,
            "changes": self.changes,
            "reason": self.reason or None,
        }
