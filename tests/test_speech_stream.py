"""SpeechStream, the synchronous speech step object, driven in milliseconds by a fake
clock over synthetic audio and a scripted transcriber (no threads, no Whisper)."""

from __future__ import annotations

import numpy as np
import pytest

from hcl.features.speech import Word
from realtime.core.component import Policy
from realtime.pipeline.speech import SpeechOptions, SpeechStream, speech_end, utterance_start

SR = 16000


def phrase(words, start, *, word=0.4, gap=0.05):
    """Scripted words [(text, start, end)] spoken back to back from `start`."""
    out, t = [], start
    for w in words:
        out.append((w, t, t + word))
        t += word + gap
    return out


class Scripted:
    """A transcriber that hears the scripted words lying wholly inside the audio it is given
    (a word cut by the pass horizon is heard as a different word, like Whisper guessing)."""

    def __init__(self, script):
        self.script = script
        self.calls = 0

    def __call__(self, wave, offset=0.0):
        self.calls += 1
        end = offset + len(wave) / SR
        out = []
        for text, a, b in self.script:
            if a >= offset - 1e-6 and b <= end + 1e-6:
                out.append(Word(text, a, b, 0.9))
            elif a >= offset - 1e-6 and a < end:
                out.append(Word(text + "-cut", a, end, 0.3))
        return out


def audio_for(script, duration):
    """A tone wherever a scripted word is spoken, digital silence elsewhere."""
    t = np.arange(int(duration * SR)) / SR
    wave = np.zeros_like(t, dtype=np.float32)
    for _, a, b in script:
        on = (t >= a) & (t < b)
        wave[on] = 0.3 * np.sin(2 * np.pi * 220 * t[on])
    return wave


def reader(wave):
    def read(t0, t1):
        a, b = int(round(t0 * SR)), int(round(t1 * SR))
        out = np.zeros(max(0, b - a), np.float32)
        seg = wave[max(0, a) : max(0, b)]
        out[max(0, -a) : max(0, -a) + len(seg)] = seg
        return out

    return read


def drive(stream, duration, *, tick=0.01):
    """Step the stream with the audio horizon = the fake clock, `tick` s at a time; then finish."""
    t = 0.0
    while t < duration - 1e-9:
        t = round(t + tick, 6)
        stream.step(t, now=t)
    stream.finish(duration, now=duration)
    return stream.transcript.all_words()


def make(script, duration, *, catch_up=False, **kw):
    """A stream over the script's audio; catch_up=True: the live policy (missed passes skipped)."""
    transcriber = Scripted(script)
    policy = Policy.LIVE if catch_up else Policy.REPRODUCIBLE
    stream = SpeechStream(read=reader(audio_for(script, duration)), sample_rate=SR, transcribe=transcriber,
                          options=SpeechOptions(**{"pause_passes": False, "max_backlog": None, **kw}), policy=policy)
    return stream, transcriber


def test_a_phrase_is_committed_by_one_pass_as_soon_as_it_pauses():
    script = phrase(["i", "love", "this"], 0.3)  # ends at 1.6
    live, _ = make(script, 4.0, pause_passes=True)
    words = drive(live, 4.0)
    assert [w.text for w in words] == ["i", "love", "this"]
    last = words[-1]
    # the pause (0.25 s) shows, plus a 20 ms frame and a 10 ms tick: one pass commits it
    assert last.committed_at - last.end <= 0.25 + 0.02 + 0.011
    assert live.pause_pass_count == 1
    # the reproducible policy (no pause passes) waits for the next periodic pass
    strict, _ = make(script, 4.0, pause_passes=False)
    late = drive(strict, 4.0)[-1]
    assert late.text == "this" and late.committed_at - late.end > 0.35


def test_words_of_a_long_phrase_commit_by_agreement_before_it_ends_and_never_twice():
    script = phrase([f"w{i}" for i in range(12)], 0.2)  # 5.4 s of speech without a pause
    end_of_speech = script[-1][2]
    stream, _ = make(script, 8.0, pause_passes=True)
    words = drive(stream, 8.0)
    assert [w.text for w in words] == [w for w, _, _ in script]  # no cut word, no repeats
    early = [w for w in words if w.committed_at < end_of_speech]
    assert len(early) >= 6  # two passes agreed on them while the speaker was still talking
    assert all(w.committed_at >= w.end for w in words)


