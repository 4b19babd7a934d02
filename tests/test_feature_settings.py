"""What the feature settings hold for everyone: one definition of the modality names and
the sample rate, settings that refuse what no code implements, and a features package
that does not depend on dataset code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hcl.features.config import MODALITIES, SAMPLE_RATE, AudioFeatureConfig, FaceFeatureConfig, FeatureSettings


def test_modality_names_and_sample_rate_have_one_definition():
    import hcl.config
    import hcl.features.media
    import hcl.features.speech

    assert MODALITIES == ("text", "audio", "video")
    assert hcl.config.MODALITIES is MODALITIES
    assert hcl.features.media.SAMPLE_RATE == hcl.features.speech.SAMPLE_RATE == SAMPLE_RATE == 16000
    assert AudioFeatureConfig().sample_rate == SAMPLE_RATE


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: AudioFeatureConfig(sample_rate=8000), "sample_rate must be 16000"),
        (lambda: FaceFeatureConfig(speaker_rule="nearest"), "speaker_rule must be 'largest'"),
        (lambda: FeatureSettings.from_dict({**FeatureSettings().to_dict(), "audio": {**AudioFeatureConfig().to_dict(), "sample_rate": 44100}}),
         "sample_rate must be 16000"),
    ],
)
def test_settings_no_code_implements_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_saved_settings_load_back_unchanged():
    settings = FeatureSettings()
    assert FeatureSettings.from_dict(settings.to_dict()) == settings


def test_features_import_no_dataset_code():
    code = (
        "import sys, hcl.features.segment, hcl.features.text, hcl.features.speech, hcl.features.face; "
        "print(sorted(m for m in sys.modules if m.startswith('hcl.data')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
