"""A generated session as a capture source: real espeak-ng speech looped for as long as
asked, over a real face image, and the script of what is said.

    loop = SpeechLoop.spoken(("I love this.", "I hate this."))
    source = GeneratedSource(duration=8 * 3600, loop=loop, frame=face_image(160), fps=2,
                             policy=Policy.FAST)
    transcriber = ScriptedTranscriber(loop)          # Whisper's stand-in: the script's words

It is for long runs (soak benches, tests of hours of session time) where a media file
would be gigabytes: the audio is generated piece by piece from one cycle of speech
(`SpeechLoop`), the frames are one image, so memory does not depend on `duration`.
Like `FileSource`, media second t is session second t, delivered at the clock's pace
or, under `Policy.FAST`, as fast as the consumers `release` it (at most `read_ahead`
seconds in front of them).

`ScriptedTranscriber` has the interface of `hcl.features.speech.SpeechTranscriber`
(`.model`, `.transcribe(wave, offset)`) and returns the words the script places in
the span, so a session's transcript is known without running Whisper. Every
`fresh_every`-th utterance gets words of its own (drawn from `VOCABULARY`), so a long
session keeps producing text no cache has seen.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hcl.features.config import SAMPLE_RATE
from hcl.features.speech import Word
from realtime.core.clock import SessionClock
from realtime.core.component import Policy
from realtime.core.streams import AudioRing, FrameFeed
from realtime.sources import FrameTap
from realtime.sources.demo import speak
from realtime.sources.playback import PlayedSource

log = logging.getLogger(__name__)

VOCABULARY = ["really", "great", "movie", "story", "acting", "boring", "awful", "wonderful", "music", "scene", "plot", "character", "funny", "sad", "happy", "terrible", "amazing", "slow", "fast", "loud", "quiet", "bright", "dark", "good", "bad", "best", "worst", "love", "hate", "enjoy", "think", "feel", "know", "said", "people", "time", "long", "short", "film", "ending", "beginning", "part", "whole", "nice", "poor"]


@dataclass(frozen=True)
class ScriptWord:
    text: str
    start: float  # seconds from the start of the cycle
    end: float


@dataclass(frozen=True)
class ScriptUtterance:
    text: str
    start: float  # seconds from the start of the cycle
    end: float
    words: tuple[ScriptWord, ...]


def spread_words(text: str, start: float, end: float) -> tuple[ScriptWord, ...]:
    """The words of `text` laid over [start, end) in proportion to their length (a short
    gap between words), as a transcriber's word times would roughly be."""
    words = text.split()
    if not words:
        return ()
    weights = [len(w) + 1 for w in words]
    span = (end - start) / sum(weights)
    out, t = [], start
    for w, k in zip(words, weights):
        out.append(ScriptWord(w, round(t, 3), round(t + 0.85 * k * span, 3)))
        t += k * span
    return tuple(out)


def speech_span(wave: np.ndarray, *, sample_rate: int = SAMPLE_RATE, threshold_db: float = -40.0) -> tuple[float, float]:
    """(first, last) second of `wave` louder than `threshold_db` in 20 ms frames."""
    size = int(0.02 * sample_rate)
    n = len(wave) // size
    if n == 0:
        return 0.0, len(wave) / sample_rate
    power = np.mean(np.square(wave[: n * size].reshape(n, size), dtype=np.float64), axis=1)
    loud = np.flatnonzero(10 * np.log10(power + 1e-12) >= threshold_db)
    if not len(loud):
        return 0.0, len(wave) / sample_rate
    return loud[0] * 0.02, (loud[-1] + 1) * 0.02


class SpeechLoop:
    """One cycle of audio (sentences and the pauses between them) repeated forever, and
    where each sentence and its words lie in the cycle. Utterance i of the session is
    utterance i % len(utterances) of cycle i // len(utterances)."""

    def __init__(self, wave: np.ndarray, utterances: Sequence[ScriptUtterance], *, sample_rate: int = SAMPLE_RATE) -> None:
        self.wave = np.asarray(wave, np.float32).reshape(-1)
        if not len(self.wave):
            raise ValueError("a speech loop needs some audio")
        self.utterances = tuple(utterances)
        self.sample_rate = int(sample_rate)
        self.period = len(self.wave) / self.sample_rate

    @classmethod
    def spoken(
        cls, sentences: Sequence[str], *, lead: float = 0.5, gap: float = 2.0, noise: float = 0.002, seed: int = 0
    ) -> SpeechLoop:
        """espeak-ng speech of `sentences` (`realtime.sources.demo.speak`), each followed by `gap`
        s of faint noise (a room, not digital silence); needs espeak-ng."""
        rng = np.random.default_rng(seed)
        parts = [rng.normal(0.0, noise, int(lead * SAMPLE_RATE)).astype(np.float32)]
        t = lead
        utterances = []
        for text in sentences:
            speech = speak(text)
            a, b = speech_span(speech)
            utterances.append(ScriptUtterance(text, round(t + a, 3), round(t + b, 3), spread_words(text, t + a, t + b)))
            parts.append(speech + rng.normal(0.0, noise, len(speech)).astype(np.float32))
            parts.append(rng.normal(0.0, noise, int(gap * SAMPLE_RATE)).astype(np.float32))
            t += len(speech) / SAMPLE_RATE + gap
        return cls(np.concatenate(parts), utterances)

    @classmethod
    def tones(cls, *, burst: float = 2.0, gap: float = 1.5, freq: float = 220.0, level: float = 0.2) -> SpeechLoop:
        """A tone burst and a pause (no espeak-ng needed); the script says "tone" per 0.5 s."""
        t = np.arange(int(burst * SAMPLE_RATE)) / SAMPLE_RATE
        wave = np.concatenate([(level * np.sin(2 * np.pi * freq * t)).astype(np.float32),
                               np.zeros(int(gap * SAMPLE_RATE), np.float32)])
        words = " ".join(["tone"] * max(1, int(burst / 0.5)))
        return cls(wave, [ScriptUtterance(words, 0.0, burst, spread_words(words, 0.0, burst))])

    def read(self, first: int, n: int) -> np.ndarray:
        """Samples first .. first + n of the endless stream."""
        idx = (np.arange(first, first + n) % len(self.wave))
        return self.wave[idx]

    def utterances_between(self, t0: float, t1: float) -> Iterator[tuple[int, ScriptUtterance, float]]:
        """(session index, utterance, cycle start time) of the utterances overlapping [t0, t1)."""
        n = len(self.utterances)
        if not n or t1 <= t0:
            return
        for cycle in range(max(0, int(math.floor(t0 / self.period))), int(math.floor(t1 / self.period)) + 1):
            base = cycle * self.period
            for j, u in enumerate(self.utterances):
                if base + u.end > t0 and base + u.start < t1:
                    yield cycle * n + j, u, base


