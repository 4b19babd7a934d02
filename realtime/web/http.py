"""The dashboard server's HTTP side as plain functions of a request.

`websockets` parses each HTTP request and writes the answer; in between, its
`process_request` hook (in `realtime.web.server`) asks this module:

- whether the request may be answered at all (`Access`: method, one Host, DNS
  rebinding, the token from `?token=` or `Authorization: Bearer`, the Origin of a
  websocket handshake);
- which dashboard file a path names (`resolve_static`, confined to the folder), with
  which content type (`content_type`, from `mimetypes`);
- which bytes a `Range` header asks for (`parse_range`, `range_response`);
- the response itself (`text_response`, `json_response`, `file_response`, ...), every
  one with the same security headers.

Nothing here keeps state or touches a socket; the only I/O is reading the file a
response carries. The server keeps the routes that need its state (/health,
/metrics, the recording).
"""

from __future__ import annotations

import dataclasses
import email.utils
import hmac
import http
import ipaddress
import json
import mimetypes
import pathlib
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from websockets.datastructures import Headers
from websockets.http11 import Response

if TYPE_CHECKING:  # websockets is imported when a response is built: importing this module needs only the stdlib
    from websockets.datastructures import Headers
    from websockets.http11 import Request, Response

ALLOWED_METHODS = ("GET", "HEAD")
LOOPBACK_NAMES = frozenset({"localhost"})
RANGE_CHUNK = 4 * 1024 * 1024  # most bytes one Range answer carries (the browser asks again)
# the dashboard's code, styles and images hold no scores: they load without the token
PUBLIC_SUFFIXES = frozenset({".js", ".mjs", ".css", ".svg", ".png", ".ico", ".woff2"})

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; "
    "style-src 'self'; script-src 'self'; worker-src 'self' blob:; media-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

# Python's own table, not the platform's (/etc/mime.types, the Windows registry), which
# differs between machines; plus what that table lacks or names the old way. A module
# script served with a non-JavaScript type is refused by the browser.
_TYPES = mimetypes.MimeTypes()
for _type, _suffix in (
    ("text/javascript", ".js"),  # RFC 9239 (Python 3.11's table says application/javascript)
    ("text/javascript", ".mjs"),
    ("font/woff2", ".woff2"),
    ("text/vtt", ".vtt"),
    ("text/markdown", ".md"),
):
    _TYPES.add_type(_type, _suffix)


def content_type(path: str | pathlib.PurePath) -> str:
    """The Content-Type for a file by its name: text types in UTF-8; a compressed
    file (x.js.gz) or an unknown suffix is application/octet-stream."""
    kind, encoding = _TYPES.guess_type(pathlib.PurePath(path).name.lower())
    if kind is None or encoding is not None:
        return "application/octet-stream"
    return f"{kind}; charset=utf-8" if kind.startswith("text/") else kind


def is_public_asset(path: str) -> bool:
    """True for the page's code, styles and images (served without the token)."""
    return pathlib.PurePosixPath(path).suffix.lower() in PUBLIC_SUFFIXES


# ---------------------------------------------------------------- addresses
def is_loopback(host: str) -> bool:
    """True only for a loopback IP address (127.0.0.0/8, ::1, brackets allowed) or the
    name `localhost`. A name that merely starts with "127." (127.0.0.1.evil.example) is
    a domain an attacker controls, not loopback."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, str]:
    """("host", "port") of a Host header or URL netloc: "[::1]:8765" -> ("::1", "8765");
    ("", "") when it cannot be parsed."""
    value = value.strip()
    try:
        parts = urllib.parse.urlsplit("//" + value)
        name = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "", ""
    if not name or "@" in value or "/" in value:
        return "", ""
    return name.lower(), "" if port is None else str(port)


# ---------------------------------------------------------------- request target
def request_path(target: str) -> str:
    """The percent-decoded path of a request target ("/a%20b?x=1" -> "/a b")."""
    return urllib.parse.unquote(target.split("?", 1)[0].split("#", 1)[0])


def query_of(target: str) -> str:
    """The raw query: everything after the first "?" ("" when none)."""
    return target.partition("?")[2]


def token_of(target: str, headers: Headers) -> str | None:
    """The token from ?token=... or 'Authorization: Bearer ...'. There is no cookie:
    browsers send a cookie for 127.0.0.1 to every port there, so one would hand the
    token to any other local server the page's browser visits."""
    query = urllib.parse.parse_qs(query_of(target))
    if "token" in query:
        return query["token"][0]
    for auth in headers.get_all("Authorization"):
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
    return None


