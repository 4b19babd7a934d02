"""Speech to committed words: `SpeechStream`, a synchronous step object driven by
the audio horizon and a clock, and `SpeechWorker`, the thin thread around it.

Every `period` seconds of audio (pass horizons H = period, 2 period, ...) it
transcribes the current stretch of speech (at most `context` seconds, from the
last pause) up to H. With `pause_passes` (live policy) it also runs a pass as soon
as the audio shows a pause (`pause` seconds quieter than `pause_db`) after speech
that no pass has seen end, and commits all of that pass's words in one go: the
phrase is over, so they will not change, and no second pass is needed to agree. Words the previous passes committed are recognised again
by time and text and skipped; of the rest it commits those on which this pass
and the previous one agree (LocalAgreement-2: the common prefix of the two
hypotheses, so a word cut at the buffer end is never committed), then the words
that end `settle` s or more before the pass's horizon (one pass that heard that much
audio after a word keeps it: no waiting a period for a second pass), and at once the
words followed by a pause (`pause` seconds quieter than `pause_db` inside the
pass's audio: the phrase is over, its words will not change). Words about to
leave the `context` are committed without agreement, and the last pass, at the
end of a stream, commits everything.
A word committed by the pass at H is *available* to windows from session time
H + `delay` (H for the final pass): a fixed rule in media time, so a file gives
the same windows played in real time or as fast as possible (`strict` windowing
waits for the passes it needs). `Transcript.lags` measures the real lag: session
clock when a word was committed minus the word's end.

`SpeechOptions` holds every setting of live speech (the pass timing, the engine,
Whisper or Moonshine (hcl.features.speech_engine), and its options), read by the stream, the worker and the pipeline alike.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from hcl.features.config import SPEECH_ENGINES, FeatureSettings, SpeechConfig
from hcl.features.speech_engine import SpeechEngine, make_engine
from realtime.core.clock import SessionClock
from realtime.core.component import Policy, RecentStats, Worker
from realtime.core.load import Backlog, Level
from realtime.core.streams import AudioRing, Horizon

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimedWord:
    text: str
    start: float  # session seconds
    end: float
    probability: float
    available_at: float  # session time from which windows may use it
    committed_at: float  # session clock when the speech thread committed it (after its pass)

    def as_dict(self) -> dict:
        return {"w": self.text, "start": round(self.start, 3), "end": round(self.end, 3), "p": round(self.probability, 3)}


# the speech engine of live sessions and hcl-annotate unless --asr says otherwise (the
# README's "Speech engine" section has the measurements it was chosen by); hcl-extract
# keeps its dataset's SpeechConfig.engine
LIVE_ENGINE = "moonshine"


@dataclass(frozen=True)
class SpeechOptions:
    """Live speech: when passes run, how words are committed, and how Whisper decodes."""

    period: float = 1.0  # a periodic pass every `period` s of audio
    context: float = 8.0  # s of audio a pass sees at most
    delay: float = 1.5  # a word of the pass at H is available to windows from H + delay
    pause: float = 0.25  # s of quiet (below pause_db) that ends a phrase
    pause_db: float = -45.0
    # a pass as soon as the audio shows a pause after speech, committing its words at once;
    # None = on in the live policy, off for reproducible runs
    pause_passes: bool | None = None
    # real-time runs that wait for their passes: skip passes past this backlog (s); None: never
    max_backlog: float | None = 4.0
    beam_size: int | None = None  # None: greedy (1) in the live policy, the checkpoint's otherwise
    threads: int = 2  # Whisper's CPU threads (Moonshine: one, see transcriber_for)
    fit_encoder: bool = True  # the encoder sees a pass's audio + 1 s instead of 30 s of padding
    temperature_fallback: bool = False  # live passes decode once, at temperature 0
    # the speech engine (SpeechConfig.engine, the commands' --asr): "whisper" | "moonshine";
    # None: the checkpoint's speech settings say
    engine: str | None = LIVE_ENGINE
    # the commit rule inside a phrase: a word followed by `settle` s of audio in its pass
    # commits on that one pass (the recogniser had right context: later passes keep it);
    # words nearer the buffer end wait for two passes to agree (LocalAgreement-2).
    # None: LocalAgreement-2 only (the rule before). 0.5: bench/commit_bench.py (README)
    settle: float | None = 0.5
    # Moonshine: phrases at most this many s apart decoded as one (SpeechConfig.join_gap);
    # None: each phrase alone in the live policy (cheaper passes, the same live WER:
    # bench/sessions_bench.py, README), the checkpoint's otherwise
    join_gap: float | None = None

    def __post_init__(self) -> None:
        if self.period <= 0 or self.context <= self.period or self.delay < 0:
            raise ValueError("speech options need period > 0, context > period, delay >= 0")
        if self.engine is not None and self.engine not in SPEECH_ENGINES:
            raise ValueError(f"speech engine must be one of {SPEECH_ENGINES}, got {self.engine!r}")
        if self.settle is not None and not 0 < self.settle < self.context:
            raise ValueError(f"settle must be None or between 0 and context ({self.context} s), got {self.settle}")


def speech_config(settings: FeatureSettings, options: SpeechOptions, policy: Policy) -> SpeechConfig:
    """The checkpoint's speech settings with the session's engine (`options.engine`) and,
    under the live policy unless `options` say otherwise, Whisper's greedy decoding and
    Moonshine's phrases decoded one at a time (the checkpoint's beam and joining for the
    other policies)."""
    config = settings.speech
    if options.engine is not None:
        config = dataclasses.replace(config, engine=options.engine)
    live = policy is Policy.LIVE
    beam = options.beam_size if options.beam_size is not None else (1 if live else config.beam_size)
    join = options.join_gap if options.join_gap is not None else (0.0 if live else config.join_gap)
    return dataclasses.replace(config, beam_size=beam, join_gap=join)


def transcriber_for(settings: FeatureSettings, options: SpeechOptions, policy: Policy) -> SpeechEngine:
    """The speech engine of a session, Whisper or Moonshine (`speech_config`; the model
    loads on first use). `options.threads` are Whisper's; Moonshine runs on one thread
    (on the shared 2 cores a pass on two cost 2.5 times the CPU and the wall time of one:
    670 / 254 ms CPU for 8 s of speech)."""
    config = speech_config(settings, options, policy)
    return make_engine(config, cpu_threads=options.threads if config.engine == "whisper" else 1,
                       fit_encoder=options.fit_encoder, temperature_fallback=options.temperature_fallback)


class Transcript:
    """Committed words in time order, and the horizon of the finished passes.

    It keeps the words that end within `keep_seconds` of the newest one (the windows'
    text reaches back a few seconds; a reader that runs behind, the recording sink,
    takes new words by sequence number with `since`), so memory does not grow with
    the session; `committed` counts every word."""

    def __init__(
        self,
        *,
        keep_seconds: float = 120.0,
        on_commit: Callable[[list[TimedWord]], None] | None = None,
        on_hypothesis: Callable[[list[TimedWord]], None] | None = None,
    ) -> None:
        self.keep_seconds = float(keep_seconds)
        self._words: collections.deque[TimedWord] = collections.deque()
        self._lock = threading.Lock()
        self.passes = Horizon()  # horizon H of the last finished pass; ended after the final one
        self.lags = RecentStats()  # committed_at - end, seconds (meaningful at real-time pace)
        self.pass_ms = RecentStats()
        # committed words' lag counted from the start of their pass (without the pass's own
        # time and its wait for a shared Whisper): how much of `lags` the commit rule makes
        self.start_lags = RecentStats()
        self.on_commit = on_commit
        self.committed = 0  # words committed in the whole session; word i has sequence number i
        # the last pass's words after the committed ones: the latest hypothesis, not agreed on
        # yet (provisional words); replaced by every pass, emptied by the final one
        self.hypothesis: tuple[TimedWord, ...] = ()
        self.on_hypothesis = on_hypothesis

    def commit(self, words: list[TimedWord]) -> None:
        with self._lock:
            self._words.extend(words)
            self.committed += len(words)
            for w in words:
                self.lags.add(w.committed_at - w.end)
            if self._words:
                horizon = self._words[-1].end - self.keep_seconds
                while self._words and self._words[0].end < horizon:
                    self._words.popleft()
        if self.on_commit is not None and words:
            self.on_commit(words)

    def hypothesize(self, words: list[TimedWord]) -> None:
        """Replace the latest hypothesis; `on_hypothesis(words)` when it changed."""
        new = tuple(words)
        changed = [(w.text, w.start, w.end) for w in new] != [(w.text, w.start, w.end) for w in self.hypothesis]
        self.hypothesis = new
        if changed and self.on_hypothesis is not None:
            self.on_hypothesis(list(new))

    def provisional_words(self, t0: float, t1: float) -> list[TimedWord]:
        """The latest hypothesis's words whose midpoint lies in [t0, t1)."""
        return [w for w in self.hypothesis if t0 <= 0.5 * (w.start + w.end) < t1]

    def since(self, seq: int) -> tuple[list[TimedWord], int]:
        """The words committed with sequence number >= `seq` that are still kept, and the
        sequence number to ask from next time."""
        with self._lock:
            first = self.committed - len(self._words)
            skip = max(0, seq - first)
            return list(self._words)[skip:], self.committed

    def make_available(self, t: float) -> None:
        """Make every committed word available from `t` at the latest (end of stream)."""
        with self._lock:
            self._words = collections.deque(w if w.available_at <= t else _replace_available(w, t) for w in self._words)

    def words(self, t0: float, t1: float, *, available_by: float | None = None) -> list[TimedWord]:
        """Words whose midpoint lies in [t0, t1), optionally only those available by a time."""
        with self._lock:
            out = []
            for w in self._words:
                mid = 0.5 * (w.start + w.end)
                if t0 <= mid < t1 and (available_by is None or w.available_at <= available_by + 1e-9):
                    out.append(w)
            return out

    def all_words(self) -> list[TimedWord]:
        with self._lock:
            return list(self._words)

    def __len__(self) -> int:
        with self._lock:
            return len(self._words)

    def stats(self) -> dict[str, Any]:
        return {"words": self.committed, "lag_s": self.lags.summary(3), "pass_ms": self.pass_ms.summary()}


