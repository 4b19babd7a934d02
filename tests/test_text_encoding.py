"""A window's text is encoded once, on one thread: the session's `TextEncoding` serves
futures keyed by text, a waiting window before queued guesses, and the pipeline's
windowing, revisions and guesses all go through it."""

from __future__ import annotations

import collections
import threading
import time

import numpy as np
import pytest
from media_fixtures import tone, write_wav

from hcl.features.speech import Word
from realtime.core.component import Policy
from realtime.pipeline.text import Priority, TextEncoding, TextStopped


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


class CountingEncoder:
    """A fake text encoder: notes each text and the thread it ran on; `hold` blocks one text."""

    def __init__(self, hold: str | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.hold = hold
        self.release = threading.Event()

    def __call__(self, text: str) -> np.ndarray:
        self.calls.append((text, threading.current_thread().name))
        if text == self.hold:
            self.release.wait(10)
        return np.full((1, 2), len(text), np.float32)

    @property
    def texts(self) -> list[str]:
        return [t for t, _ in self.calls]


def test_a_waiting_window_goes_before_queued_guesses_and_no_text_is_encoded_twice():
    fake = CountingEncoder(hold="guess 1")
    text = TextEncoding(encode=fake, keep=2)
    text.start()
    try:
        text.prefetch("guess 1")
        wait_for(lambda: fake.texts == ["guess 1"])  # in flight, held
        text.prefetch("guess 2")
        text.prefetch("guess 3")  # the newest guess replaces the queued one
        revised = text.request("revised words", Priority.REVISION)
        window = text.request("window words")
        assert text.request("window words") is window  # queued: the same future, not a second encoding
        assert not window.done()
        fake.release.set()
        assert window.result(10)[0, 0] == len("window words")
        revised.result(10)
        wait_for(lambda: len(fake.calls) == 4)
        # the window waited behind the one encoding in flight only, then the revision, then the guess
        assert fake.texts == ["guess 1", "window words", "revised words", "guess 3"]
        assert text.encode("guess 3")[0, 0] == len("guess 3")  # kept: served at once
        assert text.request("guess 3").done()
        time.sleep(0.05)
        assert len(fake.calls) == 4
        assert {name for _, name in fake.calls} == {"text-encoder"}
        stats = text.stats()
        assert stats["encoded"] == 4 and stats["dropped_guesses"] == 1 and stats["kept"] == 2  # memory bound: keep
    finally:
        text.stop()
        text.join(10)
    assert not text.running


def test_a_guess_asked_for_by_a_window_moves_up_and_stopping_fails_what_is_queued():
    fake = CountingEncoder(hold="first")
    text = TextEncoding(encode=fake)
    text.start()
    text.request("first")
    wait_for(lambda: fake.texts == ["first"])
    text.request("later revision", Priority.REVISION)
    text.prefetch("next window")
    window = text.request("next window")  # the guess is the window's text: it goes first now
    fake.release.set()
    window.result(10)
    wait_for(lambda: len(fake.calls) == 3)
    assert fake.texts == ["first", "next window", "later revision"]

    fake2 = CountingEncoder(hold="slow")
    stopping = TextEncoding(encode=fake2)
    stopping.start()
    stopping.request("slow")
    wait_for(lambda: fake2.texts == ["slow"])
    queued = stopping.request("never")
    stopping.stop()
    fake2.release.set()
    stopping.join(10)
    text.stop()
    text.join(10)
    with pytest.raises(TextStopped):
        queued.result(1)
    with pytest.raises(TextStopped):
        stopping.encode("after stop")
    assert fake2.texts == ["slow"]


class Transcriber:
    """Hears one word per pass, so windows have text and the guesses have words."""

    model = object()

    def transcribe(self, wave, offset=0.0):
        return [Word("hello", offset + 0.1, offset + 0.4, 0.9)] if len(wave) > 8000 else []


@pytest.mark.parametrize("policy", [Policy.FAST, Policy.LIVE])
def test_a_pipeline_encodes_every_text_once_on_its_encoder_thread(tmp_path, live_scorer, monkeypatch, policy):
    from realtime.pipeline.live import LivePipeline, PipelineOptions
    from realtime.sources.file import FileSource

    path = write_wav(tmp_path / "speech.wav", np.tile(tone(300, 0.5), 8), sample_rate=16000)  # 4 s
    calls = []
    original = live_scorer.encode_text

    def counting(text):
        calls.append((text, threading.current_thread().name))
        return original(text)

    monkeypatch.setattr(live_scorer, "encode_text", counting)
    pipeline = LivePipeline(source=FileSource(path=path, policy=policy), scorer=live_scorer,
                            options=PipelineOptions(policy=policy), transcriber=Transcriber())
    pipeline.start()
    try:
        assert pipeline.wait(60), "the file was not scored"
    finally:
        pipeline.stop()
        pipeline.join(60)
    assert not pipeline.problems()
    windows = pipeline.messages
    assert len(windows) >= 6 and any(m["words"] for m in windows)
    assert calls, "no text was encoded"
    assert {name for _, name in calls} == {"text-encoder"}, calls
    twice = [t for t, n in collections.Counter(t for t, _ in calls).items() if n > 1]
    assert twice == [], f"encoded more than once: {twice}"
    stats = pipeline.metrics()["components"]["text"]
    assert stats["encoded"] == len(calls) and stats["hits"] + stats["shared"] + stats["encoded"] >= len(windows)
