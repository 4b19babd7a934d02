"""Recording reliability: a crash (kill -9) keeps the video and the transcript, a full
disk stops the recording and nothing else, the video carries the session's sound."""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest

from realtime.core import protocol
from realtime.recording import SessionRecorder, read_session, read_wav

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFO = {"session": "rel-test", "model": {"name": "hcl-test", "version": "0"}}
SR = 16000


def window(seq: int) -> dict:
    return protocol.window_message(
        session="rel-test", seq=seq, start=seq * 0.5, end=seq * 0.5 + 4.0, score=0.2 * (seq % 10) - 1.0,
        presence={"text": True, "audio": True, "video": True},
        words=[{"w": f"w{seq}", "start": seq * 0.5, "end": seq * 0.5 + 0.3}],
    )


def tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def decode(path: pathlib.Path, *, tolerate_cut: bool = False) -> dict:
    """What a player gets out of an mp4: video frames (count, size), audio seconds.
    tolerate_cut: stop at a packet cut short (as players do) instead of raising."""
    import av

    out = {"frames": 0, "size": None, "audio_seconds": 0.0, "codecs": set(), "audio_rms": 0.0}
    with av.open(str(path)) as c:
        out["codecs"] = {s.codec_context.name for s in c.streams}
        sq = 0.0
        frames = c.decode(*c.streams)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.InvalidDataError:
                if not tolerate_cut:
                    raise
                break
            if isinstance(frame, av.VideoFrame):
                out["frames"] += 1
                out["size"] = (frame.width, frame.height)
            else:
                a = frame.to_ndarray().reshape(-1)
                out["audio_seconds"] += frame.samples / frame.sample_rate
                sq += float((a.astype(np.float64) ** 2).sum())
        n = out["audio_seconds"] * SR
        out["audio_rms"] = (sq / n) ** 0.5 if n else 0.0
    return out


