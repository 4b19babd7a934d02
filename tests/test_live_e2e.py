"""End to end on a generated talking-face clip: file -> faces/speech -> windows -> scorer
-> real server on 127.0.0.1 -> websocket clients; recording; kill -9; token."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from realtime.core import protocol
from realtime.core.component import Policy
from realtime.pipeline.speech import SpeechOptions

pytestmark = pytest.mark.slow
websockets = pytest.importorskip("websockets")
from websockets.exceptions import InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

BIN = Path(sys.executable).parent

try:  # the dashboard fixtures (headless Chromium) of the server engineer's tests
    from test_dashboard import browser, dashboard_page  # noqa: F401
except pytest.skip.Exception:  # playwright missing: that test skips
    pass


@pytest.fixture(scope="module")
def annotated(demo_media, live_scorer, tmp_path_factory):
    """hcl-annotate's path (as fast as possible) over the demo clip: (folder, pipeline)."""
    from realtime.pipeline.build import annotate

    path, _ = demo_media
    out = tmp_path_factory.mktemp("annotated") / "session"
    pipeline = annotate(str(path), str(out), scorer=live_scorer, progress=False)
    assert not pipeline.problems()
    return out, pipeline


def assert_window_schema(msg: dict) -> None:
    assert msg["type"] == "window" and msg["v"] == protocol.PROTOCOL_VERSION
    assert set(msg) == protocol.WINDOW_KEYS
    assert -3 <= msg["score"] <= 3 and msg["class7"] == protocol.class7(msg["score"])
    assert set(msg["presence"]) == {"text", "audio", "video"}
    assert set(msg["latency_ms"]) == {"capture", "features", "scoring", "send"}
    assert msg["end"] - msg["start"] <= 4.0 + 1e-6


def test_annotate_writes_a_session_of_scored_windows(annotated, demo_media, live_scorer):
    from realtime.pipeline.windowing import last_step
    from realtime.recording import read_session

    folder, pipeline = annotated
    session = read_session(folder)
    windows = session.windows
    duration = json.loads(Path(demo_media[0]).with_suffix(".json").read_text())["duration"]
    assert len(windows) == last_step(duration, live_scorer.features.step_seconds)
    assert [w["seq"] for w in windows] == list(range(len(windows)))
    ends = [w["end"] for w in windows]
    assert all(b > a for a, b in zip(ends, ends[1:]))
    for w in windows:
        assert_window_schema(w)
    assert any(w["presence"]["video"] for w in windows) and any(w["presence"]["audio"] for w in windows)
    text = " ".join(w["w"].lower() for w in session.words)
    assert "love" in text or "wonderful" in text or "happy" in text
    assert "terrible" in text or "hate" in text or "worst" in text
    assert (folder / "audio.wav").is_file() and (folder / "transcript.vtt").read_text().startswith("WEBVTT")
    assert windows == pipeline.messages


class Client(threading.Thread):
    """A websocket client that records every message with its arrival time."""

    def __init__(self, ws) -> None:
        super().__init__(daemon=True)
        self.ws = ws
        self.messages: list[tuple[float, dict]] = []
        self.closed = threading.Event()

    def run(self) -> None:
        try:
            for raw in self.ws:
                self.messages.append((time.perf_counter(), json.loads(raw)))
        except Exception:
            pass
        self.closed.set()

    def windows(self) -> list[tuple[float, dict]]:
        return [(t, m) for t, m in self.messages if m["type"] == "window"]


