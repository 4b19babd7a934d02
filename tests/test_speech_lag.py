"""The transcript lag counts the pass itself: a word is committed when its pass has
returned (the Whisper pass, and the wait for a shared Whisper thread), not when the
pass started (realtime.pipeline.speech.SpeechStream's clock)."""

from __future__ import annotations

import numpy as np

from realtime.core.component import Policy
from realtime.pipeline.speech import SpeechOptions, SpeechStream


class Word:
    def __init__(self, word, start, end):
        self.word, self.text, self.start, self.end, self.probability = word, word, start, end, 1.0


def test_committed_at_is_the_clock_after_the_pass():
    rate = 16000
    wave = np.zeros(rate * 4, np.float32)
    wave[int(0.2 * rate):int(1.4 * rate)] = 0.3 * np.sin(np.arange(int(1.2 * rate)) * 0.1)  # speech, then quiet
    clock = {"t": 0.0}

    def transcribe(audio, offset=0.0):
        clock["t"] += 0.7  # the pass (and its wait for the shared thread) takes 0.7 s
        return [Word("hello", 0.3, 0.8), Word("there", 0.9, 1.3)]

    stream = SpeechStream(read=lambda a, b: wave[int(a * rate):int(b * rate)], sample_rate=rate, transcribe=transcribe,
                          options=SpeechOptions(period=1.0), policy=Policy.LIVE, clock=lambda: clock["t"])
    committed = []
    horizon = 0.0
    while horizon < 3.0 and not committed:
        horizon = round(horizon + 0.05, 2)
        clock["t"] = max(clock["t"], horizon)
        started = clock["t"]
        words = stream.step(horizon, now=started)
        if words:
            committed = words
    assert [w.text for w in committed] == ["hello", "there"]  # the pause pass after the phrase
    assert all(w.committed_at == started + 0.7 for w in committed)
    assert list(stream.transcript.lags.recent()) == [started + 0.7 - 0.8, started + 0.7 - 1.3]
    # without a clock (a step driven by a test's own times) the stamp is the step's `now`
    stream = SpeechStream(read=lambda a, b: wave[int(a * rate):int(b * rate)], sample_rate=rate, transcribe=transcribe,
                          options=SpeechOptions(period=1.0), policy=Policy.LIVE)
    for h in np.arange(0.05, 3.0, 0.05):
        if words := stream.step(round(float(h), 2), now=round(float(h), 2)):
            break
    assert [w.text for w in words] == ["hello", "there"] and all(w.committed_at == round(float(h), 2) for w in words)
