"""Who the dashboard server answers: the method, one Host (no DNS rebinding without a
token), the token (from `?token=` or `Authorization: Bearer`, never a cookie) and the
Origin of a websocket handshake. Plain functions of a request, no state."""

from __future__ import annotations

import hmac
import ipaddress
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from realtime.web.http import query_of, text_response

if TYPE_CHECKING:
    from websockets.datastructures import Headers
    from websockets.http11 import Request, Response

ALLOWED_METHODS = ("GET", "HEAD")
LOOPBACK_NAMES = frozenset({"localhost"})

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