def test_silence_is_not_sent_to_the_transcriber():
    script = phrase(["hello", "there"], 0.5)
    stream, transcriber = make(script, 10.0, pause_passes=True)
    drive(stream, 10.0)
    speech_passes = transcriber.calls
    assert stream.quiet_passes >= 5  # 8 s of silence: the periodic passes skip Whisper
    assert speech_passes <= 4
    strict, strict_transcriber = make(script, 10.0, pause_passes=False)
    drive(strict, 10.0)
    assert strict_transcriber.calls > speech_passes


def test_the_next_utterance_is_transcribed_on_its_own():
    first = phrase(["good", "morning"], 0.2)
    second = phrase(["see", "you"], 2.5)
    stream, _ = make(first + second, 5.0, pause_passes=True)
    words = drive(stream, 5.0)
    assert [w.text for w in words] == ["good", "morning", "see", "you"]
    assert stream.pause_pass_count == 2
    assert stream._scan_start >= first[-1][2] - 1e-6  # passes after the pause start after it


def test_skips_passes_when_far_behind_and_counts_them():
    script = phrase(["a", "b"], 0.2)
    stream, _ = make(script, 20.0, catch_up=True)
    stream.step(12.0, now=12.0)  # the first call finds 12 passes due: it runs the latest only
    assert stream.skipped >= 10


def test_energy_helpers():
    wave = np.concatenate([np.zeros(8000), 0.3 * np.ones(16000), np.zeros(8000), 0.3 * np.ones(8000), np.zeros(1600)])
    wave = wave.astype(np.float32)
    assert speech_end(wave, t0=10.0, sample_rate=SR, threshold_db=-45) == pytest.approx(12.5)
    assert speech_end(np.zeros(16000, np.float32), t0=0.0, sample_rate=SR, threshold_db=-45) is None
    # a 0.5 s pause splits the utterances at 0.45 s, not at 0.6 s
    assert utterance_start(wave, t0=10.0, sample_rate=SR, pause=0.45, threshold_db=-45) == pytest.approx(12.0)
    assert utterance_start(wave, t0=10.0, sample_rate=SR, pause=0.6, threshold_db=-45) == pytest.approx(10.5)
    # a click (one loud 20 ms frame) after a pause is no new utterance
    click = wave.copy()
    click[int(2.55 * SR) : int(2.57 * SR)] = 0.3
    assert utterance_start(click, t0=10.0, sample_rate=SR, pause=0.45, threshold_db=-45) == pytest.approx(12.0)
    assert utterance_start(np.zeros(1000, np.float32), t0=0.0, sample_rate=SR, pause=0.45, threshold_db=-45) is None


def test_a_quiet_recording_still_has_pauses_and_room_noise_is_no_speech():
    """Speech at about -45 dBFS over -75 dBFS room noise (a real MOSI clip is like this):
    a fixed -45 dB pause level would call most of it a pause."""
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 10 ** (-75 / 20), int(3.0 * SR)).astype(np.float32)
    t = np.arange(len(noise)) / SR
    speech = ((t >= 0.5) & (t < 1.2)) | ((t >= 1.8) & (t < 2.6))
    wave = noise + np.where(speech, 0.008 * np.sin(2 * np.pi * 180 * t), 0).astype(np.float32)  # ~ -45 dBFS
    assert speech_end(wave, t0=0.0, sample_rate=SR, threshold_db=-45) == pytest.approx(2.6, abs=0.03)
    assert utterance_start(wave, t0=0.0, sample_rate=SR, pause=0.45, threshold_db=-45) == pytest.approx(1.8, abs=0.03)
    assert speech_end(noise, t0=0.0, sample_rate=SR, threshold_db=-45) is None


def test_a_stream_that_fell_behind_still_gives_each_phrase_its_pause_pass_in_order():
    first = phrase(["good", "morning"], 0.2)  # ends 1.05
    second = phrase(["see", "you", "soon"], 2.0)  # ends 3.3
    stream, _ = make(first + second, 8.0, pause_passes=True, catch_up=True)
    horizons = []
    for _ in range(6):  # the thread wakes late: the audio is already at 8 s
        stream.step(8.0, now=8.0)
        horizons.append(stream._last_h)
    assert stream.pause_pass_count == 2
    assert horizons[:2] == pytest.approx([1.05 + 0.25, 3.3 + 0.25], abs=0.03)  # at the pauses, not at 8 s
    assert stream.settled_until == pytest.approx(3.3, abs=0.03)
    assert [w.text for w in stream.transcript.all_words()] == ["good", "morning", "see", "you", "soon"]
