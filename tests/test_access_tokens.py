"""Access checks of the dashboard server through its public face (HTTP and the websocket
on 127.0.0.1): only the exact token opens it; near misses (prefix, suffix, case, empty)
are refused; without a token only IP addresses and localhost are answered; pages of
other sites cannot open the websocket."""

from __future__ import annotations

import http.client
import urllib.parse

import pytest

from realtime.core import protocol
from realtime.web.access import is_loopback
from realtime.web.server import DashboardServer

websockets = pytest.importorskip("websockets")
from websockets.exceptions import InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

TOKEN = "Tok3n-abcXYZ_42"
NEAR_MISSES = [
    TOKEN[:-1],  # prefix
    TOKEN[:1],  # one-character prefix
    TOKEN + "x",  # suffix added
    "x" + TOKEN,
    TOKEN[1:],  # first character dropped
    TOKEN.swapcase(),  # case
    TOKEN.lower(),
    TOKEN.upper(),
    " " + TOKEN,
    TOKEN[:-1] + "3",  # same length, last character differs
    "nope",
]


def hello() -> dict:
    return protocol.hello_message(session="s", mode="live", model={"name": "m", "version": "0"},
                                  step_seconds=0.5, window_steps=8, clusters=8)


def get(server: DashboardServer, path: str, headers: dict | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def ws_status(url: str, **kw) -> int:
    """101 when the websocket opens (and sends hello), else the refusal's HTTP status."""
    try:
        with connect(url, open_timeout=10, **kw) as ws:
            assert protocol.PROTOCOL_VERSION and '"hello"' in ws.recv(10)
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.fixture(scope="module")
def token_server():
    with DashboardServer(host="127.0.0.1", port=0, hello=hello(), token=TOKEN) as srv:
        yield srv


@pytest.fixture(scope="module")
def open_server():
    with DashboardServer(host="127.0.0.1", port=0, hello=hello()) as srv:
        yield srv


def q(token: str) -> str:
    return "?token=" + urllib.parse.quote(token, safe="")


def test_the_exact_token_opens_every_door(token_server):
    s = token_server
    assert get(s, "/health" + q(TOKEN)) == 200
    assert get(s, "/metrics", {"Authorization": f"Bearer {TOKEN}"}) == 200
    assert get(s, "/health", {"Authorization": f"bearer {TOKEN}"}) == 200  # the scheme is case-insensitive
    plain = s.ws_url.split("?")[0]
    assert ws_status(plain + q(TOKEN)) == 101
    assert ws_status(plain, additional_headers={"Authorization": f"Bearer {TOKEN}"}) == 101
    assert s.ws_url == plain + q(TOKEN) and s.url.endswith("/" + q(TOKEN))


def test_no_token_is_401_with_a_hint(token_server):
    s = token_server
    assert get(s, "/health") == 401
    assert get(s, "/metrics", {"Authorization": "Basic dXNlcjpwYXNz"}) == 401  # not a bearer token
    assert ws_status(s.ws_url.split("?")[0]) == 401


@pytest.mark.parametrize("wrong", NEAR_MISSES, ids=range(len(NEAR_MISSES)))
def test_near_misses_are_refused(token_server, wrong):
    s = token_server
    assert get(s, "/health" + q(wrong)) == 403
    if wrong.strip() != TOKEN:  # spaces around a header value are not part of it
        assert get(s, "/metrics", {"Authorization": f"Bearer {wrong}"}) in (401, 403)
    assert ws_status(s.ws_url.split("?")[0] + q(wrong)) == 403


def test_empty_tokens_are_refused(token_server):
    s = token_server
    plain = s.ws_url.split("?")[0]
    assert get(s, "/health?token=") in (401, 403)
    assert get(s, "/health", {"Authorization": "Bearer "}) in (401, 403)
    assert get(s, "/health", {"Authorization": "Bearer"}) in (401, 403)
    assert ws_status(plain + "?token=") in (401, 403)


def test_a_token_server_answers_any_host_name(token_server):
    """With a token, the host name is not what protects the scores (hcl-live --host 0.0.0.0)."""
    s = token_server
    assert get(s, "/health" + q(TOKEN), {"Host": f"my-laptop.lan:{s.port}"}) == 200
    assert get(s, "/health", {"Host": f"my-laptop.lan:{s.port}"}) == 401


def test_empty_token_setting_and_open_non_loopback_are_refused():
    with pytest.raises(ValueError, match="token"):
        DashboardServer(hello=hello(), token="")
    with pytest.raises(ValueError, match="without a token"):
        DashboardServer(hello=hello(), host="0.0.0.0")
    with pytest.raises(ValueError, match="without a token"):
        DashboardServer(hello=hello(), host="192.168.1.20")
    DashboardServer(hello=hello(), host="127.0.0.2")  # loopback: constructing only
    DashboardServer(hello=hello(), host="0.0.0.0", token="t")


@pytest.mark.parametrize(
    "host,ok",
    [
        ("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("LOCALHOST", True), ("[::1]", True),
        ("192.168.1.5", True), ("10.0.0.7", True),  # an IP address cannot be re-pointed by DNS
        ("evil.example", False), ("localhost.evil.example", False), ("127.0.0.1.evil.example", False),
        ("127.evil.example", False),
    ],
)
def test_without_a_token_only_ip_addresses_and_localhost_are_answered(open_server, host, ok):
    """DNS rebinding: a page whose domain was re-pointed at 127.0.0.1 must not read the scores."""
    status = get(open_server, "/health", {"Host": f"{host}:{open_server.port}"})
    assert status == (200 if ok else 403), (host, status)


def test_is_loopback():
    for yes in ("127.0.0.1", "127.255.0.9", "::1", "localhost", "[::1]", "[127.0.0.1]", " LocalHost "):
        assert is_loopback(yes), yes
    for no in ("0.0.0.0", "192.168.1.1", "10.0.0.1", "::", "example.com", "localhost.example", "127.0.0.1.evil.example",
               "x127.0.0.1]", "[127.0.0.1", "[::2]"):
        assert not is_loopback(no), no


def test_only_this_servers_pages_open_the_websocket(open_server):
    s = open_server
    port = s.port
    assert ws_status(s.ws_url) == 101  # not a browser: no Origin
    assert ws_status(s.ws_url, origin=f"http://127.0.0.1:{port}") == 101
    assert ws_status(s.ws_url, origin=f"http://localhost:{port}") == 101  # the same loopback server, spelled differently
    assert ws_status(s.ws_url, origin="http://evil.example") == 403
    assert ws_status(s.ws_url, origin=f"http://evil.example:{port}") == 403
    assert ws_status(s.ws_url, origin=f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}") == 403
    assert ws_status(s.ws_url, origin=f"http://localhost:{port + 1 if port < 65535 else port - 1}") == 403


def test_the_token_and_the_origin_are_both_checked(token_server):
    s = token_server
    assert ws_status(s.ws_url, origin="http://evil.example") == 403  # right token, foreign page
    assert ws_status(s.ws_url, origin=f"http://127.0.0.1:{s.port}") == 101


def raw(server: DashboardServer, method: str, path: str, headers: list[tuple[str, str]]) -> int:
    """A request with exactly these headers (none added: duplicates and omissions allowed)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_ambiguous_or_missing_host_and_origin_headers_are_refused(open_server, token_server):
    s = open_server
    host = f"127.0.0.1:{s.port}"
    assert raw(s, "GET", "/health", [("Host", host)]) == 200
    assert raw(s, "GET", "/health", [("Host", host), ("Host", f"evil.example:{s.port}")]) == 400
    assert raw(s, "GET", "/health", [("Host", host), ("Origin", f"http://{host}"), ("Origin", "http://evil.example")]) == 400
    assert raw(s, "GET", "/health", []) == 400  # HTTP/1.1 needs a Host
    assert raw(s, "GET", "/health", [("Host", "user@127.0.0.1")]) == 400
    assert raw(s, "GET", "/health", [("Host", "127.0.0.1/x")]) == 400
    t = token_server
    assert raw(t, "GET", "/health" + q(TOKEN), [("Host", "a.lan"), ("Host", "b.lan")]) == 400  # with a token too


def test_only_get_and_head_are_served(open_server):
    s = open_server
    host = [("Host", f"127.0.0.1:{s.port}")]
    assert raw(s, "HEAD", "/health", host) == 200
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        assert raw(s, method, "/health", host + [("Content-Length", "0")]) == 405, method


def body(server: DashboardServer, method: str, path: str, headers: list[tuple[str, str]]):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def test_refusals_say_what_to_do(open_server, token_server):
    t, o = token_server, open_server
    status, headers, text = body(t, "GET", "/health", [("Host", f"127.0.0.1:{t.port}")])
    assert status == 401 and headers["www-authenticate"] == 'Bearer realm="hcl-live"'
    assert text == ("This dashboard needs its token: open the URL hcl-live printed (…/?token=…) "
                    "or send 'Authorization: Bearer <token>'.\n")
    assert body(t, "GET", "/health?token=x", [("Host", f"127.0.0.1:{t.port}")])[2] == "Wrong token.\n"
    assert body(o, "GET", "/health", [("Host", "evil.example")])[2] == (
        "Use the server by its IP address or localhost (or start it with a token).\n")
    assert body(o, "GET", "/health", [])[2] == "No Host header; send one (HTTP/1.1 requires it).\n"
    assert body(o, "GET", "/health", [("Host", ":8765")])[:3:2] == (400, "The Host header is not a host[:port].\n")
    assert body(o, "GET", "/health", [("Host", "[::1")])[0] == 400
    status, headers, text = body(o, "POST", "/health", [("Host", "127.0.0.1"), ("Content-Length", "0")])
    assert status == 405 and headers["allow"] == "GET, HEAD" and text == "POST is not supported here; use GET.\n"


def ws_handshake(server: DashboardServer, host: str, origin: str | None, path: str = "/ws") -> int:
    """The status of a websocket handshake with this Host and Origin (101 = accepted)."""
    headers = [("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]
    if origin is not None:
        headers.append(("Origin", origin))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_origin_ports_default_by_scheme(open_server):
    s = open_server
    assert ws_handshake(s, "127.0.0.1", "http://127.0.0.1") == 101  # both on port 80
    assert ws_handshake(s, "127.0.0.1:80", "http://127.0.0.1") == 101
    assert ws_handshake(s, "127.0.0.1:443", "https://127.0.0.1") == 101
    assert ws_handshake(s, "127.0.0.1", "https://127.0.0.1") == 403  # 443 is not 80
    assert ws_handshake(s, "127.0.0.1:443", "http://127.0.0.1") == 403
    assert ws_handshake(s, f"127.0.0.1:{s.port}", f"ftp://127.0.0.1:{s.port}") == 403  # not a web page
    assert ws_handshake(s, f"127.0.0.1:{s.port}", "http://127.0.0.1:99999") == 403  # no such port
    assert ws_handshake(s, f"127.0.0.1:{s.port}", f"http://:{s.port}") == 403


def test_a_token_server_accepts_its_own_pages_under_any_name(token_server):
    """hcl-live --host 0.0.0.0: the page at http://my-laptop.lan:PORT opens the websocket;
    a page of another name does not, even with the token."""
    t = token_server
    path = "/ws" + q(TOKEN)
    assert ws_handshake(t, f"My-Laptop.lan:{t.port}", f"http://my-laptop.lan:{t.port}", path) == 101
    assert ws_handshake(t, f"my-laptop.lan:{t.port}", f"http://other.lan:{t.port}", path) == 403
    assert ws_handshake(t, f"my-laptop.lan:{t.port}", f"http://my-laptop.lan:{t.port}", "/ws") == 401


def test_the_token_is_read_from_the_query_as_urls_define_it(token_server):
    """The query is everything after the first "?": in "?x=1?token=T" the parameter x is
    "1?token=T" and there is no token."""
    t = token_server
    assert get(t, "/health?x=1&token=" + urllib.parse.quote(TOKEN)) == 200
    assert get(t, "/health?x=1?token=" + urllib.parse.quote(TOKEN)) == 401
