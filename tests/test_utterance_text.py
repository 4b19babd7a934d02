"""A window's text follows the current utterance: after a pause, the words of the
previous utterance leave the text as soon as the next one is heard (fake speech,
real AudioRing and WindowAssembler, no threads)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from realtime.core.clock import SessionClock
from realtime.core.component import Policy
from realtime.core.streams import AudioRing
from realtime.pipeline.speech import TimedWord, Transcript
from realtime.pipeline.windowing import WindowAssembler, WindowQueue

SR = 16000


def settings():
    return SimpleNamespace(step_seconds=0.5, window_steps=8, audio=SimpleNamespace(dim=4), face=SimpleNamespace(dim=3))


def ring_with_speech(spans, duration):
    """An AudioRing holding a tone during each (start, end) span, silence elsewhere."""
    t = np.arange(int(duration * SR)) / SR
    wave = np.zeros_like(t, dtype=np.float32)
    for a, b in spans:
        on = (t >= a) & (t < b)
        wave[on] = 0.3 * np.sin(2 * np.pi * 200 * t[on])
    ring = AudioRing(sample_rate=SR)
    ring.append(wave, start_time=0.0)
    return ring


def assembler(ring, transcript, *, utterance_pause=0.45, text_context=7.0):
    speech = SimpleNamespace(transcript=transcript, settled_until=math.inf)
    return WindowAssembler(
        featurizer=SimpleNamespace(settings=settings()), out=WindowQueue(), clock=SessionClock(start=0.0),
        audio=ring, speech=speech, policy=Policy.LIVE, text_context=text_context, utterance_pause=utterance_pause,
    )


def committed(words):
    tr = Transcript()
    tr.commit([TimedWord(w, a, b, 0.9, 0.0, 0.0) for w, a, b in words])
    return tr


POSITIVE = [("i", 0.5, 0.7), ("love", 0.7, 1.1), ("this", 1.1, 1.5)]
NEUTRAL = [("the", 2.3, 2.5), ("bus", 2.5, 2.9), ("stops", 2.9, 3.4)]


def test_text_holds_the_utterance_through_the_pause_then_follows_the_next():
    ring = ring_with_speech([(0.5, 1.5), (2.3, 3.4)], 6.0)  # 0.8 s pause between them
    a = assembler(ring, committed(POSITIVE))
    # in the pause the last utterance is still the current one
    assert [w["w"] for w in a.words_at(2.0)] == ["i", "love", "this"]
    # the next utterance is heard (its words not committed yet): the old words are gone
    assert a.words_at(2.5) == []
    a.speech.transcript.commit([TimedWord(w, s, e, 0.9, 0.0, 0.0) for w, s, e in NEUTRAL])
    assert [w["w"] for w in a.words_at(3.5)] == ["the", "bus", "stops"]
    # a fixed 7 s context (the old behaviour) keeps mixing both sentences
    fixed = assembler(ring, a.speech.transcript, utterance_pause=None)
    assert [w["w"] for w in fixed.words_at(3.5)] == ["i", "love", "this", "the", "bus", "stops"]


def test_a_short_pause_inside_a_sentence_keeps_its_words_together():
    ring = ring_with_speech([(0.5, 1.5), (1.8, 3.0)], 4.0)  # 0.3 s: a comma, not a new utterance
    words = POSITIVE + [("it", 1.8, 2.0), ("is", 2.0, 2.2), ("great", 2.2, 3.0)]
    a = assembler(ring, committed(words))
    assert [w["w"] for w in a.words_at(3.5)] == ["i", "love", "this", "it", "is", "great"]


def test_text_context_still_bounds_a_long_utterance():
    ring = ring_with_speech([(0.0, 12.0)], 12.5)
    words = [(f"w{i}", i * 0.5, i * 0.5 + 0.4) for i in range(24)]
    a = assembler(ring, committed(words), text_context=4.0)
    got = a.words_at(12.0)
    assert got and all(0.5 * (w["start"] + w["end"]) >= 8.0 for w in got)
    assert a.text_start(12.0) == 8.0  # speech all along: the context bound applies


def test_the_next_utterance_takes_over_only_once_the_last_one_is_transcribed():
    """Under load the last words of a sentence may arrive after the next sentence began:
    until a pause pass has settled the first sentence, the text still starts with it."""
    ring = ring_with_speech([(0.5, 1.5), (2.3, 3.4)], 6.0)
    tr = committed(POSITIVE[:2])  # "this" (ends 1.5) not committed yet
    a = assembler(ring, tr)
    a.speech.settled_until = 0.0  # no pause pass has run over the first sentence
    assert [w["w"] for w in a.words_at(2.5)] == ["i", "love"]
    tr.commit([TimedWord("this", 1.1, 1.5, 0.9, 0.0, 0.0)])
    a.speech.settled_until = 1.5  # the pause pass committed it
    assert a.words_at(2.5) == []  # now the text follows the sentence being spoken
