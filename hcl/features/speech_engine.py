"""The speech-engine protocol: audio in, `Word`s with times out; Whisper or Moonshine.

Live passes and the offline tools (`hcl-annotate`, `hcl-extract`) hold a
`SpeechEngine` made by `make_engine(SpeechConfig(engine=...))` and call
`engine.transcribe(wave_16k, offset)`: the words of a mono 16 kHz buffer, times in
seconds plus `offset` (where the buffer starts in the stream). `word_times` tells
whether the recogniser itself timed the words (Whisper) or they are spread over
each phrase's speech (Moonshine; hcl.features.word_times), which a commit rule may
weigh. `load()` loads the weights now instead of on the first pass.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from hcl.features.config import SpeechConfig
from hcl.features.moonshine import MoonshineEngine
from hcl.features.speech import SpeechTranscriber, Word


@runtime_checkable
class SpeechEngine(Protocol):
    name: str  # "whisper" | "moonshine" (SpeechConfig.engine, the CLI's --asr)
    sample_rate: int  # what `transcribe` takes: 16000
    word_times: bool  # True: times from the recogniser; False: estimated per phrase
    config: SpeechConfig

    def load(self) -> None: ...

    def transcribe(self, wave_16k: np.ndarray, offset: float = 0.0) -> list[Word]: ...


def make_engine(
    config: SpeechConfig = SpeechConfig(),
    *,
    cpu_threads: int = 0,
    fit_encoder: bool = False,
    temperature_fallback: bool = True,
) -> SpeechEngine:
    """The engine `config.engine` names. `cpu_threads`: 0 = the engine's default (all cores
    for Whisper, one for Moonshine); `fit_encoder` / `temperature_fallback` are Whisper's
    live-pass options (hcl.features.speech) and do not apply to Moonshine."""
    if config.engine == "moonshine":
        return MoonshineEngine(config=config, cpu_threads=cpu_threads or 1)
    return SpeechTranscriber(config=config, cpu_threads=cpu_threads, fit_encoder=fit_encoder,
                             temperature_fallback=temperature_fallback)
