"""The dashboard server: one port for the websocket (/ws), the dashboard's static
files, GET /health and GET /metrics.

The asyncio loop runs in its own thread; `publish()` may be called from any thread
and never blocks: every client has its own bounded queue, and when a client falls
behind its oldest queued message is dropped and counted, so a stalled browser never
slows the pipeline or the other clients.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import hmac
import http
import importlib.util
import ipaddress
import itertools
import json
import logging
import math
import pathlib
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from realtime import protocol

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
TOKEN_COOKIE = "hcl_token"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".vtt": "text/vtt; charset=utf-8",
    ".woff2": "font/woff2",
}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

LATENCY_WINDOW = 256  # how many recent windows the latency percentiles cover


def default_client_dir(*, repo_root: str | pathlib.Path | None = None) -> pathlib.Path | None:
    """Where the dashboard's files are, in this order:

    1. `client/` at the repository root (a source checkout or an editable install);
    2. the installed package `hcl_client` (a wheel built by `pip install .` maps the
       top-level `client/` folder there).

    None when neither holds an index.html. `repo_root` is for tests."""
    root = pathlib.Path(repo_root) if repo_root is not None else pathlib.Path(__file__).resolve().parent.parent
    if (root / "client" / "index.html").is_file():
        return root / "client"
    try:
        spec = importlib.util.find_spec("hcl_client")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if (pathlib.Path(location) / "index.html").is_file():
            return pathlib.Path(location)
    return None


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def percentiles(values: Iterable[float], qs: Iterable[float] = (50, 95)) -> dict[str, float | None]:
    """Nearest-rank percentiles, e.g. {"p50": ..., "p95": ...}; None when empty."""
    data = sorted(v for v in values if v is not None and math.isfinite(v))
    out: dict[str, float | None] = {}
    for q in qs:
        if not data:
            out[f"p{int(q)}"] = None
            continue
        rank = max(1, math.ceil(q / 100 * len(data)))
        out[f"p{int(q)}"] = round(data[rank - 1], 2)
    return out


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


def _response(status: int, body: bytes, content_type: str, extra: Iterable[tuple[str, str]] = ()):
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    code = http.HTTPStatus(status)
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            *extra,
        ]
    )
    return Response(code.value, code.phrase, headers, body)


def _json_response(status: int, obj: Any):
    return _response(status, json.dumps(obj).encode(), "application/json")


def _text_response(status: int, text: str, extra: Iterable[tuple[str, str]] = ()):
    return _response(status, text.encode(), "text/plain; charset=utf-8", extra)


@dataclass
class _Client:
    id: str
    queue: asyncio.Queue
    peer: str
    connected_at: float
    sent: int = 0
    dropped: int = 0


@dataclass
class _Counters:
    windows_published: int = 0
    messages_published: int = 0
    messages_sent: int = 0
    windows_sent: int = 0
    client_drops: int = 0
    refused_client_messages: int = 0
    connections: int = 0
    last_pipeline_dropped: int = 0
    latencies: dict[str, collections.deque] = field(default_factory=dict)

    def add_latency(self, stage: str, value: float) -> None:
        self.latencies.setdefault(stage, collections.deque(maxlen=LATENCY_WINDOW)).append(float(value))


class DashboardServer:
    """Websocket + static dashboard + /health + /metrics on one port.

    `hello` is sent to every client first; then `session` (a protocol "session"
    message, replay mode) or the most recent `history` windows (live mode).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        client_dir: str | pathlib.Path | None = None,
        hello: dict[str, Any],
        metrics: Callable[[], dict[str, Any]] | None = None,
        queue_size: int = 64,
        history: int = 240,
        session: dict[str, Any] | None = None,
        stats_interval: float = 1.0,
        ping_interval: float | None = 20.0,
        send_buffer: int | None = 128 * 1024,
    ) -> None:
        if hello.get("type") != "hello":
            raise ValueError("hello must be a protocol hello message (realtime.protocol.hello_message)")
        if session is not None and session.get("type") != "session":
            raise ValueError("session must be a protocol session message (realtime.protocol.session_message)")
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        if token is not None and not token:
            raise ValueError("token must be a non-empty string or None")
        if token is None and not is_loopback(host):
            raise ValueError(
                f"refusing to serve scores on {host!r} without a token: anyone on the network could read "
                "them; pass token=... (hcl-live --token) or bind 127.0.0.1"
            )
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        self.token = token
        self.client_dir = pathlib.Path(client_dir) if client_dir is not None else default_client_dir()
        self.hello = dict(hello)
        self.session = session
        self._metrics = metrics
        self.queue_size = queue_size
        self.stats_interval = stats_interval
        self.ping_interval = ping_interval
        self.send_buffer = send_buffer
        self._history: collections.deque[str] = collections.deque(maxlen=max(0, history))
        self._clients: dict[str, _Client] = {}
        self._ids = itertools.count(1)
        self._counters = _Counters()
        self._started_at = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._lock = threading.Lock()  # guards counters read from other threads

    # ---------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 10.0) -> "DashboardServer":
        """Start listening; returns once the port is open (raises if it cannot)."""
        if self._thread is not None:
            raise RuntimeError("DashboardServer already started")
        self._ready.clear()
        self._start_error = None
        self._thread = threading.Thread(target=self._run, name="dashboard-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"dashboard server did not start listening on {self.host}:{self._requested_port} in {timeout} s")
        if self._start_error is not None:
            self._thread.join(timeout)
            self._thread = None
            err = self._start_error
            raise OSError(f"dashboard server could not listen on {self.host}:{self._requested_port}: {err}") from err
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection (1001 going away) and stop the loop thread."""
        loop, thread = self._loop, self._thread
        if thread is None:
            return
        if loop is not None and self._stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> "DashboardServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """http://host:port/ (with ?token=... when a token is set)."""
        base = f"http://{self._url_host()}:{self._port()}/"
        return base + (f"?token={urllib.parse.quote(self.token)}" if self.token else "")

    @property
    def ws_url(self) -> str:
        base = f"ws://{self._url_host()}:{self._port()}/ws"
        return base + (f"?token={urllib.parse.quote(self.token)}" if self.token else "")

    def _port(self) -> int:
        if self.port is None:
            raise RuntimeError("DashboardServer is not started; call start() first")
        return self.port

    def _url_host(self) -> str:
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"[{host}]" if ":" in host else host

    # ---------------------------------------------------------------- publish
    def publish(self, msg: dict[str, Any]) -> None:
        """Send a protocol message to every client. Thread-safe, never blocks;
        a message published before start() or after stop() goes only to history."""
        text = json.dumps(msg, separators=(",", ":"), allow_nan=False)
        is_window = msg.get("type") == "window"
        loop = self._loop
        if loop is None or loop.is_closed():
            if is_window:
                self._history.append(text)
            return
        try:
            loop.call_soon_threadsafe(self._fanout, text, msg if is_window else None, time.perf_counter())
        except RuntimeError:  # loop closed between the check and the call
            if is_window:
                self._history.append(text)

    def _fanout(self, text: str, window: dict[str, Any] | None, t_published: float) -> None:
        c = self._counters
        with self._lock:
            c.messages_published += 1
            if window is not None:
                c.windows_published += 1
                c.last_pipeline_dropped = int(window.get("dropped", 0) or 0)
                lat = window.get("latency_ms") or {}
                for stage, value in lat.items():
                    if isinstance(value, (int, float)):
                        c.add_latency(stage, value)
                stages = [v for v in lat.values() if isinstance(v, (int, float))]
                if stages:
                    c.add_latency("total", sum(stages))
        if window is not None:
            self._history.append(text)
        item = (text, window is not None, t_published)
        for client in list(self._clients.values()):
            self._enqueue(client, item)

    def _enqueue(self, client: _Client, item: tuple[str, bool, float]) -> None:
        q = client.queue
        while q.full():
            try:
                q.get_nowait()
            except asyncio.QueueEmpty:
                break
            client.dropped += 1
            with self._lock:
                self._counters.client_drops += 1
        q.put_nowait(item)

    # ---------------------------------------------------------------- figures
    def health(self) -> dict[str, Any]:
        with self._lock:
            return {
                "ok": self._thread is not None and self.port is not None,
                "mode": self.hello.get("mode", "live"),
                "uptime": round(time.monotonic() - self._started_at, 3),
                "clients": len(self._clients),
                "windows_published": self._counters.windows_published,
                "windows_sent": self._counters.windows_sent,
            }

    def metrics(self) -> dict[str, Any]:
        """Server figures plus the pipeline's (from the `metrics` callable)."""
        return self._compose_metrics(self._pipeline_figures())

    def _pipeline_figures(self) -> dict[str, Any]:
        if self._metrics is None:
            return {}
        try:
            return dict(self._metrics())
        except Exception as exc:  # a broken metrics source must not break /metrics
            return {"error": f"{type(exc).__name__}: {exc}"}

    def _compose_metrics(self, pipeline: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            c = self._counters
            latency = {stage: percentiles(values) for stage, values in c.latencies.items()}
            clients = {
                cl.id: {"peer": cl.peer, "sent": cl.sent, "dropped": cl.dropped, "queued": cl.queue.qsize()}
                for cl in list(self._clients.values())
            }
            return {
                "uptime": round(time.monotonic() - self._started_at, 3),
                "mode": self.hello.get("mode", "live"),
                "clients": len(clients),
                "connections_total": c.connections,
                "windows_published": c.windows_published,
                "windows_sent": c.windows_sent,
                "messages_sent": c.messages_sent,
                "dropped_windows": pipeline.get("dropped_windows", c.last_pipeline_dropped),
                "client_drops": c.client_drops,
                "refused_client_messages": c.refused_client_messages,
                "per_client": clients,
                "latency_ms": latency,
                "pipeline": pipeline,
            }

    async def _metrics_async(self) -> dict[str, Any]:
        """metrics() from the loop: the pipeline's callable runs off the loop."""
        pipeline = await asyncio.to_thread(self._pipeline_figures) if self._metrics is not None else {}
        return self._compose_metrics(pipeline)

    # ---------------------------------------------------------------- loop thread
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start()
            if not self._ready.is_set():
                self._start_error = exc
                self._ready.set()
            else:
                log.exception("dashboard server loop failed")
        finally:
            self._loop = None

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await serve(
                self._handle,
                self.host,
                self._requested_port,
                process_request=self._process_request,
                max_size=protocol.MAX_CLIENT_MESSAGE,
                max_queue=8,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_interval,
                close_timeout=2,
                server_header="hcl-live",
            )
        except BaseException as exc:
            self._start_error = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._started_at = time.monotonic()
        self._ready.set()
        stats_task = asyncio.create_task(self._stats_loop())
        try:
            await self._stop.wait()
        finally:
            stats_task.cancel()
            server.close(close_connections=True)  # 1001 going away
            try:
                await asyncio.wait_for(asyncio.shield(server.wait_closed()), 1.5)
            except asyncio.TimeoutError:
                # a client that stopped reading cannot take the close frame: cut it off
                for conn in list(getattr(server, "all_connections", server.connections)):
                    if conn.transport is not None:
                        conn.transport.abort()
                try:
                    await asyncio.wait_for(server.wait_closed(), 2.0)
                except asyncio.TimeoutError:
                    log.warning("dashboard server: some connections did not close in time")

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.stats_interval)
            if not self._clients:
                continue
            body = await self._metrics_async()
            text = json.dumps(protocol.stats_message(body), separators=(",", ":"), default=str)
            item = (text, False, time.perf_counter())
            for client in list(self._clients.values()):
                self._enqueue(client, item)

    # ---------------------------------------------------------------- HTTP side
    def _token_of(self, request: Any) -> str | None:
        query = urllib.parse.parse_qs(request.path.partition("?")[2])
        if "token" in query:
            return query["token"][0]
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        for cookie in request.headers.get_all("Cookie"):
            for part in cookie.split(";"):
                name, _, value = part.strip().partition("=")
                if name == TOKEN_COOKIE:
                    return urllib.parse.unquote(value)
        return None

    def _check_token(self, request: Any):
        """None when allowed, else the 401/403 response."""
        if self.token is None:
            return None
        given = self._token_of(request)
        if given is None:
            return _text_response(
                401,
                "This dashboard needs its token: open the URL hcl-live printed (…/?token=…) "
                "or send 'Authorization: Bearer <token>'.\n",
                [("WWW-Authenticate", 'Bearer realm="hcl-live"')],
            )
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return _text_response(403, "Wrong token.\n")
        return None

    def _origin_allowed(self, request: Any) -> bool:
        """Refuse websocket connections started by pages of other sites."""
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser
            return True
        host = request.headers.get("Host", "")
        netloc = urllib.parse.urlsplit(origin).netloc
        if netloc == host:
            return True
        # localhost vs 127.0.0.1 spelled differently for the same loopback server
        o_host, _, o_port = netloc.rpartition(":")
        h_host, _, h_port = host.rpartition(":")
        return o_port == h_port and is_loopback(o_host.strip("[]")) and is_loopback(h_host.strip("[]"))

    def _host_allowed(self, request: Any) -> bool:
        """Without a token, answer only requests addressed to an IP or localhost: a web page
        whose domain was re-pointed at 127.0.0.1 (DNS rebinding) cannot read the scores."""
        if self.token is not None:
            return True
        host = request.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.strip("[]").lower()
        if is_loopback(name) or name == self.host:
            return True
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False

    async def _process_request(self, connection: Any, request: Any):
        if not self._host_allowed(request):
            return _text_response(403, "Use the server by its IP address or localhost (or start it with a token).\n")
        raw_path = request.path.split("?", 1)[0].split("#", 1)[0]
        path = urllib.parse.unquote(raw_path)
        denied = self._check_token(request)
        if denied is not None:
            return denied
        if path == "/ws":
            if not self._origin_allowed(request):
                return _text_response(403, "Cross-origin websocket connections are refused.\n")
            return None  # go on with the websocket handshake
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return _text_response(404, "The websocket is at /ws.\n")
        if path == "/health":
            return _json_response(200, self.health())
        if path == "/metrics":
            return _json_response(200, await self._metrics_async())
        return self._static(path)

    def _static(self, path: str):
        if self.client_dir is None:
            return _text_response(
                404,
                "No dashboard files found: run from a source checkout or install the package "
                "with its client (pip install .), or pass client_dir.\n",
            )
        if path.startswith("//") or "\x00" in path:
            return _text_response(403, "Forbidden.\n")
        parts = path.split("/")
        if ".." in parts or "\\" in path:
            return _text_response(403, "Forbidden.\n")
        target = resolve_static(self.client_dir, path)
        if target is None:
            return _text_response(404, "Not found.\n")
        try:
            body = target.read_bytes()
        except OSError:
            return _text_response(404, "Not found.\n")
        ctype = CONTENT_TYPES.get(target.suffix.lower(), "application/octet-stream")
        extra = [("Content-Security-Policy", CONTENT_SECURITY_POLICY)]
        if self.token is not None and target.suffix.lower() == ".html":
            # lets the page load its scripts and styles (which carry no query) with the token
            extra.append(
                ("Set-Cookie", f"{TOKEN_COOKIE}={urllib.parse.quote(self.token)}; Path=/; HttpOnly; SameSite=Strict")
            )
        return _response(200, body, ctype, extra)

    # ---------------------------------------------------------------- websocket side
    async def _handle(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        client = _Client(
            id=f"c{next(self._ids)}",
            queue=asyncio.Queue(maxsize=self.queue_size),
            peer=str(ws.remote_address[0]) if ws.remote_address else "?",
            connected_at=time.monotonic(),
        )
        self._limit_kernel_buffer(ws)
        # snapshot + register without an await in between: every window is sent exactly once
        initial = [json.dumps(self.hello, separators=(",", ":"))]
        if self.session is not None:
            initial.append(json.dumps(self.session, separators=(",", ":")))
        else:
            initial.extend(self._history)
        self._clients[client.id] = client
        with self._lock:
            self._counters.connections += 1
        sender = asyncio.create_task(self._send_loop(ws, client, initial))
        try:
            async for raw in ws:
                await self._on_client_message(client, raw)
        except ConnectionClosed:
            pass
        finally:
            self._clients.pop(client.id, None)
            sender.cancel()
            try:
                await sender
            except (asyncio.CancelledError, ConnectionClosed):
                pass

    def _limit_kernel_buffer(self, ws: Any) -> None:
        """Cap what the kernel buffers for one client (Linux autotunes it up to MBs), so a
        slow client backs up into its own bounded queue, where old windows are dropped."""
        if self.send_buffer is None:
            return
        sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
            except OSError:
                pass

    async def _send_loop(self, ws: Any, client: _Client, initial: list[str]) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for text in initial:
                await ws.send(text)
                client.sent += 1
                with self._lock:
                    self._counters.messages_sent += 1
                    if text.startswith('{"type":"window"'):
                        self._counters.windows_sent += 1
            while True:
                text, is_window, t_published = await client.queue.get()
                await ws.send(text)
                client.sent += 1
                with self._lock:
                    self._counters.messages_sent += 1
                    if is_window:
                        self._counters.windows_sent += 1
                        self._counters.add_latency("server_send", (time.perf_counter() - t_published) * 1000)
        except ConnectionClosed:
            pass

    async def _on_client_message(self, client: _Client, raw: str | bytes) -> None:
        def refuse(why: str) -> None:
            with self._lock:
                self._counters.refused_client_messages += 1
            self._enqueue(client, (json.dumps(protocol.error_message(why)), False, time.perf_counter()))

        if isinstance(raw, bytes):
            return refuse("binary messages are not accepted; send JSON text such as {\"type\": \"ping\"}")
        try:
            msg = json.loads(raw)
        except ValueError:
            return refuse("not valid JSON; send {\"type\": \"ping\"} or {\"type\": \"get_session\"}")
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "ping":
            self._enqueue(client, (json.dumps(protocol.pong_message(time.time())), False, time.perf_counter()))
        elif kind == "get_session":
            if self.session is None:
                return refuse("this server is live, not replaying a session")
            self._enqueue(client, (json.dumps(self.session, separators=(",", ":")), False, time.perf_counter()))
        else:
            refuse(f"unknown message type {kind!r}; expected 'ping' or 'get_session'")
