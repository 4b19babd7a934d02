"""GeneratedSource and ScriptedTranscriber (realtime/sources/generated.py): the looped
audio is the loop's samples at the right session times, frames come at `fps`, FAST
stays within `read_ahead` of what was released, and the scripted words are the same
in every pass that sees them. Tone loops only (no espeak-ng, no models): milliseconds."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from realtime.core.clock import SessionClock
from realtime.core.component import Policy
from realtime.sources import FrameTap, Source
from realtime.sources.generated import (
    VOCABULARY,
    GeneratedSource,
    ScriptedTranscriber,
    ScriptUtterance,
    SpeechLoop,
    spread_words,
)

SR = 16000


def two_utterance_loop() -> SpeechLoop:
    wave = np.random.default_rng(0).normal(0, 0.1, 5 * SR).astype(np.float32)
    return SpeechLoop(wave, [
        ScriptUtterance("i love this", 0.5, 1.7, spread_words("i love this", 0.5, 1.7)),
        ScriptUtterance("it is not good at all", 2.5, 4.5, spread_words("it is not good at all", 2.5, 4.5)),
    ])


def test_spread_words_lie_in_order_inside_the_span():
    words = spread_words("a quick brown fox", 1.0, 3.0)
    assert [w.text for w in words] == ["a", "quick", "brown", "fox"]
    assert words[0].start == 1.0 and words[-1].end <= 3.0
    assert all(a.end <= b.start for a, b in zip(words, words[1:]))
    assert all(w.end > w.start for w in words)


def test_scripted_words_lie_in_the_pass_and_agree_between_passes():
    loop = two_utterance_loop()
    tr = ScriptedTranscriber(loop)
    wave = np.zeros(8 * SR, np.float32)
    a = tr.transcribe(wave, offset=3.0)  # [3, 11): the second cycle starts at 5
    assert a and all(3.0 <= w.start and w.end <= 11.0 for w in a)
    b = tr.transcribe(wave, offset=4.0)  # [4, 12)
    shared = [(w.text, w.start) for w in a if w.start >= 4.0]
    assert shared == [(w.text, w.start) for w in b if w.end <= 11.0]
    # the second cycle says what the first said, shifted by the period
    first = [(w.text, round(w.start, 3)) for w in tr.transcribe(np.zeros(5 * SR, np.float32), offset=0.0)]
    second = [(w.text, round(w.start - loop.period, 3)) for w in tr.transcribe(np.zeros(5 * SR, np.float32), offset=loop.period)]
    assert first == second and [t for t, _ in first] == ["i", "love", "this", "it", "is", "not", "good", "at", "all"]


def test_fresh_utterances_have_their_own_words_the_same_in_every_pass():
    loop = two_utterance_loop()
    tr = ScriptedTranscriber(loop, fresh_every=2)  # utterances 1, 3, 5, ...: fresh words
    wave = np.zeros(5 * SR, np.float32)
    words = tr.transcribe(wave, offset=0.0)
    said = [w.text for w in words]
    assert said[:3] == ["i", "love", "this"]  # utterance 0: as the loop says it
    assert said[3:] != ["it", "is", "not", "good", "at", "all"] and all(w in VOCABULARY for w in said[3:])
    assert len(said) == 3 + 6
    assert [w.text for w in tr.transcribe(wave, offset=0.0)] == said
    later = [w.text for w in tr.transcribe(wave, offset=loop.period)]  # utterances 2 and 3
    assert later[:3] == ["i", "love", "this"] and later[3:] != said[3:]


def test_fast_source_delivers_the_loop_within_its_read_ahead():
    tapped = []
    loop = SpeechLoop.tones(burst=1.0, gap=0.5)
    frame = np.full((8, 8, 3), 7, np.uint8)
    source = GeneratedSource(duration=200.0, loop=loop, frame=frame, fps=2.0, policy=Policy.FAST, read_ahead=10.0,
                             clock=SessionClock(), frame_tap=FrameTap(lambda t, rgb: tapped.append(t)))
    assert isinstance(source, Source)
    taken = []

    def drain() -> None:  # as a face worker would, so the bounded frame feed never blocks the reader
        while (item := source.frames.get(timeout=30)) is not None:
            taken.append(item[0])
            source.frames.task_done()

    source.open()
    source.start()
    consumer = threading.Thread(target=drain, daemon=True)
    consumer.start()
    try:
        # nothing released past 0: the reader stops `read_ahead` seconds in
        assert source.audio.wait_until(10.0, timeout=10)
        time.sleep(0.3)
        assert 10.0 <= source.audio.horizon <= 10.2 and source.delivered <= 10.2
        # the audio at session time t is the loop's sample at t modulo its period
        assert np.array_equal(source.audio.read(3.0, 4.5), loop.read(3 * SR, int(1.5 * SR)))
        source.release(200.0)
        source.join(30)
        consumer.join(30)
    finally:
        source.stop()
        source.join(5)
    assert source.error is None and source.audio.ended
    assert source.audio.horizon == pytest.approx(200.0)
    assert taken == tapped == [k / 2.0 for k in range(400)]
    assert source.stats()["delivered_s"] == pytest.approx(200.0)


def test_a_source_needs_something_to_deliver():
    with pytest.raises(ValueError):
        GeneratedSource(duration=10.0)
    with pytest.raises(ValueError):
        GeneratedSource(duration=0.0, loop=SpeechLoop.tones())