class ScriptedTranscriber:
    """Whisper's stand-in: `transcribe(wave, offset)` returns the script's words (as
    `hcl.features.speech.Word`) that end inside [offset, offset + len(wave) / rate].
    Utterance i is spoken as the loop has it, except every `fresh_every`-th one
    (0: never), whose words are drawn from `VOCABULARY` (seeded by i, so every pass
    over it returns the same words)."""

    model = "scripted"  # the pipeline touches `.model` to load a real transcriber before the clock starts

    def __init__(self, loop: SpeechLoop, *, fresh_every: int = 0, probability: float = 0.9, sample_rate: int = SAMPLE_RATE) -> None:
        self.loop = loop
        self.fresh_every = int(fresh_every)
        self.probability = probability
        self.sample_rate = sample_rate
        self.calls = 0

    def words_of(self, index: int, u: ScriptUtterance) -> tuple[ScriptWord, ...]:
        if self.fresh_every <= 0 or index % self.fresh_every != self.fresh_every - 1:
            return u.words
        rng = random.Random(index)
        text = " ".join(rng.choice(VOCABULARY) for _ in u.words)
        return spread_words(text, u.start, u.end)

    def transcribe(self, wave: np.ndarray, offset: float = 0.0) -> list:
        self.calls += 1
        t0, t1 = float(offset), float(offset) + len(wave) / self.sample_rate
        out = []
        for index, u, base in self.loop.utterances_between(t0, t1):
            for w in self.words_of(index, u):
                start, end = base + w.start, base + w.end
                if start >= t0 and end <= t1:
                    out.append(Word(w.text, start, end, self.probability))
        return out


class GeneratedSource(PlayedSource):
    """`loop`'s audio (None: no audio) and `frame` (RGB uint8, None: no video) at `fps`
    for `duration` seconds, on the session clock; see the module docstring.
    The audio ring keeps `buffer_seconds` (at least `read_ahead` + 60 s).
    `clock` / `frame_tap`: the session clock and the recording's frame tap (see `Source`)."""

    kind = "generated"
    thread_name = "generated-source"

    def __init__(
        self,
        *,
        duration: float,
        loop: SpeechLoop | None = None,
        frame: np.ndarray | None = None,
        fps: float = 10.0,
        policy: Policy = Policy.FAST,
        chunk_seconds: float = 0.1,
        read_ahead: float = 30.0,
        clock: SessionClock | None = None,
        frame_tap: FrameTap | None = None,
        buffer_seconds: float = 120.0,
    ) -> None:
        super().__init__(policy=policy, read_ahead=read_ahead, clock=clock, frame_tap=frame_tap)
        if loop is None and frame is None:
            raise ValueError("GeneratedSource needs a speech loop or a frame")
        if not duration > 0:
            raise ValueError(f"duration must be > 0 seconds, got {duration}")
        self.duration = float(duration)
        self.loop = loop
        self.frame = None if frame is None else np.ascontiguousarray(frame, dtype=np.uint8)
        self.fps = float(fps)
        self.chunk_seconds = float(chunk_seconds)
        self.name = f"generated {self.duration / 3600:.2f} h"
        if loop is not None:
            seconds = max(float(buffer_seconds), self.read_ahead + 60.0)
            self.audio = AudioRing(sample_rate=loop.sample_rate, capacity_seconds=seconds)
        if self.frame is not None:
            self.frames = FrameFeed(latest_only=False, maxsize=max(4, int(2 * self.fps)), policy=policy)

    def open(self) -> None:
        pass  # nothing to open: everything is made on the fly

    def _samples(self, payload: tuple[int, int]) -> np.ndarray:
        first, n = payload
        return self.loop.read(first, n)

    def _events(self) -> Iterator[tuple[float, str, Any]]:
        """(t, kind, payload) in time order: audio chunks stamped by their end, frames by their time."""
        rate = self.loop.sample_rate if self.loop is not None else SAMPLE_RATE
        total = int(round(self.duration * rate)) if self.loop is not None else 0
        step = max(1, int(round(self.chunk_seconds * rate)))
        n_frames = int(math.floor(self.duration * self.fps)) if self.frame is not None else 0
        done, k = 0, 0
        while done < total or k < n_frames:
            t_frame = k / self.fps if k < n_frames else math.inf
            n = min(step, total - done)
            t_audio = (done + n) / rate if n > 0 else math.inf
            if t_frame <= t_audio:
                yield t_frame, "frame", self.frame
                k += 1
            else:
                yield t_audio, "audio", (done, n)
                done += n
