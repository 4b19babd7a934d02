"""Pure parts of the live path: step clock, window stacking, words, queues, rings, commits."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from realtime.core.component import Policy, percentile
from realtime.core.streams import AudioRing, FrameFeed, Horizon
from realtime.pipeline.speech import agreed_prefix, commit_rule, drop_committed
from realtime.pipeline.windowing import (
    Window,
    WindowQueue,
    last_step,
    presence,
    stack_steps,
    step_end,
    window_text,
)


def W(text, start, end):
    return SimpleNamespace(text=text, start=start, end=end, probability=1.0)


def test_step_clock():
    assert step_end(1, 0.5) == 0.5
    assert step_end(8, 0.5) == 4.0
    assert last_step(13.0, 0.5) == 26
    assert last_step(13.1, 0.5) == 27  # a final partial step counts
    assert last_step(13.003, 0.5) == 26  # a sliver does not


def test_stack_steps_keeps_the_last_steps_oldest_first_padded_at_the_end():
    rows = [np.full(3, i, np.float32) for i in range(3)]
    x, m = stack_steps(rows, [True, False, True], 8, 3)
    assert x.shape == (8, 3) and m.tolist() == [True, False, True] + [False] * 5
    assert x[:3, 0].tolist() == [0, 1, 2] and not x[3:].any()
    rows = [np.full(3, i, np.float32) for i in range(10)]
    x, m = stack_steps(rows, [True] * 10, 8, 3)
    assert x[:, 0].tolist() == list(range(2, 10)) and m.all()


def test_window_text_joins_the_words():
    words = [{"w": "a", "start": 0.0, "end": 0.4}, {"w": "b", "start": 3.8, "end": 4.4}, {"w": "c", "start": 4.5, "end": 4.9}]
    assert window_text(words) == "a b c"
    assert window_text([]) == ""


def test_presence():
    p = presence(text=" ", audio_mask=np.array([False, True]), video_mask=np.zeros(2, bool))
    assert p == {"text": False, "audio": True, "video": False}


def test_percentile_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([3, 1, 2], 50) == 2
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([1.0, float("nan")], 95) == 1.0


def _window(seq):
    z = np.zeros((8, 2), np.float32)
    return Window(seq, 0, 1, z, np.zeros(8, bool), z, np.zeros(8, bool), [], "", {})


def test_window_queue_drops_the_oldest_when_full():
    q = WindowQueue(maxsize=2)
    for i in range(5):
        q.put(_window(i))
    assert q.dropped == 3 and len(q) == 2
    assert [q.get(0).seq, q.get(0).seq] == [3, 4]
    assert q.get(0.01) is None
    q.close()
    assert q.get() is None


def test_window_queue_blocks_when_asked():
    q = WindowQueue(maxsize=1, policy=Policy.FAST)
    q.put(_window(0))
    done = threading.Event()
    threading.Thread(target=lambda: (q.put(_window(1)), done.set()), daemon=True).start()
    assert not done.wait(0.2)
    assert q.get(1).seq == 0
    assert done.wait(2) and q.get(1).seq == 1 and q.dropped == 0


def test_audio_ring_reads_by_time_with_zeros_outside():
    ring = AudioRing(sample_rate=100, capacity_seconds=1.0)
    assert ring.horizon == float("-inf") and ring.read(0, 1).sum() == 0
    ring.append(np.arange(50, dtype=np.float32), start_time=2.0)
    assert ring.horizon == pytest.approx(2.5)
    x = ring.read(1.9, 2.2)
    assert len(x) == 30 and x[:10].sum() == 0 and x[10:].tolist() == list(range(20))
    ring.append(np.arange(50, 120, dtype=np.float32))  # wraps; capacity 100 samples
    assert ring.horizon == pytest.approx(3.2)
    assert ring.read(2.0, 2.2).sum() == 0  # overwritten
    assert ring.read(3.1, 3.2).tolist() == list(range(110, 120))
    assert ring.covered(3.0, 3.4) == pytest.approx(0.5)
    assert not ring.wait_until(3.5, timeout=0.01)
    ring.close()
    assert not ring.wait_until(3.5) and ring.ended


def test_frame_feed_latest_only_never_serves_stale_frames():
    feed = FrameFeed(latest_only=True)
    for t in range(5):
        feed.put(float(t), np.zeros((2, 2, 3), np.uint8))
    t, _ = feed.get(0)
    assert t == 4.0 and feed.replaced == 4 and feed.dropped == 0
    assert feed.pending_before(10.0)  # in flight
    feed.task_done()
    assert not feed.pending_before(10.0) and feed.get(0.01) is None


def test_frame_feed_fifo_drops_oldest_and_tracks_pending():
    feed = FrameFeed(latest_only=False, maxsize=2)
    for t in range(3):
        feed.put(float(t), np.zeros((2, 2, 3), np.uint8))
    assert feed.dropped == 1
    assert feed.pending_before(1.5) and not feed.pending_before(1.0)
    assert feed.get(0)[0] == 1.0
    feed.task_done()
    assert feed.wait_idle_before(2.0, timeout=0.01)
    assert not feed.wait_idle_before(2.5, timeout=0.01)


def test_horizon_wait():
    h = Horizon()
    threading.Timer(0.05, h.advance, args=(2.0,)).start()
    assert h.wait_until(1.5, timeout=2)
    h.end()
    assert not h.wait_until(3.0)


def test_local_agreement_commits_only_what_two_passes_agree_on():
    prev = [W("I", 0.1, 0.7), W("am", 0.7, 0.9), W("still", 0.9, 1.0)]
    cur = [W("I", 0.1, 0.7), W("am", 0.7, 0.95), W("absolutely", 0.95, 1.4), W("loving", 1.4, 1.7)]
    assert agreed_prefix(prev, cur) == 2
    chosen, rest = commit_rule(cur, previous=prev, committed=[], forced_until=-1)
    assert [w.text for w in chosen] == ["I", "am"] and [w.text for w in rest] == ["absolutely", "loving"]
    # the next pass repeats the committed words with wobbly times: they are not committed twice
    nxt = [W("I", 0.11, 0.71), W("am,", 0.72, 0.97), W("absolutely", 0.97, 1.41), W("loving", 1.41, 1.73), W("this", 1.73, 2.2)]
    chosen2, rest2 = commit_rule(nxt, previous=rest, committed=chosen, forced_until=-1)
    assert [w.text for w in chosen2] == ["absolutely", "loving"] and [w.text for w in rest2] == ["this"]
    # words about to leave the context are committed without agreement
    chosen3, _ = commit_rule([W("x", 5.0, 5.2), W("y", 6.0, 6.3)], previous=[], committed=[], forced_until=5.5)
    assert [w.text for w in chosen3] == ["x"]


def test_drop_committed_by_time_and_repeated_words():
    committed = [W("it", 2.3, 2.4), W("is", 2.4, 2.6)]
    words = [W("It", 2.25, 2.35), W("is", 2.35, 2.65), W("wonderful", 2.65, 3.0)]
    assert [w.text for w in drop_committed(words, committed)] == ["wonderful"]
    assert [w.text for w in drop_committed(words, [])] == ["It", "is", "wonderful"]


def test_words_before_a_pause_are_final():
    from realtime.pipeline.speech import pause_after

    sr = 1000
    wave = np.full(3 * sr, 0.3, np.float32)  # speech everywhere ...
    wave[1200:1600] = 0.0  # ... but a pause at 1.2-1.6 s
    words = [W("a", 0.2, 0.6), W("b", 0.7, 1.15), W("c", 1.6, 2.0), W("d", 2.1, 2.9)]
    assert pause_after(words, wave, t0=0.0, sample_rate=sr, pause=0.25, pause_db=-45) == 2
    assert pause_after(words[:1], wave, t0=0.0, sample_rate=sr, pause=0.25, pause_db=-45) == 0
    # a word too close to the end of the audio cannot be judged
    assert pause_after([W("x", 2.9, 2.95)], np.zeros(3 * sr, np.float32), t0=0.0, sample_rate=sr, pause=0.25, pause_db=-45) == 0
