"""WindowAssembler end to end in milliseconds: a real AudioRing, FaceTrack, Transcript and
WindowQueue, a featurizer stand-in whose rows say which audio they were made from, the
assembler's own thread at as-fast-as-possible pace (strict, not real time)."""

from __future__ import annotations

import math
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from realtime.core.clock import SessionClock
from realtime.core.component import Policy
from realtime.core.streams import AudioRing
from realtime.pipeline.faces import FaceTrack
from realtime.pipeline.speech import TimedWord, Transcript
from realtime.pipeline.windowing import WindowAssembler, WindowQueue

SR = 16000
STEP, STEPS = 0.5, 4


class StepFeaturizer:
    """Stands in for SegmentFeaturizer.featurize_arrays on one step of audio: the row is
    (mean, number of samples, first sample); speech where the mean is above 0.25."""

    settings = SimpleNamespace(step_seconds=STEP, window_steps=STEPS, audio=SimpleNamespace(dim=3),
                               face=SimpleNamespace(dim=2))

    def __init__(self) -> None:
        self.calls = 0

    def featurize_arrays(self, wave, frames, *, n_steps):
        assert frames is None and n_steps == 1
        self.calls += 1
        row = np.array([[wave.mean(), len(wave), wave[0]]], np.float32)
        return SimpleNamespace(audio=row, audio_mask=np.array([wave.mean() > 0.25]))


def step_audio(levels) -> AudioRing:
    """Step k (1-based) is the constant level levels[k - 1]; the ring is closed (file read)."""
    ring = AudioRing(sample_rate=SR, capacity_seconds=60)
    ring.append(np.concatenate([np.full(int(STEP * SR), v, np.float32) for v in levels]), start_time=0.0)
    ring.close()
    return ring


def faces_at(frames: dict[float, np.ndarray | None]):
    track = FaceTrack()
    for t, f in frames.items():
        track.add(t, f)
    done = threading.Event()
    done.set()
    feed = SimpleNamespace(horizon=max(frames) if frames else 0.0, ended=True, pending_before=lambda t: False,
                           wait_idle_before=lambda t, timeout=None: True)
    return SimpleNamespace(track=track, done=done, feed=feed)


def transcript_of(words):
    tr = Transcript()
    tr.commit([TimedWord(w, s, e, 1.0, available_at=0.0, committed_at=0.0) for w, s, e in words])
    tr.passes.end()
    return SimpleNamespace(transcript=tr, required_horizon=lambda t: 0.0, settled_until=math.inf)


def run(**kw):
    out = WindowQueue(maxsize=100, policy=Policy.FAST)
    featurizer = kw.pop("featurizer", StepFeaturizer())
    a = WindowAssembler(featurizer=featurizer, out=out, clock=SessionClock(), policy=Policy.FAST, **kw)
    seen = []
    a.on_window = seen.append
    a.start()
    assert a.done.wait(10), "the assembler did not finish"
    a.join(5)
    windows = []
    while (w := out.get(0)) is not None:
        windows.append(w)
    return a, windows, seen


def test_one_window_per_step_each_the_last_steps_oldest_first():
    levels = [0.1, 0.3, 0.5, 0.7, 0.2, 0.9]
    a, windows, seen = run(audio=step_audio(levels))
    assert a.error is None and a.out.closed
    assert [w.seq for w in windows] == [0, 1, 2, 3, 4, 5] and a.windows == 6
    assert [(w.start, w.end) for w in windows] == [(0.0, 0.5), (0.0, 1.0), (0.0, 1.5), (0.0, 2.0), (0.5, 2.5), (1.0, 3.0)]
    assert seen == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0] and a.position == 3.0
    first, full, last = windows[0], windows[3], windows[5]
    assert first.audio.shape == (STEPS, 3) and first.video.shape == (STEPS, 2)
    np.testing.assert_allclose(first.audio[0], [0.1, 8000, 0.1], rtol=1e-6)
    assert not first.audio[1:].any() and first.audio_mask.tolist() == [False, False, False, False]
    np.testing.assert_allclose(full.audio[:, 0], [0.1, 0.3, 0.5, 0.7], rtol=1e-6)
    np.testing.assert_allclose(last.audio[:, 0], [0.5, 0.7, 0.2, 0.9], rtol=1e-6)  # oldest first
    assert last.audio_mask.tolist() == [True, True, False, True]
    assert (last.audio[:, 1] == 8000).all()  # each step reads exactly its own 0.5 s
    assert a.featurizer.calls == 6  # each step's audio is featurized once
    assert not last.video_mask.any() and not last.video.any()  # no camera
    assert last.words == [] and last.text == ""
    assert last.presence == {"text": False, "audio": True, "video": False}
    assert len(a.assemble_ms) == 6


