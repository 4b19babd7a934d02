"""Simulated capture clients: a clip as the capture messages a browser would send,
and a sender that sends them at the browser's pace (for tests and benches).

    events = clip_messages(audio, jpeg_frames, fps=10)
    send_paced(websocket.send, events)                   # over a socket
    send_paced(lambda d: source.feed(unpack(d)), events)   # straight into a BrowserSource
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

import numpy as np

from realtime.sources.capture_wire import CaptureHello, CaptureKind, pack, pack_audio, pack_hello

SR = 16000


def jpeg_of(rgb: np.ndarray, quality: int = 80) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def clip_messages(
    audio: np.ndarray | None,
    frames: Sequence[bytes] | None,
    *,
    fps: float = 10.0,
    chunk_seconds: float = 0.1,
    duration: float | None = None,
    agent: str = "simulated",
) -> list[tuple[float, bytes]]:
    """(send time s, message) of a whole capture: hello, audio chunks sent as each fills
    up, JPEGs at `fps` (cycling through `frames`), end. Client times start at 0."""
    chunk = int(round(chunk_seconds * SR))
    if duration is None:
        duration = len(audio) / SR if audio is not None else 0.0
    events: list[tuple[float, int, float, object]] = []  # (send, kind, client t, payload)
    if audio is not None:
        for i in range(len(audio) // chunk):
            events.append(((i + 1) * chunk / SR, 2, i * chunk / SR, audio[i * chunk : (i + 1) * chunk]))
    if frames:
        for k in range(int(duration * fps)):
            t = k / fps + 0.5 / fps
            events.append((t, 3, t, frames[k % len(frames)]))
    events.sort(key=lambda e: e[0])
    hello = CaptureHello(audio=audio is not None, video=bool(frames), fps=fps, agent=agent)
    out = [(0.0, pack_hello(hello))]
    for seq, (send, kind, t, payload) in enumerate(events, start=1):
        data = pack_audio(seq, t * 1000, payload) if kind == 2 else pack(CaptureKind.VIDEO, seq, t * 1000, payload)
        out.append((send, data))
    out.append((duration, pack(CaptureKind.END, len(events) + 1, duration * 1000)))
    return out


def send_paced(
    send: Callable[[bytes], None],
    events: Sequence[tuple[float, bytes]],
    *,
    pace: float = 1.0,
    stop: threading.Event | None = None,
) -> int:
    """Send each message at its send time divided by `pace` (1 = real time) from now;
    returns how many were sent (fewer when `stop` was set)."""
    start = time.monotonic()
    for n, (t, data) in enumerate(events):
        delay = start + t / pace - time.monotonic()
        if stop is not None:
            if stop.wait(max(0.0, delay)):
                return n
        elif delay > 0:
            time.sleep(delay)
        send(data)
    return len(events)


def live_options():
    """PipelineOptions of the live policy (`policy=`, or the older `strict`/`realtime` pair)."""
    import dataclasses

    from realtime.core.component import Policy
    from realtime.pipeline.live import PipelineOptions

    if "policy" in {f.name for f in dataclasses.fields(PipelineOptions)}:
        return PipelineOptions(policy=Policy.LIVE)
    return PipelineOptions(strict=False, realtime=True)
