"""Who watches what: a session's stream (what a page that connects gets first, and who is
watching), a connected page, and the server's streams by link secret.

The server's own session is the stream at /ws; every other session's is at
/ws?session=<its link secret> (its page at /s/<secret>), and only its viewers get its
windows. Everything here is touched from the server's loop, except `Streams.open`,
`alias` and `close` (any thread: a dict assignment).
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import pathlib
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from realtime.core import protocol
from realtime.web import http

DEFAULT_HISTORY = 7200  # windows a late tab gets: 1 h at the default 0.5 s step
SESSION_LINK = "/s/"  # a session's page: /s/<link secret>; its stream: /ws?session=<link secret>


@dataclass
class Stream:
    """One session's stream: its hello, the history of windows (or a replayed session,
    serialised once), the status, the last error, and its viewers."""

    key: str | None  # None: the server's own session
    hello: dict[str, Any]
    status: dict[str, Any]
    history: collections.deque
    session: dict[str, Any] | None = None
    session_text: str | None = None
    history_cut: int = 0
    last_error: str | None = None
    recording: pathlib.Path | None = None
    clients: dict[str, "Client"] = field(default_factory=dict)

    def remember(self, text: str) -> None:
        if self.history.maxlen is not None and len(self.history) == self.history.maxlen:
            self.history_cut += 1
        self.history.append(text)


@dataclass
class Client:
    """One connected page: its bounded queue of (text, is_window, t_published) and its figures."""

    id: str
    queue: asyncio.Queue
    peer: str
    connected_at: float
    channel: Stream | None = None
    sent: int = 0
    dropped: int = 0
    last_session_request: float = -math.inf  # monotonic time of the last get_session served
    last_session_notice: float = -math.inf  # ... and of the last "too often" notice
    send_started: float | None = None  # monotonic time the pending send began
    send_limit: float = 0.0  # seconds that send may take
    ws: Any = None


class Streams:
    """The server's own stream, the other sessions' streams by link secret, and every
    connected page (`clients`, whichever stream it watches)."""

    def __init__(self, *, hello: dict[str, Any], session: dict[str, Any] | None, history: int) -> None:
        self.history_limit = max(0, history)
        # a replayed session is serialised once: every client and every get_session gets
        # this same string, so a flood of requests costs no CPU and no copies
        self.own = Stream(
            key=None,
            hello=dict(hello),
            session=session,
            session_text=json.dumps(session, separators=(",", ":")) if session is not None else None,
            status=protocol.status_message(
                protocol.STATUS_FINISHED if session is not None else protocol.STATUS_LOADING,
                "recorded session" if session is not None else "loading the models; the first score follows",
            ),
            history=collections.deque(maxlen=self.history_limit),
        )
        self._by_key: dict[str, Stream] = {}
        self.clients: dict[str, Client] = {}

    def open(self, key: str, hello: dict[str, Any]) -> Stream:
        """A new stream for another session at /ws?session=<key>."""
        if not key or key in self._by_key:
            raise ValueError("a channel needs a new, non-empty key")
        stream = Stream(
            key=key,
            hello=dict(hello),
            status=protocol.status_message(protocol.STATUS_LOADING, "starting the session; the first score follows"),
            history=collections.deque(maxlen=self.history_limit),
        )
        self._by_key[key] = stream
        return stream

    def alias(self, key: str) -> None:
        """Make /ws?session=<key> (and /s/<key>) reach the server's own session."""
        self._by_key[key] = self.own

    def close(self, key: str) -> None:
        """Forget a stream: its link stops working (viewers already connected stay)."""
        self._by_key.pop(key, None)

    def get(self, key: str | None) -> Stream | None:
        """The stream of link secret `key` (None: the server's own), or None."""
        return self.own if key is None else self._by_key.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        """How many link secrets are served."""
        return len(self._by_key)

    def others(self) -> list[tuple[str, Stream]]:
        """(key, stream) of the other sessions (not the own one under an alias)."""
        return [(k, s) for k, s in list(self._by_key.items()) if s is not self.own]


def session_key(target: str) -> str | None:
    """The link secret in ?session=... of a websocket URL, or None."""
    values = urllib.parse.parse_qs(http.query_of(target)).get("session")
    return values[0] if values and values[0] else None