def test_a_final_partial_step_makes_a_window_and_a_sliver_does_not():
    ring = AudioRing(sample_rate=SR, capacity_seconds=60)
    ring.append(np.full(int(1.3 * SR), 0.4, np.float32), start_time=0.0)
    ring.close()
    _, windows, _ = run(audio=ring)
    assert [w.end for w in windows] == [0.5, 1.0, 1.5]
    assert windows[-1].audio[2, 0] == pytest.approx(0.4 * 0.6, rel=1e-4)  # 0.3 s of audio, zeros after
    ring = AudioRing(sample_rate=SR, capacity_seconds=60)
    ring.append(np.full(int(1.002 * SR), 0.4, np.float32), start_time=0.0)
    ring.close()
    _, windows, _ = run(audio=ring)
    assert [w.end for w in windows] == [0.5, 1.0]


def test_face_rows_are_the_mean_of_the_step_frames_with_a_face():
    frames = {0.05: np.array([1.0, 2.0]), 0.25: np.array([3.0, 4.0]), 0.6: None, 0.95: np.array([5.0, 0.0]),
              1.2: None, 1.45: None}
    faces = faces_at(frames)
    a, windows, _ = run(audio=step_audio([0.5, 0.5, 0.5]), faces=faces)
    last = windows[-1]
    np.testing.assert_allclose(last.video[:3], [[2.0, 3.0], [5.0, 0.0], [0.0, 0.0]])
    assert last.video_mask.tolist() == [True, True, False, False]
    assert last.presence["video"] is True and windows[0].presence["video"] is True


def test_the_stream_end_comes_from_the_faces_without_audio():
    faces = faces_at({0.1: np.ones(2), 0.7: np.ones(2), 1.1: np.ones(2)})
    _, windows, _ = run(faces=faces)
    assert [w.end for w in windows] == [0.5, 1.0, 1.5]
    assert all(not w.audio_mask.any() for w in windows)
    assert windows[-1].video_mask.tolist() == [True, True, True, False]


def test_duration_bounds_the_windows():
    _, windows, _ = run(audio=step_audio([0.5] * 6), duration=1.0)
    assert [w.end for w in windows] == [0.5, 1.0]


def test_words_of_the_text_context_and_presence():
    words = [("i", 0.1, 0.3), ("really", 0.4, 0.8), ("liked", 1.0, 1.4), ("it", 2.6, 2.8), ("later", 3.1, 3.3)]
    a, windows, _ = run(audio=step_audio([0.5] * 6), speech=transcript_of(words), text_context=2.0)
    by_end = {w.end: w for w in windows}
    assert [x["w"] for x in by_end[1.5].words] == ["i", "really", "liked"]  # midpoints in [-0.5, 1.5)
    assert by_end[1.5].text == "i really liked" and by_end[1.5].presence["text"] is True
    assert [x["w"] for x in by_end[3.0].words] == ["liked", "it"]  # [1.0, 3.0): "later" is not yet spoken
    assert by_end[3.0].words[0] == {"w": "liked", "start": 1.0, "end": 1.4}
    assert [x["w"] for x in by_end[2.5].words] == ["really", "liked"]  # midpoint 0.6 is in [0.5, 2.5)
    default = WindowAssembler(featurizer=StepFeaturizer(), out=WindowQueue(), clock=SessionClock())
    assert default.text_context == STEP * STEPS  # the window itself when not given


def test_an_error_stops_the_thread_and_closes_the_queue():
    class Broken(StepFeaturizer):
        def featurize_arrays(self, wave, frames, *, n_steps):
            raise RuntimeError("feature extractor failed")

    a, windows, _ = run(audio=step_audio([0.5] * 3), featurizer=Broken())
    assert windows == [] and isinstance(a.error, RuntimeError) and a.out.closed and a.done.is_set()


def test_stop_ends_a_waiting_assembler():
    ring = AudioRing(sample_rate=SR, capacity_seconds=60)  # never gets audio, never ends
    out = WindowQueue(maxsize=4)
    a = WindowAssembler(featurizer=StepFeaturizer(), out=out, clock=SessionClock(), audio=ring, policy=Policy.FAST)
    a.start()
    assert not a.done.wait(0.3)
    a.stop()
    assert a.done.wait(5) and out.closed and a.error is None and a.windows == 0