def http_json(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    assert resp.status == 200, (path, resp.status)
    return json.loads(resp.read())


def test_realtime_replay_through_the_server(annotated, demo_media, live_scorer):
    """Real-time pace, real server: a client gets every window (schema, increasing times);
    a stalled client delays nobody; the scores equal the as-fast-as-possible run's."""
    from realtime.pipeline.live import LivePipeline, PipelineOptions
    from realtime.sources.file import FileSource
    from realtime.web.server import DashboardServer

    path, _ = demo_media
    source = FileSource(path=path, policy=Policy.REPRODUCIBLE, fps=live_scorer.features.face.frames_per_second)
    # reproducible policy: speech passes run in order however far behind (the default skips past 4 s)
    options = PipelineOptions(policy=Policy.REPRODUCIBLE, speech=SpeechOptions(max_backlog=None))
    published: dict[int, float] = {}

    def publish(msg: dict) -> None:  # the server below exists before the pipeline starts
        published[msg["seq"]] = time.perf_counter()
        server.publish(msg)

    pipeline = LivePipeline(source=source, scorer=live_scorer, options=options, publish=publish)
    server = DashboardServer(host="127.0.0.1", port=0, hello=pipeline.hello(), metrics=pipeline.metrics, queue_size=8)
    server.start()
    try:
        with connect(server.ws_url, open_timeout=10, max_queue=1), connect(server.ws_url, open_timeout=10) as ws:
            # the first connection never reads: a stalled browser
            client = Client(ws)
            client.start()
            pipeline.start()
            assert pipeline.wait(180), "the pipeline did not finish a 10 s clip in 3 minutes"
            n = len(pipeline.messages)
            deadline = time.time() + 10
            while len(client.windows()) < n and time.time() < deadline:
                time.sleep(0.05)
            health = http_json(server.port, "/health")
            metrics = http_json(server.port, "/metrics")
    finally:
        pipeline.stop()
        pipeline.join()
        server.stop()
        server.join(10)
    assert not pipeline.problems()
    got = client.windows()
    assert client.messages[0][1]["type"] == "hello"
    assert [m["seq"] for _, m in got] == list(range(n)), "the reading client missed windows"
    for _, m in got:
        assert_window_schema(m)
    ends = [m["end"] for _, m in got]
    assert all(b > a for a, b in zip(ends, ends[1:]))
    delays = [t - published[m["seq"]] for t, m in got]
    assert max(delays) < 1.0, f"a stalled client delayed the other one: {max(delays):.3f} s"
    assert health["ok"] and health["windows_published"] == n
    assert metrics["pipeline"]["windows"] == n and metrics["pipeline"]["dropped_windows"] == 0
    assert metrics["latency_ms"]["total"]["p50"] is not None
    # same file, same windows: real-time pace gives the scores of as-fast-as-possible
    assert pipeline.queue.dropped == 0 and source.frames.dropped == 0, "overloaded: windows or frames dropped"
    fast = annotated[1].messages
    assert [m["words"] for _, m in got] == [m["words"] for m in fast]
    assert [m["score"] for _, m in got] == pytest.approx([m["score"] for m in fast], abs=1e-3)


def test_positive_and_negative_sentences_score_with_opposite_signs(annotated, demo_media, shipped_live_checkpoint, live_checkpoint):
    if Path(live_checkpoint) != Path(shipped_live_checkpoint):
        pytest.skip("needs the shipped live model")
    _, utterances = demo_media
    windows = annotated[1].messages

    def mean_score(u) -> float:
        # Whisper's word times wobble by a few tenths; the sentences are 2.5 s apart
        inside = [
            w for w in windows
            if len(w["words"]) >= 3 and all(u.start - 1.0 <= 0.5 * (x["start"] + x["end"]) <= u.end + 1.0 for x in w["words"])
        ]
        assert inside, f"no window holds only words of {u.text!r}"
        return sum(w["score"] for w in inside) / len(inside)

    positive, negative = mean_score(utterances[0]), mean_score(utterances[1])
    assert positive > 0 > negative, (positive, negative)


def _spawn(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kw)


def test_non_loopback_host_refuses_clients_without_the_token(annotated):
    folder, pipeline = annotated
    proc = _spawn([str(BIN / "hcl-replay"), str(folder), "--host", "0.0.0.0", "--port", "0", "--no-browser"])
    try:
        line = ""
        deadline = time.time() + 60
        while time.time() < deadline and "dashboard:" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        m = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", line)
        assert m, f"no URL with a token printed: {line!r}"
        port, token = m.group(1), m.group(2)
        with pytest.raises(InvalidStatus) as refused:
            with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10):
                pass
        assert refused.value.response.status_code in (401, 403)
        with connect(f"ws://127.0.0.1:{port}/ws?token={token}", open_timeout=10) as ws:
            hello = json.loads(ws.recv(10))
            session = json.loads(ws.recv(10))
        assert hello["type"] == "hello" and hello["mode"] == "replay"
        assert session["type"] == "session" and len(session["windows"]) == len(pipeline.messages)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_dashboard_shows_the_real_pipeline(demo_media, live_scorer, request):
    if "dashboard_page" not in globals():
        pytest.skip("playwright is not installed")
    """Headless Chromium on the dashboard while the real pipeline plays the generated clip."""
    pytest.importorskip("playwright.sync_api")
    from test_dashboard import ARTIFACTS, assert_shows

    from realtime.pipeline.live import LivePipeline, PipelineOptions
    from realtime.sources.file import FileSource
    from realtime.web.server import DashboardServer

    open_page = request.getfixturevalue("dashboard_page")
    path, _ = demo_media
    source = FileSource(path=path, policy=Policy.FAST, fps=live_scorer.features.face.frames_per_second)
    pipeline = LivePipeline(source=source, scorer=live_scorer, options=PipelineOptions(policy=Policy.FAST),
                            publish=lambda msg: server.publish(msg))  # the server below exists before the start
    with DashboardServer(host="127.0.0.1", port=0, hello=pipeline.hello(), metrics=pipeline.metrics, stats_interval=0.5) as server:
        dash = open_page(server.url)
        dash.page.wait_for_selector('[data-testid="connection"][data-state="open"]', timeout=20000)
        try:
            pipeline.start()
            assert pipeline.wait(180)
        finally:
            pipeline.stop()
            pipeline.join()
        last = pipeline.messages[-1]
        dash.wait_for_seq(last["seq"], timeout=20)
        shown = dash.shown()
        ARTIFACTS.mkdir(exist_ok=True)
        dash.page.screenshot(path=str(ARTIFACTS / "live_pipeline_dashboard.png"), full_page=True)
    assert_shows(shown, last)
    assert [w["seq"] for w in dash.windows()] == [m["seq"] for m in pipeline.messages]
    words = " ".join(shown["all_words"]).lower()
    assert "terrible" in words or "hate" in words or "worst" in words
    assert shown["mode"] == "live" and shown["chart_count"] == len(pipeline.messages)
    # modalities the model does not consume are shown, but marked as not scored
    for m in ("text", "audio", "video"):
        scored = m in live_scorer.config.inputs
        assert shown["modalities"][m]["scored"] == str(scored).lower(), m
        assert ("not scored" in shown["modalities"][m]["text"]) == (not scored), m
    assert not dash.console_errors, dash.console_errors


