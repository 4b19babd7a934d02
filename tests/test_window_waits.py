"""WindowAssembler._wait_inputs, one wait at a time: which input the assembler thread
waits on, until when, with which bound, and what it records once a window is ready.
Recording stand-ins for the clock and the inputs make every wait visible, so the
timing rule is checked exactly, with no sleeping and no dependence on machine load."""

from __future__ import annotations

import math
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from realtime.core.component import Policy
from realtime.pipeline.windowing import WindowAssembler, WindowQueue

POLL = 0.2  # the longest single wait before the thread asks `missing()` again


class Clock:
    """Session clock at a time the test sets; sleep_until records its call and answers."""

    def __init__(self, t: float = 0.0, slept: bool = True) -> None:
        self.t = t
        self.slept = slept
        self.calls: list[tuple[float, object]] = []

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float, stop=None) -> bool:
        self.calls.append((t, stop))
        return self.slept


class Audio:
    def __init__(self, horizon: float, ended: bool = False) -> None:
        self.horizon = horizon
        self.ended = ended
        self.waits: list[tuple[float, float]] = []

    def wait_until(self, t: float, timeout: float | None = None) -> bool:
        self.waits.append((t, timeout))
        return False


class Feed:
    def __init__(self, horizon: float, ended: bool = False, pending: bool = False) -> None:
        self.horizon = horizon
        self.ended = ended
        self.pending = pending
        self.waits: list[tuple[float, float]] = []

    def pending_before(self, t: float) -> bool:
        return self.pending

    def wait_idle_before(self, t: float, timeout: float | None = None) -> bool:
        self.waits.append((t, timeout))
        return False


class Passes:
    def __init__(self, value: float = -math.inf, ended: bool = False) -> None:
        self.value = value
        self.ended = ended
        self.waits: list[tuple[float, float]] = []

    def wait_until(self, t: float, timeout: float | None = None) -> bool:
        self.waits.append((t, timeout))
        return False


