"""realtime.web.http: the dashboard server's HTTP side as plain functions, tested without
a socket (requests built as websockets parses them)."""

from __future__ import annotations

import json
import os
import pathlib

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request

from realtime.web import access
from realtime.web import http as web
from realtime.web.access import Access
from realtime.web.http import content_type, parse_range, resolve_static

CLIENT = pathlib.Path(__file__).resolve().parent.parent / "client"


def req(path: str = "/", headers: list[tuple[str, str]] | None = None, *, method: str = "GET", host: str | None = "127.0.0.1:8765") -> Request:
    hs = ([("Host", host)] if host is not None else []) + list(headers or [])
    return Request(path, Headers(hs), method)


def header(resp, name: str) -> str | None:
    values = resp.headers.get_all(name)
    return values[0] if values else None


# ---------------------------------------------------------------- content types
@pytest.mark.parametrize(
    "name, expected",
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("chart.mjs", "text/javascript; charset=utf-8"),
        ("APP.JS", "text/javascript; charset=utf-8"),
        ("index.html", "text/html; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("data.json", "application/json"),
        ("logo.svg", "image/svg+xml"),
        ("x.png", "image/png"),
        ("font.woff2", "font/woff2"),
        ("words.vtt", "text/vtt; charset=utf-8"),
        ("video.mp4", "video/mp4"),
        ("app.js.gz", "application/octet-stream"),  # compressed: not JavaScript to a browser
        ("no-suffix", "application/octet-stream"),
        ("x.unknownsuffix", "application/octet-stream"),
    ],
)
def test_content_type(name, expected):
    assert content_type(name) == expected


def test_every_dashboard_file_has_a_real_type_and_every_script_is_javascript():
    """A module script served as anything but JavaScript is refused by the browser."""
    files = [p for p in CLIENT.iterdir() if p.is_file()]
    scripts = [p for p in files if p.suffix == ".js"]
    assert len(scripts) >= 2, "the dashboard is split into ES modules"
    for p in files:
        assert content_type(p) != "application/octet-stream", p.name
    for p in scripts:
        assert content_type(p).startswith("text/javascript"), p.name
        assert web.is_public_asset("/" + p.name), p.name


def test_only_code_styles_and_images_are_public():
    for path in ("/app.js", "/chart.js", "/x.mjs", "/style.css", "/i.svg", "/i.png", "/f.woff2"):
        assert web.is_public_asset(path), path
    for path in ("/", "/index.html", "/health", "/metrics", "/recording/video.mp4", "/recording/scores.csv", "/model-card"):
        assert not web.is_public_asset(path), path


# ---------------------------------------------------------------- ranges
def test_parse_range_good_ranges():
    assert parse_range("bytes=0-", 100) == (0, 99)
    assert parse_range("bytes=0-0", 100) == (0, 0)
    assert parse_range("bytes=99-", 100) == (99, 99)
    assert parse_range("bytes=-1", 100) == (99, 99)
    assert parse_range("bytes=-500", 100) == (0, 99)  # more than the file: all of it
    assert parse_range("BYTES = 5-9", 100) == (5, 9)
    assert parse_range("bytes=0-", 100, chunk=10) == (0, 9)  # capped to one chunk
    assert parse_range("bytes=20-", 100, chunk=10) == (20, 29)


@pytest.mark.parametrize(
    "bad",
    ["bytes=100-", "bytes=100-200", "bytes=5-4", "bytes=-0", "bytes=--5", "bytes=-", "bytes=a-b", "bytes=1-x",
     "bytes=0-1,5-6", "items=0-5", "bytes", "bytes=5", "", "bytes=-1-2", "bytes=+1-2",
     "bytes= 1-2x", "bytes=1_0-20", "bytes=\u0661-2", "bytes=0x1-2"],
)
def test_parse_range_refuses_bad_ranges(bad):
    assert parse_range(bad, 100) is None


def test_parse_range_of_an_empty_file():
    assert parse_range("bytes=0-", 0) is None


def test_range_response(tmp_path):
    f = tmp_path / "v.mp4"
    data = bytes(range(256)) * 4  # 1024 bytes
    f.write_bytes(data)
    whole = web.range_response(f, [], "video/mp4")
    assert whole.status_code == 200 and whole.body == data and header(whole, "Accept-Ranges") == "bytes"
    part = web.range_response(f, ["bytes=10-19"], "video/mp4")
    assert part.status_code == 206 and part.body == data[10:20]
    assert header(part, "Content-Range") == "bytes 10-19/1024" and header(part, "Content-Length") == "10"
    big = web.range_response(f, [], "video/mp4", chunk=100)  # too big for one answer: the first chunk
    assert big.status_code == 206 and big.body == data[:100] and header(big, "Content-Range") == "bytes 0-99/1024"
    for ranges in (["bytes=2000-"], ["bytes=0-1", "bytes=2-3"], ["bytes=0-1,4-5"]):
        bad = web.range_response(f, ranges, "video/mp4")
        assert bad.status_code == 416 and header(bad, "Content-Range") == "bytes */1024", ranges
        assert data not in bad.body