# ---------------------------------------------------------------- sound and shape of the video
def test_video_has_the_session_sound_and_the_source_aspect(tmp_path):
    folder = tmp_path / "s"
    rgb = np.random.default_rng(0).integers(0, 255, size=(360, 640, 3), dtype=np.uint8)  # 16:9
    with SessionRecorder(folder, session_info=INFO, video_fps=10) as rec:
        for i in range(30):  # 3 s of frames, audio arriving per window as in a live session
            rec.write_frame(rgb, t=i / 10)
            if i % 5 == 4:
                rec.write_window(window(i // 5))
                rec.write_audio(tone(0.5))
    got = decode(folder / "video.mp4")
    assert got["codecs"] == {"h264", "aac"}
    assert got["size"] == (640, 360), "the recorded video keeps the source's aspect ratio"
    assert got["frames"] == 30
    assert got["audio_seconds"] == pytest.approx(3.0, abs=0.15)
    assert 0.15 < got["audio_rms"] < 0.3  # the 0.3-amplitude tone (rms 0.21), not silence
    wav, rate = read_wav(folder / "audio.wav")  # audio.wav is still written
    assert rate == SR and len(wav) == 3 * SR


def test_a_4k_frame_is_recorded_downscaled_with_its_aspect(tmp_path):
    folder = tmp_path / "s"
    big = np.zeros((2160, 3840, 3), np.uint8)
    with SessionRecorder(folder, session_info=INFO, video_queue=0, audio=False) as rec:
        rec.write_frame(big, t=0.0, score=1.0)
        stats = rec.stats()
    assert stats["video_size"] == [1280, 720]
    got = decode(folder / "video.mp4")
    assert got["size"] == (1280, 720) and got["codecs"] == {"h264"}


# ---------------------------------------------------------------- kill -9
CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    sys.path.insert(0, {repo!r})
    from realtime.recording import SessionRecorder
    from realtime.core import protocol
    rec = SessionRecorder({folder!r}, session_info={{"session": "killed"}}, video_fps=10)
    rgb = np.random.default_rng(0).integers(0, 255, size=(180, 320, 3), dtype=np.uint8)
    t = np.arange(8000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    seq = 0
    while True:
        for k in range(5):
            rec.write_frame(rgb, t=seq * 0.5 + k / 10)
        rec.write_window(protocol.window_message(session="killed", seq=seq, start=seq * 0.5, end=seq * 0.5 + 0.5,
                                                 score=0.0, presence={{"text": True}}))
        rec.write_audio(tone)
        # words 0.3 s apart: one growing cue (a new cue every 10 words)
        rec.add_words([{{"w": "w%d" % seq, "start": seq * 0.5, "end": seq * 0.5 + 0.2}}])
        time.sleep(0.15)  # about 3x real time
        print("wrote", seq, rec.stats()["video_frames"], flush=True)
        seq += 1
    """
)


def test_kill_9_keeps_the_video_with_sound_and_the_last_cue(tmp_path):
    folder = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(repo=REPO, folder=str(folder))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    finished = encoded = -1
    try:
        for line in proc.stdout:
            finished, encoded = map(int, line.split()[1:])
            if finished >= 24:  # 12.5 s of session
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert finished >= 24, proc.stderr.read()
    size = (folder / "video.mp4").stat().st_size
    assert size > 10_000, f"video.mp4 is {size} bytes after kill -9"
    got = decode(folder / "video.mp4")
    assert got["codecs"] == {"h264", "aac"} and got["size"] == (320, 180)
    # fragments of 1 s: at most the fragment in progress (plus frames still queued) is lost
    assert got["frames"] >= encoded - 15 and got["frames"] >= 60, (got, encoded)
    assert got["audio_seconds"] >= (finished + 1) * 0.5 - 3.0, got
    vtt = (folder / "transcript.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n")
    assert f"w{finished}" in vtt.split(), "the cue still growing at the kill is on disk"
    assert vtt.count(" --> ") == finished // 10 + 1
    s = read_session(folder)
    assert len(s.windows) >= finished + 1 and s.info["recording"]["ended_at"] is None


def test_growing_cue_is_replaced_not_repeated(tmp_path):
    folder = tmp_path / "s"
    with SessionRecorder(folder, session_info=INFO) as rec:
        for i in range(12):
            rec.add_words([{"w": f"w{i}", "start": i * 0.3, "end": i * 0.3 + 0.2}])
        mid = (folder / "transcript.vtt").read_text()
        rec.add_words([{"w": "late", "start": 10.0, "end": 10.4}])  # after a pause: a new cue
    final = (folder / "transcript.vtt").read_text()
    assert mid.count(" --> ") == 2 and "w0 w1" in mid and "w10 w11" in mid
    assert final.count(" --> ") == 3 and final.split().count("w11") == 1 and final.rstrip().endswith("late")


# ---------------------------------------------------------------- a full disk
@contextlib.contextmanager
def tiny_disk(tmp_path: pathlib.Path, size: str = "256k"):
    """A real small filesystem (tmpfs; needs root), so that writes fail with ENOSPC."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small filesystem")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the disk-full test needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_stops_the_recording_only_and_keeps_what_was_written(tmp_path, caplog):
    reported = []
    rgb = np.random.default_rng(0).integers(0, 255, size=(240, 320, 3), dtype=np.uint8)  # noise: big frames
    with tiny_disk(tmp_path) as disk:
        folder = disk / "session"
        rec = SessionRecorder(folder, session_info=INFO, on_error=reported.append)
        seq = 0
        with caplog.at_level("ERROR", logger="realtime.recording"):
            for seq in range(400):  # 200 s: far more than 256 kB holds
                for k in range(5):
                    rec.write_frame(rgb, t=seq * 0.5 + k / 10)  # never raises
                rec.write_window(window(seq))  # never raises
                rec.write_audio(tone(0.5))  # never raises
                rec.add_words([{"w": f"w{seq}", "start": seq * 0.5, "end": seq * 0.5 + 0.3}])
                if rec.error is not None and seq > 5 + rec.windows:
                    break
            assert rec.error is not None, "the disk never filled up"
            stats = rec.stats()
            rec.stop()
            rec.join()  # did not raise
        assert not stats["recording"] and "No space left on device" in stats["error"]
        assert reported == [str(rec.error)], "on_error is called once, with the reason"
        assert sum("recording stopped" in r.getMessage() for r in caplog.records) == 1
        assert 0 < rec.windows < seq + 1  # some windows were written, the rest refused quietly
        s = read_session(folder)  # what was written stays readable
        assert [w["seq"] for w in s.windows] == list(range(len(s.windows)))
        assert len(s.windows) >= rec.windows
        assert s.info["session"] == "rel-test"
        # the end of the session is on record although the disk was full
        assert s.info["recording"]["ended_at"] and s.info["recording"]["windows"] == rec.windows
        assert "No space left on device" in s.info["recording"]["stopped_early"]
        assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")], "no temporary files are left"
        if (folder / "audio.wav").exists():
            audio, rate = read_wav(folder / "audio.wav")
            assert rate == SR
        video = folder / "video.mp4"
        if video.exists() and video.stat().st_size > 50_000:  # holds at least one whole fragment
            assert decode(video, tolerate_cut=True)["frames"] >= 5
    assert os.strerror(errno.ENOSPC) in str(rec.error)


# ---------------------------------------------------------------- a stalled network camera
class StallingCapture:
    """A capture that delivers `frames` frames, then blocks in read() like a network
    camera whose socket stays open with no data (until `release_event` is set)."""

    def __init__(self, frames: int, release_event) -> None:
        self.left = frames
        self.release_event = release_event
        self.released = False
        self.blocked = False

    def read(self):
        if self.left <= 0:
            self.blocked = True
            self.release_event.wait()  # no timeout, as cv2's read
            return False, None
        self.left -= 1
        import time

        time.sleep(0.01)
        return True, np.full((48, 64, 3), 100, np.uint8)

    def release(self) -> None:
        self.released = True


def test_stalled_camera_is_marked_absent_reconnected_and_stops_promptly():
    import threading
    import time

    from realtime.core.clock import SessionClock
    from realtime.sources.camera import CameraSource

    unblock = threading.Event()
    caps: list[StallingCapture] = []

    def opener():
        # the first connection stalls after 20 frames; the reconnect stalls after 10_000 frames
        caps.append(StallingCapture(21 if not caps else 10_000, unblock))
        return caps[-1]

    cam = CameraSource(index="rtsp://camera.invalid/stream", stall_seconds=0.5, retry_max_seconds=0.2, opener=opener,
                       clock=SessionClock())
    cam.open()  # reads one frame
    cam.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not caps[0].blocked:
            time.sleep(0.01)
        assert caps[0].blocked and cam.frames.present
        t_block = time.monotonic()
        while time.monotonic() < deadline and cam.frames.present:
            time.sleep(0.01)
        assert not cam.frames.present, "a camera stalled for longer than stall_seconds is absent"
        assert 0.3 < time.monotonic() - t_block < 2.0
        assert cam.outages == 1 and cam.stalls == 1
        while time.monotonic() < deadline and cam.reconnects < 1:
            time.sleep(0.01)
        assert cam.reconnects == 1 and len(caps) == 2 and cam.frames.present
        assert cam.frames.get(timeout=2) is not None
        cam.frames.task_done()
        caps[1].left = 0  # the new connection stalls too; stop() must not wait for its read
        while time.monotonic() < deadline and not caps[1].blocked:
            time.sleep(0.01)
        t0 = time.monotonic()
        cam.stop()
        cam.join(5)
        assert time.monotonic() - t0 < 0.5, "stop() + join() return promptly although read() is blocked"
        assert not cam._thread.is_alive() and cam.frames.ended
    finally:
        cam.stop()
        unblock.set()
    time.sleep(0.1)
    assert caps[0].released, "an abandoned capture is released once its read returns"


def test_camera_path_or_url_that_does_not_open_says_so():
    from realtime.sources import SourceError
    from realtime.sources.camera import CameraSource

    cam = CameraSource(index="/dev/no-such-camera", opener=lambda: None)
    with pytest.raises(SourceError, match="camera /dev/no-such-camera cannot be opened; check the path or URL"):
        cam.open()


def test_full_disk_during_hcl_annotate_keeps_scoring_every_window(tmp_path, live_scorer):
    """The live path end to end on a real full disk: the recording stops (reported as a
    problem), every window is still scored, and the folder holds what was written."""
    from hcl.features.media import write_media
    from realtime.pipeline.build import annotate
    from realtime.pipeline.windowing import last_step

    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, size=(240, 320, 3), dtype=np.uint8) for _ in range(80)]  # 8 s of noise
    clip = write_media(tmp_path / "noise.mp4", frames, tone(8.0), fps=10, crf=18)
    with tiny_disk(tmp_path, "160k") as disk:
        pipeline = annotate(str(clip), str(disk / "session"), scorer=live_scorer, progress=False)
        rec = pipeline.recorder
        assert rec.error is not None and "No space left on device" in str(rec.error)
        assert pipeline.problems() == [] and pipeline.error is None  # monitoring went on
        assert len(pipeline.messages) == last_step(8.0, live_scorer.features.step_seconds)
        assert rec.windows < len(pipeline.messages)
        s = read_session(disk / "session")
        assert [w["seq"] for w in s.windows] == [m["seq"] for m in pipeline.messages[: len(s.windows)]]
        assert not [p.name for p in (disk / "session").iterdir() if p.name.endswith(".tmp")]


