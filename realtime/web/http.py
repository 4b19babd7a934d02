"""The dashboard server's HTTP side as plain functions of a request.

`websockets` parses each HTTP request and writes the answer; in between, its
`process_request` hook (`realtime.web.routes`; who may ask is `realtime.web.access`) asks
this module:

- which dashboard file a path names (`resolve_static`, confined to the folder), with
  which content type (`content_type`, from `mimetypes`);
- which bytes a `Range` header asks for (`parse_range`, `range_response`);
- the response itself (`text_response`, `json_response`, `file_response`, ...), every
  one with the same security headers.

Nothing here keeps state or touches a socket; the only I/O is reading the file a
response carries. The routes that need the server's state (/health,
/metrics, the recording) are `realtime.web.routes`.
"""

from __future__ import annotations

import dataclasses
import email.utils
import http
import json
import mimetypes
import pathlib
import urllib.parse
from typing import TYPE_CHECKING, Any, Iterable

from websockets.datastructures import Headers
from websockets.http11 import Response

if TYPE_CHECKING:  # websockets is imported when a response is built: importing this module needs only the stdlib
    from websockets.datastructures import Headers
    from websockets.http11 import Request, Response

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


# ---------------------------------------------------------------- request target
def request_path(target: str) -> str:
    """The percent-decoded path of a request target ("/a%20b?x=1" -> "/a b")."""
    return urllib.parse.unquote(target.split("?", 1)[0].split("#", 1)[0])


def query_of(target: str) -> str:
    """The raw query: everything after the first "?" ("" when none)."""
    return target.partition("?")[2]


def asks_upgrade(headers: Headers) -> bool:
    """True when the request asks to become a websocket."""
    return any(v.lower() == "websocket" for v in headers.get_all("Upgrade"))


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
