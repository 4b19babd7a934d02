"""DashboardServer on 127.0.0.1 with real websocket and HTTP clients."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import threading
import time

import pytest

from realtime.core import protocol
from realtime.core.component import percentiles
from realtime.web.files import default_client_dir
from realtime.web.http import resolve_static
from realtime.web.server import DashboardServer

websockets = pytest.importorskip("websockets")
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

K, T = 8, 8


# ---------------------------------------------------------------- helpers (also used by test_dashboard)
def make_hello(*, session: str = "test-session", mode: str = "live") -> dict:
    return protocol.hello_message(
        session=session, mode=mode, model={"name": "hcl-test", "version": "0"}, step_seconds=0.5, window_steps=8, clusters=K
    )


VOCAB = ["really", "good", "not", "sure", "about", "this", "movie", "great", "awful", "plot", "acting", "fine"]


def timeline_words(until: float) -> list[dict]:
    """The synthetic transcript: word k spans [0.2 + 0.6 k, 0.6 + 0.6 k] seconds."""
    out, k = [], 0
    while 0.6 + 0.6 * k <= until:
        out.append({"w": VOCAB[k % len(VOCAB)], "start": round(0.2 + 0.6 * k, 3), "end": round(0.6 + 0.6 * k, 3)})
        k += 1
    return out


def make_window(seq: int, *, session: str = "test-session", step: float = 0.5) -> dict:
    """A schema-valid window whose values vary with seq (scores sweep [-3, 3])."""
    import math

    start = seq * step
    score = 2.9 * math.sin(seq / 3.0)
    presence = {"text": seq % 4 != 3, "audio": seq % 3 != 2, "video": seq % 5 != 4}
    weights = {m: [((i + seq + j) % K + 1) / 36 for i in range(K)] for j, m in enumerate(("text", "audio", "video"))}
    attention = [[(1.0 if r == c else 0.0) * 0.5 + ((r + c + seq) % T) / (2 * T * T) for c in range(T)] for r in range(T)]
    # one word every 0.6 s on the session clock; a window carries the words inside it
    words = [] if not presence["text"] else [w for w in timeline_words(start + 8 * step) if w["start"] >= start]
    return protocol.window_message(
        session=session, seq=seq, start=start, end=start + 8 * step, score=score, presence=presence,
        weights=weights, attention=attention, words=words,
        latency_ms={"capture": 12.0 + seq % 5, "features": 40.0, "scoring": 8.0, "send": 1.0}, dropped=0,
    )


def http_get(server: DashboardServer, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """GET with the path sent byte for byte (no client-side normalisation of /../)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def recv_json(ws, timeout: float = 5.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def recv_until(ws, kind: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        msg = recv_json(ws, max(0.01, deadline - time.monotonic()))
        if msg["type"] == kind:
            return msg


@pytest.fixture
def server():
    with DashboardServer(hello=make_hello(), stats_interval=0.2) as srv:
        yield srv


# ---------------------------------------------------------------- tests
def test_windows_follow_schema_in_order(server):
    n = 25
    with connect(server.ws_url) as ws:
        hello = recv_json(ws)
        assert hello["type"] == "hello" and hello["mode"] == "live" and hello["clusters"] == K

        def publisher():
            for seq in range(n):
                server.publish(make_window(seq))
                time.sleep(0.002)

        threading.Thread(target=publisher).start()
        windows = [recv_until(ws, "window") for _ in range(n)]
    for w in windows:
        assert set(w) == protocol.WINDOW_KEYS
        assert -3 <= w["score"] <= 3 and w["class7"] == protocol.class7(w["score"])
        assert w["label"] == protocol.CLASS7_LABELS[w["class7"]]
        assert set(w["presence"]) == {"text", "audio", "video"}
        assert all(len(v) == K for v in w["weights"].values())
        assert len(w["attention"]) == T and all(len(r) == T for r in w["attention"])
    assert [w["seq"] for w in windows] == list(range(n))
    starts = [w["start"] for w in windows]
    ends = [w["end"] for w in windows]
    assert all(b > a for a, b in zip(starts, starts[1:])), "window start times must increase strictly"
    assert all(b > a for a, b in zip(ends, ends[1:])), "window end times must increase strictly"


def test_late_client_gets_recent_history_then_live(server):
    for seq in range(6):
        server.publish(make_window(seq))
    time.sleep(0.1)
    with connect(server.ws_url) as ws:
        assert recv_json(ws)["type"] == "hello"
        assert [recv_until(ws, "window")["seq"] for _ in range(6)] == list(range(6))
        server.publish(make_window(6))
        assert recv_until(ws, "window")["seq"] == 6


def test_health_and_metrics_answer_json():
    figures = {"windows_scored": 7, "dropped_windows": 2, "latency_ms": {"scoring": {"p50": 3.0, "p95": 5.0}}}
    with DashboardServer(hello=make_hello(), metrics=lambda: figures) as srv:
        with connect(srv.ws_url) as ws:
            assert recv_json(ws)["type"] == "hello"
            for seq in range(10):
                srv.publish(make_window(seq))
            for _ in range(10):
                recv_until(ws, "window")
            status, headers, body = http_get(srv, "/health")
            assert status == 200 and headers["content-type"] == "application/json"
            health = json.loads(body)
            assert health["ok"] is True and health["clients"] == 1 and health["windows_published"] == 10
            assert health["uptime"] >= 0

            status, headers, body = http_get(srv, "/metrics")
            assert status == 200 and headers["content-type"] == "application/json"
            m = json.loads(body)
        assert m["pipeline"] == figures
        assert m["dropped_windows"] == 2
        assert m["windows_published"] == 10 and m["windows_sent"] >= 10
        for stage in ("capture", "features", "scoring", "send", "total", "server_send"):
            assert set(m["latency_ms"][stage]) == {"p50", "p95"}
            assert m["latency_ms"][stage]["p50"] <= m["latency_ms"][stage]["p95"]
        assert m["latency_ms"]["total"]["p50"] >= 61.0
        assert len(m["per_client"]) == 1 and next(iter(m["per_client"].values()))["dropped"] == 0


def test_broken_metrics_source_does_not_break_metrics():
    def broken() -> dict:
        raise RuntimeError("sensor gone")

    with DashboardServer(hello=make_hello(), metrics=broken) as srv:
        status, _, body = http_get(srv, "/metrics")
    assert status == 200 and "sensor gone" in json.loads(body)["pipeline"]["error"]


def test_stats_messages_reach_clients(server):
    server.publish(make_window(0))
    with connect(server.ws_url) as ws:
        stats = recv_until(ws, "stats", timeout=3)
    assert stats["v"] == protocol.PROTOCOL_VERSION and "latency_ms" in stats and "dropped_windows" in stats


def test_dashboard_files_served_with_content_types(server):
    status, headers, body = http_get(server, "/")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"app.js" in body
    assert "content-security-policy" in headers
    status, headers, _ = http_get(server, "/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    status, headers, _ = http_get(server, "/style.css")
    assert status == 200 and headers["content-type"].startswith("text/css")
    assert http_get(server, "/no-such-file.js")[0] == 404


def test_paths_cannot_escape_the_client_folder(tmp_path):
    client = tmp_path / "client"
    client.mkdir()
    (client / "index.html").write_text("<!doctype html><title>ok</title>")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    os.symlink(secret, client / "link.txt")
    os.symlink(tmp_path, client / "up")
    with DashboardServer(hello=make_hello(), client_dir=client) as srv:
        assert http_get(srv, "/")[0] == 200
        for path in [
            "/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/..%2fsecret.txt",
            "/%2e%2e%2fsecret.txt", "/a/../../secret.txt", "/..\\secret.txt", "//" + str(secret),
            "/" + str(secret), "/%2F" + str(secret).lstrip("/"), "/link.txt", "/up/secret.txt",
            "/%00index.html", "/index.html%00.txt",
        ]:
            status, _, body = http_get(srv, path)
            assert status in (400, 403, 404), f"{path!r} answered {status}"
            assert b"TOP-SECRET" not in body, path


def test_resolve_static_is_confined(tmp_path):
    (tmp_path / "index.html").write_text("x")
    (tmp_path / "sub").mkdir()
    assert resolve_static(tmp_path, "/") == (tmp_path / "index.html").resolve()
    assert resolve_static(tmp_path, "/index.html") == (tmp_path / "index.html").resolve()
    assert resolve_static(tmp_path, "/sub") is None  # a folder without index.html
    assert resolve_static(tmp_path, "/../etc/passwd") is None
    assert resolve_static(tmp_path, "/etc/passwd") is None


def test_percentiles():
    assert percentiles([]) == {"p50": None, "p95": None}
    assert percentiles(range(1, 101)) == {"p50": 50, "p95": 95}


def test_default_client_dir_is_the_repo_dashboard():
    d = default_client_dir()
    assert d is not None and (d / "index.html").is_file() and (d / "app.js").is_file()


def test_default_client_dir_falls_back_to_installed_hcl_client(tmp_path):
    """What a non-editable `pip install .` gives: no repo next to the code, `hcl_client` installed.
    Run with -S so that this checkout's editable install does not answer for hcl_client."""
    import subprocess
    import sys

    site = tmp_path / "site-packages"
    (site / "hcl_client").mkdir(parents=True)
    (site / "hcl_client" / "index.html").write_text("<!doctype html>")
    no_repo = tmp_path / "no-repo"
    no_repo.mkdir()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = f"from realtime.web.files import default_client_dir; print(default_client_dir(repo_root={str(no_repo)!r}))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, str(site)])}
    out = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(site / "hcl_client")
    env["PYTHONPATH"] = repo
    out = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"


def test_token_is_required_everywhere():
    token = "s3cret-token"
    with DashboardServer(hello=make_hello(), token=token) as srv:
        plain_ws = srv.ws_url.split("?")[0]
        with pytest.raises(InvalidStatus) as no_token:
            connect(plain_ws, open_timeout=5)
        assert no_token.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as wrong:
            connect(plain_ws + "?token=nope", open_timeout=5)
        assert wrong.value.response.status_code == 403

        with connect(srv.ws_url) as ws:  # ?token=...
            assert recv_json(ws)["type"] == "hello"
        with connect(plain_ws, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            assert recv_json(ws)["type"] == "hello"

        assert http_get(srv, "/health")[0] == 401
        assert http_get(srv, "/metrics")[0] == 401
        assert http_get(srv, "/")[0] == 401
        assert http_get(srv, "/health?token=nope")[0] == 403
        assert http_get(srv, "/health", {"Authorization": f"Bearer {token}"})[0] == 200
        status, headers, _ = http_get(srv, f"/?token={token}")
        # no cookie: a browser sends 127.0.0.1's cookies to every port there
        assert status == 200 and "set-cookie" not in headers
        assert http_get(srv, "/model-card")[0] == 401
        # the page's own code and styles hold no scores: they load without the token
        assert http_get(srv, "/app.js")[0] == 200 and http_get(srv, "/style.css")[0] == 200


def test_non_loopback_host_needs_a_token():
    with pytest.raises(ValueError, match="without a token"):
        DashboardServer(hello=make_hello(), host="0.0.0.0")
    DashboardServer(hello=make_hello(), host="0.0.0.0", token="t")  # constructing only: tests bind 127.0.0.1


def test_requests_for_other_host_names_are_refused(server):
    """DNS rebinding: a page at evil.example re-pointed to 127.0.0.1 must not read the scores."""
    assert http_get(server, "/metrics", {"Host": f"evil.example:{server.port}"})[0] == 403
    assert http_get(server, "/metrics", {"Host": f"localhost:{server.port}"})[0] == 200
    assert http_get(server, "/metrics", {"Host": f"[::1]:{server.port}"})[0] == 200


def test_cross_site_pages_cannot_open_the_websocket(server):
    with pytest.raises(InvalidStatus) as refused:
        connect(server.ws_url, origin="http://evil.example", open_timeout=5)
    assert refused.value.response.status_code == 403
    host = server.ws_url.split("//")[1].split("/")[0]
    with connect(server.ws_url, origin=f"http://{host}") as ws:
        assert recv_json(ws)["type"] == "hello"


class StalledClient:
    """Completes the websocket handshake, then never reads a byte."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)  # read exactly the handshake answer, nothing more
        assert head.startswith(b"HTTP/1.1 101"), head

    def close(self) -> None:
        self.sock.close()


def test_stalled_client_does_not_delay_others():
    n = 600
    srv = DashboardServer(hello=make_hello(), queue_size=8, stats_interval=60)
    srv.start()
    try:
        stalled = StalledClient(srv.port)
        published: dict[int, float] = {}
        received: dict[int, float] = {}
        publish_cost: list[float] = []
        with connect(srv.ws_url) as good:
            assert recv_json(good)["type"] == "hello"

            def reader():
                while len(received) < n:
                    msg = recv_json(good, timeout=10)
                    if msg["type"] == "window":
                        received[msg["seq"]] = time.perf_counter()

            t = threading.Thread(target=reader)
            t.start()
            for seq in range(n):
                msg = make_window(seq)
                t0 = time.perf_counter()
                published[seq] = t0
                srv.publish(msg)
                publish_cost.append(time.perf_counter() - t0)
                time.sleep(0.001)
            t.join(timeout=20)
            assert len(received) == n, f"the good client got {len(received)} of {n} windows"
            delays = sorted(received[s] - published[s] for s in range(n))
            metrics = json.loads(http_get(srv, "/metrics")[2])
        t0 = time.perf_counter()
        srv.stop()  # with the stalled client still connected
        srv.join(10)
        stop_seconds = time.perf_counter() - t0
        stalled.close()
    finally:
        srv.stop()
        srv.join(10)
    assert stop_seconds < 4.0, f"stop() took {stop_seconds:.1f} s with a stalled client"
    assert delays[int(0.95 * n)] < 0.5, f"p95 delivery delay {delays[int(0.95 * n)]:.3f} s"
    assert delays[-1] < 2.0, f"max delivery delay {delays[-1]:.3f} s"
    assert max(publish_cost) < 0.1, f"publish() must not block; it took {max(publish_cost) * 1000:.0f} ms"
    drops = sorted(c["dropped"] for c in metrics["per_client"].values())
    assert drops[0] == 0 and drops[-1] > 0, f"the stalled client's queue should drop: {metrics['per_client']}"
    assert metrics["client_drops"] == drops[-1]


def test_bad_client_messages_are_refused_and_server_keeps_serving(server):
    with connect(server.ws_url) as bad, connect(server.ws_url) as good:
        assert recv_json(bad)["type"] == "hello" and recv_json(good)["type"] == "hello"
        bad.send("{not json")
        assert "JSON" in recv_until(bad, "error")["message"]
        bad.send(b"\x00\x01binary")
        assert recv_until(bad, "error")["type"] == "error"
        bad.send(json.dumps({"type": "ping"}))
        assert recv_until(bad, "pong")["type"] == "pong"
        bad.send(json.dumps({"type": "x" * (protocol.MAX_CLIENT_MESSAGE + 100)}))
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(20):
                bad.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

        server.publish(make_window(0))
        assert recv_until(good, "window")["seq"] == 0
    with connect(server.ws_url) as again:
        assert recv_json(again)["type"] == "hello"
    assert json.loads(http_get(server, "/health")[2])["ok"] is True


def test_replay_mode_sends_the_whole_session():
    windows = [make_window(s, session="rec") for s in range(5)]
    session = protocol.session_message(session="rec", windows=windows, words=[{"w": "hi", "start": 0.1, "end": 0.3}])
    with DashboardServer(hello=make_hello(session="rec", mode="replay"), session=session) as srv:
        with connect(srv.ws_url) as ws:
            assert recv_json(ws)["mode"] == "replay"
            got = recv_json(ws)
            assert got["type"] == "session" and got["windows"] == windows and got["words"][0]["w"] == "hi"
            ws.send(json.dumps({"type": "get_session"}))
            assert recv_until(ws, "session")["windows"] == windows


def test_restart_on_the_same_port():
    first = DashboardServer(hello=make_hello())
    first.start()
    port = first.port
    first.stop()
    first.join(10)
    with DashboardServer(hello=make_hello(), port=port) as second:
        assert second.port == port and http_get(second, "/health")[0] == 200
    with DashboardServer(hello=make_hello()) as busy:
        with pytest.raises(OSError, match="could not listen"):
            DashboardServer(hello=make_hello(), port=busy.port).start()