def test_chromium_plays_and_seeks_the_recorded_video(tmp_path):
    """The fragmented MP4 is what the replay page plays: Chromium reads its duration
    (from the fragment index written at close) and seeks in it, via the dashboard
    server's Range answers."""
    import time

    pytest.importorskip("playwright.sync_api")
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("no /usr/bin/chromium")
    import cv2  # noqa: F401  (imported before the frames, so the encoder thread keeps up)
    from playwright.sync_api import sync_playwright

    from realtime.web.server import DashboardServer

    folder = tmp_path / "s"
    rgb = np.random.default_rng(0).integers(0, 255, size=(180, 320, 3), dtype=np.uint8)
    with SessionRecorder(folder, session_info=INFO) as rec:
        for i in range(120):  # 12 s
            rec.write_frame(rgb, t=i / 10)
            if i % 5 == 4:
                rec.write_audio(tone(0.5))
            time.sleep(0.005)
    hello = protocol.hello_message(session="rel-test", mode="replay", model={"name": "m", "version": "1"},
                                   step_seconds=0.5, window_steps=8, clusters=8)
    session = protocol.session_message(session="rel-test", windows=[], words=[])
    with DashboardServer(hello=hello, session=session, recording=folder) as srv, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            page = browser.new_page()
            page.goto(srv.url)
            page.set_content(f'<video id="v" src="{srv.url.rstrip("/")}/recording/video.mp4" preload="auto" muted></video>')
            page.wait_for_function("() => document.getElementById('v').readyState >= 1", timeout=15000)
            assert page.evaluate("document.getElementById('v').duration") == pytest.approx(12.0, abs=0.3)
            page.evaluate("document.getElementById('v').currentTime = 7.3")
            page.wait_for_function("() => !document.getElementById('v').seeking", timeout=10000)
            assert page.evaluate("document.getElementById('v').currentTime") == pytest.approx(7.3, abs=0.05)
            assert page.evaluate("document.getElementById('v').error") is None
        finally:
            browser.close()