class StopEvent(threading.Event):
    """The assembler's stop event, recording the waits made on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return False


def make(policy: Policy, *, audio=None, faces=None, speech=None, clock=None, max_wait=0.15):
    settings = SimpleNamespace(step_seconds=0.5, window_steps=8, audio=SimpleNamespace(dim=4), face=SimpleNamespace(dim=3))
    clock = clock or Clock()
    a = WindowAssembler(featurizer=SimpleNamespace(settings=settings), out=WindowQueue(), clock=clock, audio=audio,
                        faces=faces, speech=speech, policy=policy, max_wait=max_wait)
    a._stop = StopEvent()
    return a, clock


def faces_of(feed: Feed, done: bool = False):
    ev = threading.Event()
    if done:
        ev.set()
    return SimpleNamespace(feed=feed, done=ev)


def speech_of(passes: Passes, need: float = 1.0):
    return SimpleNamespace(transcript=SimpleNamespace(passes=passes), required_horizon=lambda t: need)


# ------------------------------------------------------------------ live policy
def test_live_sleeps_to_the_window_end_on_the_stop_event_first():
    audio = Audio(horizon=2.0)
    a, clock = make(Policy.LIVE, audio=audio, clock=Clock(t=1.0, slept=False))
    assert a._wait_inputs(1.0) is False  # stopped while sleeping: nothing else is asked
    assert clock.calls == [(1.0, a._stop)] and audio.waits == []
    clock.slept = True
    assert a._wait_inputs(1.0) is True and audio.waits == []


def test_live_audio_wait_is_bounded_by_max_wait_past_the_window_end():
    audio = Audio(horizon=0.9)
    a, clock = make(Policy.LIVE, audio=audio, clock=Clock(t=1.0), max_wait=0.15)
    assert a._wait_inputs(1.0) is False
    assert audio.waits[-1][0] == 1.0 and audio.waits[-1][1] == pytest.approx(0.15)
    clock.t = 1.1  # 50 ms of max_wait left
    a._wait_inputs(1.0)
    assert audio.waits[-1][0] == 1.0 and audio.waits[-1][1] == pytest.approx(0.05)
    a.max_wait = 5.0  # a long max_wait is still waited for in POLL slices
    a._wait_inputs(1.0)
    assert audio.waits[-1] == (1.0, POLL)
    a.max_wait = 0.15
    clock.t = 1.15  # max_wait is over: the window is ready without its audio, nothing more is waited for
    n = len(audio.waits)
    assert a._wait_inputs(1.0) is True and len(audio.waits) == n
    assert a._capture_ms == pytest.approx(150.0)  # session clock at readiness minus the window end
    assert clock.calls == [(1.0, a._stop)] * 4  # each attempt first sleeps to the window end, on the stop event


def test_the_clock_is_waited_for_again_when_the_sleep_came_back_early():
    audio = Audio(horizon=2.0)
    a, clock = make(Policy.LIVE, audio=audio, clock=Clock(t=0.7))  # sleep_until answered True, clock still before 1 s
    assert a._wait_inputs(1.0) is False
    assert clock.calls == [(1.0, a._stop), (1.0, a._stop)] and audio.waits == []


def test_ready_records_the_capture_delay_in_real_time_only():
    a, clock = make(Policy.LIVE, audio=Audio(horizon=5.0), clock=Clock(t=2.25))
    assert a._ready == 0.0
    assert a._wait_inputs(2.0) is True
    assert a._capture_ms == pytest.approx(250.0) and a._ready > 0
    clock.t = 1.0
    a._wait_inputs(0.5)
    assert a._capture_ms == pytest.approx(500.0)
    clock.t = 0.5 - 5e-10  # within the clock's nanosecond tolerance, before the end: never negative
    assert a._wait_inputs(0.5) is True and a._capture_ms == 0.0
    fast, clock = make(Policy.FAST, clock=Clock(t=3.0))
    assert fast._wait_inputs(2.0) is True and fast._capture_ms == 0.0 and clock.calls == []
    window = fast.assemble(4)
    assert window.capture_ms == 0.0 and window.t_ready == fast._ready and window.t_assembled >= window.t_ready


# ------------------------------------------------------------------ strict policies
def test_strict_audio_waits_in_poll_slices_without_a_clock():
    audio = Audio(horizon=0.2)
    a, clock = make(Policy.FAST, audio=audio)
    assert a._wait_inputs(0.5) is False
    assert audio.waits == [(0.5, POLL)] and clock.calls == []
    r, clock = make(Policy.REPRODUCIBLE, audio=audio, clock=Clock(t=9.0), max_wait=0.01)
    r._wait_inputs(0.5)  # reproducible: max_wait does not bound the wait, the audio is waited for
    assert audio.waits[-1] == (0.5, POLL) and clock.calls == [(0.5, r._stop)]


def test_faces_without_audio_wait_on_the_stop_event_until_frames_reach_the_end():
    feed = Feed(horizon=0.3)
    a, _ = make(Policy.FAST, faces=faces_of(feed))
    assert a.missing(0.5, 0.0) == "faces"
    assert a._wait_inputs(0.5) is False
    assert a._stop.waits == [0.01] and feed.waits == []
    feed.horizon = 0.5
    assert a.missing(0.5, 0.0) is None
    feed.horizon, feed.ended = 0.3, True
    assert a.missing(0.5, 0.0) is None  # the feed ended: no more frames will come


def test_faces_being_worked_on_are_waited_for_in_poll_slices():
    feed = Feed(horizon=0.3, pending=True)
    a, _ = make(Policy.FAST, audio=Audio(horizon=1.0), faces=faces_of(feed))
    assert a.missing(0.5, 0.0) == "faces"
    assert a._wait_inputs(0.5) is False
    assert feed.waits == [(0.5, POLL)] and a._stop.waits == []
    feed.pending = False
    assert a.missing(0.5, 0.0) is None
    feed.pending = True
    a.faces.done.set()  # the face worker is over: nothing is pending any more
    assert a.missing(0.5, 0.0) is None
    # without audio, frames past the end but some still being worked on
    b, _ = make(Policy.FAST, faces=faces_of(Feed(horizon=0.7, pending=True)))
    assert b.missing(0.5, 0.0) == "faces"
    b._wait_inputs(0.5)
    assert b.faces.feed.waits == [(0.5, POLL)] and b._stop.waits == []


def test_speech_waits_for_the_pass_it_needs_and_the_last_window_for_the_final_pass():
    passes = Passes(value=0.5)
    audio = Audio(horizon=3.0)
    a, _ = make(Policy.FAST, audio=audio, speech=speech_of(passes, need=1.0))
    assert a.missing(2.0, 0.0) == "speech"
    assert a._wait_inputs(2.0) is False
    assert passes.waits == [(1.0 - 1e-9, POLL)]
    passes.value = 1.0
    assert a.missing(2.0, 0.0) is None
    passes.value = 1.0 - 2e-9
    assert a.missing(2.0, 0.0) == "speech"  # the tolerance is a nanosecond, no more
    passes.value = 1.0 - 5e-10
    assert a.missing(2.0, 0.0) is None
    passes.value = 0.5
    passes.ended = True
    assert a.missing(2.0, 0.0) is None  # no pass will come any more
    # the stream ended at 3 s: the window ending there waits for the final pass
    audio.ended = True
    passes.ended, passes.value = False, 5.0
    assert a.missing(3.0, 0.0) == "speech"
    a._wait_inputs(3.0)
    assert passes.waits[-1] == (math.inf, POLL)
    assert a.missing(3.0 - 5e-10, 0.0) == "speech"  # within a nanosecond of the end counts as the end
    assert a.missing(2.5, 0.0) is None  # an earlier window only needs its own pass
    a._wait_inputs(3.0 - 5e-10)
    assert passes.waits[-1] == (math.inf, POLL)
    passes.ended = True
    assert a.missing(3.0, 0.0) is None


def test_speech_needing_no_pass_yet_does_not_wait():
    passes = Passes()
    a, _ = make(Policy.FAST, audio=Audio(horizon=3.0), speech=speech_of(passes, need=0.0))
    assert a.missing(1.0, 0.0) is None  # required_horizon 0: no pass covers this window yet
    a.speech.required_horizon = lambda t: 1e-10  # any positive need is waited for
    assert a.missing(1.0, 0.0) == "speech"


def test_strict_real_time_clock_tolerance_is_a_nanosecond():
    a, clock = make(Policy.REPRODUCIBLE, audio=Audio(horizon=5.0))
    assert a.missing(1.0, 1.0 - 5e-10) is None
    assert a.missing(1.0, 1.0 - 2e-9) == "clock"
    assert a.missing(1.0, 0.5) == "clock"
    live, _ = make(Policy.LIVE, audio=Audio(horizon=5.0))
    assert live.missing(1.0, 1.0 - 5e-10) is None and live.missing(1.0, 1.0 - 2e-9) == "clock"


def test_live_audio_that_ended_or_arrived_is_not_waited_for():
    audio = Audio(horizon=0.4, ended=True)
    a, _ = make(Policy.LIVE, audio=audio)
    assert a.missing(1.0, 1.0) is None
    audio.ended, audio.horizon = False, 1.0
    assert a.missing(1.0, 1.0) is None
    audio.horizon = 0.999
    assert a.missing(1.0, 1.0) == "audio"


# ------------------------------------------------------------------ the thread's loop and figures
def test_stats_report_the_windows_and_the_assembly_times():
    a, _ = make(Policy.FAST)
    s = a.stats()
    assert s == {"running": False, "error": None, "windows": 0, "assemble_ms": {"p50": None, "p95": None, "n": 0}}
    a._ready = 0.0
    a.assemble(1)
    a.assemble(2)
    s = a.stats()
    assert s["windows"] == 2 and s["assemble_ms"]["n"] == 2 and s["assemble_ms"]["p50"] >= 0


def test_the_end_of_the_stream_from_audio_faces_and_duration():
    a, _ = make(Policy.FAST)
    assert a._ended() is None  # no inputs: never known
    a.duration = 2.0
    assert a._ended() == 2.0
    a, _ = make(Policy.FAST, audio=Audio(horizon=1.5, ended=False))
    assert a._ended() is None
    a.audio.ended = True
    assert a._ended() == 1.5
    a.faces = faces_of(Feed(horizon=2.5), done=False)
    assert a._ended() is None  # frames may still come
    a.faces.done.set()
    assert a._ended() == 2.5  # the later of the two
    a.audio.horizon = math.inf
    assert a._ended() == 2.5  # an endless input does not count
    a.faces.feed.horizon = -math.inf
    assert a._ended() == 0.0  # none finite
    b, _ = make(Policy.FAST, faces=faces_of(Feed(horizon=0.75), done=True))
    assert b._ended() == 0.75


def test_the_loop_emits_no_window_while_the_inputs_are_missing():
    """run(): a window that is not ready is asked for again, never emitted early or skipped."""
    audio = Audio(horizon=0.0)
    a, _ = make(Policy.FAST, audio=audio)
    answers = iter([False, False, True, True])
    made = []

    def wait(t):
        ok = next(answers)
        if not ok and len(audio.waits) >= 5:
            a.stop()
        audio.waits.append((t, None))
        if ok and t >= 1.0:
            a.stop()
        return ok

    a._wait_inputs = wait
    a.assemble = lambda k: made.append(k) or SimpleNamespace(end=k * 0.5)
    a.run()
    assert [t for t, _ in audio.waits] == [0.5, 0.5, 0.5, 1.0]
    assert made == [1, 2] and a.position == 1.0 and len(a.out) == 2


def test_zero_rows_for_missing_inputs_are_float32():
    a, _ = make(Policy.FAST)
    a_row, a_ok, v_row, v_ok = a.step_features(1)
    assert a_row.dtype == np.float32 and v_row.dtype == np.float32
    assert a_row.shape == (4,) and v_row.shape == (3,) and not a_ok and not v_ok


# ------------------------------------------------------------------ one window's contents and figures
def test_step_flags_are_false_without_inputs():
    a, _ = make(Policy.FAST)
    _, a_ok, _, v_ok = a.step_features(3)
    assert a_ok is False and v_ok is False


def test_the_window_carries_the_encoded_text_and_the_capture_delay():
    from realtime.pipeline.speech import TimedWord, Transcript

    tr = Transcript()
    tr.commit([TimedWord("so", 0.1, 0.3, 1.0, 0.0, 0.0), TimedWord("good", 0.3, 0.6, 1.0, 0.0, 0.0)])
    speech = SimpleNamespace(transcript=tr, required_horizon=lambda t: 0.0, settled_until=math.inf)
    seen = []

    def encode(text):
        seen.append(text)
        return np.full((2, 3), len(text), np.float32)

    a, _ = make(Policy.LIVE, speech=speech)
    a.encode_text = encode
    a._capture_ms = 123.5
    w = a.assemble(2)
    assert seen == ["so good"] and w.text == "so good"
    np.testing.assert_array_equal(w.text_features, np.full((2, 3), 7, np.float32))
    assert w.capture_ms == 123.5
    a.encode_text = None
    assert a.assemble(3).text_features is None  # the scorer encodes the text


def test_assembly_time_is_in_milliseconds_from_readiness():
    import time

    a, _ = make(Policy.FAST)
    a._ready = time.perf_counter() - 100.0  # ready 100 s ago
    w = a.assemble(1)
    ms = a.assemble_ms.recent()[-1]
    assert 100_000 <= ms < 100_050, ms
    assert w.t_ready == a._ready and w.t_assembled - w.t_ready == pytest.approx(ms / 1000, abs=1e-6)


def test_text_start_without_a_speech_worker_uses_every_utterance():
    from realtime.core.streams import AudioRing

    sr = 16000
    t = np.arange(int(4.0 * sr)) / sr
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    wave[(t < 1.0) | ((t >= 2.0) & (t < 3.0))] = 0.0
    ring = AudioRing(sample_rate=sr, capacity_seconds=60)
    ring.append(wave, start_time=0.0)
    a, _ = make(Policy.LIVE, audio=ring)
    a.text_context, a.utterance_pause = 7.0, 0.45
    assert a.text_start(4.0) == pytest.approx(2.85, abs=0.03)  # no transcript to settle: the latest onset


def test_an_utterance_is_current_once_settled_to_within_the_tolerance_inclusive():
    from realtime.core.streams import AudioRing
    from realtime.pipeline.speech import utterance_onsets
    from realtime.pipeline.windowing import UTTERANCE_TOLERANCE

    sr = 16000
    t = np.arange(int(4.0 * sr)) / sr
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    wave[(t < 1.0) | ((t >= 2.0) & (t < 3.0))] = 0.0
    ring = AudioRing(sample_rate=sr, capacity_seconds=60)
    ring.append(wave, start_time=0.0)
    speech = SimpleNamespace(transcript=None, required_horizon=lambda t: 0.0, settled_until=math.inf)
    a, _ = make(Policy.LIVE, audio=ring, speech=speech)
    a.text_context, a.utterance_pause = 7.0, 0.45
    onsets = utterance_onsets(ring.read(-3.0, 4.0), t0=-3.0, sample_rate=sr, pause=0.45, threshold_db=a.pause_db)
    onset, before = onsets[-1]
    settled = before - UTTERANCE_TOLERANCE
    while settled + UTTERANCE_TOLERANCE < before:  # the float whose sum with the tolerance is exactly `before`
        settled = math.nextafter(settled, math.inf)
    assert settled + UTTERANCE_TOLERANCE == before
    speech.settled_until = settled
    assert a.text_start(4.0) == pytest.approx(onset - UTTERANCE_TOLERANCE)
    speech.settled_until = math.nextafter(settled, -math.inf)
    assert a.text_start(4.0) < onset - 1.0  # not settled yet: the utterance before it is still current


def test_wait_boundaries_of_the_clock_the_frames_and_the_end_of_audio():
    a, _ = make(Policy.REPRODUCIBLE, audio=Audio(horizon=5.0))
    assert a.missing(1.0, 1.0 - 1e-9) is None  # exactly at the tolerance: the clock has arrived
    # frames up to exactly the window end, some still being worked on: wait for the worker, not the stop event
    b, _ = make(Policy.FAST, faces=faces_of(Feed(horizon=0.5, pending=True)))
    b._wait_inputs(0.5)
    assert b.faces.feed.waits == [(0.5, POLL)] and b._stop.waits == []
    # the pass a window needs depends on the window's end
    passes = Passes(value=0.0)
    audio = Audio(horizon=2.0)  # not ended: audio up to exactly the window end is there
    c, _ = make(Policy.FAST, audio=audio, speech=SimpleNamespace(transcript=SimpleNamespace(passes=passes),
                                                                  required_horizon=lambda t: t - 1.0))
    c._wait_inputs(2.0)
    assert passes.waits[-1] == (1.0 - 1e-9, POLL)  # not the final pass: the audio goes on
    audio.ended, audio.horizon = True, 3.0
    c._wait_inputs(3.0 - 1e-9)  # exactly at the end's tolerance: the final pass
    assert passes.waits[-1] == (math.inf, POLL)
    c._wait_inputs(2.5)  # a window before the end waits for its own pass
    assert passes.waits[-1] == (1.5 - 1e-9, POLL)


def test_defaults_and_what_the_constructor_keeps():
    assert WindowQueue().maxsize == 4 and WindowQueue(maxsize=0).maxsize == 1
    a, _ = make(Policy.FAST)
    assert a._capture_ms == 0.0 and a.position == 0.0 and a._rows.maxlen == 8
    settings = SimpleNamespace(step_seconds=0.5, window_steps=8, audio=SimpleNamespace(dim=4), face=SimpleNamespace(dim=3))
    default = WindowAssembler(featurizer=SimpleNamespace(settings=settings), out=WindowQueue(), clock=Clock())
    assert default.max_wait == 0.15 and default.policy is Policy.REPRODUCIBLE
    encode, on_window = (lambda text: None), (lambda t: None)
    kept = WindowAssembler(featurizer=SimpleNamespace(settings=settings), out=WindowQueue(), clock=Clock(),
                           policy=Policy.LIVE, encode_text=encode, on_window=on_window)
    assert kept.policy is Policy.LIVE and kept.encode_text is encode and kept.on_window is on_window
    for k in range(1, 20):
        a.assemble(k)
    assert len(a._rows) == 8  # only a window's steps are kept


def test_missing_asks_about_frames_before_the_window_end_and_audio_that_goes_on():
    feed = Feed(horizon=0.0)
    feed.pending_before = lambda t: t > 0.4  # a frame at 0.4 s is being worked on
    a, _ = make(Policy.FAST, audio=Audio(horizon=1.0), faces=faces_of(feed))
    assert a.missing(0.5, 0.0) == "faces" and a.missing(0.25, 0.0) is None
    passes = Passes(value=1.0)
    b, _ = make(Policy.FAST, audio=Audio(horizon=2.0), speech=speech_of(passes, need=1.0))
    assert b.missing(2.0, 0.0) is None  # audio up to the window end, not ended: its own pass is enough
    b.audio.ended = True
    assert b.missing(2.0 - 1e-9, 0.0) == "speech"  # the end, within its tolerance: the final pass