# ---------------------------------------------------------------- static files
@pytest.fixture
def site(tmp_path):
    root = tmp_path / "client"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><title>ok</title>")
    (root / "app.js").write_text("export const x = 1;")
    (root / "sub").mkdir()
    (tmp_path / "secret.txt").write_text("TOP-SECRET")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    os.symlink(tmp_path, root / "up")
    return root


def test_resolve_static_finds_files_and_index(site):
    assert resolve_static(site, "/") == (site / "index.html").resolve()
    assert resolve_static(site, "/./app.js") == (site / "app.js").resolve()
    assert resolve_static(site, "//app.js") == (site / "app.js").resolve()
    assert resolve_static(site, "/sub") is None  # a folder without index.html
    assert resolve_static(site, "/missing.js") is None


@pytest.mark.parametrize(
    "path",
    ["/../secret.txt", "/sub/../../secret.txt", "/..\\secret.txt", "/link.txt", "/up/secret.txt", "/index.html\x00.txt",
     "/c:/secret.txt", "/up"],
)
def test_resolve_static_never_leaves_the_folder(site, path):
    assert resolve_static(site, path) is None


def test_resolve_static_refuses_absolute_paths_outside(site):
    secret = site.parent / "secret.txt"
    assert resolve_static(site, str(secret)) is None
    assert resolve_static(site, "/" + str(secret)) is None


def test_static_response(site):
    ok = web.static_response(site, "/app.js")
    assert ok.status_code == 200 and ok.body == b"export const x = 1;"
    assert header(ok, "Content-Type") == "text/javascript; charset=utf-8"
    assert header(ok, "Content-Security-Policy") == web.CONTENT_SECURITY_POLICY
    assert web.static_response(site, "/").status_code == 200
    assert web.static_response(site, "/missing.js").status_code == 404
    for path in ("/../secret.txt", "//etc/passwd", "/a\\b", "/x\x00"):
        bad = web.static_response(site, path)
        assert bad.status_code == 403 and b"TOP-SECRET" not in bad.body, path
    none = web.static_response(None, "/")
    assert none.status_code == 404 and b"pip install ." in none.body


def test_every_response_carries_the_security_headers(site):
    for resp in (web.static_response(site, "/"), web.text_response(404, "x\n"), web.json_response(200, {"a": 1}),
                 web.redirect("/#help")):
        assert header(resp, "X-Content-Type-Options") == "nosniff"
        assert header(resp, "Cache-Control") == "no-store"
        assert header(resp, "Referrer-Policy") == "no-referrer"
        assert header(resp, "Content-Length") == str(len(resp.body))
    assert json.loads(web.json_response(200, {"a": [1, 2]}).body) == {"a": [1, 2]}
    moved = web.redirect("/?token=t#help")
    assert moved.status_code == 302 and header(moved, "Location") == "/?token=t#help"


def test_head_keeps_status_and_length_without_the_body(site):
    full = web.static_response(site, "/app.js")
    head = web.without_body(full)
    assert head.body == b"" and head.status_code == 200
    assert header(head, "Content-Length") == str(len(full.body))


# ---------------------------------------------------------------- request target
def test_request_path_and_query():
    assert web.request_path("/a%20b/c.js?x=1#frag") == "/a b/c.js"
    assert web.request_path("/%2e%2e/secret") == "/../secret"  # decoded: resolve_static refuses it
    assert web.query_of("/health?x=1?token=t") == "x=1?token=t"
    assert web.query_of("/health") == ""


def test_token_from_the_query_or_the_bearer_header():
    none = Headers()
    assert access.token_of("/?token=abc", none) == "abc"
    assert access.token_of("/?x=1&token=a%2Bb%20c", none) == "a+b c"
    assert access.token_of("/?x=1?token=abc", none) is None  # "?token" is part of x's value
    assert access.token_of("/", Headers([("Authorization", "Bearer  abc ")])) == "abc"
    assert access.token_of("/", Headers([("Authorization", "bearer abc")])) == "abc"
    assert access.token_of("/", Headers([("Authorization", "Basic YTpi")])) is None
    assert access.token_of("/", Headers([("Cookie", "token=abc")])) is None  # never a cookie
    assert access.token_of("/?token=q", Headers([("Authorization", "Bearer h")])) == "q"


