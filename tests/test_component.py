"""The live component contract: every component implements it, Worker's lifecycle holds
(errors kept, outputs closed on every exit), figures are bounded, the policy maps one way."""

from __future__ import annotations

import inspect
import threading

import numpy as np
import pytest

from realtime.core.component import Component, Policy, RecentStats, Worker, percentile, percentiles
from realtime.core.streams import AudioRing, FrameFeed
from realtime.sources import DeviceSource, Source


def test_every_live_component_implements_the_contract(tmp_path):
    from realtime.core.clock import SessionClock
    from realtime.pipeline.faces import FaceWorker
    from realtime.pipeline.live import ScoringLoop
    from realtime.pipeline.speech import SpeechWorker
    from realtime.pipeline.text import TextEncoding
    from realtime.pipeline.windowing import WindowAssembler, WindowQueue
    from realtime.sources.browser import BrowserSource
    from realtime.sources.camera import CameraSource
    from realtime.sources.file import FileSource
    from realtime.sources.microphone import MicrophoneSource

    ring = AudioRing(capacity_seconds=5)
    settings = type("S", (), {"step_seconds": 0.5, "window_steps": 8, "audio": type("A", (), {"dim": 4}), "face": type("F", (), {"dim": 3})})
    featurizer = type("Fz", (), {"settings": settings})()
    queue = WindowQueue()
    assembler = WindowAssembler(featurizer=featurizer, out=queue, clock=SessionClock(), audio=ring)
    parts = [
        FaceWorker(feed=FrameFeed(latest_only=True), extract=lambda rgb, t: None),
        SpeechWorker(audio=ring, transcribe=lambda wave, offset=0.0: [], clock=SessionClock()),
        assembler,
        ScoringLoop(queue=queue, scorer=None, session_id="s"),
        TextEncoding(encode=lambda text: None),
    ]
    for part in parts:
        assert isinstance(part, Component), type(part).__name__
        assert isinstance(part.stats(), dict) and part.error is None
    camera = CameraSource(index=0, opener=lambda: None)
    sources = [FileSource(path=tmp_path / "x.mp4"), camera, MicrophoneSource(), DeviceSource(camera=camera), BrowserSource()]
    for source in sources:
        assert isinstance(source, Source), type(source).__name__
        source.release(1.0)  # never blocks, whatever the source
        # inputs come at construction: start() takes none, the clock exists before it counts
        assert list(inspect.signature(source.start).parameters) == [], type(source).__name__
        assert not source.clock.started


def test_session_clock_counts_from_begin_and_a_frame_tap_connects_once():
    from realtime.core.clock import SessionClock
    from realtime.sources import FrameTap
    from realtime.sources.camera import CameraSource
    from realtime.sources.microphone import MicrophoneSource

    clock = SessionClock(running=False)
    with pytest.raises(RuntimeError, match="begin"):
        clock.now()
    clock.begin()
    t = clock.now()
    clock.begin()  # idempotent: it goes on counting
    assert 0.0 <= t <= clock.now() < 5.0
    got = []
    tap = FrameTap()
    tap(0.0, np.zeros((2, 2, 3), np.uint8))  # not connected: goes nowhere
    tap.connect(lambda t, rgb: got.append(t))
    tap(1.5, np.zeros((2, 2, 3), np.uint8))
    assert got == [1.5]
    with pytest.raises(RuntimeError):
        tap.connect(lambda t, rgb: None)
    with pytest.raises(ValueError, match="same SessionClock"):
        DeviceSource(camera=CameraSource(opener=lambda: None), microphone=MicrophoneSource())
    shared = SessionClock(running=False)
    devices = DeviceSource(camera=CameraSource(opener=lambda: None, clock=shared), microphone=MicrophoneSource(clock=shared))
    assert devices.clock is shared and devices.frame_tap is devices.camera.frame_tap


class Boom(Worker):
    name = "boom"

    def __init__(self, fail: bool) -> None:
        super().__init__()
        self.fail = fail
        self.finished_on: str | None = None

    def run(self) -> None:
        if self.fail:
            raise ValueError("sensor gone")
        while not self.stopping:
            self._stop.wait(0.01)

    def finish(self) -> None:
        self.finished_on = threading.current_thread().name


