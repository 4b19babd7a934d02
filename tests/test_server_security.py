"""The probes that broke the dashboard server, kept as tests against a real server on
127.0.0.1: DNS rebinding through a "127."-prefixed name, a replay server frozen by
get_session floods, JSON nested 1,000 deep, duplicated Host/Origin headers, methods
other than GET, a client that stops reading, the token cookie shared across ports,
and the recording's video served with HTTP Range."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from test_server import StalledClient, http_get, make_hello, make_window, recv_json, recv_until

from realtime.core import protocol
from realtime.web.access import is_loopback
from realtime.web.http import parse_range
from realtime.web.server import DashboardServer

websockets = pytest.importorskip("websockets")
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402


def raw_http(port: int, request: str, timeout: float = 5.0) -> tuple[int, dict[str, list[str]], bytes]:
    """Send `request` byte for byte (duplicate headers, any method) and read to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request.encode("latin-1"))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return status, headers, body


@pytest.fixture
def server():
    with DashboardServer(hello=make_hello(), stats_interval=60) as srv:
        yield srv


# ---------------------------------------------------------------- 1. DNS rebinding
def test_is_loopback_accepts_only_real_loopback_addresses():
    for ok in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(ok), ok
    for bad in ("127.0.0.1.evil.example", "127.x.attacker.example", "127.evil", "localhost.evil.example",
                "0.0.0.0", "10.0.0.1", "evil.example", "", "::ffff:10.0.0.1"):
        assert not is_loopback(bad), bad


def test_rebinding_host_names_starting_with_127_are_refused(server):
    port = server.port
    # the probe: curl -H 'Host: 127.0.0.1.evil.example:8765' http://127.0.0.1:8765/metrics answered 200
    for host in (f"127.0.0.1.evil.example:{port}", f"127.x.attacker.example:{port}", f"127.evil:{port}"):
        assert http_get(server, "/metrics", {"Host": host})[0] == 403, host
        assert http_get(server, "/", {"Host": host})[0] == 403, host
    assert http_get(server, "/metrics", {"Host": f"127.0.0.1:{port}"})[0] == 200
    assert http_get(server, "/metrics", {"Host": f"localhost:{port}"})[0] == 200


