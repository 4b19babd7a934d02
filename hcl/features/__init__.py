"""Feature extractors shared by training data (`hcl-extract`) and live use.

One code path: `hcl.features.segment.SegmentFeaturizer` (and the live
windowing, which calls the same per-step functions) turns raw signal into
per-step feature vectors. Heavy imports (mediapipe, faster-whisper, PyAV,
transformers) happen inside the extractor classes, not here.
"""

from hcl.features.config import (
    AudioFeatureConfig,
    FaceFeatureConfig,
    FeatureSettings,
    SpeechConfig,
    TextFeatureConfig,
)

__all__ = [
    "AudioFeatureConfig",
    "FaceFeatureConfig",
    "FeatureSettings",
    "SpeechConfig",
    "TextFeatureConfig",
]
