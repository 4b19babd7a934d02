"""The load governor (realtime.governor): when it thins, by how much, how it applies a
level to real pipeline parts (a live SpeechStream's pass grid, a FaceWorker on a live
feed), what it leaves alone, its admission rule, and what the hub shows of it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from realtime.component import Policy
from realtime.governor import DEFAULT_LEVELS, GovernorConfig, Level, LoadGovernor


class Busy:
    """A speech service whose busy fraction the test sets."""

    def __init__(self, value=None):
        self.value = value
        self.asked = []

    def busy_fraction(self, recent):
        self.asked.append(recent)
        return self.value


def test_level_rises_above_high_after_settle_and_by_two_when_saturated():
    g = LoadGovernor(Busy(), GovernorConfig(high=0.8, saturated=0.95, low=0.4, settle=3.0, calm=10.0))
    t = g._changed_at
    assert g.decide(0.7, t + 5) == 0  # inside the band: no change
    assert g.decide(0.85, t + 5) == 1  # above high: one level
    assert g.decide(0.9, t + 6) == 1  # within `settle` of that change: wait for its effect
    assert g.decide(0.97, t + 8.1) == 3  # saturated: two levels
    assert g.decide(1.0, t + 20) == 4  # the top
    assert g.decide(1.0, t + 30) == 4  # and no further
    assert g.changes == 3 and [lv for _, lv, _ in g.history] == [1, 3, 4]


def test_level_falls_only_after_calm_seconds_below_low():
    g = LoadGovernor(Busy(), GovernorConfig(high=0.8, low=0.4, settle=0.0, calm=10.0))
    t = g._changed_at
    g.decide(0.99, t)
    assert g.level == 2
    assert g.decide(0.3, t + 1) == 2
    assert g.decide(0.6, t + 6) == 2  # back in the band: the calm spell starts again
    assert g.decide(0.3, t + 7) == 2
    assert g.decide(0.3, t + 16.9) == 2
    assert g.decide(0.3, t + 17.1) == 1  # 10 s below low
    assert g.decide(0.3, t + 20) == 1  # the next fall needs its own 10 s
    assert g.decide(0.3, t + 27.2) == 0


def test_disabled_governor_and_unmeasured_service_keep_level_zero():
    g = LoadGovernor(Busy(1.0), GovernorConfig(enabled=False))
    assert g.tick([], now=g._changed_at + 100) == 0 and g.state()["speech_busy"] == 1.0
    g = LoadGovernor(None)
    assert g.tick([], now=g._changed_at + 100) == 0 and g.state()["speech_busy"] is None
    assert g.refusal(3) is None


def test_config_is_checked():
    with pytest.raises(ValueError, match="low < high"):
        GovernorConfig(low=0.9, high=0.8)
    with pytest.raises(ValueError, match="at least one level"):
        GovernorConfig(levels=())


def test_levels_get_cheaper_step_by_step():
    """Each level is at most as costly as the one before in both levers, and strictly
    cheaper in one: a rise always frees some CPU."""
    for a, b in zip(DEFAULT_LEVELS, DEFAULT_LEVELS[1:]):
        assert b.face_fps <= a.face_fps and b.speech_period >= a.speech_period
        assert b.face_fps < a.face_fps or b.speech_period > a.speech_period
    assert DEFAULT_LEVELS[0] == Level(10.0, 1.0)  # level 0 is the pipeline's defaults


def _stream(policy=Policy.LIVE):
    from realtime.speech import SpeechOptions, SpeechStream

    calls = []

    def transcribe(wave, offset=0.0):
        calls.append(offset + len(wave) / 16000)
        return []

    loud = (0.3 * np.sin(np.arange(16000 * 60) * 0.1)).astype(np.float32)  # a minute of tone: never a pause
    stream = SpeechStream(read=lambda a, b: loud[int(a * 16000):int(b * 16000)], sample_rate=16000,
                          transcribe=transcribe, options=SpeechOptions(period=1.0), policy=policy)
    return stream, calls


def test_applied_period_moves_the_live_pass_grid_from_the_next_pass_on():
    from realtime.faces import FaceWorker
    from realtime.streams import FrameFeed

    stream, calls = _stream()
    for h in (1.0, 2.0, 3.0):
        stream.step(h, now=h)
    assert stream.next_periodic == pytest.approx(4.0)
    faces = FaceWorker(feed=FrameFeed(latest_only=True), extract=lambda rgb, t: None, fps=10.0)
    pipeline = SimpleNamespace(speech=SimpleNamespace(stream=stream), faces=faces)
    g = LoadGovernor(Busy(), GovernorConfig(levels=(Level(10.0, 1.0), Level(5.0, 2.0)), settle=0.0))
    g.decide(0.9, g._changed_at)
    g.apply(pipeline)
    assert stream.period == 2.0 and faces.min_interval == pytest.approx(0.18)  # 5 fps
    assert stream.next_periodic == pytest.approx(4.0)  # the first point of the 2 s grid after the pass at 3
    assert stream.step(3.9, now=3.9) is None
    stream.step(4.0, now=4.0)
    assert stream.step(5.9, now=5.9) is None  # nothing due between the new grid's points
    for h in (6.0, 8.0):
        stream.step(h, now=h)
    assert calls[-3:] == pytest.approx([4.0, 6.0, 8.0])
    assert stream.next_periodic == pytest.approx(10.0)


def test_reproducible_streams_and_file_feeds_are_not_thinned():
    from realtime.faces import FaceWorker
    from realtime.streams import FrameFeed

    stream, _ = _stream(Policy.REPRODUCIBLE)
    faces = FaceWorker(feed=FrameFeed(latest_only=False), extract=lambda rgb, t: None, fps=10.0)
    g = LoadGovernor(Busy(), GovernorConfig(levels=(Level(5.0, 3.0),)))
    g.apply(SimpleNamespace(speech=SimpleNamespace(stream=stream), faces=faces))
    assert stream.period == 1.0 and faces.min_interval == 0.0


def test_set_period_refuses_a_period_the_context_cannot_hold():
    stream, _ = _stream()
    with pytest.raises(ValueError, match="context"):
        stream.set_period(stream.context)


def test_refusal_scales_the_measured_busy_to_the_thinnest_level_and_one_more_session():
    g = LoadGovernor(Busy(), GovernorConfig(levels=(Level(10, 1.0), Level(5, 2.0)), high=0.8, settle=0.0))
    g.decide(0.6, g._changed_at)  # 4 sessions at 1 s: 0.6 -> at 2 s about 0.3, with a fifth 0.375
    assert g.refusal(4) is None
    g.decide(0.79, g._changed_at)  # in the band, level 0 still
    assert g.refusal(1) is None  # 0.79 * 0.5 * 2 = 0.79
    g.decide(0.82, g._changed_at + 1)  # level 1 (2 s passes) and busy 0.82: one more -> 0.82 * 5 / 4
    assert g.level == 1
    reason = g.refusal(4)
    assert reason is not None and "not keeping up" in reason and "busy 82 %" in reason  # over high now
    g.decide(0.78, g._changed_at + 2)  # under high at the thinnest level, but a fifth would need 0.78 * 5 / 4
    reason = g.refusal(4)
    assert reason is not None and "at capacity" in reason and "busy 78 %" in reason and "about 98 %" in reason
    # passes 1 s -> 4 s would leave a quarter of the work, but pause passes stay: the prediction
    # never counts on less than min_speech_scale of it
    levels = (Level(10, 1.0), Level(5, 4.0))
    g = LoadGovernor(Busy(), GovernorConfig(levels=levels, settle=1e9, min_speech_scale=0.9))
    g.decide(0.6, g._changed_at)
    assert "about 81 %" in g.refusal(2)  # 0.6 * 0.9 * 3/2 (by the period ratio alone: 0.23)
    g = LoadGovernor(Busy(), GovernorConfig(levels=levels, settle=1e9))
    g.decide(0.6, g._changed_at)
    assert g.refusal(2) is None  # 0.6 * 0.5 * 3/2 = 0.45
    g = LoadGovernor(Busy(), GovernorConfig(settle=1e9))  # the default levels
    g.decide(0.78, g._changed_at)
    g.level = 3  # passes every 2 s, the thinnest every 3 s: 2/3 of the speech work would be left
    assert "about 104 %" in g.refusal(1)  # 0.78 * 2/3 * 2


class FakeSpeech:
    """A speech worker's face to the hub and governor: its stream, period and transcript."""

    _thread = None

    def __init__(self, stream):
        self.stream = stream
        self.transcript = SimpleNamespace(stats=lambda: {"lag_s": {}})

    @property
    def period(self):
        return self.stream.period