def asks_upgrade(headers: Headers) -> bool:
    """True when the request asks to become a websocket."""
    return any(v.lower() == "websocket" for v in headers.get_all("Upgrade"))


# ---------------------------------------------------------------- who may ask
@dataclass(frozen=True)
class Access:
    """Who the server answers: `host` is the address it is bound to; without a `token`
    only requests addressed to an IP address or localhost (no DNS rebinding), with one
    every request but the page's public files must carry it."""

    host: str = "127.0.0.1"
    token: str | None = None

    def host_allowed(self, name: str) -> bool:
        """Without a token, answer only requests addressed to an IP address or
        localhost: a web page whose domain was re-pointed at 127.0.0.1 (DNS
        rebinding), e.g. 127.0.0.1.evil.example, cannot read the scores."""
        if self.token is not None:
            return True
        if is_loopback(name) or name == self.host.lower():
            return True
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False

    def check_request(self, request: Request) -> Response | None:
        """None when the method and the Host/Origin headers are usable, else the 4xx."""
        if request.method not in ALLOWED_METHODS:
            return text_response(
                405, f"{request.method} is not supported here; use GET.\n", [("Allow", ", ".join(ALLOWED_METHODS))]
            )
        for name in ("Host", "Origin"):
            if len(request.headers.get_all(name)) > 1:
                return text_response(400, f"More than one {name} header; send one.\n")
        hosts = request.headers.get_all("Host")
        if not hosts:
            return text_response(400, "No Host header; send one (HTTP/1.1 requires it).\n")
        name, _ = split_host(hosts[0])
        if not name:
            return text_response(400, "The Host header is not a host[:port].\n")
        if not self.host_allowed(name):
            return text_response(403, "Use the server by its IP address or localhost (or start it with a token).\n")
        return None

    def check_token(self, request: Request) -> Response | None:
        """None when allowed, else the 401 (no token: says how to give it) or 403."""
        if self.token is None:
            return None
        given = token_of(request.path, request.headers)
        if given is None:
            return text_response(
                401,
                "This dashboard needs its token: open the URL hcl-live printed (…/?token=…) "
                "or send 'Authorization: Bearer <token>'.\n",
                [("WWW-Authenticate", 'Bearer realm="hcl-live"')],
            )
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return text_response(403, "Wrong token.\n")
        return None

    def origin_allowed(self, headers: Headers) -> bool:
        """Refuse websocket connections started by pages of other sites: the page's
        origin must be this server as addressed (same host and port), or both must be
        real loopback addresses (localhost vs 127.0.0.1) with the same port. No Origin
        (not a browser) is allowed."""
        origins = headers.get_all("Origin")
        if not origins:
            return True
        origin = urllib.parse.urlsplit(origins[0])
        if origin.scheme not in ("http", "https"):
            return False
        try:
            o_port = str(origin.port or (443 if origin.scheme == "https" else 80))
        except ValueError:
            return False
        o_host = (origin.hostname or "").lower()
        hosts = headers.get_all("Host")
        h_host, h_port = split_host(hosts[0]) if hosts else ("", "")
        h_port = h_port or "80"
        if not o_host or not h_host or o_port != h_port:
            return False
        if o_host == h_host and self.host_allowed(h_host):
            return True
        return is_loopback(o_host) and is_loopback(h_host)

    def check_websocket(self, request: Request) -> Response | None:
        """None when the handshake at /ws may go on, else the refusal (HEAD, token,
        a page of another site)."""
        if request.method == "HEAD":
            return text_response(405, "The websocket handshake is a GET.\n", [("Allow", "GET")])
        denied = self.check_token(request)
        if denied is not None:
            return denied
        if not self.origin_allowed(request.headers):
            return text_response(403, "Cross-origin websocket connections are refused.\n")
        return None


