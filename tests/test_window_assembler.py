"""WindowAssembler end to end in milliseconds: a real AudioRing, FaceTrack, Transcript and
WindowQueue, a featurizer stand-in whose rows say which audio they were made from, the
assembler's own thread at as-fast-as-possible pace (strict, not real time)."""

from __future__ import annotations

import math
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from realtime.clock import SessionClock
from realtime.faces import FaceTrack
from realtime.speech import TimedWord, Transcript
from realtime.streams import AudioRing
from realtime.windowing import WindowAssembler, WindowQueue

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
    out = WindowQueue(maxsize=100, block=True)
    featurizer = kw.pop("featurizer", StepFeaturizer())
    a = WindowAssembler(featurizer=featurizer, out=out, clock=SessionClock(), strict=True, realtime=False, **kw)
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
    a = WindowAssembler(featurizer=StepFeaturizer(), out=out, clock=SessionClock(), audio=ring, strict=True, realtime=False)
    a.start()
    assert not a.done.wait(0.3)
    a.stop()
    assert a.done.wait(5) and out.closed and a.error is None and a.windows == 0