def test_hub_shows_the_level_and_refuses_what_would_not_fit():
    from realtime.sessions import AdmissionRefused, HubConfig, SessionHub

    hub = SessionHub(scorer=None, config=HubConfig(max_sessions=8))
    service = Busy(0.99)
    hub.governor.speech = service
    faces = SimpleNamespace(min_interval=0.09, feed=SimpleNamespace(latest_only=True))
    stream, _ = _stream()
    pipeline = SimpleNamespace(
        session_id="a", source=SimpleNamespace(name="fake", kind="camera", _thread=None),
        queue=SimpleNamespace(dropped=0), faces=faces, assembler=None, prefetch=None,
        speech=FakeSpeech(stream),
        scoring=SimpleNamespace(stats=lambda: {"windows": 0, "dropped_windows": 0, "latency_ms": {}}, _thread=None),
        problems=lambda: [],
    )
    hub.adopt(pipeline, kind="browser")
    hub.governor.tick([pipeline], now=hub.governor._changed_at + 10)
    stats = hub.stats()
    assert stats["load"]["level"] == 2 and stats["load"]["face_fps"] == 5.0 and stats["load"]["speech_busy"] == 0.99
    assert stats["sessions"][0]["face_fps"] == 5.0 and stream.period == DEFAULT_LEVELS[2].speech_period
    assert stats["admitting"] is False and "speech recognition is busy 99 %" in stats["refusing_because"]
    with pytest.raises(AdmissionRefused, match="not keeping up: speech recognition is busy 99 %"):
        hub.check_admission()
    service.value = 0.2  # the load went away: the capacity rule admits again
    hub.governor.tick([pipeline])
    hub.check_admission()