# ---------------------------------------------------------------- files
def resolve_static(root: pathlib.Path, url_path: str) -> pathlib.Path | None:
    """The file under `root` that `url_path` (already percent-decoded) names, or None
    when it does not exist or would leave `root` (.., absolute paths, backslashes,
    NUL, symlinks pointing out)."""
    if "\x00" in url_path or "\\" in url_path:
        return None
    parts = [p for p in url_path.split("/") if p not in ("", ".")]
    if any(p == ".." or ":" in p for p in parts):
        return None
    root = root.resolve()
    candidate = root.joinpath(*parts) if parts else root
    try:
        candidate = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not candidate.is_relative_to(root):
        return None
    if candidate.is_dir():
        candidate = candidate / "index.html"
        if not candidate.is_file():
            return None
    return candidate if candidate.is_file() else None


def parse_range(header: str, size: int, chunk: int = RANGE_CHUNK) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=` range within a file of `size` bytes
    (inclusive, last capped to `chunk` bytes past first); None when unsatisfiable or
    not one simple range."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec or size <= 0:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash or not _digits(first_s or "0") or not _digits(last_s or "0") or first_s == last_s == "":
        return None
    if first_s == "":  # suffix range: the last N bytes
        n = int(last_s)
        if n <= 0:
            return None
        first, last = max(0, size - n), size - 1
    else:
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
    if first >= size or last < first:
        return None
    last = min(last, size - 1, first + chunk - 1)
    return first, last


def _digits(s: str) -> bool:
    """ASCII digits only: int() would also take "+1", " 1", "1_0" and "١"."""
    return s.isascii() and s.isdigit()


# ---------------------------------------------------------------- responses
def response(status: int, body: bytes, ctype: str, extra: Iterable[tuple[str, str]] = ()) -> Response:
    """A complete response: never cached, never sniffed, no referrer, one per connection."""
    code = http.HTTPStatus(status)
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", ctype),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            *extra,
        ]
    )
    return Response(code.value, code.phrase, headers, body)


def text_response(status: int, text: str, extra: Iterable[tuple[str, str]] = ()) -> Response:
    return response(status, text.encode(), "text/plain; charset=utf-8", extra)


def json_response(status: int, obj: Any) -> Response:
    return response(status, json.dumps(obj).encode(), "application/json")


def redirect(location: str) -> Response:
    return response(302, b"", "text/plain; charset=utf-8", [("Location", location)])


def without_body(resp: Response) -> Response:
    """The answer to HEAD: the same status and headers (Content-Length included)."""
    return dataclasses.replace(resp, body=b"")


def static_response(root: pathlib.Path | None, path: str) -> Response:
    """A dashboard file from `root` (the decoded URL path), with the page's
    Content-Security-Policy; 403 for paths that try to leave the folder, 404 else."""
    if root is None:
        return text_response(
            404,
            "No dashboard files found: run from a source checkout or install the package "
            "with its client (pip install .), or pass client_dir.\n",
        )
    if path.startswith("//") or "\x00" in path or "\\" in path or ".." in path.split("/"):
        return text_response(403, "Forbidden.\n")
    target = resolve_static(root, path)
    if target is None:
        return text_response(404, "Not found.\n")
    try:
        body = target.read_bytes()
    except OSError:
        return text_response(404, "Not found.\n")
    return response(200, body, content_type(target), [("Content-Security-Policy", CONTENT_SECURITY_POLICY)])


def range_response(path: pathlib.Path, range_headers: list[str], ctype: str, chunk: int = RANGE_CHUNK) -> Response:
    """`path` answered in pieces of at most `chunk` bytes: 206 with the bytes one Range
    header asks for; without one, 200 with a small file whole or 206 with its first
    chunk (a large file whole would sit in memory); 416 for a bad or multiple range.
    Raises OSError when the file cannot be read."""
    size = path.stat().st_size
    common = [("Accept-Ranges", "bytes")]
    if not range_headers:
        if size <= chunk:
            return response(200, path.read_bytes(), ctype, common)
        first, last = 0, chunk - 1
    else:
        span = parse_range(range_headers[0], size, chunk) if len(range_headers) == 1 else None
        if span is None:
            return text_response(416, "Range not satisfiable.\n", [("Content-Range", f"bytes */{size}"), *common])
        first, last = span
    with path.open("rb") as f:
        f.seek(first)
        body = f.read(last - first + 1)
    last = first + len(body) - 1
    return response(206, body, ctype, [("Content-Range", f"bytes {first}-{last}/{size}"), *common])
