"""The one path from raw signal to per-step audio and face features.

`hcl-extract` (training data) and the live windowing both call
`SegmentFeaturizer`, so a model sees exactly the same kind of input in both:

    featurizer = SegmentFeaturizer(settings=FeatureSettings())
    seg = featurizer.featurize(read_media("clip.mp4"), start=2.0, end=6.0)   # a span of a file
    seg = featurizer.featurize_arrays(wave_16k, frames, n_steps=1)          # live: one step

A training sample is these features plus the transcript's text features
(`hcl.data.sample.build_sample`, used by `hcl-extract`).

A span of D seconds has S = `n_steps_for(D, step_seconds)` steps (a final
partial step counts). Per step:
    audio      (S, settings.audio.dim) float32, audio_mask (S,) bool = the step holds speech
    video      (S, settings.face.dim)  float32, video_mask (S,) bool = a face was seen in the step
Masked-out video steps are zero rows; masked-out audio steps keep their
(finite) acoustic statistics, the mask says they hold no speech.
"""

from __future__ import annotations

from typing import Iterable, Iterator, NamedTuple

import numpy as np

from hcl.features.audio import AudioFeatureExtractor
from hcl.features.config import FeatureSettings
from hcl.features.face import FaceFeatureExtractor, aggregate_steps
from hcl.features.media import ANALYSIS_MAX_SIDE, MediaClip, n_steps_for


class SegmentFeatures(NamedTuple):
    audio: np.ndarray  # (S, D_a) float32
    audio_mask: np.ndarray  # (S,) bool, True = speech
    video: np.ndarray  # (S, D_v) float32
    video_mask: np.ndarray  # (S,) bool, True = face seen

    @property
    def n_steps(self) -> int:
        return int(self.audio.shape[0])


class SegmentFeaturizer:
    """Holds the audio and face extractors of one `FeatureSettings`; the face model loads on first use."""

    def __init__(
        self,
        *,
        settings: FeatureSettings = FeatureSettings(),
        device: str = "cpu",
        face_running_mode: str = "image",
    ) -> None:
        self.settings = settings
        self.audio = AudioFeatureExtractor(config=settings.audio, device=device)
        self._face: FaceFeatureExtractor | None = None
        self._face_running_mode = face_running_mode

    @property
    def face(self) -> FaceFeatureExtractor:
        if self._face is None:
            self._face = FaceFeatureExtractor(config=self.settings.face, running_mode=self._face_running_mode)
        return self._face

    @property
    def step_seconds(self) -> float:
        return self.settings.step_seconds

    def n_steps(self, duration: float) -> int:
        return n_steps_for(duration, self.settings.step_seconds)

    def featurize(self, clip: MediaClip, start: float = 0.0, end: float | None = None) -> SegmentFeatures:
        """Features of [start, end) seconds of `clip` (end None = the end of the clip).

        The audio goes through the extractor in pieces (`MediaClip.audio_chunks`) and the
        frames one at a time, scaled to `ANALYSIS_MAX_SIDE`: memory does not grow with
        the span, and a clip read with `load_audio=False` is never decoded whole."""
        end = clip.duration if end is None else end
        if not end > start:
            raise ValueError(f"{clip.path}: empty span [{start}, {end}) s")
        if start >= clip.duration:
            raise ValueError(f"{clip.path}: span starts at {start:.2f} s, after the end of the file ({clip.duration:.2f} s)")
        s = self.settings
        n = self.n_steps(end - start)
        if clip.has_audio:
            span = max(0, int(round(end * clip.sample_rate)) - int(round(start * clip.sample_rate)))
            pieces = _padded(clip.audio_chunks(start, end), span)  # as audio_span: zeros past the track
            audio, audio_mask = self.audio.steps_stream(pieces, s.step_seconds, n_steps=n)
        else:
            audio = np.zeros((n, s.audio.dim), np.float32)
            audio_mask = np.zeros(n, bool)
        if clip.has_video:
            frames = clip.frames(s.face.frames_per_second, start, end, max_side=ANALYSIS_MAX_SIDE)
            times, feats = self.face_frames(((t - start, rgb) for t, rgb in frames), t0_ms=int(round(start * 1000)))
            video, video_mask = aggregate_steps(times, feats, n, s.step_seconds, dim=s.face.dim)
        else:
            video = np.zeros((n, s.face.dim), np.float32)
            video_mask = np.zeros(n, bool)
        return SegmentFeatures(audio, audio_mask, video, video_mask)

    def featurize_arrays(
        self,
        wave_16k: np.ndarray | None,
        frames: Iterable[tuple[float, np.ndarray]] | None,
        *,
        n_steps: int,
        t0_ms: int = 0,
    ) -> SegmentFeatures:
        """Features of `n_steps` steps from raw arrays.

        wave_16k: (N,) float32 16 kHz mono covering the steps (None = no audio:
        all steps masked). frames: (t seconds from the span start, rgb uint8
        (H, W, 3)) pairs, already thinned to the analysis rate (None = no video).
        t0_ms: clock of the span start, passed to the face tracker.
        """
        s = self.settings
        if wave_16k is None or len(wave_16k) == 0:
            audio = np.zeros((n_steps, s.audio.dim), np.float32)
            audio_mask = np.zeros(n_steps, bool)
        else:
            audio, audio_mask = self.audio.steps(wave_16k, s.step_seconds, n_steps=n_steps)
        if frames is None:
            video = np.zeros((n_steps, s.face.dim), np.float32)
            video_mask = np.zeros(n_steps, bool)
        else:
            times, feats = self.face_frames(frames, t0_ms=t0_ms)
            video, video_mask = aggregate_steps(times, feats, n_steps, s.step_seconds, dim=s.face.dim)
        return SegmentFeatures(audio, audio_mask, video, video_mask)

    def face_frames(
        self, frames: Iterable[tuple[float, np.ndarray]], t0_ms: int = 0
    ) -> tuple[list[float], list[np.ndarray | None]]:
        """Per-frame face features: (times, (58,) array or None per frame)."""
        times: list[float] = []
        feats: list[np.ndarray | None] = []
        for t, rgb in frames:
            times.append(float(t))
            feats.append(self.face.frame(rgb, t0_ms + int(round(t * 1000))))
        return times, feats

    def close(self) -> None:
        if self._face is not None:
            self._face.close()
            self._face = None


def _padded(pieces: Iterable[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """The pieces, then zeros up to `n` samples in all (nothing past `n`)."""
    done = 0
    for piece in pieces:
        piece = piece[: max(0, n - done)]
        if len(piece):
            done += len(piece)
            yield piece
    if done < n:
        yield np.zeros(n - done, np.float32)
