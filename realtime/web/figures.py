"""The dashboard server's figures: its counters, GET /health, GET /metrics (its own
figures plus the pipeline's and, for the operator, every session's), and the stats a
session's own page gets. Counters are bumped from the loop and read from any thread."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from realtime.core.component import percentiles
from realtime.web.channels import Streams

LATENCY_WINDOW = 256  # how many recent windows the latency percentiles cover


@dataclass
class Counters:
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


class Figures:
    """`metrics` is the pipeline's figures (a callable, run off the loop); `sessions` the
    session hub (or None); `listening` says whether the server is up (for /health)."""

    def __init__(self, *, streams: Streams, metrics: Callable[[], dict[str, Any]] | None, sessions: Any,
                 listening: Callable[[], bool]) -> None:
        self._streams = streams
        self._metrics = metrics
        self._sessions = sessions
        self._listening = listening
        self._counters = Counters()
        self._lock = threading.Lock()  # guards the counters read from other threads
        self.started_at = time.monotonic()

    def listening_now(self) -> None:
        """The server just opened its port: uptime counts from here."""
        self.started_at = time.monotonic()

    # ---------------------------------------------------------------- counting (the loop)
    def published(self, window: dict[str, Any] | None) -> None:
        """One message fanned out; `window` when it is a window (its drops and latencies)."""
        with self._lock:
            c = self._counters
            c.messages_published += 1
            if window is None:
                return
            c.windows_published += 1
            c.last_pipeline_dropped = int(window.get("dropped", 0) or 0)
            lat = window.get("latency_ms") or {}
            for stage, value in lat.items():
                if isinstance(value, (int, float)):
                    c.add_latency(stage, value)
            stages = [v for v in lat.values() if isinstance(v, (int, float))]
            if stages:
                c.add_latency("total", sum(stages))

    def sent(self, is_window: bool, t_published: float | None = None) -> None:
        """One message sent to a client; a window published at `t_published` adds to server_send."""
        with self._lock:
            self._counters.messages_sent += 1
            if is_window:
                self._counters.windows_sent += 1
                if t_published is not None:
                    self._counters.add_latency("server_send", (time.perf_counter() - t_published) * 1000)

    def count(self, name: str) -> None:
        """One more client_drops / refused_client_messages / connections / stalled_disconnects."""
        with self._lock:
            setattr(self._counters, name, getattr(self._counters, name) + 1)

    # ---------------------------------------------------------------- reading (any thread)
    def health(self) -> dict[str, Any]:
        with self._lock:
            return {
                "ok": self._listening(),
                "mode": self._streams.own.hello.get("mode", "live"),
                "uptime": round(time.monotonic() - self.started_at, 3),
                "clients": len(self._streams.clients),
                "windows_published": self._counters.windows_published,
                "windows_sent": self._counters.windows_sent,
            }

    def metrics(self) -> dict[str, Any]:
        """Server figures plus the pipeline's (from the `metrics` callable)."""
        return self._compose(self._pipeline())

    async def metrics_async(self, *, sessions: bool = False) -> dict[str, Any]:
        """metrics() from the loop: the pipeline's callable runs off the loop. `sessions`
        adds the operator view (with every session's link: for /metrics only, never
        for the pages' stats)."""
        pipeline = await asyncio.to_thread(self._pipeline) if self._metrics is not None else {}
        body = self._compose(pipeline)
        if sessions and self._sessions is not None:
            body["sessions"] = await asyncio.to_thread(self._sessions.stats)
        return body

    def session_figures(self, key: str) -> dict[str, Any]:
        """The stats a session's own page gets: its pipeline's latency and drops."""
        session = self._sessions.by_secret(key) if self._sessions is not None else None
        if session is None or getattr(session, "pipeline", None) is None:  # an ended session lets its pipeline go
            return {}
        try:
            pipeline = session.pipeline.metrics()
        except Exception as exc:  # a broken figure must not stop the stats
            return {"error": f"{type(exc).__name__}: {exc}"}
        stream = self._streams.get(key)
        drops = sum(c.dropped for c in stream.clients.values()) if stream is not None else 0
        return {"session": session.id, "latency_ms": pipeline.get("latency_ms", {}),
                "dropped_windows": pipeline.get("dropped_windows", 0), "client_drops": drops, "pipeline": pipeline}

    def _pipeline(self) -> dict[str, Any]:
        if self._metrics is None:
            return {}
        try:
            return dict(self._metrics())
        except Exception as exc:  # a broken metrics source must not break /metrics
            return {"error": f"{type(exc).__name__}: {exc}"}

    def _compose(self, pipeline: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            c = self._counters
            latency = {stage: percentiles(values) for stage, values in c.latencies.items()}
            clients = {
                cl.id: {"peer": cl.peer, "sent": cl.sent, "dropped": cl.dropped, "queued": cl.queue.qsize()}
                for cl in list(self._streams.clients.values())
            }
            return {
                "uptime": round(time.monotonic() - self.started_at, 3),
                "mode": self._streams.own.hello.get("mode", "live"),
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