# ---------------------------------------------------------------- addresses
def test_split_host():
    assert access.split_host("127.0.0.1:8765") == ("127.0.0.1", "8765")
    assert access.split_host("[::1]:80") == ("::1", "80")
    assert access.split_host("LocalHost") == ("localhost", "")
    for bad in ("", ":8765", "[::1", "user@127.0.0.1", "127.0.0.1/x", "127.0.0.1:99999", "127.0.0.1:port"):
        assert access.split_host(bad) == ("", ""), bad


def test_is_loopback():
    for yes in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert access.is_loopback(yes), yes
    for no in ("127.0.0.1.evil.example", "localhost.evil.example", "10.0.0.1", "0.0.0.0", "evil.example", ""):
        assert not access.is_loopback(no), no


# ---------------------------------------------------------------- Access
OPEN = Access(host="127.0.0.1")
TOKEN = "s3cret-Tok"
LOCKED = Access(host="0.0.0.0", token=TOKEN)


@pytest.mark.parametrize(
    "host, ok",
    [("127.0.0.1:8765", True), ("localhost:8765", True), ("[::1]:8765", True), ("192.168.1.20:8765", True),
     ("127.0.0.1.evil.example:8765", False), ("localhost.evil.example", False), ("evil.example:8765", False),
     ("my-laptop.lan:8765", False)],
)
def test_without_a_token_only_addresses_and_localhost_are_answered(host, ok):
    """DNS rebinding: a page of a domain re-pointed at 127.0.0.1 cannot read the scores."""
    refused = OPEN.check_request(req("/health", host=host))
    assert (refused is None) == ok, host
    if not ok:
        assert refused.status_code == 403 and b"IP address or localhost" in refused.body
    assert LOCKED.check_request(req("/health", host=host)) is None  # a token server answers any name


def test_the_name_the_server_was_bound_to_is_answered():
    assert Access(host="my-box").host_allowed("my-box")
    assert not Access(host="my-box").host_allowed("other-box")


def test_bad_requests_are_refused_with_what_to_do():
    no_host = OPEN.check_request(req("/health", host=None))
    assert no_host.status_code == 400 and b"No Host header" in no_host.body
    assert OPEN.check_request(req("/health", host=":80")).status_code == 400
    two = OPEN.check_request(req("/health", [("Host", "evil.example")]))
    assert two.status_code == 400 and b"More than one Host" in two.body
    origins = LOCKED.check_request(req("/", [("Origin", "http://a"), ("Origin", "http://b")]))
    assert origins.status_code == 400 and b"More than one Origin" in origins.body
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "TRACE"):
        refused = OPEN.check_request(req("/health", method=method))
        assert refused.status_code == 405 and header(refused, "Allow") == "GET, HEAD", method
    assert OPEN.check_request(req("/health", method="HEAD")) is None


def test_token_check():
    assert OPEN.check_token(req("/health")) is None  # no token set: nothing to check
    missing = LOCKED.check_token(req("/health"))
    assert missing.status_code == 401 and header(missing, "WWW-Authenticate") == 'Bearer realm="hcl-live"'
    assert b"?token=" in missing.body
    assert LOCKED.check_token(req(f"/health?token={TOKEN}")) is None
    assert LOCKED.check_token(req("/health", [("Authorization", f"Bearer {TOKEN}")])) is None
    assert LOCKED.check_token(req("/health?token=")).status_code == 401  # an empty token is no token
    for wrong in ("s3cret", TOKEN + "x", TOKEN.lower(), " " + TOKEN, "x" * 10_000):
        refused = LOCKED.check_token(req("/health?token=" + wrong.replace(" ", "%20")))
        assert refused.status_code == 403 and refused.body == b"Wrong token.\n", repr(wrong)


@pytest.mark.parametrize(
    "host, origin, ok",
    [
        ("127.0.0.1:8765", None, True),  # not a browser
        ("127.0.0.1:8765", "http://127.0.0.1:8765", True),
        ("127.0.0.1:8765", "http://localhost:8765", True),  # both loopback, same port
        ("localhost:8765", "http://[::1]:8765", True),
        ("127.0.0.1:8765", "http://127.0.0.1:8766", False),  # another local server
        ("127.0.0.1:8765", "http://evil.example:8765", False),
        ("127.0.0.1:8765", "http://127.0.0.1.evil.example:8765", False),
        ("127.0.0.1:8765", "null", False),
        ("127.0.0.1:8765", "file://", False),
        ("127.0.0.1:8765", "ftp://127.0.0.1:8765", False),
        ("127.0.0.1:8765", "http://127.0.0.1:99999", False),
        ("127.0.0.1", "http://127.0.0.1", True),  # both port 80
        ("127.0.0.1", "https://127.0.0.1", False),  # 443 is not 80
        ("127.0.0.1:443", "https://127.0.0.1", True),
    ],
)
def test_origin(host, origin, ok):
    headers = Headers([("Host", host)] + ([("Origin", origin)] if origin is not None else []))
    assert OPEN.origin_allowed(headers) is ok


