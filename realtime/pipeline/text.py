"""`TextEncoding`: one session's window texts encoded once, on one thread.

    text = TextEncoding(encode=scorer.encode_text, guess=lambda: next_window_text())
    text.start()
    feats = text.encode(window.text)                       # windowing: waits for it
    feats = text.encode(revised_text, Priority.REVISION)   # scoring loop: waits for it
    text.poke()                                            # words changed: encode the guess ahead

Requests are futures keyed by text. A text that is cached is served at once on the
caller's thread; a text already queued or being encoded gets the same future (never
encoded twice); anything else joins the queue of its priority. The thread takes the
WINDOW queue first, then REVISION, then one guess: a window waits behind at most the one
encoding in flight. Guesses (what the next window's text will be, `guess()` computed on
this thread when `poke()`d, or `prefetch(text)`) are never waited for: a newer one
replaces the queued one, and a guess that a window then asks for is moved up to the
window's priority.

One per session (LivePipeline builds it), also when the scorer is shared by many sessions
(`realtime.sessions.services.ScorerClient`, `SharedScorer`, `RemoteScorer`): their
`encode_text` already is the shared part (one cache for every session, one encoding at a
time under the scorer's lock; Ray Serve's deployment answers sessions' calls concurrently).
A per-session thread keeps that as it is and orders one session's own requests (its
window before its guesses); one thread for all sessions would queue every session's
window behind the others' and serialise Ray Serve's remote calls, which run side by side today.
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

import numpy as np

from realtime.core.component import RecentStats, Worker

log = logging.getLogger(__name__)
_GUESS = object()  # the thread's turn to read the guess


class Priority(enum.IntEnum):
    """Who asks: a window being assembled, a revision being scored, a guess ahead of time."""

    WINDOW = 0
    REVISION = 1
    GUESS = 2


class TextStopped(RuntimeError):
    """The text encoder stopped before it encoded the text asked for."""


class TextEncoding(Worker):
    """Encodes a session's texts on its own thread (see the module docstring).

    encode: text -> (L, D_t) features (the scorer's `encode_text`); guess: the text the
    next window will probably have, read on this thread after `poke()` (None: no guesses
    but `prefetch`); keep: encoded texts kept for callers (memory bound)."""

    name = "text-encoder"

    def __init__(self, *, encode: Callable[[str], np.ndarray], guess: Callable[[], str] | None = None,
                 keep: int = 16) -> None:
        super().__init__()
        self._encode = encode
        self.guess = guess
        self.keep = max(1, int(keep))
        self._cond = threading.Condition()
        self._cache: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        self._queued: dict[str, tuple[Priority, Future]] = {}  # queued or being encoded
        self._queues: dict[Priority, collections.deque[str]] = {p: collections.deque() for p in Priority}
        self._poked = False
        self.encoded = 0  # texts encoded (each at most once while kept)
        self.hits = 0  # requests served from the kept texts
        self.shared = 0  # requests given the future of a text already queued or in flight
        self.dropped_guesses = 0  # guesses replaced by a newer one before their turn
        self.encode_ms = RecentStats()
        self.wait_ms = RecentStats()  # how long a window or a revision waited for its text

    # ---------------------------------------------------------------- callers
    def request(self, text: str, priority: Priority = Priority.WINDOW) -> Future:
        """The future of `text`'s features (any thread; never blocks)."""
        with self._cond:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                self.hits += 1
                done: Future = Future()
                done.set_result(cached)
                return done
            if self.stopping:
                failed: Future = Future()
                failed.set_exception(TextStopped(f"the text encoder stopped; {text!r} was not encoded"))
                return failed
            if text in self._queued:
                queued_at, future = self._queued[text]
                self.shared += 1
                if priority < queued_at and text in self._queues[queued_at]:  # queued, not in flight: move it up
                    self._queues[queued_at].remove(text)
                    self._queues[priority].append(text)
                    self._queued[text] = (priority, future)
                return future
            future = Future()
            if priority is Priority.GUESS:
                while self._queues[Priority.GUESS]:  # only the newest guess is worth encoding
                    stale = self._queues[Priority.GUESS].popleft()
                    self._queued.pop(stale)[1].cancel()
                    self.dropped_guesses += 1
            self._queued[text] = (priority, future)
            self._queues[priority].append(text)
            self._cond.notify_all()
            return future

    def encode(self, text: str, priority: Priority = Priority.WINDOW) -> np.ndarray:
        """`text`'s features, waiting for the encoder's thread if they are not kept."""
        t0 = time.perf_counter()
        out = self.request(text, priority).result()
        self.wait_ms.add((time.perf_counter() - t0) * 1000)
        return out

    def revision(self, text: str) -> np.ndarray:
        """A revised window's text (the scoring loop): after waiting windows, before guesses."""
        return self.encode(text, Priority.REVISION)

    def prefetch(self, text: str) -> None:
        """Encode `text` ahead of time if nothing waits (no one waits for it)."""
        self.request(text, Priority.GUESS)

    def poke(self, *_: Any) -> None:
        """The words or the window position changed: encode the next window's guess."""
        with self._cond:
            self._poked = True
            self._cond.notify_all()

    # ---------------------------------------------------------------- thread
    def _next(self) -> str | object | None:
        """The next text to encode (WINDOW, REVISION, GUESS order), or None when stopping."""
        with self._cond:
            while not self.stopping:
                for p in Priority:
                    if self._queues[p]:
                        return self._queues[p].popleft()
                if self._poked and self.guess is not None:
                    self._poked = False
                    return _GUESS  # compute the guess (outside the lock)
                self._cond.wait(0.5)
            return None

    def run(self) -> None:
        while True:
            text = self._next()
            if text is None:
                return
            if text is _GUESS:
                try:
                    guessed = self.guess()
                except Exception:  # a guess is only a hint
                    log.debug("text guess failed", exc_info=True)
                    continue
                self.prefetch(guessed)
                continue
            self._run_one(text)

    def _run_one(self, text: str) -> None:
        with self._cond:
            _, future = self._queued[text]
        t0 = time.perf_counter()
        try:
            feats = self._encode(text)
        except BaseException as exc:
            with self._cond:
                self._queued.pop(text, None)
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.encode_ms.add((time.perf_counter() - t0) * 1000)
        with self._cond:
            self.encoded += 1
            self._cache[text] = feats
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
            self._queued.pop(text, None)
        if not future.done():
            future.set_result(feats)

    def stop(self) -> None:
        super().stop()
        with self._cond:
            self._cond.notify_all()

    def finish(self) -> None:
        """Whatever is still queued fails (a caller waiting gets `TextStopped`)."""
        with self._cond:
            pending = list(self._queued.values())
            self._queued.clear()
            for q in self._queues.values():
                q.clear()
        for _, future in pending:
            if not future.done():
                future.set_exception(TextStopped("the text encoder stopped before encoding this text"))

    def stats(self) -> dict[str, Any]:
        with self._cond:
            queued = {p.name.lower(): len(q) for p, q in self._queues.items()}
            kept = len(self._cache)
        return {**super().stats(), "encoded": self.encoded, "hits": self.hits, "shared": self.shared,
                "dropped_guesses": self.dropped_guesses, "queued": queued, "kept": kept,
                "encode_ms": self.encode_ms.summary(), "wait_ms": self.wait_ms.summary()}
