"""LivePipeline.stop ends every thread it started, the text-prefetch thread included
(an audio-only input aborted at exit with rc 134 while that thread was still encoding)."""

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


def test_stop_joins_the_text_prefetch_thread(tmp_path, live_scorer, monkeypatch):
    from realtime.pipeline.live import LivePipeline, PipelineOptions
    from realtime.sources.file import FileSource

    path = write_wav(tmp_path / "speech-8k.wav", np.tile(tone(300, 0.5), 12)[::2], sample_rate=8000)  # 6 s, audio only
    encoding = threading.Event()
    original = live_scorer.encode_text

    def slow_encode(text):
        if threading.current_thread().name == "text-prefetch":
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
        assert encoding.wait(10), "the prefetch thread never encoded a text"
    finally:
        pipeline.stop()
    prefetch = pipeline.prefetch
    assert prefetch is not None and prefetch.done.is_set() and not prefetch.running
    alive = [t.name for t in threading.enumerate() if t.name in ("text-prefetch", "speech", "windowing", "scorer", "file-source")]
    assert alive == []