def test_a_token_server_accepts_its_own_pages_under_any_name_only():
    same = Headers([("Host", "My-Laptop.lan:8765"), ("Origin", "http://my-laptop.lan:8765")])
    other = Headers([("Host", "my-laptop.lan:8765"), ("Origin", "http://other.lan:8765")])
    assert LOCKED.origin_allowed(same) and not LOCKED.origin_allowed(other)
    assert not OPEN.origin_allowed(same)  # without a token, a name is never trusted


def test_websocket_handshake_checks_method_token_and_origin():
    page = [("Origin", "http://127.0.0.1:8765")]
    assert OPEN.check_websocket(req("/ws", page)) is None
    assert OPEN.check_websocket(req("/ws", page, method="HEAD")).status_code == 405
    assert OPEN.check_websocket(req("/ws", [("Origin", "http://evil.example")])).status_code == 403
    assert LOCKED.check_websocket(req("/ws", page)).status_code == 401
    assert LOCKED.check_websocket(req("/ws?token=nope", page)).status_code == 403
    assert LOCKED.check_websocket(req(f"/ws?token={TOKEN}", page)) is None
    # the right token from a page of another site is still refused
    assert LOCKED.check_websocket(req(f"/ws?token={TOKEN}", [("Origin", "http://evil.example:8765")])).status_code == 403


def test_asks_upgrade():
    assert web.asks_upgrade(Headers([("Upgrade", "WebSocket")]))
    assert not web.asks_upgrade(Headers([("Upgrade", "h2c")]))
    assert not web.asks_upgrade(Headers())


# ---------------------------------------------------------------- the real server and the dashboard's modules
def test_the_dashboard_modules_are_served_to_a_token_page_without_the_token():
    """Every module app.js imports, directly or not, is served as JavaScript without the
    token (module imports carry no ?token=), so the page loads on a token server."""
    import http.client
    import re

    from realtime.core import protocol
    from realtime.web.server import DashboardServer

    html = (CLIENT / "index.html").read_text()
    assert re.search(r'<script type="module" src="app.js"></script>', html)
    hello = protocol.hello_message(session="s", mode="live", model={"name": "m", "version": "0"}, step_seconds=0.5,
                                   window_steps=8, clusters=8)
    seen, todo = set(), ["app.js"]
    with DashboardServer(hello=hello, token="tok", client_dir=CLIENT) as srv:
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
            try:
                conn.request("GET", "/" + name)
                resp = conn.getresponse()
                body = resp.read().decode()
            finally:
                conn.close()
            assert resp.status == 200, name
            assert resp.getheader("Content-Type") == "text/javascript; charset=utf-8", name
            assert "script-src 'self'" in resp.getheader("Content-Security-Policy"), name
            todo += re.findall(r'^import [^;]* from "\./([\w-]+\.js)";$', body, re.M)
    on_disk = {p.name for p in CLIENT.glob("*.js")}
    assert seen == on_disk, f"modules nobody imports: {on_disk - seen}; imported but missing: {seen - on_disk}"


# ---------------------------------------------------------------- exact answers
def test_parse_range_of_a_one_byte_file():
    assert parse_range("bytes=0-", 1) == (0, 0) and parse_range("bytes=-5", 1) == (0, 0)
    assert parse_range("bytes=1-", 1) is None


def test_range_response_exact_answers(tmp_path):
    f = tmp_path / "v.mp4"
    data = bytes(range(100))
    f.write_bytes(data)
    exact = web.range_response(f, [], "video/mp4", chunk=100)  # exactly one chunk: answered whole
    assert exact.status_code == 200 and exact.body == data and header(exact, "Content-Type") == "video/mp4"
    part = web.range_response(f, ["bytes=90-"], "video/mp4", chunk=4)  # the chunk bounds a Range answer too
    assert part.status_code == 206 and part.body == data[90:94] and header(part, "Content-Range") == "bytes 90-93/100"
    assert header(part, "Content-Type") == "video/mp4" and header(part, "Accept-Ranges") == "bytes"
    bad = web.range_response(f, ["bytes=500-"], "video/mp4")
    assert bad.body == b"Range not satisfiable.\n" and header(bad, "Content-Type") == "text/plain; charset=utf-8"