def test_real_network_camera_that_goes_silent_is_detected_and_reconnected():
    """An MJPEG-over-HTTP camera on 127.0.0.1 whose socket stays open but stops sending:
    through OpenCV's FFmpeg backend the camera is marked absent within about
    stall_seconds, reconnected when the server sends again, and stop() is immediate."""
    import socket
    import threading
    import time

    cv2 = pytest.importorskip("cv2")
    from realtime.core.clock import SessionClock
    from realtime.sources.camera import CameraSource

    jpg = cv2.imencode(".jpg", np.full((120, 160, 3), 90, np.uint8))[1].tobytes()
    silent = threading.Event()
    closing = threading.Event()

    def handle(conn):
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n\r\n")
            try:
                while not closing.is_set():
                    if silent.is_set():
                        closing.wait(0.1)  # connection open, nothing sent
                        continue
                    conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg) + jpg + b"\r\n")
                    time.sleep(0.05)
            except OSError:
                pass

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)

    def accept_loop():
        while not closing.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/stream.mjpg"
    cam = CameraSource(index=url, stall_seconds=1.0, retry_max_seconds=0.3, clock=SessionClock())
    try:
        cam.open()
        cam.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and cam.frames.horizon < 0.3:
            time.sleep(0.05)
        assert cam.frames.present and cam.frames.horizon >= 0.3
        silent.set()
        t0 = time.monotonic()
        while time.monotonic() < deadline and cam.frames.present:
            time.sleep(0.05)
        assert not cam.frames.present and time.monotonic() - t0 < 4.0 and cam.outages == 1
        silent.clear()
        while time.monotonic() < deadline and cam.reconnects < 1:
            time.sleep(0.05)
        assert cam.reconnects == 1 and cam.frames.present
        silent.set()
        time.sleep(0.3)  # a read is now blocked on the silent socket
        t1 = time.monotonic()
        cam.stop()
        cam.join(5)
        assert time.monotonic() - t1 < 0.5
    finally:
        cam.stop()
        closing.set()
        server.close()