def test_rebinding_page_cannot_open_the_websocket(server):
    """A page at http://127.x.attacker.example:PORT opened the websocket and got the hello."""
    port = server.port
    for origin in (f"http://127.x.attacker.example:{port}", f"http://127.0.0.1.evil.example:{port}"):
        with pytest.raises(InvalidStatus) as refused:
            connect(server.ws_url, origin=origin, open_timeout=5)
        assert refused.value.response.status_code == 403, origin
        # the same page addressing the server by its rebound name is refused too
        status, _, _ = raw_http(port, (
            f"GET /ws HTTP/1.1\r\nHost: {origin.split('//')[1]}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
        assert status == 403, origin
    # other port, same loopback host: another local site
    with pytest.raises(InvalidStatus):
        connect(server.ws_url, origin=f"http://127.0.0.1:{port + 1}", open_timeout=5)
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        with connect(server.ws_url, origin=origin) as ws:
            assert recv_json(ws)["type"] == "hello"


# ---------------------------------------------------------------- 3. replay flood
def big_session(n: int) -> dict:
    """n windows as large as real ones (weights, attention, words), made fast: make_window
    rebuilds the transcript from 0 each call, which is quadratic in n."""
    templates = [make_window(s, session="long") for s in range(24)]
    windows = []
    for seq in range(n):
        w = dict(templates[seq % 24])
        shift = (seq - seq % 24) * 0.5
        w.update(seq=seq, start=w["start"] + shift, end=w["end"] + shift,
                 words=[{**x, "start": x["start"] + shift, "end": x["end"] + shift} for x in w["words"]])
        windows.append(w)
    return protocol.session_message(session="long", windows=windows, words=[])


def test_get_session_flood_does_not_freeze_the_replay_server():
    """The probe: 200 get_session on a 1-hour session blocked /health for 35.7 s and grew
    RSS by 450 MB (each request serialised the session again on the loop)."""
    session = big_session(3000)  # ~25 min at 0.5 s
    with DashboardServer(hello=make_hello(session="long", mode="replay"), session=session, stats_interval=60) as srv:
        with connect(srv.ws_url, max_size=None) as ws:
            assert recv_json(ws)["type"] == "hello"
            first = recv_until(ws, "session", timeout=30)
            assert len(first["windows"]) == 3000
            health_times: list[float] = []
            stop = threading.Event()

            def poll_health() -> None:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    assert http_get(srv, "/health")[0] == 200
                    health_times.append(time.perf_counter() - t0)
                    time.sleep(0.02)

            poller = threading.Thread(target=poll_health, daemon=True)
            poller.start()
            for _ in range(200):
                ws.send(json.dumps({"type": "get_session"}))
            sessions = errors = 0
            while True:  # until the server has nothing more to say for 3 s
                try:
                    msg = recv_json(ws, timeout=3)
                except TimeoutError:
                    break
                if msg["type"] == "session":
                    sessions += 1
                elif msg["type"] == "error":
                    errors += 1
                    assert "at most once" in msg["message"]
            stop.set()
            poller.join(10)
        # one answer, and one notice for the rest (a burst may straddle the 2 s interval)
        assert 1 <= sessions <= 2, f"{sessions} whole sessions were sent for 200 requests in a burst"
        assert 1 <= errors <= 2
        assert health_times and max(health_times) < 1.0, f"/health took up to {max(health_times):.2f} s"


def test_get_session_served_again_after_the_interval():
    session = big_session(10)
    with DashboardServer(hello=make_hello(session="long", mode="replay"), session=session, stats_interval=60) as srv:
        with connect(srv.ws_url) as ws:
            recv_until(ws, "session")
            ws.send(json.dumps({"type": "get_session"}))
            assert recv_until(ws, "session")["windows"] == session["windows"]
            ws.send(json.dumps({"type": "get_session"}))
            assert "at most once" in recv_until(ws, "error")["message"]
            time.sleep(2.1)
            ws.send(json.dumps({"type": "get_session"}))
            assert recv_until(ws, "session")["windows"] == session["windows"]


# ---------------------------------------------------------------- 9. smaller
def test_json_nested_1000_deep_is_refused_not_a_traceback(server):
    with connect(server.ws_url) as ws:
        assert recv_json(ws)["type"] == "hello"
        for deep in ("[" * 1000 + "]" * 1000, '[{"a":' * 500 + "1" + "}]" * 500, "[" * 2000):
            assert len(deep) < protocol.MAX_CLIENT_MESSAGE
            ws.send(deep)
            assert "JSON" in recv_until(ws, "error")["message"]
        ws.send(json.dumps({"type": "ping"}))  # the connection is still open
        assert recv_until(ws, "pong")["type"] == "pong"


@pytest.mark.parametrize("header", ["Host", "Origin"])
def test_duplicated_host_or_origin_is_a_400_not_a_500(server, header):
    port = server.port
    base = f"Host: 127.0.0.1:{port}\r\n"
    dup = f"{header}: 127.0.0.1:{port}\r\n{header}: evil.example\r\n" if header == "Host" else (
        f"{base}Origin: http://127.0.0.1:{port}\r\nOrigin: http://evil.example\r\n"
    )
    for path in ("/health", "/"):
        status, _, body = raw_http(port, f"GET {path} HTTP/1.1\r\n{dup}Connection: close\r\n\r\n")
        assert status == 400 and header.encode() in body, (path, status, body)
    ws_req = (
        f"GET /ws HTTP/1.1\r\n{dup}Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert raw_http(port, ws_req)[0] == 400
    assert http_get(server, "/health")[0] == 200


def test_only_get_and_head_are_answered(server):
    port = server.port
    get_status, get_headers, get_body = raw_http(port, f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
    assert get_status == 200 and len(get_body) > 100
    status, headers, body = raw_http(port, f"HEAD / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
    assert status == 200 and body == b"", "HEAD must not carry a body"
    assert headers["content-length"] == [str(len(get_body))]
    for method in ("DELETE", "TRACE", "POST", "PUT", "OPTIONS", "PATCH"):
        for path in ("/", "/health", "/metrics", "/ws"):
            status, headers, _ = raw_http(port, f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n")
            assert status == 405, (method, path, status)
            assert headers["allow"] == ["GET, HEAD"] or path == "/ws"


def test_a_client_that_stops_reading_is_disconnected():
    """The probe: a client that stopped reading stayed connected forever (the keepalive
    ping waits behind the blocked send, so its timeout never started)."""
    # the default keepalive (20 s ping): without the send timeout nothing disconnects it
    srv = DashboardServer(hello=make_hello(), stats_interval=60, send_timeout=2.0, send_buffer=8192)
    srv.start()
    try:
        stalled = StalledClient(srv.port)
        stalled.sock.settimeout(0.5)
        registered = time.monotonic() + 5
        while srv.health()["clients"] == 0 and time.monotonic() < registered:
            time.sleep(0.01)
        assert srv.health()["clients"] == 1
        deadline = time.monotonic() + 12
        seq = 0
        while time.monotonic() < deadline and srv.health()["clients"] > 0:
            for _ in range(20):
                srv.publish(make_window(seq))
                seq += 1
            time.sleep(0.1)
        metrics = srv.metrics()
        assert srv.health()["clients"] == 0, "the stalled client is still connected after 12 s"
        assert metrics["stalled_disconnects"] == 1
        # a good client connecting now is served as usual
        with connect(srv.ws_url) as good:
            assert recv_json(good)["type"] == "hello"
            srv.publish(make_window(seq))
            while recv_until(good, "window")["seq"] != seq:  # the history comes first
                pass
        stalled.close()
    finally:
        srv.stop()
        srv.join(10)


def test_the_token_is_never_put_in_a_cookie():
    """The cookie was sent by the browser to every port on 127.0.0.1: another local
    server could read the token. The page carries the token in its URL instead."""
    token = "s3cret-token"
    with DashboardServer(hello=make_hello(), token=token) as srv:
        for path in (f"/?token={token}", f"/index.html?token={token}", "/app.js", "/style.css", f"/health?token={token}"):
            status, headers, _ = http_get(srv, path)
            assert status == 200 and "set-cookie" not in headers, path
        # and a cookie carrying the token no longer opens anything
        assert http_get(srv, "/metrics", {"Cookie": f"hcl_token={token}"})[0] == 401
        with pytest.raises(InvalidStatus) as refused:
            connect(srv.ws_url.split("?")[0], additional_headers={"Cookie": f"hcl_token={token}"}, open_timeout=5)
        assert refused.value.response.status_code == 401


# ---------------------------------------------------------------- recording files
def test_recording_video_is_served_with_ranges(tmp_path):
    folder = tmp_path / "rec"
    folder.mkdir()
    data = bytes(range(256)) * 40  # 10,240 bytes
    (folder / "video.mp4").write_bytes(data)
    with DashboardServer(hello=make_hello(), recording=folder) as srv:
        status, headers, body = http_get(srv, "/recording/video.mp4")
        assert status == 200 and body == data and headers["accept-ranges"] == "bytes"
        assert headers["content-type"] == "video/mp4"
        status, headers, body = http_get(srv, "/recording/video.mp4", {"Range": "bytes=100-199"})
        assert status == 206 and body == data[100:200] and headers["content-range"] == f"bytes 100-199/{len(data)}"
        status, headers, body = http_get(srv, "/recording/video.mp4", {"Range": "bytes=-24"})
        assert status == 206 and body == data[-24:]
        status, headers, body = http_get(srv, "/recording/video.mp4", {"Range": "bytes=10000-"})
        assert status == 206 and body == data[10000:]
        status, headers, _ = http_get(srv, "/recording/video.mp4", {"Range": f"bytes={len(data)}-"})
        assert status == 416 and headers["content-range"] == f"bytes */{len(data)}"
        status, headers, body = raw_http(srv.port, f"HEAD /recording/video.mp4 HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n")
        assert status == 200 and body == b"" and headers["content-length"] == [str(len(data))]
        hello = None
        with connect(srv.ws_url) as ws:
            hello = recv_json(ws)
        assert hello["recording"] == {"csv": "/recording/scores.csv", "video": "/recording/video.mp4"}
    with DashboardServer(hello=make_hello()) as srv:
        assert http_get(srv, "/recording/video.mp4")[0] == 404
        assert b"--record" in http_get(srv, "/recording/scores.csv")[2]


def test_parse_range():
    assert parse_range("bytes=0-", 100) == (0, 99)
    assert parse_range("bytes=5-9", 100) == (5, 9)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=90-500", 100) == (90, 99)
    for bad in ("bytes=100-", "bytes=9-5", "bytes=0-1,5-6", "items=0-1", "bytes=x-"):
        assert parse_range(bad, 100) is None, bad
