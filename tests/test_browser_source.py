"""BrowserSource: capture messages of a (simulated) browser client become audio in the
ring at the right session times and decoded frames in the feed; gaps, late audio,
clock drift and backlogs follow the documented rule; end() finishes the streams.
A fake clock drives the timing; the audio is generated speech and tones, the
frames real JPEGs of a real face."""

from __future__ import annotations

import time

import numpy as np
import pytest

from realtime.sources import FrameTap
from realtime.sources.browser import BrowserSource, BrowserTiming
from realtime.sources.capture_wire import (
    CaptureFormatError,
    CaptureHello,
    CaptureKind,
    CaptureLimits,
    CaptureMessage,
    pack,
    pack_audio,
    parse_hello,
    unpack,
)

SR = 16000
CHUNK = 1600  # 100 ms


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def begin(self) -> None:
        pass  # counts from construction


def jpeg_of(rgb: np.ndarray, quality: int = 85) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def face():
    from media_fixtures import face_image

    return face_image(240)


@pytest.fixture(scope="module")
def face_jpeg(face):
    return jpeg_of(face)


def signal(seconds: float, seed: int = 0) -> np.ndarray:
    """A tone sweep with noise: every 100 ms chunk differs from every other one."""
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + np.random.default_rng(seed).normal(0, 0.02, len(t))
    return np.clip(x, -1, 1).astype(np.float32)


def quantised(x: np.ndarray) -> np.ndarray:
    """What the ring holds after the int16 trip."""
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16).astype(np.float32) / 32768


class Client:
    """Packs messages as a browser would: one sequence for all kinds, times in ms."""

    def __init__(self, source: BrowserSource) -> None:
        self.source = source
        self.seq = 0

    def send(self, data: bytes) -> CaptureMessage:
        msg = unpack(data)
        self.source.feed(msg)
        return msg

    def audio(self, t_client: float, samples: np.ndarray) -> CaptureMessage:
        self.seq += 1
        return self.send(pack_audio(self.seq, t_client * 1000, samples))

    def frame(self, t_client: float, jpeg: bytes) -> CaptureMessage:
        self.seq += 1
        return self.send(pack(CaptureKind.VIDEO, self.seq, t_client * 1000, jpeg))


def started(clock: FakeClock, **kwargs) -> tuple[BrowserSource, Client]:
    source = BrowserSource(clock=clock, **kwargs)
    source.open()
    source.start()
    return source, Client(source)