def test_worker_keeps_the_error_and_always_finishes_on_its_thread():
    w = Boom(fail=True)
    w.start()
    assert w.done.wait(5)
    assert isinstance(w.error, ValueError) and w.finished_on == "boom"
    assert w.stats() == {"running": False, "error": "ValueError: sensor gone"}
    with pytest.raises(RuntimeError):
        w.start()  # a component runs once
    ok = Boom(fail=False)
    ok.start()
    assert ok.running and not ok.done.is_set()
    ok.stop()
    ok.join(5)
    assert ok.done.is_set() and ok.error is None and ok.finished_on == "boom"


def test_recent_stats_bound_their_memory_and_count_everything():
    r = RecentStats(keep=100)
    for v in range(10_000):
        r.add(float(v))
    assert len(r.recent()) == 100 and r.count == 10_000
    s = r.summary()
    assert s == {"p50": 9949.0, "p95": 9994.0, "n": 10_000}  # the recent 100 values: 9900..9999
    assert r.max == 9999.0 and r.total == sum(range(10_000))
    r.add(float("nan"))  # not finite: counted, kept out of the figures
    assert r.count == 10_001 and r.max == 9999.0 and percentile(r, 100) == 9999.0
    r.clear()
    assert r.summary() == {"p50": None, "p95": None, "n": 0}


def test_percentiles_are_nearest_rank():
    assert percentile([], 50) is None and percentile([None, float("inf")], 50) is None
    assert percentile([3, 1, 2], 50) == 2 and percentile(range(1, 101), 95) == 95
    assert percentiles([1.234, 5.678], nd=1) == {"p50": 1.2, "p95": 5.7}


def test_one_policy_one_meaning():
    assert Policy.of(strict=False, realtime=True) is Policy.LIVE
    assert Policy.of(strict=True, realtime=True) is Policy.REPRODUCIBLE
    assert Policy.of(strict=True, realtime=False) is Policy.FAST
    with pytest.raises(ValueError, match=r"^as fast as possible needs windows that wait for their inputs \(strict\)$"):
        Policy.of(strict=False, realtime=False)
    table = {p: (p.waits_for_inputs, p.follows_clock, p.drops_when_full) for p in Policy}
    assert table == {Policy.LIVE: (False, True, True), Policy.REPRODUCIBLE: (True, True, True), Policy.FAST: (True, False, False)}


def test_fast_policy_queues_wait_instead_of_dropping():
    from realtime.pipeline.windowing import WindowQueue

    frame = np.zeros((2, 2, 3), np.uint8)
    q = WindowQueue(maxsize=1, policy=Policy.LIVE)
    feed = FrameFeed(latest_only=False, maxsize=1, policy=Policy.LIVE)
    for i in range(3):
        q.put(i)
        feed.put(float(i), frame)
    assert q.dropped == 2 and feed.dropped == 2 and q.get(0) == 2

    q = WindowQueue(maxsize=1, policy=Policy.FAST)
    feed = FrameFeed(latest_only=False, maxsize=1, policy=Policy.FAST)

    def produce() -> None:
        for i in range(2):
            q.put(i)
            feed.put(float(i), frame)

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join(0.3)
    assert producer.is_alive(), "a full FAST queue must make its producer wait"
    assert q.get(1) == 0
    assert feed.get(1)[0] == 0.0
    producer.join(5)
    assert not producer.is_alive() and q.dropped == 0 and feed.dropped == 0
    assert q.get(1) == 1 and feed.get(1)[0] == 1.0


