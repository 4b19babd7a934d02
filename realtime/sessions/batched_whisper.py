"""Independent Whisper passes (of different sessions) decoded as one batch.

faster-whisper's `BatchedInferencePipeline.transcribe` batches the VAD chunks of ONE
long audio; its `forward(features, tokenizer, chunks_metadata, options)` however takes
any stack of 30 s feature windows: one batched encoder call, one batched greedy/beam
`generate`, one batched word alignment. `BatchedWhisper.transcribe_many` prepares each
pass the way `SpeechTranscriber.transcribe` does (same checks, Silero VAD inside the
pass, the same token budget), runs them through that `forward`, maps the words back
through each pass's own VAD map and applies the same segment filters. On this CPU the
batch costs about half of the passes one by one at B = 2 to 4
(bench/sessions_bench.py --whisper-batch).

Differences from one pass alone, all small: the encoder sees every pass padded to
the longest one of the batch (Whisper is trained on 30 s of padding, more padding is
within what it knows); the token budget is the largest of the batch; faster-whisper
carries its word-timing heuristic's "last speech end" from one pass of the batch to
the next (it only shortens an over-long first word after a pause); and it decodes
once at temperature 0 (the live pipeline's setting; no temperature fallback).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import BatchedInferencePipeline, TranscriptionOptions, get_suppressed_tokens
from faster_whisper.vad import SpeechTimestampsMap, VadOptions, collect_chunks, get_speech_timestamps

from hcl.features.config import SAMPLE_RATE
from hcl.features.speech import (
    LOW_LOGPROB,
    MAX_COMPRESSION_RATIO,
    MAX_TOKENS,
    NO_SPEECH_PROB,
    TOKENS_PER_SECOND,
    Word,
)


@dataclass
class _Pass:
    offset: float
    features: np.ndarray  # (80, 3000)
    duration: float  # s of audio after VAD
    max_new_tokens: int
    vad_map: Any  # faster_whisper.vad.SpeechTimestampsMap, or None without VAD


class BatchedWhisper:
    """A `SpeechTranscriber` (`transcriber`) that can also decode several independent
    passes at once: `transcribe_many([(wave, offset), ...]) -> [[Word, ...], ...]`.
    `model` and `transcribe` are the transcriber's own."""

    def __init__(self, transcriber) -> None:
        self.transcriber = transcriber
        self._tokenizer = None
        self._options = None

    @property
    def model(self):
        return self.transcriber.model

    @property
    def config(self):
        return self.transcriber.config

    def transcribe(self, wave_16k: np.ndarray, offset: float = 0.0) -> list[Word]:
        return self.transcriber.transcribe(wave_16k, offset)

    # ---------------------------------------------------------------- batch
    def _prepare(self, wave_16k: np.ndarray, offset: float) -> _Pass | None:
        """The pass's padded features, or None when it gives no words (too short, silent,
        no speech for the VAD): the checks of `SpeechTranscriber.transcribe`."""
        wave = np.asarray(wave_16k, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"expected mono audio (N,), got {wave.shape}; average the channels first")
        if len(wave) < SAMPLE_RATE // 10 or not np.isfinite(wave).all() or np.abs(wave).max() < 1e-4:
            return None
        budget = min(MAX_TOKENS, int(TOKENS_PER_SECOND * len(wave) / SAMPLE_RATE) + 10)
        vad_map = None
        if self.config.vad:
            chunks = get_speech_timestamps(wave, VadOptions())
            if not chunks:
                return None
            wave = np.concatenate(collect_chunks(wave, chunks)[0])
            vad_map = SpeechTimestampsMap(chunks, SAMPLE_RATE)
        features = self.model.feature_extractor(wave)[..., :-1]
        return _Pass(offset=float(offset), features=pad_or_trim(features), duration=len(wave) / SAMPLE_RATE,
                     max_new_tokens=budget, vad_map=vad_map)

    def _decoding(self, max_new_tokens: int):
        model = self.model
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                                        language=self.config.language or "en")
        options = TranscriptionOptions(
            beam_size=self.config.beam_size, best_of=5, patience=1, length_penalty=1, repetition_penalty=1,
            no_repeat_ngram_size=0, log_prob_threshold=LOW_LOGPROB, no_speech_threshold=NO_SPEECH_PROB,
            compression_ratio_threshold=MAX_COMPRESSION_RATIO, condition_on_previous_text=False,
            prompt_reset_on_temperature=0.5, temperatures=[0.0], initial_prompt=None, prefix=None, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(self._tokenizer, [-1]), without_timestamps=False,
            max_initial_timestamp=1.0, word_timestamps=True, prepend_punctuations="\"'“¿([{-",
            append_punctuations="\"'.。,，!！?？:：”)]}、", multilingual=False, max_new_tokens=max_new_tokens,
            clip_timestamps="0", hallucination_silence_threshold=None, hotwords=None,
        )
        return self._tokenizer, options

    def transcribe_many(self, items: Sequence[tuple[np.ndarray, float]]) -> list[list[Word]]:
        """The words of each (wave, offset) pass, decoded as one batch."""
        passes = [self._prepare(wave, offset) for wave, offset in items]
        todo = [p for p in passes if p is not None]
        out: dict[int, list[Word]] = {}
        if todo:
            tokenizer, options = self._decoding(max(p.max_new_tokens for p in todo))
            pipeline = BatchedInferencePipeline(self.model)  # fresh: its word-timing state starts at 0
            meta = [{"offset": 0.0, "duration": p.duration, "segments": []} for p in todo]
            results = pipeline.forward(np.stack([p.features for p in todo]), tokenizer, meta, options)
            for p, segments in zip(todo, results):
                out[id(p)] = self._words(p, segments)
        return [out.get(id(p), []) if p is not None else [] for p in passes]

    def _words(self, p: _Pass, segments: list[dict]) -> list[Word]:
        words: list[Word] = []
        for seg in segments:
            if seg["no_speech_prob"] > NO_SPEECH_PROB and seg["avg_logprob"] < LOW_LOGPROB:
                continue
            if seg["compression_ratio"] > MAX_COMPRESSION_RATIO:
                continue
            for w in seg.get("words") or []:
                text = w["word"].strip()
                if not text:
                    continue
                start, end = float(w["start"]), float(w["end"])
                if p.vad_map is not None:
                    chunk = p.vad_map.get_chunk_index((start + end) / 2)
                    start, end = p.vad_map.get_original_time(start, chunk), p.vad_map.get_original_time(end, chunk)
                words.append(Word(text, start + p.offset, end + p.offset, float(w["probability"])))
        return words