def stream_audio(client: Client, clock: FakeClock, x: np.ndarray, *, t0_client: float, t0_server: float,
                 latency=lambda i: 0.05, skip=()) -> None:
    """Send x in 100 ms chunks; chunk i arrives at its capture end + latency(i) on the server."""
    for i in range(len(x) // CHUNK):
        if i in skip:
            continue
        clock.t = t0_server + (i + 1) * CHUNK / SR + latency(i)
        client.audio(t0_client + i * CHUNK / SR, x[i * CHUNK : (i + 1) * CHUNK])


def test_it_follows_the_source_contract():
    import realtime.sources

    source = BrowserSource()
    if hasattr(realtime.sources, "Source"):  # the typed source protocol
        assert isinstance(source, realtime.sources.Source)
    assert source.kind == "browser" and source.duration is None and source.error is None
    assert source.frames.latest_only
    assert source.audio.sample_rate == SR
    assert BrowserSource(video=False).frames is None and BrowserSource(audio=False).audio is None
    with pytest.raises(ValueError):
        BrowserSource(audio=False, video=False)


def test_from_hello_builds_what_the_client_announced():
    s = BrowserSource.from_hello(CaptureHello(audio=True, video=False, agent="Chromium 130"))
    assert s.audio is not None and s.frames is None and "Chromium 130" in s.name


def test_audio_lands_at_the_anchored_time_with_its_samples():
    """First chunk anchors (client 0 s -> session 3.0 s); then client time is kept under jitter."""
    clock = FakeClock()
    source, client = started(clock, video=False)
    x = signal(3.0)
    jitter = np.random.default_rng(1).uniform(0, 0.08, 30)
    # the first chunk has the least latency, so the anchor stays where it was set
    stream_audio(client, clock, x, t0_client=0.0, t0_server=3.0, latency=lambda i: 0.0 if i == 0 else jitter[i])
    ring = source.audio
    assert ring.start_time == pytest.approx(3.0)
    assert ring.horizon == pytest.approx(6.0)
    np.testing.assert_allclose(ring.read(3.0, 6.0), quantised(x), atol=1e-6)
    # a window in the middle reads exactly the matching samples
    np.testing.assert_allclose(ring.read(4.2, 4.7), quantised(x[int(1.2 * SR) : int(1.7 * SR)]), atol=1e-6)
    st = source.stats()
    assert st["audio"] == {"seconds": 3.0, "chunks": 30, "gap_seconds": 0.0, "late_seconds": 0.0}
    assert st["clamped"] == 0 and st["resyncs"] == 0 and st["seq_gaps"] == 0
    assert st["delay_ms"]["n"] == 30 and 0 <= st["delay_ms"]["p95"] <= 80
    source.stop()
    source.join(2)


def test_speech_goes_through_unchanged(face_jpeg):
    """Generated speech in 250 ms chunks (the upper end of what clients send)."""
    from media_fixtures import espeak_available, speak

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    x = speak("I really love this wonderful movie.")
    n = len(x) // 4000 * 4000
    clock = FakeClock()
    source, client = started(clock, video=False)
    for i in range(n // 4000):
        clock.t = 1.0 + (i + 1) * 0.25 + 0.03
        client.audio(i * 0.25, x[i * 4000 : (i + 1) * 4000])
    np.testing.assert_allclose(source.audio.read(1.03, 1.03 + n / SR), quantised(x[:n]), atol=1e-6)
    source.stop()


def test_missing_audio_becomes_zeros_at_its_time_not_a_shift():
    clock = FakeClock()
    source, client = started(clock, video=False)
    x = signal(2.0)
    stream_audio(client, clock, x, t0_client=0.0, t0_server=1.0, skip={5, 6, 7})  # 0.5-0.8 s never sent
    ring = source.audio
    t0 = ring.start_time
    assert t0 == pytest.approx(1.05)
    assert ring.horizon == pytest.approx(t0 + 2.0)
    assert np.all(ring.read(t0 + 0.5, t0 + 0.8) == 0)
    # audio after the gap sits at its own time
    np.testing.assert_allclose(ring.read(t0 + 0.8, t0 + 2.0), quantised(x[int(0.8 * SR) :]), atol=1e-6)
    np.testing.assert_allclose(ring.read(t0, t0 + 0.5), quantised(x[: int(0.5 * SR)]), atol=1e-6)
    st = source.stats()
    assert st["audio"]["gap_seconds"] == pytest.approx(0.3) and st["audio"]["seconds"] == pytest.approx(1.7)
    assert st["seq_gaps"] == 0  # the client never sent them (its seq did not skip)
    source.stop()


def test_sequence_gaps_are_counted_and_repeats_dropped():
    clock = FakeClock(1.0)
    source, _ = started(clock, video=False)
    chunk = signal(0.1)
    for seq, t in ((1, 0.0), (2, 0.1), (5, 0.4), (5, 0.5), (4, 0.5)):
        clock.t += 0.1
        source.feed(unpack(pack_audio(seq, t * 1000, chunk)))
    st = source.stats()
    assert st["seq_gaps"] == 2 and st["out_of_order"] == 2 and st["audio"]["chunks"] == 3
    source.stop()


def test_late_audio_is_dropped_and_counted_nothing_moves():
    clock = FakeClock()
    source, client = started(clock, video=False)
    x = signal(1.0)
    stream_audio(client, clock, x, t0_client=0.0, t0_server=0.0)
    before = source.audio.read(0.05, 1.05).copy()
    clock.t += 0.2
    client.audio(0.3, signal(0.1, seed=9))  # a duplicate of 0.3-0.4 s with other samples
    assert source.audio.horizon == pytest.approx(1.05)
    np.testing.assert_array_equal(source.audio.read(0.05, 1.05), before)
    client.audio(0.95, signal(0.1, seed=3))  # half overlaps the end: its second half is kept
    assert source.audio.horizon == pytest.approx(1.10)
    np.testing.assert_allclose(source.audio.read(1.05, 1.10), quantised(signal(0.1, seed=3)[800:]), atol=1e-6)
    assert source.stats()["audio"]["late_seconds"] == pytest.approx(0.15)
    source.stop()


def test_nothing_runs_ahead_of_the_session_clock_with_a_fast_client_clock():
    """A client clock 2 % fast: mapped times stay at or before now; late audio is trimmed
    a tolerance's worth at a time, so the ring's end follows the session clock (it is
    never more than the tolerance ahead: within it, the sample count wins)."""
    clock = FakeClock()
    source, client = started(clock, video=False)
    x = signal(20.0)
    for i in range(200):
        clock.t = 5.0 + (i + 1) * 0.1 / 1.02 + 0.02  # server time passes 2 % slower than the client's
        client.audio(i * 0.1, x[i * CHUNK : (i + 1) * CHUNK])
        assert source.audio.horizon <= clock.t + source.timing.tolerance + 1e-9
    st = source.stats()
    assert st["clamped"] > 150
    assert 0.2 < st["audio"]["late_seconds"] < 0.45  # ~2 % of 20 s
    assert abs(source.audio.horizon - clock.t) < 0.05
    source.stop()


def test_a_slow_client_clock_is_resynced_once_it_lags_past_max_lag():
    """A client whose clock runs 10 % slow falls behind 10 ms per 100 ms chunk; once every
    message of the lag window came more than max_lag late the stream jumps to the present."""
    clock = FakeClock()
    timing = BrowserTiming(max_lag=0.5, lag_window=2.0)
    source, client = started(clock, video=False, timing=timing)
    x = signal(12.0)
    horizons = []
    for i in range(120):
        clock.t = (i + 1) * 0.1 * 1.1 + 0.03
        client.audio(i * 0.1, x[i * CHUNK : (i + 1) * CHUNK])
        horizons.append(clock.t - source.audio.horizon)
    st = source.stats()
    assert st["resyncs"] >= 1
    assert max(horizons) < 0.5 + 0.1 + 0.11  # never more than max_lag (+ a chunk) behind
    assert st["audio"]["gap_seconds"] > 0.5  # the jumps left zeros
    source.stop()


def test_a_backlog_that_clears_does_not_resync():
    """A 2 s network stall then a burst: delays fall back to the usual; no jump, no loss."""
    clock = FakeClock()
    source, client = started(clock, video=False, timing=BrowserTiming(max_lag=1.0, lag_window=5.0))
    x = signal(8.0)

    def arrival(i: int) -> float:
        t = (i + 1) * 0.1 + 0.04
        return max(t, 4.0 + 0.001 * i) if 20 <= i < 40 else t  # chunks of 2-4 s held until 4 s

    for i in range(80):
        clock.t = max(clock.t, arrival(i))
        client.audio(i * 0.1, x[i * CHUNK : (i + 1) * CHUNK])
    st = source.stats()
    assert st["resyncs"] == 0 and st["audio"]["gap_seconds"] == 0 and st["audio"]["late_seconds"] == 0
    np.testing.assert_allclose(source.audio.read(0.04, 8.04), quantised(x), atol=1e-6)
    assert st["delay_ms"]["p95"] > 1000  # the stall shows in the figures
    source.stop()


def test_frames_are_decoded_to_rgb_at_their_mapped_time(face, face_jpeg):
    clock = FakeClock()
    got = []
    source = BrowserSource(audio=True, video=True, clock=clock, frame_tap=FrameTap(lambda t, rgb: got.append(t)))
    source.start()
    client = Client(source)
    clock.t = 2.1
    client.audio(0.0, signal(0.1))  # anchors: offset 2.0
    for k in range(5):
        clock.t = 2.2 + 0.1 * k
        client.frame(0.15 + 0.1 * k, face_jpeg)
        item = source.frames.get(timeout=5)
        assert item is not None
        t, rgb = item
        source.frames.task_done()
        assert t == pytest.approx(2.15 + 0.1 * k)
        assert rgb.shape == face.shape and rgb.dtype == np.uint8
        assert np.abs(rgb.astype(int) - face.astype(int)).mean() < 4  # RGB order, not BGR
    assert got == pytest.approx([2.15 + 0.1 * k for k in range(5)])
    st = source.stats()["video"]
    assert st["decoded"] == 5 and st["frames"] == 5 and st["decode_errors"] == 0 and st["decode_ms"]["n"] == 5
    source.stop()
    source.join(2)


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_only_the_latest_frame_waits_and_large_frames_are_scaled_down(face):
    import cv2

    clock = FakeClock(1.0)
    source = BrowserSource(audio=False, max_side=320, clock=clock)
    source._started = True  # fed as if started; the decoding thread starts below
    small = jpeg_of(face)
    for k in range(20):  # nobody decodes yet: each replaces the one before
        clock.t += 0.05
        source.feed(unpack(pack(CaptureKind.VIDEO, k, k * 50.0, small)))
    assert source.frames_replaced == 19
    source._started = False
    source.start()
    wait_for(lambda: source.frames_decoded == 1)
    t, rgb = source.frames.get(timeout=5)
    assert t == pytest.approx(2.0) and rgb.shape == (240, 240, 3)  # only the newest was decoded
    clock.t += 0.05
    source.feed(unpack(pack(CaptureKind.VIDEO, 21, 21 * 50.0, jpeg_of(cv2.resize(face, (1280, 960))))))
    wait_for(lambda: source.frames_decoded == 2)
    t, rgb = source.frames.get(timeout=5)
    assert rgb.shape == (240, 320, 3)  # 1280x960 scaled to max_side
    source.stop()


def test_frames_out_of_order_or_corrupt_are_skipped_and_counted(face_jpeg):
    clock = FakeClock(1.0)
    source, client = started(clock, audio=False)
    client.frame(1.0, face_jpeg)
    assert source.frames.get(timeout=5) is not None
    clock.t += 0.1
    client.frame(0.5, face_jpeg)  # older than the frame before
    broken = face_jpeg[:600] + bytes(len(face_jpeg) - 600)  # valid header, data zeroed
    clock.t += 0.1
    client.frame(1.2, broken)
    wait_for(lambda: source.frames_decoded + source.decode_errors == 2)
    clock.t += 0.1
    client.frame(1.3, face_jpeg)
    item = source.frames.get(timeout=5)
    assert item is not None and item[0] == pytest.approx(1.3)  # anchored at 1.0 -> offset 0
    st = source.stats()["video"]
    assert st["out_of_order"] == 1 and st["frames"] == 4
    # OpenCV either refuses the zeroed data or decodes grey: counted when refused, never fatal
    assert st["decoded"] + st["decode_errors"] == 3
    assert source.running and source.error is None
    source.stop()


def test_video_is_marked_absent_while_audio_comes_without_frames(face_jpeg):
    clock = FakeClock()
    source, client = started(clock, timing=BrowserTiming(video_absent_after=1.0))
    chunk = signal(0.1)
    t = 0.0

    def audio_for(seconds: float, frames_too: bool) -> None:
        nonlocal t
        for _ in range(int(round(seconds * 10))):
            clock.t = t + 0.1 + 0.01
            client.audio(t, chunk)
            if frames_too:
                client.frame(t + 0.05, face_jpeg)
            t += 0.1

    audio_for(2.0, frames_too=True)
    assert source.frames.present
    audio_for(0.9, frames_too=False)
    assert source.frames.present  # under a second without frames: still there
    audio_for(0.3, frames_too=False)
    assert not source.frames.present and source.stats()["video"]["outages"] == 1
    audio_for(0.3, frames_too=True)
    assert source.frames.present
    audio_for(3.0, frames_too=False)
    assert not source.frames.present and source.stats()["video"]["outages"] == 2
    source.stop()


def test_video_that_never_starts_is_marked_absent():
    clock = FakeClock()
    source, client = started(clock, timing=BrowserTiming(video_absent_after=1.0))
    for i in range(15):
        clock.t = (i + 1) * 0.1
        client.audio(i * 0.1, signal(0.1))
    assert not source.frames.present
    source.stop()


def test_a_frame_declaring_too_large_a_size_is_refused(face):
    import cv2

    clock = FakeClock(1.0)
    source, client = started(clock, audio=False, limits=CaptureLimits(max_frame_side=640))
    with pytest.raises(CaptureFormatError, match="over the limit of 640 px"):
        client.frame(0.0, jpeg_of(cv2.resize(face, (800, 600))))
    source.stop()


def test_messages_before_start_are_dropped_and_counted():
    source = BrowserSource(video=False)
    source.feed(unpack(pack_audio(1, 0.0, signal(0.1))))
    assert source.stats()["before_start"] == 1 and source.audio.start_time is None
    source.stop()


def test_end_closes_the_ring_at_once_and_the_feed_after_the_pending_frame(face_jpeg):
    clock = FakeClock(1.0)
    source, client = started(clock)
    client.audio(0.0, signal(0.1))
    clock.t = 1.2
    client.frame(0.2, face_jpeg)
    client.send(pack(CaptureKind.END, client.seq + 1, 300.0))
    assert source.ended and source.audio.ended
    assert source.audio.wait_until(1e9, timeout=0.1) is False  # waiters return: the stream ended
    item = source.frames.get(timeout=5)  # the frame fed before the end still comes out
    assert item is not None and item[0] == pytest.approx(1.1)
    assert source.frames.get(timeout=5) is None and source.frames.ended
    source.join(5)
    assert source.done.is_set()
    client.audio(0.4, signal(0.1))
    assert source.after_end == 1 and source.audio.horizon == pytest.approx(1.0)


def test_stop_before_start_closes_everything():
    source = BrowserSource()
    source.stop()
    assert source.audio.ended and source.frames.ended
    source.join(1)


def test_memory_stays_bounded_over_twenty_minutes_of_audio():
    """20 minutes of 100 ms chunks into a 30 s ring: the ring's buffer and the figures stay their size."""
    clock = FakeClock()
    source, client = started(clock, video=False, capacity_seconds=30)
    chunk = signal(0.1)
    buf = source.audio._buf
    for i in range(12000):
        clock.t = (i + 1) * 0.1 + 0.02
        client.audio(i * 0.1, chunk)
    assert source.audio._buf is buf and buf.nbytes == 30 * SR * 4
    assert len(source.delay_ms.recent()) <= 1024 and len(source._lag) <= 60
    assert source.stats()["audio"]["seconds"] == pytest.approx(1200)
    np.testing.assert_allclose(source.audio.read(1190.02, 1190.12), quantised(chunk), atol=1e-6)
    source.stop()


# ------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_a_simulated_browser_client_drives_the_live_pipeline(live_scorer):
    """Generated speech over JPEGs of a real face, sent as capture messages at the pace a
    browser sends them (100 ms audio chunks, 10 fps), through pack/unpack into a
    BrowserSource inside LivePipeline (live policy, real face model, Whisper, scorer):
    windows come out with audio and video present and the transcript has the words."""
    import threading

    from capture_clients import clip_messages, live_options, send_paced
    from media_fixtures import espeak_available, face_image, faint_noise, speak

    from realtime.pipeline.live import LivePipeline

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    audio = np.concatenate([faint_noise(0.3, seed=4), speak("I really love this wonderful movie."), faint_noise(1.5, seed=5)])
    audio = audio[: len(audio) // CHUNK * CHUNK]
    duration = len(audio) / SR
    events = clip_messages(audio, [jpeg_of(face_image(256))], fps=10, chunk_seconds=0.1)
    hello = parse_hello(unpack(events[0][1]))

    windows: list[dict] = []
    source = BrowserSource.from_hello(hello)
    pipeline = LivePipeline(source=source, scorer=live_scorer, options=live_options(), on_window=windows.append)
    pipeline.start()  # models load here; the session clock starts at its end
    errors: list[BaseException] = []

    def client() -> None:
        try:
            send_paced(lambda data: source.feed(unpack(data)), events[1:])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    sender = threading.Thread(target=client, daemon=True)
    sender.start()
    try:
        sender.join(duration + 10)
        assert not errors, errors
        assert source.ended
        assert pipeline.wait(timeout=90), "the session did not finish after the client ended"
    finally:
        pipeline.stop()
        pipeline.join()
    assert not pipeline.problems()
    st = source.stats()
    assert st["audio"]["seconds"] == pytest.approx(duration, abs=0.01) and st["seq_gaps"] == 0
    assert st["audio"]["gap_seconds"] < 0.1 and st["audio"]["late_seconds"] < 0.1
    assert st["video"]["decoded"] >= 0.5 * duration * 10 and st["video"]["decode_errors"] == 0
    assert len(windows) >= int(duration / live_scorer.features.step_seconds) - 2
    speech_from = source.audio.start_time + 0.3  # the clip's 0.3 s of faint noise come first
    step = live_scorer.features.step_seconds
    assert all(w["presence"]["audio"] for w in windows if w["end"] >= speech_from + step)
    assert all(w["presence"]["video"] for w in windows)  # the face is in every frame
    words = " ".join(w["w"].lower() for msg in windows for w in msg["words"])
    assert "love" in words or "wonderful" in words or "movie" in words, words
    assert any(w["presence"]["text"] for w in windows)