def test_arrays_are_float32_and_bool_and_missing_audio_is_zero():
    faces = faces_at({0.1: np.ones(2), 0.7: np.ones(2), 1.1: np.ones(2)})
    ring = AudioRing(sample_rate=SR, capacity_seconds=60)
    ring.append(np.full(int(0.5 * SR), 0.5, np.float32), start_time=0.0)  # audio ends before the faces
    ring.close()
    featurizer = StepFeaturizer()
    _, windows, _ = run(audio=ring, faces=faces, featurizer=featurizer)
    assert [w.end for w in windows] == [0.5, 1.0, 1.5]
    last = windows[-1]
    assert last.audio.dtype == np.float32 and last.video.dtype == np.float32
    assert last.audio_mask.dtype == bool and last.video_mask.dtype == bool
    assert featurizer.calls == 1  # steps without audio are not featurized ...
    assert (last.audio[1:] == 0).all() and last.audio_mask.tolist() == [True, False, False, False]  # ... but zero
    _, windows, _ = run(faces=faces_at({0.1: np.ones(2)}))
    assert (windows[0].audio == 0).all() and windows[0].audio.dtype == np.float32


def test_strict_windows_use_only_words_available_by_their_end():
    tr = Transcript()
    tr.commit([TimedWord("early", 0.1, 0.3, 1.0, available_at=0.5, committed_at=0.5),
               TimedWord("late", 0.6, 0.8, 1.0, available_at=1.6, committed_at=1.6)])
    tr.passes.end()
    speech = SimpleNamespace(transcript=tr, required_horizon=lambda t: 0.0, settled_until=math.inf)
    _, windows, _ = run(audio=step_audio([0.5] * 5), speech=speech, text_context=4.0)
    texts = {w.end: w.text for w in windows}
    assert texts == {0.5: "early", 1.0: "early", 1.5: "early", 2.0: "early late", 2.5: "early late"}
    live = WindowAssembler(featurizer=StepFeaturizer(), out=WindowQueue(), clock=SessionClock(), speech=speech,
                           policy=Policy.LIVE, text_context=4.0)
    assert [w["w"] for w in live.words_at(1.0)] == ["early", "late"]  # live: the transcript as it stands


def test_the_transcript_bounds_its_own_memory_and_hands_out_new_words_by_sequence():
    tr = Transcript(keep_seconds=30.0)
    tr.commit([TimedWord("old", 0.1, 0.3, 1.0, 0.0, 0.0), TimedWord("keep", 8.0, 8.5, 1.0, 0.0, 0.0)])
    first, seq = tr.since(0)
    assert [w.text for w in first] == ["old", "keep"] and seq == 2
    tr.commit([TimedWord("recent", 38.0, 38.5, 1.0, 0.0, 0.0)])  # words ending before 38.5 - 30 = 8.5 s... go
    assert [w.text for w in tr.words(0, 100)] == ["keep", "recent"] and len(tr) == 2
    assert tr.committed == 3  # the count covers the whole session
    new, seq = tr.since(seq)
    assert [w.text for w in new] == ["recent"] and seq == 3
    assert tr.since(3) == ([], 3)
    # a reader far behind gets what is still kept, never a word twice
    assert [w.text for w in tr.since(0)[0]] == ["keep", "recent"]
    speech = SimpleNamespace(transcript=tr, required_horizon=lambda t: 0.0, settled_until=math.inf)
    a = WindowAssembler(featurizer=StepFeaturizer(), out=WindowQueue(), clock=SessionClock(), speech=speech,
                        text_context=1.0)
    a.assemble(80)  # the assembler reads the transcript, it no longer prunes it
    assert len(tr) == 2


def test_ready_and_assembly_times_are_measured():
    _, windows, _ = run(audio=step_audio([0.5] * 3))
    a, _, _ = run(audio=step_audio([0.5] * 3))
    assert all(isinstance(x, float) and 0 <= x < 5000 for x in a.assemble_ms)
    for w in windows:
        assert 0 < w.t_ready <= w.t_assembled and w.capture_ms == 0.0  # not real time: no capture delay


def test_real_time_windows_report_their_capture_delay():
    ring = step_audio([0.5, 0.5])  # 1 s, already there: each window is ready when the clock reaches its end
    out = WindowQueue(maxsize=10)
    a = WindowAssembler(featurizer=StepFeaturizer(), out=out, clock=SessionClock(), audio=ring, policy=Policy.REPRODUCIBLE)
    a.start()
    assert a.done.wait(10)
    windows = [out.get(0), out.get(0)]
    assert [w.end for w in windows] == [0.5, 1.0]
    for w in windows:
        assert isinstance(w.capture_ms, float) and 0.0 <= w.capture_ms < 400, w.capture_ms


