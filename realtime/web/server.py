"""The dashboard server: one port for the websocket (/ws), the dashboard's static
files, GET /health, GET /metrics, the model card (/model-card) and, when a recording
is attached, the recorded video (/recording/video.mp4, with HTTP Range requests so a
browser can seek) and the whole session as CSV (/recording/scores.csv).

The asyncio loop runs in its own thread; `publish()` may be called from any thread
and never blocks: every client has its own bounded queue, and when a client falls
behind its oldest queued message is dropped and counted, so a stalled browser never
slows the pipeline or the other clients.

The HTTP side (who may ask, static files, content types, ranges, the responses) is
`realtime.web.http`, plain functions of a request; this module keeps the routes that need
the server's state and the websocket sessions.
"""

from __future__ import annotations

import asyncio
import collections
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
from typing import TYPE_CHECKING, Any, Callable

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from hcl.data.recordings import LABELS, LabelsError, SpanLabel, read_labels, write_labels
from realtime.core import protocol
from realtime.core.component import percentiles
from realtime.recording import SessionError, read_session
from realtime.sessions.hub import AdmissionRefused
from realtime.sources.capture_wire import DEFAULT_LIMITS, CaptureKind, CaptureReceiver, Violation, close_reason
from realtime.web import http
from realtime.web.deflate import SmallMessageDeflateFactory
from realtime.web.files import default_client_dir, default_model_card

if TYPE_CHECKING:
    from websockets.http11 import Request, Response

log = logging.getLogger(__name__)

SESSION_RESEND_SECONDS = 2.0  # one client may ask for the whole session at most this often
DEFAULT_HISTORY = 7200  # windows a late tab gets: 1 h at the default 0.5 s step
LATENCY_WINDOW = 256  # how many recent windows the latency percentiles cover
SESSION_LINK = "/s/"  # a session's page: /s/<link secret>; its stream: /ws?session=<link secret>
CAPTURE_HELLO_TIMEOUT = 15.0  # s a capture client has to send its hello (getUserMedia may ask the person)


@dataclass
class _Stream:
    """One session's stream: what a page that connects gets first (hello, the history of
    windows or a replayed session, the status, the last error) and who is watching it.
    The server's own session is the channel at /ws; every other session's is at
    /ws?session=<its link secret>, and only its viewers get its windows."""

    key: str | None  # None: the server's own session
    hello: dict[str, Any]
    status: dict[str, Any]
    history: collections.deque
    session: dict[str, Any] | None = None
    session_text: str | None = None
    history_cut: int = 0
    last_error: str | None = None
    recording: pathlib.Path | None = None
    clients: dict[str, "_Client"] = field(default_factory=dict)

    def remember(self, text: str) -> None:
        if self.history.maxlen is not None and len(self.history) == self.history.maxlen:
            self.history_cut += 1
        self.history.append(text)


class DashboardChannel:
    """A session's publish channel on the server (DashboardServer.open_channel): what its
    pipeline publishes goes to its own viewers only."""

    def __init__(self, server: "DashboardServer", channel: _Stream) -> None:
        self._server = server
        self._channel = channel
        self.key = channel.key

    def publish(self, msg: dict[str, Any]) -> None:
        self._server._publish(self._channel, msg)

    def set_status(self, state: str, detail: str = "") -> None:
        self._server._set_status(self._channel, state, detail)

    def attach_recording(self, directory: str | pathlib.Path | None) -> None:
        self._channel.recording = pathlib.Path(directory) if directory is not None else None

    @property
    def status(self) -> dict[str, Any]:
        return dict(self._channel.status)

    @property
    def viewers(self) -> int:
        return len(self._channel.clients)


