"""The live component contract: every component implements it, Worker's lifecycle holds
(errors kept, outputs closed on every exit), figures are bounded, the policy maps one way."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from realtime.component import Component, Policy, RecentStats, Worker, percentile, percentiles
from realtime.sources import DeviceSource, Source
from realtime.streams import AudioRing, FrameFeed


def test_every_live_component_implements_the_contract(tmp_path):
    from realtime.clock import SessionClock
    from realtime.faces import FaceWorker
    from realtime.pipeline import ScoringLoop, TextPrefetch
    from realtime.sources.browser import BrowserSource
    from realtime.sources.camera import CameraSource
    from realtime.sources.file import FileSource
    from realtime.sources.microphone import MicrophoneSource
    from realtime.speech import SpeechWorker
    from realtime.windowing import WindowAssembler, WindowQueue

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
        TextPrefetch(assembler=assembler, encode_text=lambda text: None),
    ]
    for part in parts:
        assert isinstance(part, Component), type(part).__name__
        assert isinstance(part.stats(), dict) and part.error is None
    camera = CameraSource(index=0, opener=lambda: None)
    sources = [FileSource(path=tmp_path / "x.mp4"), camera, MicrophoneSource(), DeviceSource(camera=camera), BrowserSource()]
    for source in sources:
        assert isinstance(source, Source), type(source).__name__
        source.release(1.0)  # never blocks, whatever the source


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
    with pytest.raises(ValueError):
        Policy.of(strict=False, realtime=False)
    table = {p: (p.waits_for_inputs, p.follows_clock, p.drops_when_full) for p in Policy}
    assert table == {Policy.LIVE: (False, True, True), Policy.REPRODUCIBLE: (True, True, True), Policy.FAST: (True, False, False)}


def test_fast_policy_queues_wait_instead_of_dropping():
    from realtime.windowing import WindowQueue

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
