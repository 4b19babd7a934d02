"""The dashboard server: one port for the websocket (/ws), the dashboard's static
files, GET /health, GET /metrics, the model card (/model-card) and, when a recording
is attached, the recorded video (/recording/video.mp4, with HTTP Range requests so a
browser can seek) and the whole session as CSV (/recording/scores.csv).

The asyncio loop runs in its own thread; `publish()` may be called from any thread
and never blocks: every client has its own bounded queue, and when a client falls
behind its oldest queued message is dropped and counted, so a stalled browser never
slows the pipeline or the other clients.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
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
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from realtime import protocol

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost"})
ALLOWED_METHODS = ("GET", "HEAD")
RANGE_CHUNK = 4 * 1024 * 1024  # most bytes one Range answer carries (the browser asks again)
SESSION_RESEND_SECONDS = 2.0  # one client may ask for the whole session at most this often
DEFAULT_HISTORY = 7200  # windows a late tab gets: 1 h at the default 0.5 s step

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
    ".mp4": "video/mp4",
    ".md": "text/plain; charset=utf-8",
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


def default_model_card(hello: dict[str, Any], *, models: str | pathlib.Path | None = None) -> pathlib.Path | None:
    """models/<hello.model.name>/README.md of the shipped models (the source checkout's
    `models/`, else the installed `hcl_models`), or None when there is none. The name
    must be one plain folder name: a hello cannot point the server elsewhere."""
    name = str((hello.get("model") or {}).get("name") or "")
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00:"):
        return None
    roots: list[pathlib.Path] = []
    if models is not None:
        roots.append(pathlib.Path(models))
    else:
        roots.append(pathlib.Path(__file__).resolve().parent.parent / "models")
        try:
            spec = importlib.util.find_spec("hcl_models")
        except (ImportError, ValueError):
            spec = None
        roots += [pathlib.Path(p) for p in ((spec.submodule_search_locations or []) if spec is not None else [])]
    for root in roots:
        card = root / name / "README.md"
        if card.is_file():
            return card
    return None


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


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=` range within a file of `size` bytes
    (inclusive, last capped to RANGE_CHUNK past first); None when unsatisfiable or not
    one simple range."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec or size <= 0:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first_s == "":  # suffix range: the last N bytes
            n = int(last_s)
            if n <= 0:
                return None
            first, last = max(0, size - n), size - 1
        else:
            first = int(first_s)
            last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if first < 0 or first >= size or last < first:
        return None
    last = min(last, size - 1, first + RANGE_CHUNK - 1)
    return first, last


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
    last_session_request: float = -math.inf  # monotonic time of the last get_session served
    last_session_notice: float = -math.inf  # ... and of the last "too often" notice
    send_started: float | None = None  # monotonic time the pending send began
    send_limit: float = 0.0  # seconds that send may take
    ws: Any = None


@dataclass
class _Counters:
    windows_published: int = 0
    messages_published: int = 0
    messages_sent: int = 0
    windows_sent: int = 0
    client_drops: int = 0
    refused_client_messages: int = 0
    connections: int = 0
    stalled_disconnects: int = 0
    last_pipeline_dropped: int = 0
    latencies: dict[str, collections.deque] = field(default_factory=dict)

    def add_latency(self, stage: str, value: float) -> None:
        self.latencies.setdefault(stage, collections.deque(maxlen=LATENCY_WINDOW)).append(float(value))


class DashboardServer:
    """Websocket + static dashboard + /health + /metrics on one port.

    `hello` is sent to every client first (with what this server adds: how much
    history it holds, where the model card and the recording are), then `session` (a
    protocol "session" message, replay mode) or the most recent `history` windows (live
    mode; how many older ones were cut is in hello.history), then the current `status`
    (loading / running / finished).

    `recording` (a session folder, see attach_recording) lets the page download the
    whole session as CSV and, in replay, play its video. `model_card` is the model's
    README.md; by default models/<hello.model.name>/README.md next to the package.
    A client that stops reading for `send_timeout` seconds (plus time for the size of
    what is being sent) is disconnected.
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
        history: int = DEFAULT_HISTORY,
        session: dict[str, Any] | None = None,
        stats_interval: float = 1.0,
        ping_interval: float | None = 20.0,
        send_buffer: int | None = 128 * 1024,
        send_timeout: float = 30.0,
        recording: str | pathlib.Path | None = None,
        model_card: str | pathlib.Path | None = None,
    ) -> None:
        if hello.get("type") != "hello":
            raise ValueError("hello must be a protocol hello message (realtime.protocol.hello_message)")
        if session is not None and session.get("type") != "session":
            raise ValueError("session must be a protocol session message (realtime.protocol.session_message)")
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        if not send_timeout > 0:
            raise ValueError("send_timeout must be > 0 seconds")
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
        # a replayed session is serialised once: every client and every get_session
        # gets this same string, so a flood of requests costs no CPU and no copies
        self._session_text = json.dumps(session, separators=(",", ":")) if session is not None else None
        self.send_timeout = float(send_timeout)
        self.recording: pathlib.Path | None = None
        self.model_card = pathlib.Path(model_card) if model_card is not None else default_model_card(self.hello)
        self._status = protocol.status_message(
            protocol.STATUS_FINISHED if session is not None else protocol.STATUS_LOADING,
            "recorded session" if session is not None else "loading the models; the first score follows",
        )
        self._history_cut = 0
        self._last_error: str | None = None
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
        if recording is not None:
            self.attach_recording(recording)

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
        if msg.get("type") == "error":
            self._last_error = text  # a page that opens later is told too (e.g. the recording stopped)
        if is_window and self._status.get("state") == protocol.STATUS_LOADING:
            # the first window means the models are loaded: say so before it arrives
            self.set_status(protocol.STATUS_RUNNING)
        loop = self._loop
        if loop is None or loop.is_closed():
            if is_window:
                self._remember(text)
            return
        try:
            loop.call_soon_threadsafe(self._fanout, text, msg if is_window else None, time.perf_counter())
        except RuntimeError:  # loop closed between the check and the call
            if is_window:
                self._remember(text)

    def set_status(self, state: str, detail: str = "") -> None:
        """Tell every page (and every page that connects later) what the session is
        doing: protocol.STATUS_LOADING, STATUS_RUNNING or STATUS_FINISHED. A live
        server starts "loading" and turns "running" by itself at the first window;
        call set_status(STATUS_FINISHED, ...) when a file has ended."""
        msg = protocol.status_message(state, detail)
        self._status = msg
        text = json.dumps(msg, separators=(",", ":"))
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._fanout, text, None, time.perf_counter())
        except RuntimeError:
            pass

    @property
    def status(self) -> dict[str, Any]:
        return dict(self._status)

    def attach_recording(self, directory: str | pathlib.Path | None) -> None:
        """Serve this session folder's video (/recording/video.mp4) and its whole
        session as CSV (/recording/scores.csv); None detaches. Pages that connect
        afterwards learn of it in their hello."""
        self.recording = pathlib.Path(directory) if directory is not None else None

    def _remember(self, text: str) -> None:
        if self._history.maxlen is not None and len(self._history) == self._history.maxlen:
            self._history_cut += 1
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
            self._remember(text)
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
                "stalled_disconnects": c.stalled_disconnects,
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
        watchdog = asyncio.create_task(self._watch_stalls())
        try:
            await self._stop.wait()
        finally:
            stats_task.cancel()
            watchdog.cancel()
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
        """The token from ?token=... or 'Authorization: Bearer ...'. There is no cookie:
        browsers send a cookie for 127.0.0.1 to every port there, so one would hand the
        token to any other local server the page's browser visits."""
        query = urllib.parse.parse_qs(request.path.partition("?")[2])
        if "token" in query:
            return query["token"][0]
        for auth in request.headers.get_all("Authorization"):
            if auth.lower().startswith("bearer "):
                return auth[7:].strip()
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
        """Refuse websocket connections started by pages of other sites: the page's
        origin must be this server as addressed (same host and port), or both must be
        real loopback addresses (localhost vs 127.0.0.1) with the same port."""
        origins = request.headers.get_all("Origin")
        if not origins:  # not a browser
            return True
        origin = urllib.parse.urlsplit(origins[0])
        if origin.scheme not in ("http", "https"):
            return False
        try:
            o_port = str(origin.port or (443 if origin.scheme == "https" else 80))
        except ValueError:
            return False
        o_host = (origin.hostname or "").lower()
        h_host, h_port = split_host(request.headers.get_all("Host")[0])
        h_port = h_port or "80"
        if not o_host or not h_host or o_port != h_port:
            return False
        if o_host == h_host and self._host_name_allowed(h_host):
            return True
        return is_loopback(o_host) and is_loopback(h_host)

    def _host_name_allowed(self, name: str) -> bool:
        """Without a token, answer only requests addressed to an IP address or localhost:
        a web page whose domain was re-pointed at 127.0.0.1 (DNS rebinding), e.g.
        127.0.0.1.evil.example, cannot read the scores."""
        if self.token is not None:
            return True
        if is_loopback(name) or name == self.host.lower():
            return True
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False

    def _check_headers(self, request: Any):
        """None when the request line and the headers are usable, else the 4xx response."""
        method = getattr(request, "method", "GET")
        if method not in ALLOWED_METHODS:
            return _text_response(
                405, f"{method} is not supported here; use GET.\n", [("Allow", ", ".join(ALLOWED_METHODS))]
            )
        for name in ("Host", "Origin"):
            if len(request.headers.get_all(name)) > 1:
                return _text_response(400, f"More than one {name} header; send one.\n")
        hosts = request.headers.get_all("Host")
        if not hosts:
            return _text_response(400, "No Host header; send one (HTTP/1.1 requires it).\n")
        name, _ = split_host(hosts[0])
        if not name:
            return _text_response(400, "The Host header is not a host[:port].\n")
        if not self._host_name_allowed(name):
            return _text_response(403, "Use the server by its IP address or localhost (or start it with a token).\n")
        return None

    async def _process_request(self, connection: Any, request: Any):
        bad = self._check_headers(request)
        if bad is not None:
            return bad
        raw_path = request.path.split("?", 1)[0].split("#", 1)[0]
        path = urllib.parse.unquote(raw_path)
        head = getattr(request, "method", "GET") == "HEAD"
        if path == "/ws":
            if head:
                return _text_response(405, "The websocket handshake is a GET.\n", [("Allow", "GET")])
            denied = self._check_token(request)
            if denied is not None:
                return denied
            if not self._origin_allowed(request):
                return _text_response(403, "Cross-origin websocket connections are refused.\n")
            return None  # go on with the websocket handshake
        if any(v.lower() == "websocket" for v in request.headers.get_all("Upgrade")):
            return _text_response(404, "The websocket is at /ws.\n")
        response = await self._route(request, path)
        if head:
            response = dataclasses.replace(response, body=b"")
        return response

    async def _route(self, request: Any, path: str):
        if self._is_public_asset(path):
            return self._static(path)  # the dashboard's code and styles hold no scores
        denied = self._check_token(request)
        if denied is not None:
            return denied
        if path == "/health":
            return _json_response(200, self.health())
        if path == "/metrics":
            return _json_response(200, await self._metrics_async())
        if path == "/model-card":
            return self._model_card()
        if path == "/help":  # the dashboard with its help panel open
            query = request.path.partition("?")[2]
            return _response(302, b"", "text/plain; charset=utf-8", [("Location", "/" + (f"?{query}" if query else "") + "#help")])
        if path == "/recording/video.mp4":
            return await asyncio.to_thread(self._video, request)
        if path == "/recording/scores.csv":
            return await asyncio.to_thread(self._session_csv)
        return self._static(path)

    def _is_public_asset(self, path: str) -> bool:
        suffix = pathlib.PurePosixPath(path).suffix.lower()
        return suffix in (".js", ".mjs", ".css", ".svg", ".png", ".ico", ".woff2")

    def _model_card(self):
        card = self.model_card
        if card is None or not card.is_file():
            return _text_response(
                404, f"No model card for {((self.hello.get('model') or {}).get('name'))!r} (models/<name>/README.md).\n"
            )
        try:
            return _response(200, card.read_bytes(), "text/plain; charset=utf-8")
        except OSError as exc:
            return _text_response(404, f"The model card cannot be read: {exc}\n")

    def _recording_file(self, name: str) -> pathlib.Path | None:
        if self.recording is None:
            return None
        path = self.recording / name
        return path if path.is_file() else None

    def _video(self, request: Any):
        """The recording's video.mp4, in Range pieces of at most RANGE_CHUNK bytes."""
        path = self._recording_file("video.mp4")
        if path is None:
            return _text_response(404, "This session has no recorded video (record with hcl-live --record).\n")
        try:
            size = path.stat().st_size
            ranges = request.headers.get_all("Range")
            common = [("Accept-Ranges", "bytes")]
            if not ranges:
                if size > RANGE_CHUNK:
                    # a whole large file in one answer would sit in memory: ask for ranges
                    first, last = 0, RANGE_CHUNK - 1
                else:
                    return _response(200, path.read_bytes(), "video/mp4", common)
            else:
                span = parse_range(ranges[0], size) if len(ranges) == 1 else None
                if span is None:
                    return _text_response(416, "Range not satisfiable.\n", [("Content-Range", f"bytes */{size}"), *common])
                first, last = span
            with path.open("rb") as f:
                f.seek(first)
                body = f.read(last - first + 1)
        except OSError as exc:
            return _text_response(404, f"The video cannot be read: {exc}\n")
        last = first + len(body) - 1
        return _response(206, body, "video/mp4", [("Content-Range", f"bytes {first}-{last}/{size}"), *common])

    def _session_csv(self):
        """The whole recorded session as CSV (protocol.CSV_COLUMNS), read from the folder."""
        if self.recording is None:
            return _text_response(404, "No recording is attached: start hcl-live with --record to export whole sessions.\n")
        from realtime.recording import SessionError, read_session

        try:
            rec = read_session(self.recording)
        except (SessionError, OSError) as exc:
            return _text_response(404, f"The recording cannot be read: {exc}\n")
        body = protocol.csv_text(rec.windows).encode()
        name = re.sub(r"[^\w.-]+", "_", rec.session_id or "session")
        return _response(
            200, body, "text/csv; charset=utf-8", [("Content-Disposition", f'attachment; filename="hcl-{name}-scores.csv"')]
        )

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
        return _response(200, body, ctype, [("Content-Security-Policy", CONTENT_SECURITY_POLICY)])

    # ---------------------------------------------------------------- websocket side
    async def _handle(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        client = _Client(
            id=f"c{next(self._ids)}",
            queue=asyncio.Queue(maxsize=self.queue_size),
            peer=str(ws.remote_address[0]) if ws.remote_address else "?",
            connected_at=time.monotonic(),
            ws=ws,
        )
        self._limit_kernel_buffer(ws)
        # snapshot + register without an await in between: every window is sent exactly once
        initial = [json.dumps(self.hello_for_client(), separators=(",", ":"))]
        if self._session_text is not None:
            initial.append(self._session_text)
        else:
            initial.extend(self._history)
        initial.append(json.dumps(self._status))
        if self._last_error is not None:
            initial.append(self._last_error)
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

    def hello_for_client(self) -> dict[str, Any]:
        """The hello a connecting page gets: the pipeline's, plus what this server holds
        (history kept and cut, the model card, the recording's video and CSV)."""
        hello = dict(self.hello)
        hello["history"] = {
            "kept": len(self._history) if self.session is None else len((self.session or {}).get("windows") or ()),
            "cut": self._history_cut if self.session is None else 0,
            "limit": self._history.maxlen,
        }
        hello["model_card"] = "/model-card" if self.model_card is not None else None
        has_video = self._recording_file("video.mp4") is not None
        hello["recording"] = (
            {"csv": "/recording/scores.csv", "video": "/recording/video.mp4" if has_video else None}
            if self.recording is not None
            else None
        )
        return hello

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

    async def _send(self, ws: Any, client: _Client, text: str) -> None:
        """ws.send, timed: the stall watchdog cuts off a client whose send has been
        pending too long (see _watch_stalls)."""
        client.send_started = time.monotonic()
        client.send_limit = self.send_timeout + len(text) / 262144
        try:
            await ws.send(text)
        finally:
            client.send_started = None

    async def _watch_stalls(self) -> None:
        """Disconnect clients that took no data for send_timeout seconds (plus 1 s per
        256 KiB being sent). The websocket keepalive cannot do this: its ping waits
        behind the blocked send, so its timeout never starts."""
        period = min(1.0, self.send_timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for client in list(self._clients.values()):
                started = client.send_started
                if started is None or now - started <= client.send_limit or client.ws is None:
                    continue
                log.warning(
                    "dashboard client %s (%s) took no data for %.0f s: disconnecting it", client.id, client.peer, now - started
                )
                with self._lock:
                    self._counters.stalled_disconnects += 1
                client.send_started = None
                if client.ws.transport is not None:
                    client.ws.transport.abort()

    async def _send_loop(self, ws: Any, client: _Client, initial: list[str]) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for text in initial:
                await self._send(ws, client, text)
                client.sent += 1
                with self._lock:
                    self._counters.messages_sent += 1
                    if text.startswith('{"type":"window"'):
                        self._counters.windows_sent += 1
            while True:
                text, is_window, t_published = await client.queue.get()
                await self._send(ws, client, text)
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
        except (ValueError, RecursionError):  # RecursionError: JSON nested ~1,000 deep
            return refuse("not valid JSON (or nested too deep); send {\"type\": \"ping\"} or {\"type\": \"get_session\"}")
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "ping":
            self._enqueue(client, (json.dumps(protocol.pong_message(time.time())), False, time.perf_counter()))
        elif kind == "get_session":
            if self._session_text is None:
                return refuse("this server is live, not replaying a session")
            now = time.monotonic()
            wait = client.last_session_request + SESSION_RESEND_SECONDS - now
            if wait > 0:
                if client.last_session_notice < client.last_session_request:
                    # one notice per interval: refusals must not flood the queue either
                    client.last_session_notice = now
                    return refuse(f"get_session at most once every {SESSION_RESEND_SECONDS:g} s; ask again in {wait:.1f} s")
                with self._lock:
                    self._counters.refused_client_messages += 1
                return None
            client.last_session_request = now
            self._enqueue(client, (self._session_text, False, time.perf_counter()))
        else:
            refuse(f"unknown message type {kind!r}; expected 'ping' or 'get_session'")
