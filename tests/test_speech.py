import re
from pathlib import Path

import numpy as np
import pytest
from media_fixtures import faint_noise

from hcl.features.config import PACKAGED_WHISPER_TINY_EN, SpeechConfig
from hcl.features.speech import SpeechTranscriber, Word, resolve_whisper_model


def words_of(words: list[Word]) -> set[str]:
    return {re.sub(r"[^a-z']", "", w.text.lower()) for w in words}


def test_packaged_model_resolves_to_the_package_folder():
    path = Path(resolve_whisper_model(PACKAGED_WHISPER_TINY_EN))
    assert (path / "model.bin").exists() and (path / "tokenizer.json").exists()
    assert resolve_whisper_model("base.en") == "base.en"  # other names go to faster-whisper as they are
    with pytest.raises(ValueError, match="packaged"):
        resolve_whisper_model("packaged:large-v9")


def test_real_mosi_clip_has_words(whisper, mosi_clip):
    words = whisper.transcribe(mosi_clip.audio, offset=66.87)
    assert len(words) >= 8
    assert words_of(words) & {"sucker", "punch", "failure", "ambitious", "weird", "really"}
    for w in words:
        assert 66.87 - 0.01 <= w.start <= w.end <= 66.87 + mosi_clip.duration + 0.5
        assert 0.0 <= w.probability <= 1.0


def test_real_mosi_wav(whisper, mosi_wav_path):
    from hcl.features.media import read_media

    words = words_of(whisper.transcribe(read_media(mosi_wav_path).audio))
    assert words & {"really", "good", "anyhow"}


def test_generated_speech_comes_back_and_silence_gives_nothing(whisper, talking_clip, talking_video):
    words = whisper.transcribe(talking_clip.audio)
    assert words_of(words) & {"love", "wonderful", "movie", "music", "beautiful"}
    assert all(w.end <= talking_video.speech_end + 0.3 for w in words)  # nothing in the silent stretch
    silent = talking_clip.audio_span(talking_video.speech_end, talking_video.duration)
    assert whisper.transcribe(silent, offset=talking_video.speech_end) == []


def test_offset_shifts_times(whisper, talking_clip):
    part = talking_clip.audio_span(0.0, 2.5)
    a = whisper.transcribe(part)
    b = whisper.transcribe(part, offset=100.0)
    assert [w.text for w in a] == [w.text for w in b] and a
    assert all(abs(y.start - x.start - 100.0) < 1e-6 for x, y in zip(a, b))


@pytest.mark.parametrize("kind", ["zeros", "faint", "loud"])
def test_noise_gives_no_words(whisper, kind):
    wave = {
        "zeros": np.zeros(48000, np.float32),
        "faint": faint_noise(3.0),
        "loud": np.random.default_rng(5).normal(0, 0.2, 48000).astype(np.float32),
    }[kind]
    assert whisper.transcribe(wave) == []


def test_rejects_stereo(whisper):
    with pytest.raises(ValueError, match="mono"):
        whisper.transcribe(np.zeros((2, 16000), np.float32))


def test_model_given_by_path(tmp_path, talking_clip):
    """SpeechConfig.model may name any faster-whisper model folder (here the packaged one, by path)."""
    folder = resolve_whisper_model(PACKAGED_WHISPER_TINY_EN)
    transcriber = SpeechTranscriber(config=SpeechConfig(model=folder, beam_size=1), cpu_threads=1)
    assert transcriber.model_path == folder
    assert words_of(transcriber.transcribe(talking_clip.audio_span(0.0, 2.5))) & {"love", "wonderful", "movie", "really"}
    not_a_model = tmp_path / "empty_model"
    not_a_model.mkdir()
    with pytest.raises(RuntimeError, match="cannot load the speech model"):
        SpeechTranscriber(config=SpeechConfig(model=str(not_a_model))).model


def test_transcript_counts_every_committed_word_after_pruning():
    from realtime.pipeline.speech import TimedWord, Transcript

    tr = Transcript(keep_seconds=1.5)
    tr.commit([TimedWord(f"w{i}", i, i + 0.4, 0.9, i + 1, i + 1) for i in range(10)])
    assert len(tr.all_words()) == 2  # the recent words the windows still need (ending within 1.5 s of the newest)
    assert tr.committed == 10  # what /metrics reports: the whole session
