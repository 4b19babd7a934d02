"""--asr whisper|moonshine: the option on every command, the engine each path builds,
and Moonshine through the real live path (hcl-annotate's) on a generated clip: the
robust words, nothing committed twice, and its spread word times in the windows'
"words read" span and in the recording's VTT."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from hcl.features.config import FeatureSettings
from hcl.features import moonshine
from hcl.features.moonshine import MoonshineEngine
from hcl.features.speech import SpeechTranscriber
from realtime.app.options import annotate_parser, live_parser
from realtime.core.component import Policy
from realtime.pipeline.speech import LIVE_ENGINE, SpeechOptions, speech_config, transcriber_for
from realtime.scale.settings import ServeSettings


def test_asr_option_parses_on_every_command():
    from hcl.extract import build_parser

    assert live_parser().parse_args(["--asr", "moonshine"]).asr == "moonshine"
    assert live_parser().parse_args([]).asr == LIVE_ENGINE == SpeechOptions().engine  # one default
    assert annotate_parser().parse_args(["a.mp4", "-o", "out", "--asr", "whisper"]).asr == "whisper"
    assert build_parser().parse_args(["a.mp4", "-o", "/tmp/hcl-asr-test-out", "--asr", "moonshine"]).asr == "moonshine"
    for parser, argv in ((live_parser(), []), (annotate_parser(), ["a.mp4", "-o", "out"])):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([*argv, "--asr", "vosk"])
        assert exc.value.code == 2


def test_serve_setting_asr_is_checked():
    assert ServeSettings.from_args({"asr": "moonshine"}).asr == "moonshine"
    assert ServeSettings.from_args({}).asr is None
    with pytest.raises(ValueError, match="asr must be one of whisper, moonshine"):
        ServeSettings.from_args({"asr": "vosk"})


def test_each_path_builds_the_engine_the_option_names():
    settings = FeatureSettings()
    moon = transcriber_for(settings, SpeechOptions(engine="moonshine"), Policy.LIVE)
    assert isinstance(moon, MoonshineEngine) and moon.name == "moonshine" and not moon.word_times
    assert moon.cpu_threads == 1  # one thread: two cost 2.5 times as much on a shared 2-core machine
    whisper = transcriber_for(settings, SpeechOptions(engine="whisper"), Policy.LIVE)
    assert isinstance(whisper, SpeechTranscriber) and whisper.config.beam_size == 1 and whisper.fit_encoder
    # offline (FAST): the checkpoint's beam; engine None: the checkpoint's
    assert speech_config(settings, SpeechOptions(engine="whisper"), Policy.FAST).beam_size == settings.speech.beam_size
    assert speech_config(settings, SpeechOptions(engine=None), Policy.FAST).engine == settings.speech.engine
    assert speech_config(settings, SpeechOptions(), Policy.LIVE).engine == LIVE_ENGINE


def test_live_moonshine_decodes_each_phrase_alone_and_files_join_them(monkeypatch):
    """Live passes re-decode their buffer each time: joined phrases cost pass time there
    for the same WER, so the live policy joins none; files keep the checkpoint's joining."""
    settings = FeatureSettings()
    assert settings.speech.join_gap > 0
    live = transcriber_for(settings, SpeechOptions(engine="moonshine"), Policy.LIVE)
    assert live.config.join_gap == 0.0
    for policy in (Policy.REPRODUCIBLE, Policy.FAST):
        assert transcriber_for(settings, SpeechOptions(engine="moonshine"), policy).config.join_gap == settings.speech.join_gap
    assert speech_config(settings, SpeechOptions(join_gap=0.3), Policy.LIVE).join_gap == 0.3
    sr = 16000  # VAD finds two phrases 0.5 s apart (a breath)
    monkeypatch.setattr(moonshine, "get_speech_timestamps",
                        lambda wave, options: [{"start": 0, "end": 2 * sr}, {"start": int(2.5 * sr), "end": 4 * sr}])
    wave = np.zeros(5 * sr, np.float32)
    assert live.phrases(wave) == [(0, 2 * sr), (int(2.5 * sr), 4 * sr)]
    assert transcriber_for(settings, SpeechOptions(engine="moonshine"), Policy.FAST).phrases(wave) == [(0, 4 * sr)]


def test_a_moonshine_hub_takes_passes_one_at_a_time(live_scorer):
    """Whisper's batched path only for Whisper: a Moonshine hub's speech service runs
    its passes one by one on the one shared engine."""
    from realtime.pipeline.live import PipelineOptions
    from realtime.sessions.hub import HubConfig, SessionHub

    hub = SessionHub(scorer=live_scorer, config=HubConfig(max_sessions=2),
                     options=PipelineOptions(policy=Policy.LIVE, speech=SpeechOptions(engine="moonshine")))
    try:
        _, speech = hub.models.services()
        assert isinstance(hub.models.whisper(), MoonshineEngine)
        assert speech.max_batch == 1
    finally:
        hub.stop()
        hub.join(30)


@pytest.mark.slow
def test_annotate_with_moonshine_hears_the_robust_words_once(demo_media, live_scorer, tmp_path):
    """hcl-annotate's path (`annotate(asr="moonshine")`) over the demo clip (a positive and
    a negative espeak-ng sentence): the sentiment words are heard, no phrase is committed
    twice, and the words' spread times lie in their sentences, in the windows' text span
    and in the VTT."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from realtime.core.protocol import text_span
    from realtime.pipeline.build import annotate
    from realtime.recording import read_session

    path, utterances = demo_media
    out = tmp_path / "session"
    pipeline = annotate(str(path), str(out), scorer=live_scorer, progress=False, asr="moonshine")
    assert not pipeline.problems()
    assert pipeline.transcriber.name == "moonshine"
    session = read_session(out)
    words = [re.sub(r"[^a-z]", "", w["w"].lower()) for w in session.words]
    text = " ".join(words)
    assert ("love" in text or "wonderful" in text or "happy" in text) and ("terrible" in text or "hate" in text)
    # nothing committed twice: no 3-word run comes back (the two sentences share none)
    trigrams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    assert len(trigrams) == len(set(trigrams)), text
    # each word's spread time lies within a sentence (0.3 s of slack for the VAD padding)
    for w in session.words:
        assert any(u.start - 0.3 <= w["start"] <= w["end"] <= u.end + 0.3 for u in utterances), w
    spans = [text_span(m) for m in session.windows if m.get("words")]
    assert spans and all(any(u.start - 0.3 <= a and b <= u.end + 0.3 for u in utterances) or
                         (a >= utterances[0].start - 0.3 and b <= utterances[-1].end + 0.3) for a, b in spans)
    vtt = (out / "transcript.vtt").read_text()
    cues = re.findall(r"(\d+):(\d+):(\d+\.\d+) --> (\d+):(\d+):(\d+\.\d+)", vtt)
    assert cues
    for h1, m1, s1, h2, m2, s2 in cues:
        a, b = int(h1) * 3600 + int(m1) * 60 + float(s1), int(h2) * 3600 + int(m2) * 60 + float(s2)
        assert utterances[0].start - 0.3 <= a < b <= utterances[-1].end + 0.3
