"""Inputs of the live commands: files cut short, camera paths and URLs, microphone-only
sessions, a quiet terminal (and --verbose), progress that ends at 100 %."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hcl.features.media import read_media

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 16000


def faststart_mp4(path, seconds: float, *, fps: int = 10) -> bytes:
    """An H.264 + AAC mp4 with its index (moov) at the front, as web downloads are;
    speech-free sweep audio, a moving picture. Returns the file's bytes."""
    import av

    t = np.arange(int(seconds * SR)) / SR
    audio = (0.3 * np.sin(2 * np.pi * (150 + 20 * t) * t)).astype(np.float32)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 160, 120, "yuv420p"
        vs.options = {"preset": "ultrafast"}
        a = c.add_stream("aac", rate=SR, layout="mono")
        n_frames = int(seconds * fps)
        for i in range(n_frames):  # video and audio interleaved by time, as real files are
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            for p in vs.encode(frame):
                c.mux(p)
            lo, hi = i * SR // fps, (i + 1) * SR // fps
            af = av.AudioFrame.from_ndarray(audio[None, lo:hi], format="fltp", layout="mono")
            af.sample_rate, af.pts = SR, lo
            for p in a.encode(af):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        for p in a.encode():
            c.mux(p)
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "faststart: the index comes first"
    return data


