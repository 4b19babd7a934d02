"""LivePipeline.stop asks and returns at once; join ends every thread it started, the text
encoder's included (an audio-only input aborted at exit with rc 134 while a thread was
still encoding a text)."""

from __future__ import annotations

import threading
import time

import numpy as np
from media_fixtures import tone, write_wav

from hcl.features.speech import Word
from realtime.core.component import Policy


class Transcriber:
    """Hears one word per pass (the pipeline only needs words to prefetch text for)."""

    model = object()

    def transcribe(self, wave, offset=0.0):
        return [Word("hello", offset + 0.1, offset + 0.4, 0.9)] if len(wave) > 8000 else []


def test_stop_returns_at_once_and_join_ends_the_text_encoder_thread(tmp_path, live_scorer, monkeypatch):
    from realtime.pipeline.live import LivePipeline, PipelineOptions
    from realtime.sources.file import FileSource

    path = write_wav(tmp_path / "speech-8k.wav", np.tile(tone(300, 0.5), 12)[::2], sample_rate=8000)  # 6 s, audio only
    encoding = threading.Event()
    original = live_scorer.encode_text

    def slow_encode(text):
        if threading.current_thread().name == "text-encoder":
            encoding.set()
            time.sleep(0.4)  # an encoding still under way when stop() is called
        return original(text)

    monkeypatch.setattr(live_scorer, "encode_text", slow_encode)
    pipeline = LivePipeline(
        source=FileSource(path=path, policy=Policy.LIVE),
        scorer=live_scorer,
        options=PipelineOptions(policy=Policy.LIVE),
        transcriber=Transcriber(),
    )
    pipeline.start()
    try:
        assert pipeline.source.frames is None  # audio only, as in the probe
        assert encoding.wait(10), "the text encoder never encoded a text"
    finally:
        t0 = time.perf_counter()
        pipeline.stop()
        asked = time.perf_counter() - t0
        pipeline.join(60)
    assert asked < 0.5, f"stop() took {asked:.2f} s: it only asks, join() waits"
    text = pipeline.text
    assert text.done.is_set() and not text.running
    alive = [t.name for t in threading.enumerate()
             if t.name in ("text-encoder", "speech", "windowing", "scorer", "file-source", "session-stop")]
    assert alive == []