def test_redirect_is_empty_with_its_location():
    moved = web.redirect("/s/abc")
    assert moved.status_code == 302 and moved.reason_phrase == "Found" and moved.body == b""
    assert header(moved, "Content-Type") == "text/plain; charset=utf-8" and header(moved, "Location") == "/s/abc"


def test_header_names_go_out_in_their_canonical_form(tmp_path, site):
    """The names as written on the wire (HTTP reads them case-insensitively, but every
    answer spells them the one usual way)."""
    f = tmp_path / "v.mp4"
    f.write_bytes(bytes(10))
    answers = [web.range_response(f, [], "video/mp4"), web.range_response(f, ["bytes=0-1"], "video/mp4"),
               web.range_response(f, ["bytes=50-"], "video/mp4"), web.redirect("/"), web.static_response(site, "/"),
               LOCKED.check_token(req("/health")), OPEN.check_request(req("/", method="POST")),
               OPEN.check_websocket(req("/ws", method="HEAD")), web.json_response(200, {})]
    canonical = {"Date", "Connection", "Content-Length", "Content-Type", "Cache-Control", "X-Content-Type-Options",
                 "Referrer-Policy", "Accept-Ranges", "Content-Range", "Location", "Content-Security-Policy",
                 "WWW-Authenticate", "Allow"}
    for resp in answers:
        names = [name for name, _ in resp.headers.raw_items()]
        assert set(names) <= canonical, names


def test_refusals_say_exactly_what_happened(site, monkeypatch):
    head = OPEN.check_websocket(req("/ws", method="HEAD"))
    assert head.body == b"The websocket handshake is a GET.\n" and header(head, "Allow") == "GET"
    cross = OPEN.check_websocket(req("/ws", [("Origin", "http://evil.example")]))
    assert cross.body == b"Cross-origin websocket connections are refused.\n"
    assert web.static_response(site, "/../secret.txt").body == b"Forbidden.\n"
    assert web.static_response(site, "/missing.js").body == b"Not found.\n"
    none = web.static_response(None, "/")
    assert none.body == (b"No dashboard files found: run from a source checkout or install the package "
                         b"with its client (pip install .), or pass client_dir.\n")

    def unreadable(self):
        raise PermissionError(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", unreadable)
    gone = web.static_response(site, "/app.js")  # found, then unreadable (removed, permissions): 404
    assert gone.status_code == 404 and gone.body == b"Not found.\n"
    assert header(gone, "Content-Type") == "text/plain; charset=utf-8"


def test_every_response_has_the_same_base_headers():
    for resp in (web.text_response(200, "x"), web.json_response(200, [1]), web.redirect("/"), web.response(204, b"", "a/b")):
        assert [name for name, _ in resp.headers.raw_items()][:7] == [
            "Date", "Connection", "Content-Length", "Content-Type", "Cache-Control", "X-Content-Type-Options",
            "Referrer-Policy"]
        assert header(resp, "Date").endswith(" GMT") and header(resp, "Connection") == "close"
    assert header(web.text_response(200, "x"), "Content-Type") == "text/plain; charset=utf-8"
    assert header(web.json_response(200, [1]), "Content-Type") == "application/json"


def test_request_path_ends_at_the_first_question_mark_or_hash():
    assert web.request_path("/x?y?z") == "/x"
    assert web.request_path("/x#y#z") == "/x"
    assert web.request_path("/a#b?c") == "/a"
    assert web.request_path("/a%3Fb") == "/a?b"  # an encoded "?" is part of the path


def test_parse_range_caps_the_last_byte_at_the_file_end():
    assert parse_range("bytes=5-500", 100) == (5, 99)
    assert parse_range("bytes=5-500", 100, chunk=1000) == (5, 99)


def test_origin_without_a_host_header_is_refused():
    assert OPEN.origin_allowed(Headers([("Origin", "http://127.0.0.1")])) is False


def test_resolve_static_refuses_dots_colons_backslashes_and_non_files(site):
    (site / "a\\b.js").write_text("x")  # a real file whose name holds a backslash
    (site / "a:b.js").write_text("x")
    os.mkfifo(site / "pipe")
    assert resolve_static(site, "/a\\b.js") is None
    assert resolve_static(site, "/a:b.js") is None
    assert resolve_static(site, "/sub/../app.js") is None  # even when it would stay inside
    assert resolve_static(site, "/pipe") is None  # neither a file nor a folder
    assert resolve_static(site, "/sub/./../index.html") is None