def test_half_of_a_faststart_mp4_decodes_what_is_there(tmp_path, caplog):
    full = tmp_path / "full.mp4"
    data = faststart_mp4(full, 12.0)
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING", logger="hcl.features.media"):
        clip = read_media(half)
    assert 3.0 < clip.duration < 9.0, "the duration is what decodes, not what the header promises"
    assert abs(len(clip.audio) / SR - clip.duration) < 0.2
    frames = list(clip.frames(10))
    assert abs(len(frames) / 10 - clip.duration) < 1.5
    assert any("cut short" in r.getMessage() and "half.mp4" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(clip.audio[: SR * 2], read_media(full).audio[: SR * 2], atol=1e-6)


def test_annotate_a_cut_file_and_the_bar_ends_at_100_percent(tmp_path, live_scorer, capsys):
    """hcl-annotate on half a faststart mp4: the windows of the part that decodes, the
    session video with sound, and a progress bar that ends at 100 % although the header
    promised twice the length."""
    from realtime.pipeline.build import annotate
    from realtime.recording import read_session

    full = tmp_path / "full.mp4"
    data = faststart_mp4(full, 8.0)
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    out = tmp_path / "session"
    pipeline = annotate(str(half), str(out), scorer=live_scorer, progress=True)
    err = capsys.readouterr().err
    assert pipeline.problems() == [] and len(pipeline.messages) >= 3
    bar_updates = [part for part in err.replace("\r", "\n").split("\n") if "win" in part and "%" in part]
    assert bar_updates and "100%" in bar_updates[-1], bar_updates[-3:]
    assert f"{len(pipeline.messages)}/{len(pipeline.messages)}" in bar_updates[-1]
    s = read_session(out)
    assert len(s.windows) == len(pipeline.messages)
    import av

    with av.open(str(out / "video.mp4")) as c:
        assert {st.codec_context.name for st in c.streams} == {"h264", "aac"}
        assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (160, 120)


def test_camera_accepts_a_url(capsys):
    from realtime.app.live import live_main

    # nothing listens on port 9: the URL reaches the camera source, which says what failed
    assert live_main(["--camera", "rtsp://127.0.0.1:9/stream", "--no-browser", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "camera rtsp://127.0.0.1:9/stream cannot be opened" in err and "check the path or URL" in err
    assert "invalid int value" not in err


def test_camera_accepts_a_device_path(monkeypatch):
    from realtime.app import live as cli
    from realtime.app import options

    opened = []

    class FakeCamera:
        def __init__(self, *, index, clock, **kw):
            opened.append(index)
            self.name = f"camera {index}"
            self.frames = object()
            self.clock, self.frame_tap = clock, None

        def open(self):
            pass

    class FakeMic:
        def __init__(self, *, device=None, clock):
            self.audio = object()
            self.clock = clock
            self.name = "mic"

        def open(self):
            pass

    monkeypatch.setattr(cli, "CameraSource", FakeCamera)
    monkeypatch.setattr(cli, "MicrophoneSource", FakeMic)
    args = options.live_parser().parse_args(["--camera", "/dev/video2"])
    source = cli.device_source(args.camera, None, need_camera=True)
    assert opened == ["/dev/video2"] and source.camera is not None


def test_microphone_only_session(monkeypatch, capsys):
    """--no-camera: a DeviceSource with a microphone and no camera (no camera is opened);
    without a microphone it says so and exits 2."""
    from realtime.app import live as cli
    from realtime.app import options

    def no_camera(**kw):
        raise AssertionError("--no-camera must not open a camera")

    monkeypatch.setattr(cli, "CameraSource", no_camera)

    class FakeMic:
        def __init__(self, *, device=None, clock):
            self.audio = object()
            self.clock = clock
            self.name = "microphone 0 (fake)"

        def open(self):
            pass

    real_mic = cli.MicrophoneSource
    monkeypatch.setattr(cli, "MicrophoneSource", FakeMic)
    args = options.live_parser().parse_args(["--no-camera"])
    assert args.no_camera and args.camera is None
    source = cli.device_source(None, args.mic, need_camera=False)
    assert source.camera is None and source.frames is None and source.microphone is not None
    monkeypatch.setattr(cli, "MicrophoneSource", real_mic)
    from realtime.sources.microphone import list_microphones

    try:
        has_mic = bool(list_microphones())
    except Exception:
        has_mic = False
    if not has_mic:  # this machine: no sound card
        assert cli.live_main(["--no-camera", "--no-browser", "--port", "0"]) == 2
        err = capsys.readouterr().err
        assert "microphone" in err.lower() and "Traceback" not in err
    with pytest.raises(SystemExit):
        options.live_parser().parse_args(["--no-camera", "--camera", "1"])  # one source at a time


QUIET_CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from realtime.core.logs import setup_logging
    setup_logging({verbose})
    from hcl.features.face import FaceFeatureExtractor
    from hcl.features.text import TextEncoder
    FaceFeatureExtractor().close()
    TextEncoder().encode(["hello there"])
    print("ready", flush=True)
    """
)


@pytest.mark.parametrize("verbose", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_start_up_is_quiet_unless_verbose(verbose):
    env = {k: v for k, v in os.environ.items() if k not in ("HCL_NATIVE_LOGS", "HF_HUB_DISABLE_PROGRESS_BARS", "GLOG_minloglevel")}
    r = subprocess.run(
        [sys.executable, "-c", QUIET_CHILD.format(repo=REPO, verbose=verbose)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert r.returncode == 0 and "ready" in r.stdout, r.stderr[-2000:]
    noise = ("Logging before InitGoogle", "Feedback manager", "XNNPACK", "Loading weights")
    if verbose:
        assert any(n in r.stderr for n in noise), "--verbose shows the libraries' start-up lines"
    else:
        assert not [n for n in noise if n in r.stderr], r.stderr[-2000:]


class _CountingCapture:
    """A fake cv2 capture that delivers small frames until released."""

    def __init__(self) -> None:
        self.released = False

    def read(self):
        import time

        time.sleep(0.01)
        return (not self.released), np.full((48, 64, 3), 90, np.uint8)

    def release(self) -> None:
        self.released = True


def test_camera_opens_once_and_runs_as_a_worker():
    """open() is idempotent (start() after open() reuses the checked capture); the camera's
    watchdog and its connection are Workers: stop() + join() end both and close the feed."""
    import time

    from realtime.core.clock import SessionClock
    from realtime.core.component import Worker
    from realtime.sources import FrameTap
    from realtime.sources.camera import CameraSource

    caps: list[_CountingCapture] = []

    def opener():
        caps.append(_CountingCapture())
        return caps[-1]

    taps = []
    cam = CameraSource(index="/dev/fake-camera", opener=opener, clock=SessionClock(),
                       frame_tap=FrameTap(lambda t, rgb: taps.append(t)))
    assert isinstance(cam, Worker)
    cam.open()
    cam.open()
    assert len(caps) == 1, "a second open() opens nothing"
    cam.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(taps) < 5:
            time.sleep(0.01)
        assert len(taps) >= 5 and len(caps) == 1, "start() after open() uses the capture open() checked"
        assert cam.stats()["running"] and cam.thread.name == "camera"
        with pytest.raises(RuntimeError):
            cam.start()  # a component runs once
    finally:
        cam.stop()
        cam.join(5)
    assert cam.done.is_set() and not cam.running and cam.frames.ended and cam.error is None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not caps[0].released:
        time.sleep(0.01)
    assert caps[0].released, "the connection's capture is released when the camera stops"


def test_microphone_open_is_idempotent(monkeypatch):
    from realtime.core.component import Worker
    from realtime.sources import microphone

    calls = []

    def find(device):
        calls.append(device)
        return microphone.Microphone(index=3, name="USB mic", channels=1, sample_rate=48000.0)

    monkeypatch.setattr(microphone, "find_microphone", find)
    mic = microphone.MicrophoneSource(device="USB")
    assert isinstance(mic, Worker) and mic.stats()["running"] is False
    mic.open()
    mic.open()
    assert calls == ["USB"] and mic.name == "microphone 3 (USB mic)"
    mic.stop()  # never started: returns at once, closes nothing it does not have
    mic.join(1)
