"""client/capture.js in headless Chromium with fake devices fed from files (a 440 Hz
tone at 48 kHz, a real face as y4m video): what reaches a websocket server on
127.0.0.1 parses in the capture format, the audio is 16 kHz at the right pitch and
pace, the frames are the face at 320 px and about 10 fps, and a BrowserSource fed
live from the socket takes all of it without gaps or late audio."""

from __future__ import annotations

import functools
import http.server
import pathlib
import threading
import time
import wave

import numpy as np
import pytest

from realtime.sources.capture_wire import CaptureKind, parse_hello, unpack

playwright_sync = pytest.importorskip("playwright.sync_api")
websockets_sync = pytest.importorskip("websockets.sync.server")

CLIENT = pathlib.Path(__file__).resolve().parent.parent / "client"
CHROMIUM = pathlib.Path("/usr/bin/chromium")
TONE_HZ = 440.0
PAGE = b"<!doctype html><html><head><meta charset='utf-8'><title>capture test</title></head><body></body></html>"


def write_tone_wav(path: pathlib.Path, seconds: float = 4.0, rate: int = 48000) -> pathlib.Path:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.4 * np.sin(2 * np.pi * TONE_HZ * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def face_frame() -> np.ndarray:
    import cv2
    from media_fixtures import face_image

    return cv2.resize(face_image(256), (640, 480), interpolation=cv2.INTER_AREA)


def write_y4m(path: pathlib.Path, rgb: np.ndarray, frames: int = 30, fps: int = 30) -> pathlib.Path:
    import cv2

    h, w = rgb.shape[:2]
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + i420)
    return path


class _Page(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path in ("/", "/test.html"):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)
            return
        if self.path == "/favicon.ico":
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served():
    """The client folder (and a blank page) over HTTP on 127.0.0.1: a secure context."""
    handler = functools.partial(_Page, directory=str(CLIENT))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class Receiver:
    """A websocket server that keeps every message with its arrival time and feeds a
    BrowserSource as the server will."""

    def __init__(self) -> None:
        from realtime.core.clock import SessionClock
        from realtime.sources.browser import BrowserSource

        self.messages: list[tuple[float, object]] = []
        self.ended = threading.Event()
        self.source = BrowserSource(clock=SessionClock())
        self.source.start()
        self.server = websockets_sync.serve(self.handle, "127.0.0.1", 0, max_size=1 << 20)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/capture"

    def handle(self, ws) -> None:
        for data in ws:
            self.messages.append((time.monotonic(), data))
            msg = unpack(data)
            self.source.feed(msg)
            if msg.kind is CaptureKind.END:
                self.ended.set()
                return

    def close(self) -> None:
        self.server.shutdown()
        self.source.stop()


@pytest.fixture
def chromium_capture(tmp_path, served):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh does)")
    wav = write_tone_wav(tmp_path / "tone.wav")
    y4m = write_y4m(tmp_path / "face.y4m", face_frame())
    args = [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}", f"--use-file-for-fake-video-capture={y4m}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(served + "/test.html")
        try:
            yield page, errors
        finally:
            browser.close()


def dominant_hz(x: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def test_capture_js_sends_the_capture_format_from_real_chromium_devices(chromium_capture):
    import cv2

    page, errors = chromium_capture
    receiver = Receiver()
    try:
        hello = page.evaluate(
            """async (url) => {
                const m = await import('/capture.js');
                const ws = new WebSocket(url);
                await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error('ws')); });
                window.capture = await m.startCapture(ws, { fps: 10, width: 320, chunkMs: 100 });
                return window.capture.hello;
            }""",
            receiver.url,
        )
        t_start = time.monotonic()
        page.wait_for_timeout(3000)
        stats = page.evaluate("() => { window.capture.stop(); return window.capture.stats; }")
        t_stop = time.monotonic()
        assert receiver.ended.wait(10), "no end message came"
    finally:
        receiver.close()
    assert not errors, errors
    msgs = [unpack(data) for _, data in receiver.messages]

    # hello first, then one sequence for every message, end last
    assert msgs[0].kind is CaptureKind.HELLO and msgs[0].seq == 0
    h = parse_hello(msgs[0])
    assert h.audio and h.video and h.width == 320 and h.height == 240 and h.fps == 10
    assert hello["width"] == 320
    assert [m.seq for m in msgs] == list(range(len(msgs)))
    assert msgs[-1].kind is CaptureKind.END and all(m.kind is not CaptureKind.END for m in msgs[:-1])

    # audio: 100 ms chunks of 16 kHz, stamped on the audio clock, at real-time pace, the tone's pitch
    audio = [m for m in msgs if m.kind is CaptureKind.AUDIO]
    assert stats["audioChunks"] == len(audio) and stats["skippedAudio"] == 0
    # 100 ms chunks; the first may be short: the worklet closes a chunk where the context
    # rendered blocks without it (while the graph is connected) and stamps the next one
    # at its own time, so the hole shows in the stamps instead of shifting the audio
    assert all(m.samples == 1600 for m in audio[1:]) and 0 < audio[0].samples <= 1600
    starts = np.array([m.t_ms for m in audio])
    ends = starts + np.array([m.duration * 1000 for m in audio])
    holes = starts[1:] - ends[:-1]
    assert np.all(holes > -0.01) and np.all(np.abs(holes[1:]) < 0.01), holes  # contiguous after the start
    assert holes[0] < 150
    startup_gap = float(np.sum(holes[holes > 1000 * receiver.source.timing.tolerance])) / 1000
    seconds = sum(m.duration for m in audio)
    assert 0.8 * (t_stop - t_start) < seconds < 1.2 * (t_stop - t_start) + 0.3
    x = np.concatenate([np.frombuffer(m.payload, "<i2") for m in audio]).astype(np.float32) / 32768
    assert dominant_hz(x[3200:]) == pytest.approx(TONE_HZ, abs=3)
    assert 0.2 < np.sqrt(np.mean(x[3200:] ** 2)) < 0.4  # the 0.4-amplitude tone (rms 0.28), not silence

    # video: about 10 fps of 320x240 JPEGs of the face, times increasing
    video = [m for m in msgs if m.kind is CaptureKind.VIDEO]
    assert stats["frames"] == len(video)
    assert 0.6 * 10 * (t_stop - t_start) <= len(video) <= 10 * (t_stop - t_start) + 3
    assert np.all(np.diff([m.t_ms for m in video]) > 0)
    want = cv2.resize(face_frame(), (320, 240), interpolation=cv2.INTER_AREA).astype(int)
    for m in video[2::5]:
        bgr = cv2.imdecode(np.frombuffer(m.payload, np.uint8), cv2.IMREAD_COLOR)
        assert bgr.shape == (240, 320, 3)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(int)
        assert np.abs(rgb - want).mean() < 12  # the face, in RGB order (BGR would be far off)

    # the source took it live: the holes as gaps, nothing late, every frame decoded
    st = receiver.source.stats()
    # (a first chunk that reaches the server later than the next ones, past the tolerance,
    # costs that much audio once: the machine's load at start-up; ~0 when idle)
    assert st["audio"]["late_seconds"] < 0.15, st
    assert st["audio"]["seconds"] == pytest.approx(seconds - st["audio"]["late_seconds"], abs=0.002)
    assert st["audio"]["gap_seconds"] == pytest.approx(startup_gap, abs=0.01), (st, holes)
    assert st["seq_gaps"] == 0 and st["out_of_order"] == 0
    assert st["video"]["frames"] == len(video) and st["video"]["decode_errors"] == 0
    assert st["delay_ms"]["p95"] < 500  # on a loaded test machine; ~15 ms when idle