def _replace_available(w: TimedWord, t: float) -> TimedWord:
    return TimedWord(w.text, w.start, w.end, w.probability, t, w.committed_at)


def _norm(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def agreed_prefix(previous, current) -> int:
    """How many leading words of `current` agree (same normalised text) with `previous`."""
    n = 0
    for a, b in zip(previous, current):
        if _norm(a.text) != _norm(b.text):
            break
        n += 1
    return n


# a pass's word whose midpoint lies this far (s) before the end of the committed words
# still counts as new (word times wobble between passes); one further back lies over
# audio already committed and is dropped (a word heard again, e.g. "mark" -> "marks",
# would otherwise be committed twice). bench/commit_bench.py --tolerance compares values.
REHEARD_TOLERANCE = 0.1


def drop_committed(words, committed, *, tolerance: float | None = None, max_ngram: int = 12, drift: float = 1.0) -> list:
    """The words of a pass that are new: those whose midpoint lies after the last
    committed word's end (less `tolerance`, default REHEARD_TOLERANCE), less a head that
    repeats the tail of the committed words (up to `max_ngram` words) over the same
    audio: the head's first word starts within `drift` s of the end of the tail word
    it repeats (a word said again later, "try again. fail again", is new speech)."""
    if not committed:
        return list(words)
    last_end = committed[-1].end
    tolerance = REHEARD_TOLERANCE if tolerance is None else tolerance
    fresh = [w for w in words if 0.5 * (w.start + w.end) > last_end - tolerance]
    tail = committed[-max_ngram:]
    tail_text = [_norm(w.text) for w in tail]
    head = [_norm(w.text) for w in fresh[:max_ngram]]
    for n in range(min(len(tail), len(head)), 0, -1):
        if tail_text[-n:] == head[:n] and fresh[0].start <= tail[-n].end + drift:
            return fresh[n:]
    return fresh


def commit_rule(words, *, previous, committed, forced_until: float,
                settled_until: float = -math.inf) -> tuple[list, list]:
    """(words to commit, the rest = this pass's open hypothesis).

    words: this pass's words; previous: the open hypothesis of the last pass;
    committed: words committed so far. The agreed prefix of the new words is
    committed (LocalAgreement-2), and after it, in order, the new words ending by
    `forced_until` (about to leave the context) or by `settled_until` (the pass's
    horizon less `SpeechOptions.settle`: the pass heard enough audio after them to
    be sure of them on its own). A word is never committed before an open word
    that precedes it, so the committed words stay in speaking order."""
    fresh = drop_committed(words, committed)
    n = agreed_prefix(previous, fresh)
    limit = max(forced_until, settled_until)
    while n < len(fresh) and fresh[n].end <= limit:
        n += 1
    return fresh[:n], fresh[n:]


def pause_after(words, wave, *, t0: float, sample_rate: int, pause: float, pause_db: float) -> int:
    """How many leading `words` end before a pause in `wave` (which starts at time t0):
    the index after the last word followed by `pause` seconds quieter than `pause_db`."""
    n = 0
    threshold = speech_threshold(wave, sample_rate=sample_rate, pause_db=pause_db)
    for i, w in enumerate(words):
        a = int(round((w.end + 0.05 - t0) * sample_rate))
        b = int(round((w.end + 0.05 + pause - t0) * sample_rate))
        if a < 0 or b > len(wave):
            break
        seg = wave[a:b]
        if len(seg) and 10 * np.log10(float(np.mean(seg.astype(np.float64) ** 2)) + 1e-12) < threshold:
            n = i + 1
    return n


FRAME_SECONDS = 0.02  # energy frames of the pause / utterance detection
# A quiet recording (speech at -35 to -50 dBFS) would be all "pause" at a fixed level, so
# the level that counts as quiet is also at most this far below the loudest frame...
SPEECH_RANGE_DB = 30.0
# ...but never below this (else a stretch of pure room noise would count as speech)
QUIET_FLOOR_DB = -65.0


def frame_levels(wave: np.ndarray, *, sample_rate: int, frame: float = FRAME_SECONDS) -> np.ndarray:
    """(n_frames,) dBFS level of each whole frame of `frame` seconds."""
    size = max(1, int(round(frame * sample_rate)))
    n = len(wave) // size
    if n == 0:
        return np.zeros(0)
    power = np.mean(np.square(wave[: n * size].reshape(n, size), dtype=np.float64), axis=1)
    return 10 * np.log10(power + 1e-12)


def speech_threshold(wave: np.ndarray, *, sample_rate: int, pause_db: float) -> float:
    """The level (dBFS) below which `wave` counts as a pause: `pause_db`, lowered for a quiet
    recording to SPEECH_RANGE_DB below its loudest frame, but not below QUIET_FLOOR_DB."""
    levels = frame_levels(wave, sample_rate=sample_rate)
    if not len(levels):
        return pause_db
    return min(pause_db, max(float(levels.max()) - SPEECH_RANGE_DB, QUIET_FLOOR_DB))


def loud_frames(wave: np.ndarray, *, sample_rate: int, threshold_db: float, frame: float = FRAME_SECONDS) -> np.ndarray:
    """(n_frames,) bool: frames of `frame` seconds at or above the pause level of `wave`
    (`speech_threshold` with `threshold_db` as the pause level)."""
    levels = frame_levels(wave, sample_rate=sample_rate, frame=frame)
    if not len(levels):
        return np.zeros(0, bool)
    return levels >= min(threshold_db, max(float(levels.max()) - SPEECH_RANGE_DB, QUIET_FLOOR_DB))


def speech_end(wave: np.ndarray, *, t0: float, sample_rate: int, threshold_db: float) -> float | None:
    """Session time where the last loud frame of `wave` (starting at t0) ends; None if silent."""
    loud = np.flatnonzero(loud_frames(wave, sample_rate=sample_rate, threshold_db=threshold_db))
    if not len(loud):
        return None
    return t0 + (loud[-1] + 1) * FRAME_SECONDS


def first_pause(wave: np.ndarray, *, t0: float, sample_rate: int, pause: float, threshold_db: float) -> float | None:
    """Session time where the first stretch of speech in `wave` (starting at t0) that is
    followed by `pause` s of quiet ends; None if no speech in it is followed by a pause yet."""
    loud = loud_frames(wave, sample_rate=sample_rate, threshold_db=threshold_db)
    need_quiet = max(1, int(round(pause / FRAME_SECONDS)))
    quiet = 0
    seen_speech = False
    for i, is_loud in enumerate(loud):
        if is_loud:
            seen_speech, quiet = True, 0
        elif seen_speech:
            quiet += 1
            if quiet >= need_quiet:
                return t0 + (i + 1 - quiet) * FRAME_SECONDS
    return None


def utterance_onsets(
    wave: np.ndarray, *, t0: float, sample_rate: int, pause: float, threshold_db: float, min_speech: float = 0.06
) -> list[tuple[float, float]]:
    """The utterances that begin in `wave` (starting at t0): (onset, end of the speech
    before it) for every run of at least `min_speech` s of speech that follows `pause` s
    of quiet, in time order. Speech running from t0 without such a pause gives no onset."""
    loud = loud_frames(wave, sample_rate=sample_rate, threshold_db=threshold_db)
    need_quiet = max(1, int(round(pause / FRAME_SECONDS)))
    need_loud = max(1, int(round(min_speech / FRAME_SECONDS)))
    onsets = []
    quiet = 0 if len(loud) and loud[0] else need_quiet  # quiet frames before frame i
    run = 0
    candidate = None  # (frame, end of the speech before it)
    last_loud_end = t0  # end of the last loud frame
    for i, is_loud in enumerate(loud):
        if is_loud:
            if run == 0 and quiet >= need_quiet:
                candidate = (i, last_loud_end)
            run += 1
            quiet = 0
            if candidate is not None and run >= need_loud:
                onsets.append((t0 + candidate[0] * FRAME_SECONDS, candidate[1]))
                candidate = None
            last_loud_end = t0 + (i + 1) * FRAME_SECONDS
        else:
            run = 0
            quiet += 1
    return onsets


def utterance_start(
    wave: np.ndarray, *, t0: float, sample_rate: int, pause: float, threshold_db: float, min_speech: float = 0.06
) -> float | None:
    """Session time where the latest utterance in `wave` (starting at t0) begins: the
    first loud frame of the last run of at least `min_speech` s of speech that follows
    `pause` s of quiet. `t0` when speech runs from the start without such a pause, None
    when `wave` holds no speech."""
    onsets = utterance_onsets(wave, t0=t0, sample_rate=sample_rate, pause=pause, threshold_db=threshold_db, min_speech=min_speech)
    if onsets:
        return onsets[-1][0]
    return t0 if speech_end(wave, t0=t0, sample_rate=sample_rate, threshold_db=threshold_db) is not None else None


class SpeechStream:
    """The speech algorithm as a synchronous step object (no threads, no sleeping).

    `step(horizon, now)` runs at most one pass (a periodic one on the `period` grid,
    or a pause pass) when one is due with the audio complete up to `horizon`, and
    returns the words it committed (None when no pass was due); `finish(end, now)` is
    the final pass. `read(t0, t1)` gives the audio (`AudioRing.read`); `now` is the
    session clock when the pass starts. `committed_at` is stamped by `clock()` when the
    pass has its words (the pass and any wait for a shared Whisper count in the lag), or
    with `now` when there is no clock (a step driven by a test's own times)."""

    def __init__(
        self,
        *,
        read: Callable[[float, float], np.ndarray],
        sample_rate: int,
        transcribe: Callable,
        options: SpeechOptions = SpeechOptions(),
        policy: Policy = Policy.REPRODUCIBLE,
        origin: float = 0.0,
        on_commit: Callable[[list[TimedWord]], None] | None = None,
        on_hypothesis: Callable[[list[TimedWord]], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        o = options
        self.read = read
        self.clock = clock
        self.sample_rate = int(sample_rate)
        self.transcribe = transcribe
        self.origin = origin
        self.period = o.period
        self.context = o.context
        self.delay = o.delay
        self.pause = o.pause
        self.pause_db = o.pause_db
        self.settle = o.settle
        self.pause_passes = (policy is Policy.LIVE) if o.pause_passes is None else o.pause_passes
        self.catch_up = policy is Policy.LIVE  # live: skip missed passes instead of queueing them
        # real-time runs that wait for their passes: passes run in order (reproducible windows)
        # unless they fall this many seconds behind the audio; then missed passes are skipped
        self.max_backlog = o.max_backlog if policy.follows_clock else None
        self.transcript = Transcript(keep_seconds=max(120.0, 4 * o.context), on_commit=on_commit, on_hypothesis=on_hypothesis)
        self.skipped = 0
        self.pause_pass_count = 0
        self.quiet_passes = 0  # passes over audio without speech (Whisper not asked)
        self._k = 1  # next periodic pass: origin + k * period
        self._scan_start = origin
        self._committed: list = []  # the last few committed words (for de-duplication)
        self._hypothesis: list = []
        self._paused_until = origin  # speech up to here ended in a pause a pass has seen
        self._last_h = origin

    @property
    def settled_until(self) -> float:
        """Speech up to here is transcribed for good (a pause pass committed it); inf when
        there are no pause passes (the reproducible policy: windows wait for their passes)."""
        return self._paused_until if self.pause_passes else math.inf

    @property
    def last_horizon(self) -> float:
        """Horizon of the latest pass started (the stream's origin before the first)."""
        return self._last_h

    def lateness(self, horizon: float) -> float:
        """How far (s) this stream's passes are behind the audio up to `horizon`: the audio
        beyond one period past the latest pass (0 while the passes keep up; it grows while
        a pass, or the shared Whisper it waits for, takes longer than a period)."""
        return max(0.0, horizon - self._last_h - self.period)

    @property
    def next_periodic(self) -> float:
        return self.origin + self._k * self.period

    def required_horizon(self, t: float) -> float:
        """The latest pass horizon whose words a window ending at `t` may use."""
        return math.floor((t - self.delay) / self.period + 1e-9) * self.period

    def begin_at(self, origin: float) -> None:
        """The audio starts at session time `origin` (its first sample): passes are timed from there."""
        self.origin = self._scan_start = self._paused_until = origin

    def throttle(self, level: Level) -> None:
        """A loaded server's setting: live passes every `level.speech_period` s (other policies
        keep their period: their windows wait for the passes)."""
        if self.catch_up and abs(self.period - level.speech_period) > 1e-9:
            self.set_period(level.speech_period)

    def backlog(self, horizon: float) -> Backlog | None:
        """How far live passes are behind the audio up to `horizon` (None: not live speech)."""
        if not self.catch_up:
            return None
        return Backlog(lateness=self.lateness(horizon), skipped_passes=int(self.skipped))

    def set_period(self, period: float) -> None:
        """Space the periodic passes `period` s apart from the next one on (a loaded
        server thins live passes; pause passes are unchanged): the next periodic pass is
        the first one of the new grid after the last pass."""
        if not 0 < period < self.context:
            raise ValueError(f"period must be > 0 and < context ({self.context} s), got {period}")
        self.period = float(period)
        self._k = int(math.floor((self._last_h - self.origin) / self.period + 1e-9)) + 1

    def _next_pause(self, horizon: float) -> float | None:
        """Horizon of the next pause pass (the end of the first speech after the last pause
        pass that the audio up to `horizon` shows followed by a pause, plus the pause)."""
        t0 = max(self._scan_start, self._paused_until, horizon - self.context)
        if horizon - t0 <= self.pause:
            return None
        end = first_pause(self.read(t0, horizon), t0=t0, sample_rate=self.sample_rate, pause=self.pause, threshold_db=self.pause_db)
        return None if end is None else min(horizon, end + self.pause)

    def due(self, horizon: float) -> tuple[float, bool] | None:
        """(pass horizon, is a pause pass) of the pass to run now, or None. Pause passes sit
        at fixed places in media time (each phrase's end + `pause`), so a stream that falls
        behind still gives every phrase its pause pass, in order."""
        paused = self._next_pause(horizon) if self.pause_passes else None
        h = self.next_periodic
        if h > horizon + 1e-9:
            return None if paused is None else (paused, True)
        if paused is not None and paused <= h:
            return paused, True
        behind = horizon - h
        if self.catch_up or (self.max_backlog is not None and behind > self.max_backlog):
            latest = int((horizon - self.origin) / self.period + 1e-9)
            if latest > self._k:
                if not self.catch_up and not self.skipped:
                    log.warning("speech recognition is %.1f s behind the audio: skipping passes "
                                "(this run's windows are no longer reproducible)", behind)
                self.skipped += latest - self._k
                self._k = latest
                h = self.next_periodic
        if paused is not None and paused <= h:
            return paused, True
        return h, False

    def step(self, horizon: float, now: float) -> list[TimedWord] | None:
        """Run the pass due with audio up to `horizon`, if any; the words it committed."""
        due = self.due(horizon)
        if due is None:
            return None
        h, pause = due
        return self.process(h, now=now, pause=pause)

    def finish(self, end: float, now: float) -> list[TimedWord]:
        """The final pass at the end of the stream: commits everything."""
        words = self.process(end, now=now, final=True) if math.isfinite(end) else []
        if math.isfinite(end):
            self.transcript.make_available(end)
        return words

    def process(self, h: float, *, now: float, final: bool = False, pause: bool = False) -> list[TimedWord]:
        """One pass over the audio up to `h`; returns the words it committed."""
        self._k = max(self._k, int(math.floor((h - self.origin) / self.period + 1e-9)) + 1)
        self._last_h = h
        t0 = max(self._scan_start, h - self.context)
        if h - t0 < 0.1:
            self.transcript.passes.advance(h)
            return []
        started = time.perf_counter()
        wave = self.read(t0, h)
        if self.pause_passes and speech_end(wave, t0=t0, sample_rate=self.sample_rate, threshold_db=self.pause_db) is None:
            words = []  # live policy: nothing above the pause level, no need to ask Whisper
            self.quiet_passes += 1
        else:
            words = self.transcribe(wave, offset=t0)
            self.transcript.pass_ms.add((time.perf_counter() - started) * 1000)
        pass_start = now
        if self.clock is not None:
            now = self.clock()  # the words exist from here: the pass's own time is part of their lag
        if final or pause:
            forced = h  # the stream ended, or the audio ends in a pause: nothing is cut
        else:
            forced = h + self.period - self.context  # words the next pass no longer sees
        settled = -math.inf if self.settle is None else h - self.settle
        chosen, self._hypothesis = commit_rule(words, previous=self._hypothesis, committed=self._committed,
                                               forced_until=forced, settled_until=settled)
        if self._hypothesis and self.pause > 0:
            n = pause_after(self._hypothesis, wave, t0=t0, sample_rate=self.sample_rate, pause=self.pause, pause_db=self.pause_db)
            chosen, self._hypothesis = chosen + self._hypothesis[:n], self._hypothesis[n:]
        available = h if final else h + self.delay
        committed = [TimedWord(w.text, w.start, w.end, w.probability, available, now) for w in chosen]
        for w in committed:
            self.transcript.start_lags.add(pass_start - w.end)
        if committed:
            self._committed = (self._committed + committed)[-16:]
            self.transcript.commit(committed)
        self.transcript.hypothesize(
            [] if final else [TimedWord(w.text, w.start, w.end, w.probability, math.inf, now) for w in self._hypothesis])
        last_end = self._committed[-1].end if self._committed else t0
        if pause:
            self.pause_pass_count += 1
            end = speech_end(wave, t0=t0, sample_rate=self.sample_rate, threshold_db=self.pause_db)
            self._paused_until = max(self._paused_until, h if end is None else end)
            if not self._hypothesis:  # the utterance is done: the next pass starts after it
                self._scan_start = max(self._scan_start, min(self._paused_until, h - 0.1))
        if not words:  # no speech: keep a little audio before the horizon as context
            self._scan_start = max(self._scan_start, h - 1.0)
        elif not self._hypothesis and h - last_end >= 1.0:  # a pause after committed speech
            self._scan_start = max(self._scan_start, last_end)
        self.transcript.passes.advance(h)
        return committed


class SpeechWorker(Worker):
    """Runs a `SpeechStream` over `audio` (an `AudioRing`) in a thread: it waits for the
    audio, steps the stream on the session clock, and makes the final pass at the end.
    `on_commit(words)` is called on this thread with each pass's committed words, and
    `on_hypothesis(words)` with the pass's uncommitted words when they changed."""

    name = "speech"

    def __init__(
        self,
        *,
        audio: AudioRing,
        transcribe: Callable,
        clock: SessionClock,
        options: SpeechOptions = SpeechOptions(),
        policy: Policy = Policy.REPRODUCIBLE,
        on_commit: Callable[[list[TimedWord]], None] | None = None,
        on_hypothesis: Callable[[list[TimedWord]], None] | None = None,
        poll: float = 0.05,
    ) -> None:
        super().__init__()
        self.audio = audio
        self.clock = clock
        self.poll = poll
        self.stream = SpeechStream(
            read=audio.read, sample_rate=audio.sample_rate, transcribe=transcribe, options=options, policy=policy,
            on_commit=on_commit, on_hypothesis=on_hypothesis, clock=clock.now,
        )
        self.transcript = self.stream.transcript

    # the stream's settings and counters, read by the windowing
    period = property(lambda self: self.stream.period)
    delay = property(lambda self: self.stream.delay)
    context = property(lambda self: self.stream.context)
    skipped = property(lambda self: self.stream.skipped)
    settled_until = property(lambda self: self.stream.settled_until)

    def required_horizon(self, t: float) -> float:
        return self.stream.required_horizon(t)

    def run(self) -> None:
        while self.audio.start_time is None and not self.audio.ended and not self.stopping:
            self.audio.wait_until(0.0, timeout=0.2)
        stream = self.stream
        stream.begin_at(self.audio.start_time or 0.0)
        while not self.stopping:
            horizon = self.audio.horizon
            if stream.step(horizon, self.clock.now()) is not None:
                continue
            if self.audio.ended:
                break
            # wake at the next periodic horizon, or sooner to look for a pause
            until = stream.next_periodic
            if stream.pause_passes:
                until = min(until, horizon + self.poll)
            self.audio.wait_until(until, timeout=0.2)
        if not self.stopping:
            self.stream.finish(self.audio.horizon, self.clock.now())

    def finish(self) -> None:
        self.transcript.passes.end()

    def throttle(self, level: Level) -> None:
        self.stream.throttle(level)

    def backlog(self) -> Backlog | None:
        """The live stream's backlog (lateness only while the audio runs); None when not live."""
        audio = self.audio
        running = audio.start_time is not None and not audio.ended
        return self.stream.backlog(audio.horizon if running else -math.inf)

    def stats(self) -> dict[str, Any]:
        s = self.stream
        return {**super().stats(), **self.transcript.stats(), "skipped_passes": s.skipped,
                "pause_passes": s.pause_pass_count, "quiet_passes": s.quiet_passes}
