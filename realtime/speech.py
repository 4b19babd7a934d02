"""The speech thread: VAD-gated Whisper on the rolling audio, committing words.

Every `period` seconds of audio (pass horizons H = period, 2 period, ...) it
transcribes the current stretch of speech (at most `context` seconds, from the
last pause) up to H. Words the previous passes committed are recognised again
by time and text and skipped; of the rest it commits those on which this pass
and the previous one agree (LocalAgreement-2: the common prefix of the two
hypotheses, so a word cut at the buffer end is never committed), and at once the
words followed by a pause (`pause` seconds quieter than `pause_db` inside the
pass's audio: the phrase is over, its words will not change). Words about to
leave the `context` are committed without agreement, and the last pass, at the
end of a stream, commits everything.
A word committed by the pass at H is *available* to windows from session time
H + `delay` (H for the final pass): a fixed rule in media time, so a file gives
the same windows played in real time or as fast as possible (`strict` windowing
waits for the passes it needs). `Transcript.lags` measures the real lag: session
clock when a word was committed minus the word's end.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

from realtime.clock import SessionClock
from realtime.streams import AudioRing, Horizon

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimedWord:
    text: str
    start: float  # session seconds
    end: float
    probability: float
    available_at: float  # session time from which windows may use it
    committed_at: float  # session clock when the speech thread committed it

    def as_dict(self) -> dict:
        return {"w": self.text, "start": round(self.start, 3), "end": round(self.end, 3), "p": round(self.probability, 3)}


class Transcript:
    """Committed words in time order, and the horizon of the finished passes."""

    def __init__(self) -> None:
        self._words: list[TimedWord] = []
        self._lock = threading.Lock()
        self.passes = Horizon()  # horizon H of the last finished pass; ended after the final one
        self.lags: list[float] = []  # committed_at - end, seconds (meaningful at real-time pace)
        self.pass_ms: list[float] = []
        self.listeners: list[Callable[[list[TimedWord]], None]] = []

    def commit(self, words: list[TimedWord]) -> None:
        with self._lock:
            self._words.extend(words)
            self.lags.extend(w.committed_at - w.end for w in words)
        for listener in self.listeners:
            listener(words)

    def make_available(self, t: float) -> None:
        """Make every committed word available from `t` at the latest (end of stream)."""
        with self._lock:
            self._words = [w if w.available_at <= t else _replace_available(w, t) for w in self._words]

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

    def prune(self, before: float) -> None:
        with self._lock:
            self._words = [w for w in self._words if w.end >= before]


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


def drop_committed(words, committed, *, tolerance: float = 0.3, max_ngram: int = 5) -> list:
    """The words of a pass that are new: those ending after the last committed word
    (minus `tolerance`, Whisper's timing wobbles between passes), less a head that
    repeats the tail of the committed words (up to `max_ngram` words)."""
    if not committed:
        return list(words)
    last_end = committed[-1].end
    fresh = [w for w in words if 0.5 * (w.start + w.end) > last_end - tolerance]
    tail = [_norm(w.text) for w in committed[-max_ngram:]]
    head = [_norm(w.text) for w in fresh[:max_ngram]]
    for n in range(min(len(tail), len(head)), 0, -1):
        if tail[-n:] == head[:n]:
            return fresh[n:]
    return fresh


def commit_rule(words, *, previous, committed, forced_until: float) -> tuple[list, list]:
    """(words to commit, the rest = this pass's open hypothesis).

    words: this pass's words; previous: the open hypothesis of the last pass;
    committed: words committed so far. The agreed prefix of the new words is
    committed, and so are new words ending by `forced_until`."""
    fresh = drop_committed(words, committed)
    n = agreed_prefix(previous, fresh)
    while n < len(fresh) and fresh[n].end <= forced_until:
        n += 1
    return fresh[:n], fresh[n:]


def pause_after(words, wave, *, t0: float, sample_rate: int, pause: float, pause_db: float) -> int:
    """How many leading `words` end before a pause in `wave` (which starts at time t0):
    the index after the last word followed by `pause` seconds quieter than `pause_db`."""
    import numpy as np

    n = 0
    for i, w in enumerate(words):
        a = int(round((w.end + 0.05 - t0) * sample_rate))
        b = int(round((w.end + 0.05 + pause - t0) * sample_rate))
        if a < 0 or b > len(wave):
            break
        seg = wave[a:b]
        if len(seg) and 10 * np.log10(float(np.mean(seg.astype(np.float64) ** 2)) + 1e-12) < pause_db:
            n = i + 1
    return n


class SpeechWorker:
    """Runs `transcribe(wave_16k, offset) -> [Word]` on `audio` in a thread."""

    def __init__(
        self,
        *,
        audio: AudioRing,
        transcribe: Callable,
        clock: SessionClock,
        period: float = 1.0,
        context: float = 8.0,
        margin: float = 0.5,
        delay: float = 1.5,
        pause: float = 0.25,
        pause_db: float = -45.0,
        catch_up: bool = False,
        max_backlog: float | None = None,
    ) -> None:
        if period <= 0 or context <= period or margin < 0 or delay < 0:
            raise ValueError("need period > 0, context > period, margin >= 0, delay >= 0")
        self.audio = audio
        self.transcribe = transcribe
        self.clock = clock
        self.period = period
        self.context = context
        self.margin = margin
        self.delay = delay
        self.pause = pause
        self.pause_db = pause_db
        self.catch_up = catch_up  # live devices: skip missed passes instead of queueing them
        # real-time files: passes run in order (reproducible windows) unless they fall this
        # many seconds behind the audio; then missed passes are skipped (and counted)
        self.max_backlog = max_backlog
        self.transcript = Transcript()
        self.error: BaseException | None = None
        self.skipped = 0
        self._scan_start = 0.0
        self._committed: list = []  # the last few committed words (for de-duplication)
        self._hypothesis: list = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="speech", daemon=True)
        self._thread.start()

    def required_horizon(self, t: float) -> float:
        """The latest pass horizon whose words a window ending at `t` may use."""
        return math.floor((t - self.delay) / self.period + 1e-9) * self.period

    def _run(self) -> None:
        try:
            while self.audio.start_time is None and not self.audio.ended and not self._stop.is_set():
                self.audio.wait_until(0.0, timeout=0.2)
            origin = self.audio.start_time or 0.0
            self._scan_start = origin
            k = 1
            while not self._stop.is_set():
                h = origin + k * self.period
                if not self.audio.wait_until(h, timeout=0.2):
                    if self.audio.ended:
                        break
                    continue
                self._pass(h, final=False)
                k += 1
                behind = self.audio.horizon - (origin + k * self.period)
                if self.catch_up or (self.max_backlog is not None and behind > self.max_backlog):
                    latest = int((self.audio.horizon - origin) / self.period + 1e-9)
                    if latest > k:
                        if not self.catch_up and not self.skipped:
                            log.warning("speech recognition is %.1f s behind the audio: skipping passes "
                                        "(this run's windows are no longer reproducible)", behind)
                        self.skipped += latest - k
                        k = latest
            if not self._stop.is_set():
                end = self.audio.horizon
                if math.isfinite(end):
                    self._pass(end, final=True)
                    self.transcript.make_available(end)
        except BaseException as exc:
            self.error = exc
            log.exception("speech thread stopped")
        finally:
            self.transcript.passes.end()

    def _pass(self, h: float, *, final: bool) -> None:
        t0 = max(self._scan_start, h - self.context)
        if h - t0 < 0.1:
            self.transcript.passes.advance(h)
            return
        started = time.perf_counter()
        wave = self.audio.read(t0, h)
        words = self.transcribe(wave, offset=t0)
        self.transcript.pass_ms.append((time.perf_counter() - started) * 1000)
        forced = h if final else h + self.period - self.context  # words the next pass no longer sees
        chosen, self._hypothesis = commit_rule(words, previous=self._hypothesis, committed=self._committed, forced_until=forced)
        if self._hypothesis and self.pause > 0:
            n = pause_after(self._hypothesis, wave, t0=t0, sample_rate=self.audio.sample_rate, pause=self.pause, pause_db=self.pause_db)
            chosen, self._hypothesis = chosen + self._hypothesis[:n], self._hypothesis[n:]
        now = self.clock.now()
        available = h if final else h + self.delay
        committed = [TimedWord(w.text, w.start, w.end, w.probability, available, now) for w in chosen]
        if committed:
            self._committed = (self._committed + committed)[-8:]
            self.transcript.commit(committed)
        last_end = self._committed[-1].end if self._committed else t0
        if not words:  # no speech: keep a little audio before the horizon as context
            self._scan_start = max(self._scan_start, h - 1.0)
        elif not self._hypothesis and h - last_end >= 1.0:  # a pause after committed speech
            self._scan_start = max(self._scan_start, last_end)
        self.transcript.passes.advance(h)

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
