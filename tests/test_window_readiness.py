"""WindowAssembler.missing, the readiness rule as a step: driven in milliseconds by a
fake clock over real AudioRing / Horizon objects, no threads."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from realtime.core.component import Policy
from realtime.core.streams import AudioRing, Horizon
from realtime.pipeline.windowing import WindowAssembler, WindowQueue


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


def settings():
    return SimpleNamespace(step_seconds=0.5, window_steps=8, audio=SimpleNamespace(dim=4), face=SimpleNamespace(dim=3))


def speech(delay=1.5, period=1.0):
    passes = Horizon()
    return SimpleNamespace(
        transcript=SimpleNamespace(passes=passes),
        required_horizon=lambda t: math.floor((t - delay) / period + 1e-9) * period,
    )


def make(*, strict, realtime=True, with_speech=True, max_wait=0.15):
    clock = FakeClock()
    ring = AudioRing(sample_rate=16000)
    a = WindowAssembler(
        featurizer=SimpleNamespace(settings=settings()), out=WindowQueue(), clock=clock, audio=ring,
        speech=speech() if with_speech else None, policy=Policy.of(strict=strict, realtime=realtime), max_wait=max_wait,
    )
    return a, clock, ring


def test_live_policy_waits_for_the_clock_then_at_most_max_wait_for_audio():
    a, clock, ring = make(strict=False)
    ring.append(np.zeros(int(0.98 * 16000), np.float32), start_time=0.0)
    clock.t = 0.999
    assert a.missing(1.0, clock.now()) == "clock"
    clock.t = 1.0
    assert a.missing(1.0, clock.now()) == "audio"  # 20 ms of audio still to come
    clock.t = 1.149
    assert a.missing(1.0, clock.now()) == "audio"
    clock.t = 1.15  # max_wait is over: take what is there
    assert a.missing(1.0, clock.now()) is None
    ring.append(np.zeros(320, np.float32))
    clock.t = 1.0
    assert a.missing(1.0, clock.now()) is None  # the audio came in time
    # the live policy never waits for the transcript
    assert a.speech.transcript.passes.value == -math.inf


def test_strict_policy_waits_for_the_speech_passes_its_words_come_from():
    a, clock, ring = make(strict=True)
    ring.append(np.zeros(4 * 16000, np.float32), start_time=0.0)
    passes = a.speech.transcript.passes
    clock.t = 3.5
    assert a.missing(3.5, clock.now()) == "speech"  # needs the pass at 2.0 (3.5 - delay, on the 1 s grid)
    passes.advance(1.0)
    assert a.missing(3.5, clock.now()) == "speech"
    passes.advance(2.0)
    assert a.missing(3.5, clock.now()) is None
    # at the end of the stream the last window waits for the final pass
    ring.close()
    clock.t = 4.0
    assert a.missing(4.0, clock.now()) == "speech"
    passes.end()
    assert a.missing(4.0, clock.now()) is None


def test_strict_without_real_time_pace_needs_no_clock():
    a, clock, ring = make(strict=True, realtime=False, with_speech=False)
    assert a.missing(0.5, clock.now()) == "audio"  # nothing captured yet
    ring.append(np.zeros(8000, np.float32), start_time=0.0)
    assert a.missing(0.5, clock.now()) is None  # clock still at 0: as fast as the file is read
