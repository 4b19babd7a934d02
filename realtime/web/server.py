"""The dashboard server: one port for the dashboard websocket (/ws), the browser capture
websocket (/capture), the dashboard's pages and files, GET /health, GET /metrics, the
model card and, when a recording is attached, its video and CSV.

`DashboardServer` is the facade callers hold, and a live component: start() returns once
the port is open (or raises), stop() asks the loop to close every connection (1001 going
away) and end, join(timeout) waits for it, error is what ended the loop, stats() its
figures. Its parts, each in the module named for what it holds:

    access.py     who may ask (Host, token, Origin)
    routes.py     the HTTP routes (pages, files, /health, /metrics, the recording)
    dashboard.py  the dashboard websocket: what a page gets, publishing, stalls
    channels.py   the streams (own session, others by link secret) and their pages
    capture.py    the capture websocket: a browser's camera and microphone as a session
    replay.py     the attached recording: video, CSV, labels
    figures.py    counters, /health, /metrics, a session page's stats
    http.py       responses, static files, ranges; deflate.py: per-message compression

The asyncio loop of `websockets` runs in the server's own thread.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import threading
import urllib.parse
from typing import Any, Callable

from websockets.asyncio.server import serve

from realtime.core import protocol
from realtime.sessions.hub import SessionHub
from realtime.sources.capture_wire import DEFAULT_LIMITS, CaptureLimits
from realtime.web import http
from realtime.web.access import Access, is_loopback
from realtime.web.capture import CaptureSocket
from realtime.web.channels import DEFAULT_HISTORY, Stream, Streams, session_key
from realtime.web.dashboard import DashboardChannel, DashboardSocket
from realtime.web.deflate import SmallMessageDeflateFactory
from realtime.web.figures import Figures
from realtime.web.files import default_client_dir, default_model_card
from realtime.web.replay import AttachedRecording
from realtime.web.routes import Routes

log = logging.getLogger(__name__)

JOIN_TIMEOUT = 10.0  # s `with DashboardServer(...)` waits for the loop to end


class DashboardServer:
    """Websocket + static dashboard + /health + /metrics on one port.

    `hello` is sent to every page first, then `session` (a protocol "session" message,
    replay mode) or the most recent `history` windows (live mode), then the current
    status. `recording` (a session folder, see attach_recording) lets the page download
    the whole session as CSV and, in replay, play its video and label it. `model_card`
    is the model's README.md (by default models/<hello.model.name>/README.md).
    `sessions` (a SessionHub) takes browser capture at /capture and serves each
    session at /s/<link secret>. A page that stops reading for `send_timeout` seconds
    (plus time for the size of what is being sent) is disconnected.
    """

    name = "dashboard-server"

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
        sessions: SessionHub | None = None,
        ssl_context: Any = None,
        capture_limits: CaptureLimits | None = None,
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
        if token is None and not is_loopback(host):
            raise ValueError(
                f"refusing to serve scores on {host!r} without a token: anyone on the network could read "
                "them; pass token=... (hcl-live --token) or bind 127.0.0.1"
            )
        self.host = host
        self.token = token
        self.port: int | None = None
        self.ssl_context = ssl_context
        self.error: BaseException | None = None
        self._requested_port = port
        self._ping_interval = ping_interval
        self._streams = Streams(hello=hello, session=session, history=history)
        self.model_card = pathlib.Path(model_card) if model_card is not None else default_model_card(self.hello)
        self._figures = Figures(streams=self._streams, metrics=metrics, sessions=sessions, listening=self._listening)
        self._recording = AttachedRecording(self._streams.own)
        self._dashboard = DashboardSocket(
            streams=self._streams, figures=self._figures, recording=self._recording, post=self._post,
            model_card=self.model_card,
            capture={"url": "/capture", "max_sessions": sessions.config.max_sessions} if sessions is not None else None,
            queue_size=queue_size, send_timeout=float(send_timeout), send_buffer=send_buffer,
            stats_interval=stats_interval,
        )
        self._capture = (CaptureSocket(hub=sessions, limits=capture_limits or DEFAULT_LIMITS, channels=self._dashboard)
                         if sessions is not None else None)
        self._routes = Routes(
            access=Access(host=host, token=token), streams=self._streams, figures=self._figures,
            recording=self._recording,
            client_dir=pathlib.Path(client_dir) if client_dir is not None else default_client_dir(),
            model_card=self.model_card, sessions=sessions,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        if recording is not None:
            self.attach_recording(recording)

    # ---------------------------------------------------------------- the server's own session
    hello = property(lambda self: self._streams.own.hello)
    session = property(lambda self: self._streams.own.session)
    recording = property(lambda self: self._streams.own.recording)

    @property
    def status(self) -> dict[str, Any]:
        return dict(self._streams.own.status)

    def publish(self, msg: dict[str, Any]) -> None:
        """Send a protocol message to every page of the server's own session. Thread-safe,
        never blocks; a message published before start() or after stop() goes only to history."""
        self._dashboard.publish(self._streams.own, msg)

    def set_status(self, state: str, detail: str = "") -> None:
        """Tell every page (and every page that connects later) what the session is
        doing: protocol.STATUS_LOADING, STATUS_RUNNING or STATUS_FINISHED. A live
        server starts "loading" and turns "running" by itself at the first window;
        call set_status(STATUS_FINISHED, ...) when a file has ended."""
        self._dashboard.set_status(self._streams.own, state, detail)

    def attach_recording(self, directory: str | pathlib.Path | None) -> None:
        """Serve this session folder's video (/recording/video.mp4) and its whole
        session as CSV (/recording/scores.csv); None detaches. Pages that connect
        afterwards learn of it in their hello."""
        self._streams.own.recording = pathlib.Path(directory) if directory is not None else None

    # ---------------------------------------------------------------- other sessions' streams
    def open_channel(self, key: str, hello: dict[str, Any]) -> DashboardChannel:
        """A stream for another session at /ws?session=<key> (its link secret); thread-safe."""
        return self._dashboard.open_channel(key, hello)

    def alias_channel(self, key: str) -> None:
        """Make /ws?session=<key> (and /s/<key>) reach the server's own session."""
        self._streams.alias(key)

    def close_channel(self, key: str) -> None:
        """Forget a channel: its link stops working (viewers already connected stay)."""
        self._dashboard.close_channel(key)

    def channel_for(self, key: str | None) -> Stream | None:
        """The stream of link secret `key` (None: the server's own), or None."""
        return self._streams.get(key)

    # ---------------------------------------------------------------- figures
    def health(self) -> dict[str, Any]:
        return self._figures.health()

    def metrics(self) -> dict[str, Any]:
        """Server figures plus the pipeline's (from the `metrics` callable)."""
        return self._figures.metrics()

    def stats(self) -> dict[str, Any]:
        """The component's own figures: running, error, pages connected, link secrets served."""
        health = self._figures.health()
        return {"running": self.running, "error": None if self.error is None else f"{type(self.error).__name__}: {self.error}",
                "port": self.port, "clients": health["clients"], "channels": len(self._streams),
                "windows_published": health["windows_published"], "windows_sent": health["windows_sent"]}

    # ---------------------------------------------------------------- where it is reached
    @property
    def url(self) -> str:
        """http(s)://host:port/ (with ?token=... when a token is set)."""
        base = f"{'https' if self.ssl_context is not None else 'http'}://{self.address}/"
        return base + (f"?token={urllib.parse.quote(self.token)}" if self.token else "")

    @property
    def ws_url(self) -> str:
        base = f"{'wss' if self.ssl_context is not None else 'ws'}://{self.address}/ws"
        return base + (f"?token={urllib.parse.quote(self.token)}" if self.token else "")

    @property
    def address(self) -> str:
        """host:port where this server is reached (a wildcard host as its loopback address)."""
        if self.port is None:
            raise RuntimeError("DashboardServer is not started; call start() first")
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    # ---------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 10.0) -> None:
        """Start listening; returns once the port is open (raises if it cannot)."""
        if self._thread is not None:
            raise RuntimeError("DashboardServer already started")
        self._ready.clear()
        self._start_error = None
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"dashboard server did not start listening on {self.host}:{self._requested_port} in {timeout} s")
        if self._start_error is not None:
            self._thread.join(timeout)
            self._thread = None
            err = self._start_error
            raise OSError(f"dashboard server could not listen on {self.host}:{self._requested_port}: {err}") from err

    def stop(self) -> None:
        """Ask the loop to close every connection (1001 going away) and end; returns at
        once, idempotent (join waits)."""
        loop, stop = self._loop, self._stop
        if loop is None or stop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def thread(self) -> threading.Thread | None:
        """The loop's thread once started (for its CPU time)."""
        return self._thread

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> "DashboardServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.join(JOIN_TIMEOUT)

    def _listening(self) -> bool:
        return self.running and self.port is not None

    def _post(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run fn(*args) on the loop, from any thread; False when the loop is not running."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed between the check and the call
            return False
        return True

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start() before the port opened, else kept in error
            if not self._ready.is_set():
                self._start_error = exc
                self._ready.set()
            else:
                self.error = exc
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
                process_request=self._routes.process_request,
                max_size=protocol.MAX_CLIENT_MESSAGE,
                max_queue=8,
                # deflate as websockets' default, but a replayed session (MBs) is sent
                # uncompressed: compressing it per viewer stalled the loop (realtime.web.deflate)
                compression=None,
                extensions=[SmallMessageDeflateFactory()],
                ssl=self.ssl_context,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_interval,
                close_timeout=2,
                server_header="hcl-live",
            )
        except BaseException as exc:
            self._start_error = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._figures.listening_now()
        self._ready.set()
        tasks = [asyncio.create_task(self._dashboard.send_stats()), asyncio.create_task(self._dashboard.watch_stalls())]
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
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

    async def _handle(self, ws: Any) -> None:
        """A websocket after its handshake: a capture client, or a page of one stream."""
        target = ws.request.path if getattr(ws, "request", None) is not None else "/ws"
        if http.request_path(target) == "/capture":
            return await self._capture.handle(ws)
        stream = self._streams.get(session_key(target))
        if stream is None:  # the session ended and was forgotten between the handshake and here
            await ws.close(1008, "no live session at this link")
            return
        await self._dashboard.handle(ws, stream)
