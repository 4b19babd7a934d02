"""Sessions on one server (realtime.sessions.hub + the server's /capture, /s/<secret>,
/ws?session=<secret>, /sessions): simulated capture clients send a real face and
real audio over the binary capture protocol on a real websocket on 127.0.0.1; each
session's viewers get only its windows; a flooding client is closed with its reason
without holding up the other session; a client that vanishes leaves a readable
recording; admission refuses when full or when a session is dropping windows; the
links need no token, the operator view and capture do; HTTPS/WSS with a self-signed
pair made by openssl.

The pipelines are real (the face model, the audio features, the shipped scorer);
Whisper is off here (transcribe=False) to keep these tests fast: the two-browser
test (test_browser_sessions.py) runs it."""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import shutil
import ssl
import subprocess
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from capture_clients import clip_messages, jpeg_of, send_paced

websockets = pytest.importorskip("websockets")
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

CLIENT = pathlib.Path(__file__).resolve().parent.parent / "client"
SR = 16000
# how long a condition may take: generous, as CI may share the machine (HCL_TEST_WAIT s)
WAIT = float(os.environ.get("HCL_TEST_WAIT", "120"))


# ---------------------------------------------------------------- helpers
def _clip(seconds: float, *, freq: float = 220.0):
    """A real face (JPEGs) and a voiced tone with pauses, as the messages a browser sends."""
    from media_fixtures import face_image

    t = np.arange(int(seconds * SR)) / SR
    audio = (0.25 * np.sin(2 * np.pi * freq * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)).astype(np.float32)
    frame = jpeg_of(np.ascontiguousarray(np.repeat(np.repeat(face_image(160), 2, 0), 2, 1)), quality=80)
    return clip_messages(audio, [frame], fps=10)


class Viewer:
    """A page's websocket on one stream: every message with its arrival time, until the
    session's status says finished (or stop())."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[tuple[float, dict]] = []
        self.finished = threading.Event()
        self.running = threading.Event()
        self._ws = connect(url, open_timeout=10)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for raw in self._ws:
                msg = json.loads(raw)
                self.messages.append((time.monotonic(), msg))
                if msg.get("type") == "status" and msg.get("state") == "running":
                    self.running.set()
                if msg.get("type") == "status" and msg.get("state") == "finished":
                    self.finished.set()
        except ConnectionClosed:
            pass

    def windows(self) -> list[tuple[float, dict]]:
        return [(t, m) for t, m in self.messages if m.get("type") == "window"]

    def close(self) -> None:
        self._ws.close()
        self._thread.join(5)


class Capturer:
    """A simulated browser on /capture: hello, the server's answer, then the clip in real time."""

    def __init__(self, url: str, events, *, extra_headers=None) -> None:
        self.ws = connect(url, open_timeout=10, max_size=1 << 20, additional_headers=extra_headers)
        self.events = events
        self.ws.send(events[0][1])
        self.answer = json.loads(self.ws.recv(timeout=30))

    def stream(self, *, until: float | None = None) -> None:
        """Send the media (and the end) at real-time pace; `until` s: stop sending there."""
        events = [e for e in self.events[1:] if until is None or e[0] <= until]
        send_paced(self.ws.send, events)

    def close_code(self, timeout: float = 10.0) -> tuple[int | None, str]:
        try:
            while True:
                self.ws.recv(timeout=timeout)
        except ConnectionClosed as exc:
            return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")
        except TimeoutError:
            return None, "no close"


@pytest.fixture
def hub_server(live_scorer, tmp_path):
    """make(max_sessions=2, token=None, **config) -> (hub, server); all stopped at the end."""
    from realtime.core.component import Policy
    from realtime.pipeline.live import PipelineOptions, session_hello
    from realtime.sessions.hub import HubConfig, SessionHub
    from realtime.web.server import DashboardServer

    made = []

    def make(*, max_sessions: int = 2, token: str | None = None, ssl_context=None, **config):
        config.setdefault("record_dir", tmp_path / "sessions")
        hub = SessionHub(scorer=live_scorer, config=HubConfig(max_sessions=max_sessions, **config),
                         options=PipelineOptions(policy=Policy.LIVE, transcribe=False))
        server = DashboardServer(hello=session_hello(session_id="main", scorer=live_scorer), sessions=hub, token=token,
                                 client_dir=CLIENT, stats_interval=0.5, ssl_context=ssl_context)
        server.start()
        hub.start()
        made.append((hub, server))
        return hub, server

    yield make
    for hub, server in made:
        hub.stop()
        hub.join(10)
        server.stop()
        server.join(10)