def test_ctrl_c_closes_the_recording_cleanly(demo_media, live_checkpoint, tmp_path):
    from realtime.recording import read_session

    path, _ = demo_media
    folder = tmp_path / "rec"
    # started with SIGINT ignored, as a background job of a non-interactive shell (a CI
    # script) starts it: hcl-live must still stop on SIGINT
    proc = _spawn([str(BIN / "hcl-live"), "--file", str(path), "--record", str(folder), "--no-browser",
                   "--port", "0", "--checkpoint", str(live_checkpoint)],
                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    scores = folder / "scores.jsonl"
    try:
        deadline = time.time() + 150
        while time.time() < deadline and proc.poll() is None:
            if scores.is_file() and scores.read_text().count("\n") >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read()
        proc.send_signal(signal.SIGINT)
        # about 3 s on an idle 2-core machine; a loaded one waits for a running Whisper pass
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the recording is complete whatever the exit: everything is closed before the interpreter exits
    session = read_session(folder)
    rec = session.info["recording"]
    assert rec["ended_at"] is not None and rec["windows"] == len(session.windows) >= 3
    assert not session.truncated
    if proc.returncode == 1 and "Timeout (0:00:" in out:
        # hcl-live's exit watchdog fired: the interpreter's exit hung in a native finaliser (seen
        # once in a clean-clone CI run); the process still ended and its stacks are in `out`
        pytest.xfail("exit watchdog fired; stacks:\n" + out[out.index("Timeout (0:00:"):][:4000])
    assert proc.returncode == 0, out
    assert "dashboard: http://127.0.0.1:" in out
    assert "still running after stop" not in out, out
    assert [w["seq"] for w in session.windows] == list(range(len(session.windows)))
    assert session.audio_path is not None and session.read_audio()[0].size > 0


# ------------------------------------------------------------------ a model that reads all three modalities
@pytest.fixture(scope="module")
def trimodal_checkpoint(tmp_path_factory):
    """A real checkpoint (random weights, seed 0) whose model consumes text, audio and video,
    so equal scores mean equal audio and video features too, not only equal words."""
    import torch

    from hcl.checkpoint import save_checkpoint
    from hcl.config import MODALITIES, ModelConfig
    from hcl.features.config import FeatureSettings
    from hcl.model import HCL

    torch.manual_seed(0)
    settings = FeatureSettings()
    model = HCL(config=ModelConfig(**settings.model_dims())).eval()
    assert tuple(model.config.inputs) == MODALITIES
    return save_checkpoint(tmp_path_factory.mktemp("trimodal") / "model.pt", model, features=settings,
                           meta={"name": "random-trimodal"})


def test_the_trimodal_checkpoint_reads_audio_and_video(trimodal_checkpoint):
    import numpy as np

    from realtime.pipeline.scorer import WindowScorer
    from realtime.pipeline.windowing import Window

    scorer = WindowScorer(checkpoint=trimodal_checkpoint, device="cpu")
    rng = np.random.default_rng(0)
    s = scorer.features

    def window(audio_scale: float, video_scale: float) -> Window:
        a = rng.normal(size=(s.window_steps, s.audio.dim)).astype(np.float32) * audio_scale
        v = rng.random(size=(s.window_steps, s.face.dim)).astype(np.float32) * video_scale
        on = np.ones(s.window_steps, bool)
        return Window(0, 0.0, 4.0, a, on, v, on, [], "what a lovely day", {})

    base = scorer.score(window(1, 1)).score
    rng = np.random.default_rng(0)
    assert scorer.score(window(1, 1)).score == base
    rng = np.random.default_rng(0)
    assert scorer.score(window(3, 1)).score != base
    rng = np.random.default_rng(0)
    assert scorer.score(window(1, 0.2)).score != base


def test_annotate_equals_reproducible_real_time_replay_through_the_cli(demo_media, trimodal_checkpoint, tmp_path):
    """`hcl-annotate FILE` and `hcl-live --file FILE --reproducible` (real-time pace) give the
    same windows: words, presence, COWA weights and scores of a model that reads all three."""
    from realtime.recording import read_session

    path, _ = demo_media
    fast, live = tmp_path / "annotated", tmp_path / "live"
    annotate = subprocess.run([str(BIN / "hcl-annotate"), str(path), "-o", str(fast), "--checkpoint",
                               str(trimodal_checkpoint), "--device", "cpu", "-q"],
                              env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)
    assert annotate.returncode == 0, annotate.stdout + annotate.stderr
    proc = _spawn([str(BIN / "hcl-live"), "--file", str(path), "--reproducible", "--exit-when-done", "--record",
                   str(live), "--no-browser", "--port", "0", "--device", "cpu", "--checkpoint", str(trimodal_checkpoint)])
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert re.search(r"finished: \d+ windows, 0 dropped", out), out
    a, b = read_session(fast), read_session(live)
    assert a.info["model"]["inputs"] == ["text", "audio", "video"]
    assert len(a.windows) == len(b.windows) > 10
    keys = ("seq", "start", "end", "words", "presence", "weights", "score", "class7")
    for wa, wb in zip(a.windows, b.windows):
        assert {k: wa[k] for k in keys} == {k: wb[k] for k in keys}, wa["seq"]
    assert any(w["presence"]["audio"] for w in a.windows) and any(w["presence"]["video"] for w in a.windows)
    assert any(w["words"] for w in a.windows)
    assert len({w["score"] for w in a.windows}) > 3  # the scores move with the inputs


def test_kill_9_loses_no_window_a_client_was_sent(demo_media, trimodal_checkpoint, tmp_path):
    """What a dashboard showed is on disk: kill -9 hcl-live the moment a websocket client has
    received its 4th window; every window the client received is in scores.jsonl, unchanged,
    and the recording is a gap-free prefix of the session."""
    from realtime.recording import read_session

    path, _ = demo_media
    folder = tmp_path / "rec"
    proc = _spawn([str(BIN / "hcl-live"), "--file", str(path), "--fast", "--record", str(folder), "--no-browser",
                   "--port", "0", "--device", "cpu", "--checkpoint", str(trimodal_checkpoint), "--exit-when-done"])
    received: list[dict] = []
    try:
        port = None
        deadline = time.time() + 120
        while time.time() < deadline and port is None:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            m = re.search(r"dashboard: http://127\.0\.0\.1:(\d+)/", line)
            port = int(m.group(1)) if m else None
        assert port, "hcl-live printed no dashboard URL"
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=20) as ws:
            while True:
                msg = json.loads(ws.recv(120))
                if msg["type"] == "window":
                    received.append(msg)
                    if len(received) >= 4:
                        os.kill(proc.pid, signal.SIGKILL)  # at once: no time to catch up on disk
                        break
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    session = read_session(folder)
    recorded = {w["seq"]: w for w in session.windows}
    assert [w["seq"] for w in session.windows] == list(range(len(session.windows)))
    assert [m["seq"] for m in received] == list(range(len(received)))
    missing = [m["seq"] for m in received if m["seq"] not in recorded]
    assert not missing, f"windows {missing} reached a client but not the recording"
    for m in received:
        assert_window_schema(m)
        assert recorded[m["seq"]] == m