def test_join_waits_at_most_its_timeout():
    ring = AudioRing(sample_rate=SR, capacity_seconds=60)
    a = WindowAssembler(featurizer=StepFeaturizer(), out=WindowQueue(), clock=SessionClock(), audio=ring, policy=Policy.FAST)
    a.join(0.1)  # not started: returns at once
    a.start()
    t0 = time.monotonic()
    a.join(0.2)
    assert 0.15 < time.monotonic() - t0 < 2 and not a.done.is_set()
    a.stop()
    a.join(5)
    assert a.done.is_set() and not a._thread.is_alive()


def test_text_follows_the_current_utterance():
    """Speech 1-2 s and 3-4 s with quiet between: the text of the window ending at 4 s starts
    at the second utterance (less 0.15 s for Whisper's wobbly word times), once the speech
    before it is settled; before that, at the first one."""
    t = np.arange(int(4.0 * SR)) / SR
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    wave[(t < 1.0) | ((t >= 2.0) & (t < 3.0))] = 0.0
    ring = AudioRing(sample_rate=SR, capacity_seconds=60)
    ring.append(wave, start_time=0.0)
    speech = SimpleNamespace(transcript=Transcript(), required_horizon=lambda t: 0.0, settled_until=math.inf)
    a = WindowAssembler(featurizer=StepFeaturizer(), out=WindowQueue(), clock=SessionClock(), audio=ring, speech=speech,
                        text_context=7.0, utterance_pause=0.45)
    assert a.text_start(4.0) == pytest.approx(2.85, abs=0.03)
    speech.settled_until = 1.5  # the first utterance is not transcribed for good yet
    assert a.text_start(4.0) == pytest.approx(0.85, abs=0.03)
    speech.settled_until = -5.0
    assert a.text_start(4.0) == -3.0  # no utterance is current: the whole text context
    speech.settled_until = math.inf  # no pause passes (reproducible policy): every utterance counts
    assert a.text_start(4.0) == pytest.approx(2.85, abs=0.03)
    assert a.text_start(1.5) == pytest.approx(0.85, abs=0.03)
    a.utterance_pause = None
    assert a.text_start(4.0) == -3.0
    no_audio = WindowAssembler(featurizer=StepFeaturizer(), out=WindowQueue(), clock=SessionClock(), speech=speech,
                               text_context=7.0, utterance_pause=0.45)
    assert no_audio.text_start(4.0) == -3.0


def test_pure_helpers_at_their_edges():
    from realtime.core.component import percentile
    from realtime.pipeline.windowing import last_step, stack_steps, window_text

    assert window_text([{"w": " "}, {"w": " a "}, {"w": ""}, {"w": "b"}]) == "a b"
    assert percentile(list(range(101)), 100) == 100 and percentile([5.0], 100) == 5.0
    assert percentile([1, 2, 3, 4], 100) == 4 and percentile([1, 2, 3, 4], 1) == 1
    assert last_step(0.0, 0.5) == 1 and last_step(0.3, 0.5) == 1 and last_step(0.5, 0.5) == 1
    x, m = stack_steps([np.ones(2)], [True], 3, 2)
    assert x.dtype == np.float32 and m.dtype == bool and m.tolist() == [True, False, False]


def test_window_queue_get_waits_for_a_window():
    from realtime.pipeline.windowing import Window

    def later(q, delay):
        w = Window(0, 0, 1, np.zeros((1, 1)), np.zeros(1, bool), np.zeros((1, 1)), np.zeros(1, bool), [], "", {})
        threading.Timer(delay, q.put, args=(w,)).start()

    q = WindowQueue(maxsize=2)
    later(q, 0.1)
    assert q.get(timeout=5) is not None  # arrives within the timeout
    later(q, 0.1)
    assert q.get() is not None  # no timeout: waits as long as it takes
    t0 = time.monotonic()
    assert q.get(timeout=0.2) is None and time.monotonic() - t0 >= 0.19


def test_live_windows_never_wait_past_max_wait_for_audio():
    """Live policy (a device that went quiet): windows still come, max_wait after their end."""
    ring = AudioRing(sample_rate=SR, capacity_seconds=60)  # no audio ever arrives
    out = WindowQueue(maxsize=10)
    clock = SessionClock()
    a = WindowAssembler(featurizer=StepFeaturizer(), out=out, clock=clock, audio=ring, policy=Policy.LIVE,
                        max_wait=0.15)
    a.start()
    try:
        got = []
        for _ in range(2):
            w = out.get(timeout=3)
            assert w is not None, "a live window waited for audio that never came"
            got.append((w, clock.now()))
    finally:
        a.stop()
        a.join(5)
    assert [w.end for w, _ in got] == [0.5, 1.0]
    for w, t in got:
        assert w.end + 0.15 - 0.02 <= t < w.end + 0.6, (w.end, t)
        assert not w.audio_mask.any() and a.error is None
