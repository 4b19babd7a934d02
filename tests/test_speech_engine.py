"""The speech-engine protocol and factory, the repeat guard and spread word times."""

import numpy as np
import pytest
from media_fixtures import faint_noise, tone

from hcl.features.config import SAMPLE_RATE, FeatureSettings, SpeechConfig
from hcl.features.moonshine import MoonshineEngine
from hcl.features.repeat_guard import drop_repeats
from hcl.features.speech import SpeechTranscriber, Word
from hcl.features.speech_engine import SpeechEngine, make_engine
from hcl.features.word_times import speech_span, spread_words, voiced_runs


def test_factory_picks_the_engine_the_setting_names():
    whisper = make_engine(SpeechConfig(), cpu_threads=1, fit_encoder=True, temperature_fallback=False)
    moonshine = make_engine(SpeechConfig(engine="moonshine"))
    assert isinstance(whisper, SpeechTranscriber) and whisper.fit_encoder and not whisper.temperature_fallback
    assert isinstance(moonshine, MoonshineEngine) and moonshine.cpu_threads == 1  # one thread unless told
    for engine, timed in ((whisper, True), (moonshine, False)):
        assert isinstance(engine, SpeechEngine)
        assert engine.sample_rate == SAMPLE_RATE and engine.word_times is timed and engine.name == engine.config.engine


def test_engine_setting_is_checked_and_round_trips():
    with pytest.raises(ValueError, match="whisper.*moonshine"):
        SpeechConfig(engine="vosk")
    with pytest.raises(ValueError, match="English only"):
        SpeechConfig(engine="moonshine", language="de")
    settings = FeatureSettings(speech=SpeechConfig(engine="moonshine", moonshine_dir="/tmp/m"))
    assert FeatureSettings.from_dict(settings.to_dict()).speech == settings.speech
    old = settings.to_dict()
    for key in ("engine", "moonshine_dir", "repeat_guard"):  # a checkpoint written before these settings
        del old["speech"][key]
    assert FeatureSettings.from_dict(old).speech == SpeechConfig()


@pytest.mark.parametrize("said, kept", [
    ("My daughter. My daughter. My daughter.", "My daughter."),
    ("we are so habit for for for for", "we are so habit for"),
    ("the flower the flower is red", "the flower is red"),
    ("We order two coffees and a slice of lemon cake, the trick, the trick, "
     "we order two coffees and a slice of lemon cake", "We order two coffees and a slice of lemon cake, the trick,"),
    # English that repeats itself stays
    ("he had had enough", "he had had enough"),
    ("it was the age of wisdom, it was the age of foolishness", "it was the age of wisdom, it was the age of foolishness"),
])
def test_repeat_guard(said, kept):
    assert " ".join(drop_repeats(said.split())) == kept


def test_repeat_guard_on_words_keeps_the_first_copy_and_its_times():
    words = [Word(t, i, i + 0.5, 0.9) for i, t in enumerate("thank you thank you".split())]
    assert drop_repeats(words, lambda w: w.text) == words[:2]


def test_voiced_runs_find_bursts_between_pauses():
    wave = np.concatenate([faint_noise(0.5), tone(200, 1.0), faint_noise(0.4, seed=1), tone(300, 0.6), faint_noise(0.3, seed=2)])
    runs = voiced_runs(wave, SAMPLE_RATE)
    assert len(runs) == 2
    (a, b), (c, d) = runs
    assert abs(a - 0.5) < 0.03 and abs(b - 1.5) < 0.03 and abs(c - 1.9) < 0.03 and abs(d - 2.5) < 0.03
    assert speech_span(wave, SAMPLE_RATE) == (a, d)
    assert voiced_runs(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE) == []


def test_spread_words_by_characters_and_around_pauses():
    # one run: shares by len + 1
    times = spread_words(["a", "bbb"], [(1.0, 2.0)])
    assert times == [(1.0, 1.333), (1.333, 2.0)]
    # two runs: the boundary near the pause moves onto it; no word spans the pause
    times = spread_words(["hello", "there.", "again"], [(0.0, 1.2), (2.0, 2.6)])
    assert times[1][1] == 1.2 and times[2][0] == 2.0
    assert all(a <= b for a, b in times) and all(y[0] >= x[1] for x, y in zip(times, times[1:]))
    with pytest.raises(ValueError, match="voiced run"):
        spread_words(["x"], [])


def test_repeat_guard_cuts_a_restarted_hypothesis_longer_than_the_audio_holds():
    said = "The report and a fee on the report and a fee".split()
    assert drop_repeats(said) == said  # no adjacent or long repeat: English could say this
    assert " ".join(drop_repeats(said, max_items=7)) == "The report and a fee on"
    assert drop_repeats(said, max_items=3) == said[:3]
    assert drop_repeats(said, max_items=20) == said
