"""The load governor (realtime.sessions.governor): when it thins, by how much, how it applies a
level to real pipeline parts (a live SpeechStream's pass grid, a FaceWorker on a live
feed), what it leaves alone, its admission rule, and what the hub shows of it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from realtime.core.component import Policy
from realtime.core.load import Backlog, Level
from realtime.sessions.governor import DEFAULT_LEVELS, Behind, GovernorConfig, LoadGovernor


class Busy:
    """A speech service whose busy fraction the test sets."""

    def __init__(self, value=None):
        self.value = value
        self.asked = []

    def busy_fraction(self, recent):
        self.asked.append(recent)
        return self.value


def late(seconds=1.0, sessions=4):
    return Behind(lateness=seconds, sessions=sessions)


ON_TIME = Behind(lateness=0.0, sessions=4)


def test_a_busy_thread_that_keeps_up_is_not_thinned():
    """Bursts of a saturated speech thread (phrase-end passes of several sessions at
    once) while every pass finishes in its period: no rise, however busy."""
    g = LoadGovernor(Busy(), GovernorConfig(settle=3.0, window=4.0))
    t = g._changed_at
    for k in range(1, 30):
        assert g.decide(1.0 if k % 3 else 0.9, t + k, ON_TIME) == 0
    # short lateness bursts (one late tick in four) are not a trend either
    for k in range(30, 60):
        assert g.decide(0.99, t + k, late(1.5) if k % 4 == 0 else ON_TIME) == 0
    assert g.changes == 0


def test_level_rises_when_a_share_of_the_window_was_late():
    g = LoadGovernor(Busy(), GovernorConfig(late=0.5, late_share=0.75, window=4.0, settle=3.0))
    t = g._changed_at
    assert g.decide(0.5, t + 1, late(0.4)) == 0  # under `late`: on time
    assert g.decide(0.5, t + 2, late(0.8)) == 0
    assert g.decide(0.5, t + 3, late(0.8)) == 0  # 2 of 3 late ticks: under the share
    assert g.decide(0.5, t + 4, late(0.8)) == 1  # 3 of 4
    assert g.reason == "speech passes late in 3 of 4 ticks (up to 0.8 s behind)"


def test_sustained_lateness_raises_one_level_and_the_next_rise_needs_fresh_evidence():
    g = LoadGovernor(Busy(), GovernorConfig(late=0.5, late_share=0.75, window=4.0, settle=3.0))
    t = g._changed_at
    for k in (1, 2):
        assert g.decide(0.6, t + k, late(1.0)) == 0  # less than `settle` s seen: not a trend yet
    assert g.decide(0.6, t + 3, late(1.0)) == 1 and "late in 3 of 3 ticks" in g.reason
    # the ticks before the change do not count again, nor those of its first second (the
    # passes in flight were the old level's): 2 s of new late ticks are needed
    assert g.decide(0.6, t + 4, late(5.0)) == 1
    assert g.decide(0.6, t + 5, late(1.0)) == 1
    assert g.decide(0.6, t + 6, late(1.0)) == 2
    # the thinner level holds: on time from here, no further rise however busy
    for k in range(7, 20):
        assert g.decide(0.99, t + k, ON_TIME) == 2
    assert [lv for _, lv, _ in g.history] == [1, 2]


def test_the_backlog_a_change_inherits_is_not_held_against_the_new_level():
    """Just after a rise the passes in flight were set up under the old level, and a stream
    that was behind skips to catch up once: that first second is not evidence."""
    g = LoadGovernor(Busy(), GovernorConfig(max_skipped=1.0, settle=3.0, window=4.0, grace=1.0))
    t = g._changed_at
    assert g.decide(0.9, t + 3, Behind(skipped=4, sessions=4)) == 1
    assert g.decide(0.9, t + 3.9, Behind(skipped=8, sessions=4)) == 1  # the old level's backlog, skipped
    for k in (4.5, 5.5, 6.5, 7.5, 8.5):
        assert g.decide(0.9, t + k, Behind(skipped=0, sessions=4)) == 1  # the new level keeps up
    assert g.decide(0.9, t + 9.5, Behind(skipped=5, sessions=4)) == 2  # its own skips count


def test_skipped_passes_and_dropped_windows_raise_the_level():
    g = LoadGovernor(Busy(), GovernorConfig(max_skipped=1.0, settle=3.0, window=4.0))
    t = g._changed_at
    assert g.decide(0.5, t + 1, Behind(skipped=2, sessions=4)) == 0  # 2 of 4 sessions skipped one
    assert g.decide(0.5, t + 2, Behind(skipped=1, sessions=4)) == 0
    assert g.decide(0.5, t + 3, Behind(skipped=1, sessions=4)) == 1  # 4 passes skipped by 4 sessions in 4 s
    assert "4 speech passes skipped" in g.reason
    assert g.decide(0.5, t + 3.8, Behind(dropped=1, sessions=4)) == 1  # within `grace` of the change: the old level's
    assert g.decide(0.5, t + 4.5, Behind(dropped=1, sessions=4)) == 1  # within `settle` of the change
    assert g.decide(0.5, t + 6, ON_TIME) == 3  # a dropped window: two levels
    assert "1 windows dropped" in g.reason
    assert g.decide(0.5, t + 20, Behind(dropped=3, sessions=4)) == 5  # the top
    assert g.decide(0.5, t + 30, Behind(dropped=3, sessions=4)) == 5  # and no further


def test_level_falls_only_after_calm_seconds_on_time_and_below_low():
    g = LoadGovernor(Busy(), GovernorConfig(low=0.4, settle=0.0, calm=10.0))
    t = g._changed_at
    g.decide(0.9, t + 0.5, Behind(dropped=1, sessions=2))
    assert g.level == 2
    assert g.decide(0.3, t + 1, ON_TIME) == 2
    assert g.decide(0.6, t + 6, ON_TIME) == 2  # no room (busy over low): the calm spell starts again
    assert g.decide(0.3, t + 7, ON_TIME) == 2
    assert g.decide(0.3, t + 16.9, ON_TIME) == 2
    assert g.decide(0.3, t + 17.1, ON_TIME) == 1  # 10 s on time below low
    assert g.decide(0.3, t + 20, ON_TIME) == 1  # the next fall needs its own 10 s
    assert g.decide(0.3, t + 27.2, ON_TIME) == 0
    # any lateness in the window holds a fall back, however idle the speech thread
    g = LoadGovernor(Busy(), GovernorConfig(low=0.4, settle=1e9, calm=10.0))
    g.level = 1
    t = g._changed_at
    for k in range(1, 30):
        g.decide(0.2, t + k, late(1.0) if k % 4 == 0 else ON_TIME)  # a late tick in four: no rise, no fall
    assert g.level == 1
    for k in range(30, 45):
        g.decide(0.2, t + k, ON_TIME)
    assert g.level == 0


def test_observe_reads_live_streams_lateness_and_counts_since_the_last_tick():
    stream, _ = _stream()
    stream.step(1.0, now=1.0)  # a pass at 1: the next is due at 2
    audio = SimpleNamespace(start_time=0.0, ended=False, horizon=2.0)
    queue = SimpleNamespace(dropped=0)
    p = Session(stream, audio, queue)
    repro, _ = _stream(Policy.REPRODUCIBLE)
    other = Session(repro, SimpleNamespace(start_time=0.0, ended=False, horizon=9.0), SimpleNamespace(dropped=5))
    g = LoadGovernor(Busy())
    assert g.observe([p, other]) == Behind(lateness=0.0, skipped=0, dropped=0, sessions=1)  # reproducible: not counted
    audio.horizon = 3.7  # the pass due at 2 has not run: 1.7 s beyond a period past the pass at 1
    queue.dropped = 2
    assert g.observe([p]) == Behind(lateness=1.7, skipped=0, dropped=2, sessions=1)
    stream.step(3.7, now=3.7)  # catches up: skips the pass at 2, runs the one at 3
    assert stream.skipped == 1
    audio.horizon = 3.9
    assert g.observe([p]) == Behind(lateness=0.0, skipped=1, dropped=0, sessions=1)  # only what is new
    assert g.observe([]) == Behind()  # an ended session is forgotten


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
    assert DEFAULT_LEVELS[0] == Level(10.0, 0.75)  # room to spare: passes more often than the pipeline's 1 s
    assert Level(5.0, 1.0) in DEFAULT_LEVELS and DEFAULT_LEVELS[-1] == Level(5.0, 3.0)


class Session:
    """A pipeline's face to the governor (`backlog()`, `throttle(level)`) over real parts: a
    speech stream with its audio, a window queue, a face worker (the way LivePipeline does it)."""

    def __init__(self, stream=None, audio=None, queue=None, faces=None):
        self.stream, self.audio, self.faces = stream, audio, faces
        self.queue = queue or SimpleNamespace(dropped=0)

    def backlog(self):
        audio = self.audio
        running = audio is not None and audio.start_time is not None and not audio.ended
        b = self.stream.backlog(audio.horizon if running else -np.inf) if self.stream is not None else None
        return None if b is None else Backlog(b.lateness, b.skipped_passes, self.queue.dropped)

    def throttle(self, level):
        if self.stream is not None:
            self.stream.throttle(level)
        if self.faces is not None:
            self.faces.throttle(level)


def _stream(policy=Policy.LIVE):
    from realtime.pipeline.speech import SpeechOptions, SpeechStream

    calls = []

    def transcribe(wave, offset=0.0):
        calls.append(offset + len(wave) / 16000)
        return []

    loud = (0.3 * np.sin(np.arange(16000 * 60) * 0.1)).astype(np.float32)  # a minute of tone: never a pause
    stream = SpeechStream(read=lambda a, b: loud[int(a * 16000):int(b * 16000)], sample_rate=16000,
                          transcribe=transcribe, options=SpeechOptions(period=1.0), policy=policy)
    return stream, calls


def test_applied_period_moves_the_live_pass_grid_from_the_next_pass_on():
    from realtime.core.streams import FrameFeed
    from realtime.pipeline.faces import FaceWorker

    stream, calls = _stream()
    for h in (1.0, 2.0, 3.0):
        stream.step(h, now=h)
    assert stream.next_periodic == pytest.approx(4.0)
    faces = FaceWorker(feed=FrameFeed(latest_only=True), extract=lambda rgb, t: None, fps=10.0)
    pipeline = Session(stream, faces=faces)
    g = LoadGovernor(Busy(), GovernorConfig(levels=(Level(10.0, 1.0), Level(5.0, 2.0)), settle=0.0))
    g.decide(0.9, g._changed_at + 1, Behind(skipped=1, sessions=1))
    assert g.level == 1
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
    from realtime.core.streams import FrameFeed
    from realtime.pipeline.faces import FaceWorker

    stream, _ = _stream(Policy.REPRODUCIBLE)
    faces = FaceWorker(feed=FrameFeed(latest_only=False), extract=lambda rgb, t: None, fps=10.0)
    g = LoadGovernor(Busy(), GovernorConfig(levels=(Level(5.0, 3.0),)))
    g.apply(Session(stream, faces=faces))
    assert stream.period == 1.0 and faces.min_interval == 0.0


def test_set_period_refuses_a_period_the_context_cannot_hold():
    stream, _ = _stream()
    with pytest.raises(ValueError, match="context"):
        stream.set_period(stream.context)


def test_refusal_scales_the_measured_busy_to_the_thinnest_level_and_one_more_session():
    g = LoadGovernor(Busy(), GovernorConfig(levels=(Level(10, 1.0), Level(5, 2.0)), high=0.8, saturated=0.95,
                                            settle=0.0, min_speech_scale=0.5))
    t = g._changed_at
    g.decide(0.6, t + 1, ON_TIME)  # 4 sessions at 1 s: 0.6 -> at 2 s about 0.3, with a fifth 0.375
    assert g.refusal(4, t + 1) is None
    g.decide(0.79, t + 2, ON_TIME)  # level 0 still
    assert g.refusal(1, t + 2) is None  # 0.79 * 0.5 * 2 = 0.79
    g.decide(0.9, t + 3, ON_TIME)  # busy, not saturated, on time: not thinned for it...
    assert g.level == 0
    assert "about 90 %" in g.refusal(1, t + 3)  # ...but one more would not fit: 0.9 * 0.5 * 2
    g.decide(0.96, t + 4, ON_TIME)  # saturated now: sessions arriving faster than the level follows
    reason = g.refusal(4, t + 4)
    assert reason is not None and "not keeping up" in reason and "busy 96 %" in reason
    g.decide(0.5, t + 5, Behind(skipped=4, sessions=4))  # falling behind: thinned, and refused while it shows
    assert g.level == 1
    assert "fall behind (4 speech passes skipped by 4 sessions)" in g.refusal(4, t + 5)
    assert "fall behind" in g.refusal(4, t + 8.9)  # the evidence stays in the window...
    assert g.refusal(4, t + 9.1) is None  # ...for `window` s
    g.decide(0.78, t + 10, ON_TIME)  # under high at the thinnest level, but a fifth would need 0.78 * 5 / 4
    reason = g.refusal(4, t + 10)
    assert reason is not None and "at capacity" in reason and "busy 78 %" in reason and "about 98 %" in reason
    # passes 1 s -> 4 s would leave a quarter of the work, but pause passes stay: the prediction
    # never counts on less than min_speech_scale of it
    levels = (Level(10, 1.0), Level(5, 4.0))
    g = LoadGovernor(Busy(), GovernorConfig(levels=levels, settle=1e9, min_speech_scale=0.9))
    g.decide(0.6, g._changed_at)
    assert "about 81 %" in g.refusal(2)  # 0.6 * 0.9 * 3/2 (by the period ratio alone: 0.23)
    g = LoadGovernor(Busy(), GovernorConfig(levels=levels, settle=1e9, min_speech_scale=0.5))
    g.decide(0.6, g._changed_at)
    assert g.refusal(2) is None  # 0.6 * 0.5 * 3/2 = 0.45
    g = LoadGovernor(Busy(), GovernorConfig(settle=1e9))  # the defaults: thinning leaves at least 80 % of it
    g.decide(0.6, g._changed_at)
    assert g.level == 0 and "about 96 %" in g.refusal(1)  # 0.6 * 0.8 * 2 (0.75 s -> 3 s alone: 0.3)
    assert g.refusal(4) is None  # 0.6 * 0.8 * 5/4 = 0.6
    g.decide(0.9, g._changed_at)
    assert "about 90 %" in g.refusal(4)  # 0.9 * 0.8 * 5/4: the fifth of 4 sessions this busy is refused


class HubSession(Session):
    """What the hub reads of a pipeline (its operator-view line), over the same parts."""

    def __init__(self, stream, faces):
        super().__init__(stream, faces=faces)
        self.session_id = "a"
        self.source = SimpleNamespace(name="fake", kind="camera")
        self.speech = SimpleNamespace(transcript=SimpleNamespace(stats=lambda: {"lag_s": {}}))
        self.scoring = SimpleNamespace(stats=lambda: {"windows": 0, "dropped_windows": 0, "latency_ms": {}})

    def threads(self):
        return []

    def problems(self):
        return []

    def thinning(self):
        return {"face_fps": self.faces.fps, "speech_period_s": self.stream.period}


def test_hub_shows_the_level_and_refuses_what_would_not_fit():
    from realtime.core.streams import FrameFeed
    from realtime.pipeline.faces import FaceWorker
    from realtime.sessions.hub import AdmissionRefused, HubConfig, SessionHub

    service = Busy(0.99)
    hub = SessionHub(scorer=None, config=HubConfig(max_sessions=8), governor=LoadGovernor(service, GovernorConfig()))
    faces = FaceWorker(feed=FrameFeed(latest_only=True), extract=lambda rgb, t: None, fps=10.0)
    stream, _ = _stream()
    pipeline = HubSession(stream, faces)
    hub.adopt(pipeline, kind="browser")
    t = hub.governor._changed_at
    hub.governor.tick([pipeline], now=t + 10)  # busy 99 %, but nothing late: not thinned
    assert hub.stats()["load"]["level"] == 0
    pipeline.queue.dropped = 3  # the session dropped windows: two levels at once
    hub.governor.tick([pipeline], now=t + 11)
    with pytest.raises(AdmissionRefused, match=r"not keeping up: the 1 sessions fall behind \(3 windows dropped\)"):
        hub.check_admission(now=t + 11)
    stats = hub.stats()
    assert stats["load"]["level"] == 2 and stats["load"]["face_fps"] == 5.0 and stats["load"]["speech_busy"] == 0.99
    assert stats["load"]["reason"] == "3 windows dropped"
    assert stats["sessions"][0]["face_fps"] == 5.0 and stream.period == DEFAULT_LEVELS[2].speech_period
    assert stats["admitting"] is False and "speech recognition is busy 99 %" in stats["refusing_because"]
    service.value = 0.2  # the load went away: the capacity rule admits again
    hub.governor.tick([pipeline], now=t + 20)
    hub.check_admission(now=t + 20)