@dataclass
class _Client:
    id: str
    queue: asyncio.Queue
    peer: str
    connected_at: float
    channel: _Stream | None = None
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
        sessions: Any = None,
        ssl_context: Any = None,
        capture_limits: Any = None,
    ) -> None:
        if hello.get("type") != "hello":
            raise ValueError("hello must be a protocol hello message (realtime.core.protocol.hello_message)")
        if session is not None and session.get("type") != "session":
            raise ValueError("session must be a protocol session message (realtime.core.protocol.session_message)")
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        if not send_timeout > 0:
            raise ValueError("send_timeout must be > 0 seconds")
        if token is not None and not token:
            raise ValueError("token must be a non-empty string or None")
        if token is None and not http.is_loopback(host):
            raise ValueError(
                f"refusing to serve scores on {host!r} without a token: anyone on the network could read "
                "them; pass token=... (hcl-live --token) or bind 127.0.0.1"
            )
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        self.token = token
        self._access = http.Access(host=host, token=token)  # who may ask (Host, token, Origin)
        self.client_dir = pathlib.Path(client_dir) if client_dir is not None else default_client_dir()
        self._history_limit = max(0, history)
        # the server's own session (/ws); a replayed session is serialised once: every
        # client and every get_session gets this same string, so a flood of requests
        # costs no CPU and no copies
        self._own = _Stream(
            key=None,
            hello=dict(hello),
            session=session,
            session_text=json.dumps(session, separators=(",", ":")) if session is not None else None,
            status=protocol.status_message(
                protocol.STATUS_FINISHED if session is not None else protocol.STATUS_LOADING,
                "recorded session" if session is not None else "loading the models; the first score follows",
            ),
            history=collections.deque(maxlen=self._history_limit),
        )
        self._channels: dict[str, _Stream] = {}  # other sessions' streams by link secret
        self.send_timeout = float(send_timeout)
        self.model_card = pathlib.Path(model_card) if model_card is not None else default_model_card(self.hello)
        self._metrics = metrics
        self.queue_size = queue_size
        self.stats_interval = stats_interval
        self.ping_interval = ping_interval
        self.send_buffer = send_buffer
        self.ssl_context = ssl_context
        self.sessions = sessions  # a realtime.sessions.SessionHub: browser capture at /capture, links /s/<secret>
        if capture_limits is None:
            capture_limits = DEFAULT_LIMITS
        self.capture_limits = capture_limits
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
        self._labels_lock = threading.Lock()  # one labels.json change at a time (read, change, write)
        if recording is not None:
            self.attach_recording(recording)

    # the server's own session
    hello = property(lambda self: self._own.hello)
    session = property(lambda self: self._own.session)
    recording = property(lambda self: self._own.recording)

    # ---------------------------------------------------------------- channels
    def open_channel(self, key: str, hello: dict[str, Any]) -> DashboardChannel:
        """A stream for another session at /ws?session=<key> (its link secret); thread-safe."""
        if not key or key in self._channels:
            raise ValueError("a channel needs a new, non-empty key")
        channel = _Stream(
            key=key,
            hello=dict(hello),
            status=protocol.status_message(protocol.STATUS_LOADING, "starting the session; the first score follows"),
            history=collections.deque(maxlen=self._history_limit),
        )
        self._channels[key] = channel
        return DashboardChannel(self, channel)

    def alias_channel(self, key: str) -> None:
        """Make /ws?session=<key> (and /s/<key>) reach the server's own session."""
        self._channels[key] = self._own

    def close_channel(self, key: str) -> None:
        """Forget a channel: its link stops working (viewers already connected stay)."""
        self._channels.pop(key, None)

    def channel_for(self, key: str | None) -> _Stream | None:
        if key is None:
            return self._own
        return self._channels.get(key)

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
        """http(s)://host:port/ (with ?token=... when a token is set)."""
        base = f"{'https' if self.ssl_context is not None else 'http'}://{self._url_host()}:{self._port()}/"
        return base + (f"?token={urllib.parse.quote(self.token)}" if self.token else "")

    @property
    def ws_url(self) -> str:
        base = f"{'wss' if self.ssl_context is not None else 'ws'}://{self._url_host()}:{self._port()}/ws"
        return base + (f"?token={urllib.parse.quote(self.token)}" if self.token else "")

    def _port(self) -> int:
        if self.port is None:
            raise RuntimeError("DashboardServer is not started; call start() first")
        return self.port

    @property
    def address(self) -> str:
        """host:port where this server is reached (a wildcard host as its loopback address)."""
        return f"{self._url_host()}:{self._port()}"

    def _url_host(self) -> str:
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"[{host}]" if ":" in host else host

    # ---------------------------------------------------------------- publish
    def publish(self, msg: dict[str, Any]) -> None:
        """Send a protocol message to every client of the server's own session.
        Thread-safe, never blocks; a message published before start() or after
        stop() goes only to history."""
        self._publish(self._own, msg)

    def _publish(self, channel: _Stream, msg: dict[str, Any]) -> None:
        text = json.dumps(msg, separators=(",", ":"), allow_nan=False)
        is_window = msg.get("type") == "window"
        if msg.get("type") == "error":
            channel.last_error = text  # a page that opens later is told too (e.g. the recording stopped)
        if is_window and channel.status.get("state") == protocol.STATUS_LOADING:
            # the first window means the models are loaded: say so before it arrives
            self._set_status(channel, protocol.STATUS_RUNNING)
        loop = self._loop
        if loop is None or loop.is_closed():
            if is_window:
                channel.remember(text)
            return
        try:
            loop.call_soon_threadsafe(self._fanout, text, msg if is_window else None, time.perf_counter(), channel)
        except RuntimeError:  # loop closed between the check and the call
            if is_window:
                channel.remember(text)

    def set_status(self, state: str, detail: str = "") -> None:
        """Tell every page (and every page that connects later) what the session is
        doing: protocol.STATUS_LOADING, STATUS_RUNNING or STATUS_FINISHED. A live
        server starts "loading" and turns "running" by itself at the first window;
        call set_status(STATUS_FINISHED, ...) when a file has ended."""
        self._set_status(self._own, state, detail)

    def _set_status(self, channel: _Stream, state: str, detail: str = "") -> None:
        msg = protocol.status_message(state, detail)
        channel.status = msg
        text = json.dumps(msg, separators=(",", ":"))
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._fanout, text, None, time.perf_counter(), channel)
        except RuntimeError:
            pass

    @property
    def status(self) -> dict[str, Any]:
        return dict(self._own.status)

    def attach_recording(self, directory: str | pathlib.Path | None) -> None:
        """Serve this session folder's video (/recording/video.mp4) and its whole
        session as CSV (/recording/scores.csv); None detaches. Pages that connect
        afterwards learn of it in their hello."""
        self._own.recording = pathlib.Path(directory) if directory is not None else None

    def _fanout(self, text: str, window: dict[str, Any] | None, t_published: float, channel: _Stream | None = None) -> None:
        channel = channel if channel is not None else self._own
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
            channel.remember(text)
        item = (text, window is not None, t_published)
        for client in list(channel.clients.values()):
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

    async def _metrics_async(self, *, sessions: bool = False) -> dict[str, Any]:
        """metrics() from the loop: the pipeline's callable runs off the loop. `sessions`
        adds the operator view (with every session's link: for /metrics only, never
        for the pages' stats)."""
        pipeline = await asyncio.to_thread(self._pipeline_figures) if self._metrics is not None else {}
        body = self._compose_metrics(pipeline)
        if sessions and self.sessions is not None:
            body["sessions"] = await asyncio.to_thread(self.sessions.stats)
        return body

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
                # deflate as websockets' default, but a replayed session (MBs) is sent
                # uncompressed: compressing it per viewer stalled the loop (realtime.web.deflate)
                compression=None,
                extensions=[SmallMessageDeflateFactory()],
                ssl=self.ssl_context,
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
            if self._own.clients:
                body = await self._metrics_async()
                text = json.dumps(protocol.stats_message(body), separators=(",", ":"), default=str)
                item = (text, False, time.perf_counter())
                for client in list(self._own.clients.values()):
                    self._enqueue(client, item)
            # another session's viewers get that session's figures only
            for key, channel in list(self._channels.items()):
                if channel is self._own or not channel.clients:
                    continue
                body = await asyncio.to_thread(self._session_figures, key)
                text = json.dumps(protocol.stats_message(body), separators=(",", ":"), default=str)
                item = (text, False, time.perf_counter())
                for client in list(channel.clients.values()):
                    self._enqueue(client, item)

    def _session_figures(self, key: str) -> dict[str, Any]:
        """The stats a session's own page gets: its pipeline's latency and drops."""
        session = self.sessions.by_secret(key) if self.sessions is not None else None
        if session is None or getattr(session, "pipeline", None) is None:  # an ended session lets its pipeline go
            return {}
        try:
            pipeline = session.pipeline.metrics()
        except Exception as exc:  # a broken figure must not stop the stats
            return {"error": f"{type(exc).__name__}: {exc}"}
        channel = self._channels.get(key)
        drops = sum(c.dropped for c in channel.clients.values()) if channel is not None else 0
        return {"session": session.id, "latency_ms": pipeline.get("latency_ms", {}),
                "dropped_windows": pipeline.get("dropped_windows", 0), "client_drops": drops, "pipeline": pipeline}

    # ---------------------------------------------------------------- HTTP side
    async def _process_request(self, connection: Any, request: Request) -> Response | None:
        """The answer to a plain HTTP request, or None to go on with the websocket
        handshake at /ws (see realtime.web.http for the checks)."""
        refused = self._access.check_request(request)
        if refused is not None:
            return refused
        path = http.request_path(request.path)
        if path == "/ws":
            key = _session_key(request.path)
            if key is None:
                return self._access.check_websocket(request)
            # a session's link is its own key: its stream needs no token, only the secret
            if key not in self._channels:
                return http.text_response(404, "No live session at this link: it ended, or the link is wrong.\n")
            if request.method == "HEAD":
                return http.text_response(405, "The websocket handshake is a GET.\n", [("Allow", "GET")])
            if not self._access.origin_allowed(request.headers):
                return http.text_response(403, "Cross-origin websocket connections are refused.\n")
            return None
        if path == "/capture":
            if self.sessions is None:
                return http.text_response(404, "This server takes no browser capture (start hcl-live with --browser).\n")
            return self._access.check_websocket(request)  # loopback, or the token
        if http.asks_upgrade(request.headers):
            return http.text_response(404, "The websocket is at /ws.\n")
        response = await self._route(request, path)
        return http.without_body(response) if request.method == "HEAD" else response

    async def _route(self, request: Request, path: str) -> Response:
        if path.startswith(SESSION_LINK) and http.is_public_asset(path):
            # a session's page at /s/<secret> asks for its code relative to /s/
            return http.static_response(self.client_dir, "/" + path[len(SESSION_LINK):])
        if http.is_public_asset(path):
            return http.static_response(self.client_dir, path)
        if path.startswith(SESSION_LINK):  # a session's page: its secret is the key
            key = path[len(SESSION_LINK):].rstrip("/")
            if key and key in self._channels:
                return http.static_response(self.client_dir, "/index.html")
            return http.text_response(404, "No live session at this link: it ended, or the link is wrong.\n")
        denied = self._access.check_token(request)
        if denied is not None:
            return denied
        if path == "/sessions":  # the operator view's figures
            if self.sessions is None:
                return http.json_response(200, {"sessions": [], "live": 0, "max_sessions": 0})
            return http.json_response(200, await asyncio.to_thread(self.sessions.stats))
        if path == "/operator":  # the dashboard with the sessions table on top (client/operator.js)
            return http.static_response(self.client_dir, "/index.html")
        if path == "/health":
            return http.json_response(200, self.health())
        if path == "/metrics":
            return http.json_response(200, await self._metrics_async(sessions=True))
        if path == "/model-card":
            return self._model_card()
        if path == "/help":  # the dashboard with its help panel open
            query = http.query_of(request.path)
            return http.redirect("/" + (f"?{query}" if query else "") + "#help")
        if path == "/recording/video.mp4":
            return await asyncio.to_thread(self._video, request)
        if path == "/recording/scores.csv":
            return await asyncio.to_thread(self._session_csv)
        if path == "/recording/labels.json":
            return await asyncio.to_thread(self._labels_file)
        return http.static_response(self.client_dir, path)

    def _model_card(self) -> Response:
        card = self.model_card
        if card is None or not card.is_file():
            return http.text_response(
                404, f"No model card for {((self.hello.get('model') or {}).get('name'))!r} (models/<name>/README.md).\n"
            )
        try:
            return http.response(200, card.read_bytes(), "text/plain; charset=utf-8")
        except OSError as exc:
            return http.text_response(404, f"The model card cannot be read: {exc}\n")

    def _recording_file(self, name: str) -> pathlib.Path | None:
        if self.recording is None:
            return None
        path = self.recording / name
        return path if path.is_file() else None

    def _video(self, request: Request) -> Response:
        """The recording's video.mp4, in Range pieces (http.range_response)."""
        path = self._recording_file("video.mp4")
        if path is None:
            return http.text_response(404, "This session has no recorded video (record with hcl-live --record).\n")
        try:
            return http.range_response(path, request.headers.get_all("Range"), "video/mp4")
        except OSError as exc:
            return http.text_response(404, f"The video cannot be read: {exc}\n")

    def _session_csv(self) -> Response:
        """The whole recorded session as CSV (protocol.CSV_COLUMNS), read from the folder."""
        if self.recording is None:
            return http.text_response(
                404, "No recording is attached: start hcl-live with --record to export whole sessions.\n"
            )

        try:
            rec = read_session(self.recording)
        except (SessionError, OSError) as exc:
            return http.text_response(404, f"The recording cannot be read: {exc}\n")
        body = protocol.csv_text(rec.windows).encode()
        name = re.sub(r"[^\w.-]+", "_", rec.session_id or "session")
        return http.response(
            200, body, "text/csv; charset=utf-8", [("Content-Disposition", f'attachment; filename="hcl-{name}-scores.csv"')]
        )

    # ---------------------------------------------------------------- labels (replay)
    def _labels_file(self) -> Response:
        """The replayed recording's labels.json (hcl.data.recordings), as saved."""
        path = self._recording_file(LABELS)
        if path is None:
            return http.text_response(404, "No labels yet: mark spans in the replay (keys [ ] and 0-6, see Help).\n")
        return http.response(200, path.read_bytes(), "application/json")

    def _labels_text(self, *, saved: bool = False, error: str | None = None) -> str:
        """The "labels" message of the attached recording: its labels.json's spans."""
        spans: list[dict[str, Any]] = []
        try:
            spans = [s.to_dict() for s in read_labels(self.recording)]
        except FileNotFoundError:
            pass
        except LabelsError as exc:
            error = error or str(exc)
        return json.dumps(protocol.labels_message(spans, saved=saved, error=error), separators=(",", ":"))

    def _change_labels(self, msg: dict[str, Any]) -> str:
        """Apply a set_label / delete_label to labels.json (read, change, write atomically and
        checked by hcl.data.recordings.write_labels); the "labels" message to send."""
        try:
            start, end = float(msg["start"]), float(msg["end"])
            label = float(msg["label"]) if msg["type"] == "set_label" else 0.0
        except (KeyError, TypeError, ValueError):
            return self._labels_text(error="a label needs numbers start, end (seconds) and label (-3 ... 3)")
        with self._labels_lock:
            try:
                spans = read_labels(self.recording)
            except FileNotFoundError:
                spans = []
            except LabelsError as exc:
                return self._labels_text(error=f"{exc}; fix or remove it, then mark again")
            kept = [s for s in spans if not (s.start < end and start < s.end)]  # a new span replaces those it overlaps
            if msg["type"] == "set_label":
                kept.append(SpanLabel(round(start, 3), round(end, 3), label))
            try:
                write_labels(self.recording, kept)
            except (LabelsError, ValueError, OSError) as exc:
                return self._labels_text(error=str(exc))
        return self._labels_text(saved=True)

    # ---------------------------------------------------------------- browser capture
    async def _handle_capture(self, ws: Any) -> None:
        """One capture client (a browser's camera and microphone): its hello opens a session
        (or is refused with the reason), its messages feed the session's source, its close
        ends the session (the windows captured are scored, the recording closes).

        Server -> client: JSON text, {"type": "session", "session", "link", "stream"} once
        the session is admitted, {"type": "refused", "reason"} before a refusal's close.
        A client that breaks the format or the limits is closed with the code and reason
        of realtime.sources.capture_wire; a refusal closes with 1013 (try again later)."""
        hub = self.sessions
        peer = str(ws.remote_address[0]) if ws.remote_address else "?"
        # the JSON bound of the other routes is far too small for a JPEG: this connection's own
        ws.protocol.max_message_size = self.capture_limits.max_message_bytes
        rx = CaptureReceiver(self.capture_limits)
        session = None
        starting: asyncio.Task | None = None
        try:
            try:
                first = await asyncio.wait_for(ws.recv(), CAPTURE_HELLO_TIMEOUT)
            except asyncio.TimeoutError:
                await ws.close(1008, f"no hello in {CAPTURE_HELLO_TIMEOUT:g} s")
                return
            got = rx.receive(time.monotonic(), first)
            if isinstance(got, Violation):
                await ws.close(got.code, got.reason)
                return
            try:
                session = await asyncio.to_thread(hub.open_browser, rx.hello, peer=peer, channels=self)
            except AdmissionRefused as exc:
                log.info("capture from %s refused: %s", peer, exc.reason)
                await ws.send(json.dumps({"type": "refused", "reason": exc.reason}))

                await ws.close(1013, close_reason(exc.reason))
                return
            except Exception as exc:  # the session could not be set up (e.g. its recording folder)
                reason = close_reason(str(exc) or type(exc).__name__)
                log.warning("capture from %s: the session could not open: %s: %s", peer, type(exc).__name__, exc)
                await ws.close(1011, reason)
                return
            await ws.send(json.dumps({"type": "session", "session": session.id, "link": session.link,
                                      "stream": session.stream}))
            # the models load off the loop; messages meanwhile are counted and dropped by the source
            starting = asyncio.create_task(asyncio.to_thread(hub.start_session, session))
            source = session.source
            idle = self.capture_limits.idle_seconds
            while True:
                try:  # recv is cancellation-safe: a timeout loses no message
                    data = await asyncio.wait_for(ws.recv(), idle)
                except asyncio.TimeoutError:  # a client that stalled (or vanished unseen) gives its slot back
                    reason = f"no capture message for {idle:g} s: the session ended; reload the page to start again"
                    log.warning("capture client %s (session %s) closed: %s", peer, session.id, reason)
                    session.end_reason = reason
                    await ws.close(1008, close_reason(reason))
                    break
                got = rx.receive(time.monotonic(), data)
                if isinstance(got, Violation):
                    log.warning("capture client %s (session %s) closed: %s", peer, session.id, got.reason)
                    session.end_reason = got.reason
                    await ws.close(got.code, got.reason)
                    break
                try:
                    source.feed(got)
                except ValueError as exc:  # CaptureFormatError: e.g. a frame over the size limit, a time jump
                    code = getattr(exc, "close_code", 1007)
                    reason = getattr(exc, "reason", close_reason(str(exc)))
                    log.warning("capture client %s (session %s) closed: %s", peer, session.id, exc)
                    session.end_reason = reason
                    await ws.close(code, reason)
                    break
                if got.kind is CaptureKind.END:
                    source.end()
                    break
        except ConnectionClosed:
            pass
        finally:
            if session is not None:
                if starting is not None:
                    try:
                        await starting
                    except Exception as exc:
                        log.warning("capture session %s did not start: %s", session.id, exc)
                reason = session.end_reason or ("the page stopped" if rx.ended else "the page closed")
                # the end waits for the scoring of what was captured: off the loop
                await asyncio.to_thread(hub.end, session.id, reason=reason)
                try:
                    await ws.close(1000, "session ended")
                except ConnectionClosed:
                    pass

    # ---------------------------------------------------------------- websocket side
    async def _handle(self, ws: Any) -> None:
        target = ws.request.path if getattr(ws, "request", None) is not None else "/ws"
        path = http.request_path(target)
        if path == "/capture":
            return await self._handle_capture(ws)
        key = _session_key(target)
        channel = self.channel_for(key)
        if channel is None:  # the session ended and was forgotten between the handshake and here
            await ws.close(1008, "no live session at this link")
            return
        client = _Client(
            id=f"c{next(self._ids)}",
            queue=asyncio.Queue(maxsize=self.queue_size),
            peer=str(ws.remote_address[0]) if ws.remote_address else "?",
            connected_at=time.monotonic(),
            ws=ws,
            channel=channel,
        )
        self._limit_kernel_buffer(ws)
        # snapshot + register without an await in between: every window is sent exactly once
        initial = [json.dumps(self.hello_for_client(channel), separators=(",", ":"))]
        if channel.session_text is not None:
            initial.append(channel.session_text)
        else:
            initial.extend(channel.history)
        initial.append(json.dumps(channel.status))
        if channel.last_error is not None:
            initial.append(channel.last_error)
        if self._labels_here(channel):
            initial.append(await asyncio.to_thread(self._labels_text))
        self._clients[client.id] = client
        channel.clients[client.id] = client
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
            channel.clients.pop(client.id, None)
            sender.cancel()
            try:
                await sender
            except (asyncio.CancelledError, ConnectionClosed):
                pass

    def hello_for_client(self, channel: _Stream | None = None) -> dict[str, Any]:
        """The hello a connecting page gets: the pipeline's, plus what this server holds
        (history kept and cut, the model card, the recording's video and CSV). Another
        session's recording is on disk but not served: its page exports what it holds."""
        channel = channel if channel is not None else self._own
        hello = dict(channel.hello)
        hello["history"] = {
            "kept": len(channel.history) if channel.session is None else len((channel.session or {}).get("windows") or ()),
            "cut": channel.history_cut if channel.session is None else 0,
            "limit": channel.history.maxlen,
        }
        hello["model_card"] = "/model-card" if self.model_card is not None else None
        has_video = self._recording_file("video.mp4") is not None
        hello["recording"] = (
            {"csv": "/recording/scores.csv", "video": "/recording/video.mp4" if has_video else None}
            if channel is self._own and self.recording is not None
            else None
        )
        if hello["recording"] is not None and self._labels_here(channel):  # a replay: its page may label it
            hello["recording"]["labels"] = "/recording/labels.json"
        if self.sessions is not None:
            hello["capture"] = {"url": "/capture", "max_sessions": self.sessions.config.max_sessions}
        return hello

    def _labels_here(self, channel: _Stream | None) -> bool:
        """A page of this channel may label: it replays the attached recording."""
        return channel is self._own and self.recording is not None and channel.session_text is not None

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
            session_text = client.channel.session_text if client.channel is not None else None
            if session_text is None:
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
            self._enqueue(client, (session_text, False, time.perf_counter()))
        elif kind in ("set_label", "delete_label"):
            if not self._labels_here(client.channel):
                return refuse("labels are kept beside a replayed recording: open it with hcl-replay SESSION_DIR")
            text = await asyncio.to_thread(self._change_labels, msg)
            for other in list(client.channel.clients.values()):  # every tab of the replay sees the same labels
                self._enqueue(other, (text, False, time.perf_counter()))
        else:
            refuse(f"unknown message type {kind!r}; expected 'ping', 'get_session', 'set_label' or 'delete_label'")


def _session_key(target: str) -> str | None:
    """The link secret in ?session=... of a websocket URL, or None."""
    values = urllib.parse.parse_qs(http.query_of(target)).get("session")
    return values[0] if values and values[0] else None
