"""The capture receiving step on a real websocket on 127.0.0.1: a well-behaved client
streams to the end, a flooding or malformed one is closed with the code and reason
`CaptureReceiver` gives, and a message over `max_message_bytes` is refused by the
websocket layer before it is read. The handler is the recipe docs/capture-protocol.md
gives the server."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from realtime.sources.capture_wire import (
    CLOSE_INVALID,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CaptureHello,
    CaptureKind,
    CaptureLimits,
    CaptureReceiver,
    Violation,
    pack,
    pack_audio,
    pack_hello,
)

websockets = pytest.importorskip("websockets")
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402
from websockets.sync.server import serve  # noqa: E402


class CaptureServer:
    def __init__(self, limits: CaptureLimits) -> None:
        self.limits = limits
        self.received: list = []
        self.closed: list[Violation] = []
        self.done = threading.Event()
        # close_timeout: a flooding client's unread messages hold up the closing handshake;
        # do not wait the default 10 s for it
        self.server = serve(self.handle, "127.0.0.1", 0, max_size=limits.max_message_bytes, close_timeout=1)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/capture"

    def handle(self, ws) -> None:
        rx = CaptureReceiver(self.limits)
        try:
            for data in ws:
                got = rx.receive(time.monotonic(), data)
                if isinstance(got, Violation):
                    self.closed.append(got)
                    ws.close(got.code, got.reason)
                    return
                self.received.append(got)
                if got.kind is CaptureKind.END:
                    return
        finally:
            self.done.set()

    def __enter__(self) -> "CaptureServer":
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()


def closed_with(ws) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as err:
        for _ in range(1000):
            ws.recv(timeout=5)
    return err.value.rcvd.code, err.value.rcvd.reason


def test_a_normal_client_streams_to_the_end():
    with CaptureServer(CaptureLimits()) as server, connect(server.url) as ws:
        ws.send(pack_hello(CaptureHello(video=False)))
        for i in range(1, 21):
            ws.send(pack_audio(i, (i - 1) * 100.0, np.zeros(1600, np.int16)))
        ws.send(pack(CaptureKind.END, 21, 2000.0))
        assert server.done.wait(5)
    assert [m.kind for m in server.received] == [CaptureKind.HELLO] + [CaptureKind.AUDIO] * 20 + [CaptureKind.END]
    assert not server.closed


def test_a_flooding_client_is_closed_with_the_reason():
    with CaptureServer(CaptureLimits(max_messages_per_second=50)) as server, connect(server.url) as ws:
        ws.send(pack_hello(CaptureHello(video=False)))
        for i in range(1, 80):
            try:
                ws.send(pack_audio(i, i * 1.0, np.zeros(16, np.int16)))
            except ConnectionClosed:
                break
        code, reason = closed_with(ws)
    assert code == CLOSE_POLICY and reason.startswith("too many messages: 51 in 1 s (limit 50/s)")
    assert len(server.received) == 50


def test_a_malformed_client_is_closed_with_the_reason():
    with CaptureServer(CaptureLimits()) as server, connect(server.url) as ws:
        ws.send(pack_audio(0, 0.0, np.zeros(16, np.int16)))  # no hello first
        code, reason = closed_with(ws)
    assert code == CLOSE_INVALID and reason == "the first capture message must be a hello, got audio"


def test_a_message_over_the_size_limit_is_refused_by_the_socket():
    limits = CaptureLimits(max_jpeg_bytes=10_000, max_audio_seconds=0.25)
    with CaptureServer(limits) as server, connect(server.url) as ws:
        ws.send(pack_hello(CaptureHello()))
        ws.send(pack(CaptureKind.VIDEO, 1, 0.0, b"\xff\xd8" + bytes(limits.max_message_bytes)))
        code, _ = closed_with(ws)
    assert code == CLOSE_TOO_BIG
    assert [m.kind for m in server.received] == [CaptureKind.HELLO]


def test_a_server_with_a_small_max_size_can_raise_it_for_the_capture_connection():
    """The dashboard server's sockets take 4 KiB JSON; its capture route raises the bound
    for that connection only (websockets reads `protocol.max_message_size` per frame)."""
    import cv2
    from media_fixtures import face_image

    limits = CaptureLimits()
    got: list = []

    def handle(ws) -> None:
        if ws.request.path == "/capture":
            ws.protocol.max_message_size = limits.max_message_bytes
        rx = CaptureReceiver(limits)
        for data in ws:
            got.append((ws.request.path, rx.receive(time.monotonic(), data)))

    ok, buf = cv2.imencode(".jpg", face_image(512), [cv2.IMWRITE_JPEG_QUALITY, 95])
    jpeg = buf.tobytes()
    assert 4096 < len(jpeg) < limits.max_jpeg_bytes
    server = serve(handle, "127.0.0.1", 0, max_size=4096, close_timeout=1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.socket.getsockname()[1]
    try:
        with connect(f"ws://127.0.0.1:{port}/capture") as ws:
            ws.send(pack_hello(CaptureHello(audio=False)))
            ws.send(pack(CaptureKind.VIDEO, 1, 0.0, jpeg))
            ws.send(pack(CaptureKind.END, 2, 100.0))
            time.sleep(0.3)
        with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            ws.send(pack_hello(CaptureHello(audio=False)))
            ws.send(pack(CaptureKind.VIDEO, 1, 0.0, jpeg))
            code, _ = closed_with(ws)
    finally:
        server.shutdown()
    capture = [m for path, m in got if path == "/capture"]
    assert [m.kind for m in capture] == [CaptureKind.HELLO, CaptureKind.VIDEO, CaptureKind.END]
    assert capture[1].payload == jpeg
    assert code == CLOSE_TOO_BIG  # the other route kept the small bound
