"""The capture websocket at /capture: a browser's camera and microphone as a session of
the session hub. Its hello opens a session (or is refused with the reason), its messages
feed the session's source, its close ends the session (the windows captured are scored,
the recording closes).

Server -> client: JSON text, {"type": "session", "session", "link", "stream"} once the
session is admitted, {"type": "refused", "reason"} before a refusal's close. A client
that breaks the format or the limits is closed with the code and reason of
realtime.sources.capture_wire; a refusal closes with 1013 (try again later).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from websockets.exceptions import ConnectionClosed

from realtime.sessions.hub import AdmissionRefused, ChannelOpener, SessionHub
from realtime.sources.capture_wire import CaptureKind, CaptureLimits, CaptureReceiver, Violation, close_reason

log = logging.getLogger(__name__)

CAPTURE_HELLO_TIMEOUT = 15.0  # s a capture client has to send its hello (getUserMedia may ask the person)


class CaptureSocket:
    """Browser sessions of `hub`, each published on a channel that `channels` opens."""

    def __init__(self, *, hub: SessionHub, limits: CaptureLimits, channels: ChannelOpener) -> None:
        self._hub = hub
        self._limits = limits
        self._channels = channels

    async def handle(self, ws: Any) -> None:
        """One capture client, from its hello to the end of its session."""
        hub = self._hub
        peer = str(ws.remote_address[0]) if ws.remote_address else "?"
        # the JSON bound of the other routes is far too small for a JPEG: this connection's own
        ws.protocol.max_message_size = self._limits.max_message_bytes
        rx = CaptureReceiver(self._limits)
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
                session = await asyncio.to_thread(hub.open_browser, rx.hello, peer=peer, channels=self._channels)
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
            idle = self._limits.idle_seconds
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