def test_recent_stats_defaults_and_edges():
    r = RecentStats()
    for v in range(2000):
        r.add(v)
    assert len(r.recent()) == 1024 and r.recent()[0] == 976.0  # the default keep: the last 1024 values
    assert all(type(v) is float for v in r.recent()) and len(r) == 2000 and list(r) == r.recent()
    one = RecentStats(keep=0)  # at least one value is kept
    one.add(3)
    one.add(4)
    assert one.recent() == [4.0] and one.count == 2 and one.total == 7.0 and one.max == 4.0
    nan = RecentStats()
    nan.add(float("nan"))
    assert nan.max is None and nan.total == 0.0 and nan.count == 1  # a first value that is not finite
    nan.add(-2.5)
    nan.add(float("inf"))
    assert nan.max == -2.5 and nan.total == -2.5
    assert RecentStats().summary() == {"p50": None, "p95": None, "n": 0}
    r = RecentStats()
    for v in (1.23456, 2.34567):
        r.add(v)
    assert r.summary() == {"p50": 1.23, "p95": 2.35, "n": 2}  # two places by default
    assert r.summary(nd=3) == {"p50": 1.235, "p95": 2.346, "n": 2}
    r.add(0.5)  # a smaller value after a larger one: the max stays
    assert r.max == 2.34567 and r.total == pytest.approx(1.23456 + 2.34567 + 0.5)
    r.clear()
    assert (r.count, r.total, r.max, r.recent()) == (0, 0.0, None, [])


def test_percentile_ranks_at_the_edges():
    data = [4.0, 1.0, 3.0, 2.0]
    assert [percentile(data, q) for q in (0, 1, 25, 26, 50, 51, 75, 76, 100)] == [1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]
    assert percentile([7.0], 0) == 7.0 and percentile([7.0], 100) == 7.0
    assert percentile([None, 2.0, float("nan"), 1.0, float("-inf")], 100) == 2.0
    assert percentiles([1.23456, 9.87654]) == {"p50": 1.23, "p95": 9.88}  # p50 and p95, two places by default
    assert percentiles([1.0, 2.0, 3.0], qs=(0, 99.5)) == {"p0": 1.0, "p99.5": 3.0}
    assert percentiles([]) == {"p50": None, "p95": None}


class Named(Worker):
    name = "a named part"
    thread_name = "named-thread"

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict = {}

    def run(self) -> None:
        t = threading.current_thread()
        self.seen.update(name=t.name, daemon=t.daemon, running=self.running, stopping=self.stopping)

    def finish(self) -> None:
        self.join(1)  # joining itself from its own thread returns at once
        self.seen["finished"] = True


def test_worker_thread_name_daemon_and_self_join():
    w = Named()
    assert not w.running and w.stats() == {"running": False, "error": None}
    w.join(0.01)  # not started: nothing to wait for
    w.start()
    w.join(5)
    assert w.done.is_set() and w.error is None
    assert w.seen == {"name": "named-thread", "daemon": True, "running": True, "stopping": False, "finished": True}
    assert not w.running
    w2 = Boom(fail=False)  # no thread_name: the thread is named after the part
    w2.start()
    assert w2._thread.name == "boom" and w2._thread.daemon
    w2.stop()
    w2.stop()  # idempotent
    w2.join(5)
    assert w2.stopping and w2.done.is_set()


def test_a_worker_without_run_reports_not_implemented(caplog):
    w = Worker()
    with caplog.at_level("ERROR", logger="realtime.core.component"):
        w.start()
        assert w.done.wait(5)
    assert isinstance(w.error, NotImplementedError) and w.stats()["error"].startswith("NotImplementedError")
    assert [r.getMessage() for r in caplog.records] == ["worker stopped"]
    assert w.finish() is None


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_worker_done_is_set_even_when_finish_fails():
    class BadFinish(Worker):
        def run(self) -> None:
            pass

        def finish(self) -> None:
            raise OSError("cannot close")

    w = BadFinish()
    w.start()
    assert w.done.wait(5)


def test_percentile_rank_rounds_up_and_clamps():
    assert percentile(list(range(1, 102)), 1) == 2  # rank ceil(0.01 * 101) = 2
    assert percentile([1.0, 2.0], 200) == 2.0  # past 100: the largest value


def test_join_returns_after_its_timeout_and_a_second_start_names_the_part():
    import time

    w = Boom(fail=False)
    w.start()
    try:
        t0 = time.monotonic()
        w.join(0.05)
        assert w.running and time.monotonic() - t0 < 3
        with pytest.raises(RuntimeError, match="^boom was started already$"):
            w.start()
    finally:
        w.stop()
        w.join(5)
