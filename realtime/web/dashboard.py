"""The dashboard websocket at /ws (and /ws?session=<link secret>): what a page gets when
it connects, what is published to it, and what it may ask.

A page gets its stream's hello first (with what the server adds: how much history it
holds, where the model card and the recording are), then the replayed session or the
most recent windows, then the status (loading / running / finished), the last error and,
in a replay, the labels; then whatever is published. `publish` may be called from any
thread and never blocks: every page has its own bounded queue, and when a page falls
behind its oldest queued message is dropped and counted, so a stalled browser never
slows the pipeline or the other pages. A page that takes no data for `send_timeout`
seconds (plus time for the size of what is being sent) is disconnected.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import pathlib
import socket
import time
from typing import Any, Callable

from websockets.exceptions import ConnectionClosed

from realtime.core import protocol
from realtime.web.channels import Client, Stream, Streams
from realtime.web.figures import Figures
from realtime.web.replay import AttachedRecording

log = logging.getLogger(__name__)

SESSION_RESEND_SECONDS = 2.0  # one client may ask for the whole session at most this often

Post = Callable[..., bool]  # post(fn, *args): run fn(*args) on the server's loop; False when it is not running


class DashboardChannel:
    """A session's publish channel (DashboardServer.open_channel): what its pipeline
    publishes goes to its own viewers only."""

    def __init__(self, dashboard: "DashboardSocket", stream: Stream) -> None:
        self._dashboard = dashboard
        self._stream = stream
        self.key = stream.key

    def publish(self, msg: dict[str, Any]) -> None:
        self._dashboard.publish(self._stream, msg)

    def set_status(self, state: str, detail: str = "") -> None:
        self._dashboard.set_status(self._stream, state, detail)

    def attach_recording(self, directory: str | pathlib.Path | None) -> None:
        self._stream.recording = pathlib.Path(directory) if directory is not None else None

    @property
    def status(self) -> dict[str, Any]:
        return dict(self._stream.status)

    @property
    def viewers(self) -> int:
        return len(self._stream.clients)


class DashboardSocket:
    """The pages of every stream in `streams`. `post` runs a callable on the server's loop
    (from any thread); `capture` is the /capture hello a page gets when browser sessions
    are taken (None: none)."""

    def __init__(
        self,
        *,
        streams: Streams,
        figures: Figures,
        recording: AttachedRecording,
        post: Post,
        model_card: pathlib.Path | None,
        capture: dict[str, Any] | None,
        queue_size: int,
        send_timeout: float,
        send_buffer: int | None,
        stats_interval: float,
    ) -> None:
        self._streams = streams
        self._figures = figures
        self._recording = recording
        self._post = post
        self._model_card = model_card
        self._capture = capture
        self._queue_size = queue_size
        self._send_timeout = send_timeout
        self._send_buffer = send_buffer
        self._stats_interval = stats_interval
        self._ids = itertools.count(1)

    # ---------------------------------------------------------------- channels (any thread)
    def open_channel(self, key: str, hello: dict[str, Any]) -> DashboardChannel:
        """A stream for another session at /ws?session=<key> (its link secret)."""
        return DashboardChannel(self, self._streams.open(key, hello))

    def close_channel(self, key: str) -> None:
        """Forget a channel: its link stops working (viewers already connected stay)."""
        self._streams.close(key)

    # ---------------------------------------------------------------- publish (any thread)
    def publish(self, stream: Stream, msg: dict[str, Any]) -> None:
        """Send a protocol message to every page of `stream`; never blocks. Published while
        the server is not running, a window goes only to the history."""
        text = json.dumps(msg, separators=(",", ":"), allow_nan=False)
        is_window = msg.get("type") == "window"
        if msg.get("type") == "error":
            stream.last_error = text  # a page that opens later is told too (e.g. the recording stopped)
        if is_window and stream.status.get("state") == protocol.STATUS_LOADING:
            # the first window means the models are loaded: say so before it arrives
            self.set_status(stream, protocol.STATUS_RUNNING)
        if not self._post(self._fanout, text, msg if is_window else None, time.perf_counter(), stream) and is_window:
            stream.remember(text)

    def set_status(self, stream: Stream, state: str, detail: str = "") -> None:
        msg = protocol.status_message(state, detail)
        stream.status = msg
        self._post(self._fanout, json.dumps(msg, separators=(",", ":")), None, time.perf_counter(), stream)

    # ---------------------------------------------------------------- on the loop
    def _fanout(self, text: str, window: dict[str, Any] | None, t_published: float, stream: Stream) -> None:
        self._figures.published(window)
        if window is not None:
            stream.remember(text)
        item = (text, window is not None, t_published)
        for client in list(stream.clients.values()):
            self._enqueue(client, item)

    def _enqueue(self, client: Client, item: tuple[str, bool, float]) -> None:
        q = client.queue
        while q.full():
            try:
                q.get_nowait()
            except asyncio.QueueEmpty:
                break
            client.dropped += 1
            self._figures.count("client_drops")
        q.put_nowait(item)

    def hello_for(self, stream: Stream) -> dict[str, Any]:
        """The hello a connecting page gets: the pipeline's, plus what this server holds
        (history kept and cut, the model card, the recording's video and CSV). Another
        session's recording is on disk but not served: its page exports what it holds."""
        hello = dict(stream.hello)
        hello["history"] = {
            "kept": len(stream.history) if stream.session is None else len((stream.session or {}).get("windows") or ()),
            "cut": stream.history_cut if stream.session is None else 0,
            "limit": stream.history.maxlen,
        }
        hello["model_card"] = "/model-card" if self._model_card is not None else None
        has_video = self._recording.file("video.mp4") is not None
        hello["recording"] = (
            {"csv": "/recording/scores.csv", "video": "/recording/video.mp4" if has_video else None}
            if stream is self._streams.own and self._recording.directory is not None
            else None
        )
        if hello["recording"] is not None and self._recording.labels_here(stream):  # a replay: its page may label it
            hello["recording"]["labels"] = "/recording/labels.json"
        if self._capture is not None:
            hello["capture"] = dict(self._capture)
        return hello

    async def handle(self, ws: Any, stream: Stream) -> None:
        """One page watching `stream`, from its connection to its close."""
        client = Client(
            id=f"c{next(self._ids)}",
            queue=asyncio.Queue(maxsize=self._queue_size),
            peer=str(ws.remote_address[0]) if ws.remote_address else "?",
            connected_at=time.monotonic(),
            ws=ws,
            channel=stream,
        )
        self._limit_kernel_buffer(ws)
        # snapshot + register without an await in between: every window is sent exactly once
        initial = [json.dumps(self.hello_for(stream), separators=(",", ":"))]
        if stream.session_text is not None:
            initial.append(stream.session_text)
        else:
            initial.extend(stream.history)
        initial.append(json.dumps(stream.status))
        if stream.last_error is not None:
            initial.append(stream.last_error)
        if self._recording.labels_here(stream):
            initial.append(await asyncio.to_thread(self._recording.labels_text))
        self._streams.clients[client.id] = client
        stream.clients[client.id] = client
        self._figures.count("connections")
        sender = asyncio.create_task(self._send_loop(ws, client, initial))
        try:
            async for raw in ws:
                await self._on_client_message(client, raw)
        except ConnectionClosed:
            pass
        finally:
            self._streams.clients.pop(client.id, None)
            stream.clients.pop(client.id, None)
            sender.cancel()
            try:
                await sender
            except (asyncio.CancelledError, ConnectionClosed):
                pass

    def _limit_kernel_buffer(self, ws: Any) -> None:
        """Cap what the kernel buffers for one client (Linux autotunes it up to MBs), so a
        slow client backs up into its own bounded queue, where old windows are dropped."""
        if self._send_buffer is None:
            return
        sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
            except OSError:
                pass

    async def _send(self, ws: Any, client: Client, text: str) -> None:
        """ws.send, timed: the stall watchdog cuts off a client whose send has been
        pending too long (see watch_stalls)."""
        client.send_started = time.monotonic()
        client.send_limit = self._send_timeout + len(text) / 262144
        try:
            await ws.send(text)
        finally:
            client.send_started = None

    async def _send_loop(self, ws: Any, client: Client, initial: list[str]) -> None:
        try:
            for text in initial:
                await self._send(ws, client, text)
                client.sent += 1
                self._figures.sent(text.startswith('{"type":"window"'))
            while True:
                text, is_window, t_published = await client.queue.get()
                await self._send(ws, client, text)
                client.sent += 1
                self._figures.sent(is_window, t_published)
        except ConnectionClosed:
            pass

    async def watch_stalls(self) -> None:
        """Disconnect clients that took no data for send_timeout seconds (plus 1 s per
        256 KiB being sent). The websocket keepalive cannot do this: its ping waits
        behind the blocked send, so its timeout never starts. Runs until cancelled."""
        period = min(1.0, self._send_timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for client in list(self._streams.clients.values()):
                started = client.send_started
                if started is None or now - started <= client.send_limit or client.ws is None:
                    continue
                log.warning(
                    "dashboard client %s (%s) took no data for %.0f s: disconnecting it", client.id, client.peer, now - started
                )
                self._figures.count("stalled_disconnects")
                client.send_started = None
                if client.ws.transport is not None:
                    client.ws.transport.abort()

    async def send_stats(self) -> None:
        """Every stats_interval, the server's figures to its own session's pages and each
        other session's own figures to that session's pages. Runs until cancelled."""
        while True:
            await asyncio.sleep(self._stats_interval)
            own = self._streams.own
            if own.clients:
                body = await self._figures.metrics_async()
                self._send_to_all(own, body)
            for key, stream in self._streams.others():
                if not stream.clients:
                    continue
                self._send_to_all(stream, await asyncio.to_thread(self._figures.session_figures, key))

    def _send_to_all(self, stream: Stream, figures: dict[str, Any]) -> None:
        text = json.dumps(protocol.stats_message(figures), separators=(",", ":"), default=str)
        item = (text, False, time.perf_counter())
        for client in list(stream.clients.values()):
            self._enqueue(client, item)

    async def _on_client_message(self, client: Client, raw: str | bytes) -> None:
        def refuse(why: str) -> None:
            self._figures.count("refused_client_messages")
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
                self._figures.count("refused_client_messages")
                return None
            client.last_session_request = now
            self._enqueue(client, (session_text, False, time.perf_counter()))
        elif kind in ("set_label", "delete_label"):
            if not self._recording.labels_here(client.channel):
                return refuse("labels are kept beside a replayed recording: open it with hcl-replay SESSION_DIR")
            text = await asyncio.to_thread(self._recording.change_labels, msg)
            for other in list(client.channel.clients.values()):  # every tab of the replay sees the same labels
                self._enqueue(other, (text, False, time.perf_counter()))
        else:
            refuse(f"unknown message type {kind!r}; expected 'ping', 'get_session', 'set_label' or 'delete_label'")