def _urls(server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _get(server, path: str, headers: dict | None = None) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


# ---------------------------------------------------------------- admission (no models)
def _fake_pipeline(session_id: str, *, dropped: int = 0, lag_p95: float | None = None):
    speech = None
    if lag_p95 is not None:
        speech = SimpleNamespace(transcript=SimpleNamespace(stats=lambda: {"lag_s": {"p50": lag_p95, "p95": lag_p95, "n": 3}}),
                                 _thread=None)
    return SimpleNamespace(
        session_id=session_id, source=SimpleNamespace(name="fake", kind="file", _thread=None),
        queue=SimpleNamespace(dropped=dropped), speech=speech, faces=None, assembler=None, text=None,
        scoring=SimpleNamespace(stats=lambda: {"windows": 0, "dropped_windows": dropped, "latency_ms": {}}, _thread=None),
        problems=lambda: [], threads=lambda: [], thinning=lambda: {"face_fps": None, "speech_period_s": None},
    )


def test_admission_refuses_when_full_and_says_so():
    from realtime.sessions.hub import AdmissionRefused, HubConfig, SessionHub

    hub = SessionHub(scorer=None, config=HubConfig(max_sessions=2))
    hub.check_admission()
    hub.adopt(_fake_pipeline("a"), kind="file")
    hub.check_admission()
    hub.adopt(_fake_pipeline("b"), kind="file")
    with pytest.raises(AdmissionRefused, match=r"full: 2 sessions are live \(--max-sessions\)"):
        hub.check_admission()
    assert hub.stats()["admitting"] is False and "full" in hub.stats()["refusing_because"]


def test_admission_refuses_while_a_session_drops_windows_and_recovers_after_the_window():
    from realtime.sessions.hub import AdmissionRefused, HubConfig, SessionHub

    hub = SessionHub(scorer=None, config=HubConfig(max_sessions=4, health_window=10.0))
    pipeline = _fake_pipeline("a")
    session = hub.adopt(pipeline, kind="file")
    t0 = 1000.0
    for k in range(12):  # 12 s without drops
        session.sample(t0 + k)
    hub.check_admission(now=t0 + 11)
    pipeline.queue.dropped = 3  # the session starts dropping windows
    session.sample(t0 + 12)
    with pytest.raises(AdmissionRefused, match=r"not keeping up: a session dropped 3 windows in the last 10 s"):
        hub.check_admission(now=t0 + 12)
    for k in range(13, 24):  # no more drops: after the health window it admits again
        session.sample(t0 + k)
    hub.check_admission(now=t0 + 23)


def test_admission_refuses_when_the_transcript_lags():
    from realtime.sessions.hub import AdmissionRefused, HubConfig, SessionHub

    hub = SessionHub(scorer=None, config=HubConfig(max_sessions=4, max_lag_p95=2.5))
    hub.adopt(_fake_pipeline("ok", lag_p95=1.2), kind="file")
    hub.check_admission()
    hub.adopt(_fake_pipeline("slow", lag_p95=3.4), kind="file")
    with pytest.raises(AdmissionRefused, match=r"transcript lag p95 3.4 s \(bound 2.5 s\)"):
        hub.check_admission()


def test_links_are_unguessable_and_distinct():
    from realtime.sessions.hub import HubConfig, SessionHub

    hub = SessionHub(scorer=None, config=HubConfig(max_sessions=64))
    secrets = {hub.adopt(_fake_pipeline(f"s{i}"), kind="file").secret for i in range(50)}
    assert len(secrets) == 50 and all(len(s) >= 24 for s in secrets)


# ---------------------------------------------------------------- real sessions
def test_a_capture_session_streams_to_its_own_viewers_only_and_records(hub_server):
    from realtime.recording import read_session

    hub, server = hub_server(max_sessions=2)
    main = Viewer(server.ws_url)
    cap = Capturer(_urls(server, "/capture"), _clip(7.0))
    answer = cap.answer
    assert answer["type"] == "session" and answer["link"].startswith("/s/") and answer["stream"].startswith("/ws?session=")
    secret = answer["link"][3:]
    own = Viewer(_urls(server, answer["stream"]))
    _wait(own.running.is_set, WAIT, "the session to start")
    cap.stream()
    assert own.finished.wait(WAIT), "the session did not finish after the client's end"
    cap.close_code(5)
    windows = [m for _, m in own.windows()]
    assert len(windows) >= 6, len(windows)
    assert {w["session"] for w in windows} == {answer["session"]}
    assert all(w["presence"]["video"] for w in windows[2:]), [w["presence"] for w in windows]
    hello = next(m for _, m in own.messages if m["type"] == "hello")
    assert hello["session"] == answer["session"] and hello["capture"]["url"] == "/capture"
    time.sleep(0.5)
    assert not main.windows(), "the server's own stream got another session's windows"
    # the page at its link, and its code relative to /s/
    status, ctype, body = _get(server, answer["link"])
    assert status == 200 and ctype.startswith("text/html") and 'src="app.js"' in body
    status, ctype, _ = _get(server, "/s/app.js")
    assert status == 200 and ctype.startswith("text/javascript")
    # its recording: every window a viewer saw, closed cleanly
    rec = read_session(pathlib.Path(hub.config.record_dir) / answer["session"])
    assert [w["seq"] for w in rec.windows] == [w["seq"] for w in windows]
    assert rec.info["recording"]["ended_at"] is not None
    assert rec.video_path is not None and rec.audio_path is not None
    # the operator view lists it as ended, with its figures
    ops = json.loads(_get(server, "/sessions")[2])
    line = next(s for s in ops["sessions"] if s["id"] == answer["session"])
    assert line["live"] is False and line["windows"] == len(windows) and line["link"] == "/s/" + secret
    assert line["cpu_seconds"] > 0, line
    own.close()
    main.close()


def test_a_flooding_client_is_closed_and_does_not_hold_up_another_session(hub_server):
    hub, server = hub_server(max_sessions=3)
    good = Capturer(_urls(server, "/capture"), _clip(10.0))
    viewer = Viewer(_urls(server, good.answer["stream"]))
    _wait(viewer.running.is_set, WAIT, "the session to start")
    sender = threading.Thread(target=good.stream, daemon=True)
    sender.start()
    time.sleep(4.0)
    # a second client: a valid hello, then audio chunks as fast as the socket takes them
    from realtime.sources.capture_wire import pack_audio

    flood = Capturer(_urls(server, "/capture"), _clip(1.0))
    assert flood.answer["type"] == "session"
    t_flood = time.monotonic()
    chunk = np.zeros(1600, np.float32)
    try:
        for seq in range(1, 400):
            flood.ws.send(pack_audio(seq, seq * 100.0, chunk))
    except ConnectionClosed:
        pass
    code, reason = flood.close_code(10)
    assert code == 1008 and "too many messages" in reason, (code, reason)
    sender.join(WAIT)
    assert viewer.finished.wait(WAIT)
    # the good session's windows kept coming while the flood was refused
    times = [t for t, _ in viewer.windows()]
    around = [b - a for a, b in zip(times, times[1:]) if b >= t_flood - 1 and a <= t_flood + 6]
    step = 0.5
    # a stall of the server would show as a gap of many seconds; a busy machine's jitter
    # as a second or two
    assert around and max(around) < step + 3.0, around
    flooded = next(s for s in hub.sessions(live_only=False) if s.id == flood.answer["session"])
    assert not flooded.live and "too many messages" in flooded.end_reason
    viewer.close()


def test_a_client_that_vanishes_leaves_a_readable_recording(hub_server):
    from realtime.recording import read_session

    hub, server = hub_server(max_sessions=2)
    cap = Capturer(_urls(server, "/capture"), _clip(8.0))
    viewer = Viewer(_urls(server, cap.answer["stream"]))
    _wait(viewer.running.is_set, WAIT, "the session to start")
    cap.stream(until=4.0)  # no end message
    _wait(lambda: len(viewer.windows()) >= 3, WAIT, "windows")
    cap.ws.socket.close()  # the tab is gone: no closing handshake
    assert viewer.finished.wait(WAIT)
    session = next(s for s in hub.sessions(live_only=False) if s.id == cap.answer["session"])
    assert not session.live and session.end_reason == "the page closed"
    rec = read_session(pathlib.Path(hub.config.record_dir) / cap.answer["session"])
    assert len(rec.windows) == len(viewer.windows()) >= 3
    assert rec.info["recording"]["ended_at"] is not None
    viewer.close()


def test_stopping_the_hub_returns_at_once_and_join_waits_for_the_sessions_to_end(hub_server):
    """`SessionHub.stop()` follows the contract (asks and returns): the hub's thread ends its
    sessions, so a session slow to end holds up `join()`, not `stop()`; after `join()` the
    session ended with its recording closed and the shared services stopped."""
    from realtime.recording import read_session

    hub, server = hub_server(max_sessions=2)
    cap = Capturer(_urls(server, "/capture"), _clip(6.0))
    viewer = Viewer(_urls(server, cap.answer["stream"]))
    _wait(viewer.running.is_set, WAIT, "the session to start")
    cap.stream(until=3.0)
    _wait(lambda: len(viewer.windows()) >= 2, WAIT, "windows")
    release, ending = threading.Event(), threading.Event()
    end = hub.end

    def slow_end(*args, **kwargs):  # a session that takes its time to finish
        ending.set()
        assert release.wait(WAIT)
        return end(*args, **kwargs)

    hub.end = slow_end
    stopper = threading.Thread(target=hub.stop, daemon=True)
    stopper.start()
    stopper.join(WAIT)
    assert not stopper.is_alive(), "stop() waited for the sessions to end"
    assert ending.wait(WAIT), "the hub's thread never began ending the session"
    assert [s.id for s in hub.sessions()] == [cap.answer["session"]]  # still ending
    release.set()
    hub.join(WAIT)
    assert not hub.sessions() and not hub.models.scorer_service.running  # the shared scorer stopped too
    session = hub.sessions(live_only=False)[0]
    assert session.end_reason == "server stopping"
    rec = read_session(pathlib.Path(hub.config.record_dir) / cap.answer["session"])
    assert rec.info["recording"]["ended_at"] is not None and len(rec.windows) >= 2
    viewer.close()


def test_a_full_server_refuses_with_the_reason(hub_server):
    hub, server = hub_server(max_sessions=1)
    first = Capturer(_urls(server, "/capture"), _clip(3.0))
    assert first.answer["type"] == "session"
    second = Capturer(_urls(server, "/capture"), _clip(3.0))
    assert second.answer == {"type": "refused", "reason": second.answer["reason"]}
    assert "full: 1 sessions are live" in second.answer["reason"]
    code, reason = second.close_code(5)
    assert code == 1013 and "full" in reason
    assert hub.stats()["refused"] and len(hub.sessions()) == 1
    first.ws.close()
    _wait(lambda: not hub.sessions(), WAIT, "the first session to end")


def test_links_need_no_token_but_capture_and_the_operator_view_do(hub_server):
    hub, server = hub_server(max_sessions=2, token="s3cret")
    with pytest.raises(InvalidStatus) as exc:
        connect(_urls(server, "/capture"), open_timeout=5)
    assert exc.value.response.status_code == 401
    assert _get(server, "/sessions")[0] == 401
    assert _get(server, "/sessions?token=s3cret")[0] == 200
    cap = Capturer(_urls(server, "/capture?token=s3cret"), _clip(2.0))
    link, stream = cap.answer["link"], cap.answer["stream"]
    assert _get(server, link)[0] == 200  # the session's page, no token
    viewer = Viewer(_urls(server, stream))  # its stream, no token
    _wait(lambda: any(m["type"] == "hello" for _, m in viewer.messages), 10, "hello")
    # a wrong or made-up link is nothing
    assert _get(server, "/s/not-a-session")[0] == 404
    with pytest.raises(InvalidStatus) as exc:
        connect(_urls(server, "/ws?session=not-a-session"), open_timeout=5)
    assert exc.value.response.status_code == 404
    # a page of another site cannot open the stream even with the link
    with pytest.raises(InvalidStatus) as exc:
        connect(_urls(server, stream), open_timeout=5, origin="http://evil.example")
    assert exc.value.response.status_code == 403
    # the stats a session's page gets are its own (no other session's link in them)
    _wait(lambda: any(m["type"] == "stats" for _, m in viewer.messages), 10, "stats")
    stats = next(m for _, m in viewer.messages if m["type"] == "stats")
    assert "/s/" not in json.dumps(stats)
    cap.ws.close()
    viewer.close()


def test_capture_is_not_served_without_sessions():
    from realtime.core import protocol
    from realtime.web.server import DashboardServer

    hello = protocol.hello_message(session="s", mode="live", model={"name": "m", "version": "0"}, step_seconds=0.5,
                                   window_steps=8, clusters=8)
    with DashboardServer(hello=hello, client_dir=CLIENT) as server:
        with pytest.raises(InvalidStatus) as exc:
            connect(_urls(server, "/capture"), open_timeout=5)
        assert exc.value.response.status_code == 404


# ---------------------------------------------------------------- TLS
def _self_signed(tmp: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_https_and_wss_with_a_self_signed_pair(tmp_path):
    from realtime.app.console import tls_context as _tls_context
    from realtime.core import protocol
    from realtime.web.server import DashboardServer

    cert, key = _self_signed(tmp_path)
    ctx = _tls_context(SimpleNamespace(tls_cert=str(cert), tls_key=str(key)))
    hello = protocol.hello_message(session="tls", mode="live", model={"name": "m", "version": "0"}, step_seconds=0.5,
                                   window_steps=8, clusters=8)
    with DashboardServer(hello=hello, client_dir=CLIENT, ssl_context=ctx) as server:
        assert server.url.startswith("https://") and server.ws_url.startswith("wss://")
        trust = ssl.create_default_context(cafile=str(cert))
        with connect(server.ws_url, ssl=trust, open_timeout=10) as ws:
            first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "hello" and first["session"] == "tls"
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=trust, timeout=10)
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200
        conn.close()
        # a client that does not trust the certificate is refused by TLS itself
        with pytest.raises(ssl.SSLError):
            with connect(server.ws_url, ssl=ssl.create_default_context(), open_timeout=10):
                pass


def test_tls_options_are_checked(tmp_path):
    from realtime.app.console import CliError
    from realtime.app.console import tls_context as _tls_context

    with pytest.raises(CliError, match="go together"):
        _tls_context(SimpleNamespace(tls_cert="x.pem", tls_key=None))
    with pytest.raises(CliError, match="openssl"):
        _tls_context(SimpleNamespace(tls_cert=str(tmp_path / "no.pem"), tls_key=str(tmp_path / "no.key")))


def test_cli_refuses_bad_session_options_before_loading_models(capsys):
    from realtime.app.live import live_main

    with pytest.raises(SystemExit) as refused:  # checked as it is parsed (argparse: exit 2)
        live_main(["--browser", "--no-browser", "--max-sessions", "0"])
    assert refused.value.code == 2
    assert "--max-sessions: 0: give 1 or more" in capsys.readouterr().err
    assert live_main(["--browser", "--no-browser", "--tls-cert", "cert.pem"]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        live_main(["--browser", "--demo"])  # one source at a time
