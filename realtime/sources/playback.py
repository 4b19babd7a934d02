"""Media played as if it were captured: the part every played source shares.

A `PlayedSource` delivers `(t, kind, payload)` events in media time (media second t
= session second t) into its `audio` ring and `frames` feed (and every frame to its
`frame_tap`): at the session clock's
pace when the policy follows the clock, else as fast as the consumers take it, at
most `read_ahead` seconds in front of what they `release`d. A subclass makes the
events (`_events`) and turns an audio payload into samples (`_samples`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from realtime.core.clock import SessionClock
from realtime.core.component import Policy, Worker
from realtime.core.streams import AudioRing, FrameFeed, Horizon
from realtime.sources import FrameTap

log = logging.getLogger(__name__)


class PlayedSource(Worker):
    def __init__(self, *, policy: Policy, read_ahead: float = 30.0, clock: SessionClock | None = None,
                 frame_tap: FrameTap | None = None) -> None:
        super().__init__()
        self.clock = clock if clock is not None else SessionClock(running=False)
        self.frame_tap = frame_tap if frame_tap is not None else FrameTap()
        self.policy = policy
        self.read_ahead = float(read_ahead)
        self.audio: AudioRing | None = None
        self.frames: FrameFeed | None = None
        self.released = Horizon()  # the consumers are done with everything before this
        self.released.advance(0.0)
        self.delivered = 0.0  # media time of the last item delivered

    def _events(self) -> Iterator[tuple[float, str, Any]]:
        """(t, "audio" | "frame", payload) in time order: audio stamped by its end."""
        raise NotImplementedError

    def _samples(self, payload: Any) -> np.ndarray:
        return payload

    def start(self) -> None:
        self.open()
        self.clock.begin()  # the pipeline began it already, after loading its models
        super().start()

    def release(self, t: float) -> None:
        self.released.advance(t)

    def run(self) -> None:
        clock, tap = self.clock, self.frame_tap
        try:
            for t, kind, payload in self._events():
                if self.stopping:
                    break
                if self.policy.follows_clock:
                    if not clock.sleep_until(t, self._stop):
                        break
                else:  # as fast as possible, but no further ahead of the consumers than read_ahead
                    while not self.released.wait_until(t - self.read_ahead, timeout=0.2) and not self.stopping:
                        pass
                    if self.stopping:
                        break
                if kind == "audio":
                    self.audio.append(self._samples(payload), start_time=0.0)
                else:
                    frame = np.ascontiguousarray(payload)
                    self.frames.put(t, frame)
                    tap(t, frame)
                self.delivered = t
        except Exception as exc:  # a decode error mid-file ends the source, reported
            self.error = exc
            log.error("%s: reading stopped: %s", self.name, exc)

    def finish(self) -> None:
        if self.audio is not None:
            self.audio.close()
        if self.frames is not None:
            self.frames.close()

    def stop(self) -> None:
        super().stop()
        self.released.end()
        if self.frames is not None:
            self.frames.close()

    @property
    def finished(self) -> bool:
        return self.done.is_set()

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "kind": self.kind, "name": self.name, "delivered_s": round(self.delivered, 3)}
