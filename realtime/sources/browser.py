"""A browser's camera and microphone as a capture source, fed by the server with the
capture messages of one client (realtime.sources.capture_wire).

The server calls `feed(msg)` from its receiving thread for every audio / video
message and `end()` when the client sends "end" or closes. Audio goes straight into
the `AudioRing` (int16 -> float32, no other work on the server's thread); a JPEG is
kept in a one-slot, latest-only pending slot and decoded on this source's own thread
into the latest-only `FrameFeed` (like a camera), so a slow decoder never queues
stale frames and the server never decodes.

Time: the client stamps each message with its capture time in ms (its own
monotonic clock, from the capture start). It becomes session time by one offset:

- The first media message anchors it: offset = now - (client time of its end).
- Then client time is kept (session = client + offset), except that nothing may lie
  ahead of the session clock: a message that would (its end later than now: the
  first message was delayed more than this one, or the client's clock runs fast)
  lowers the offset by that much. The offset never rises on its own, so network
  jitter never moves timestamps.
- When every message of the last `lag_window` seconds arrived more than `max_lag`
  late (a client clock slower than the server's, or a backlog that does not clear),
  the offset rises by the smallest of those delays (a resync, counted): the stream
  jumps forward to the present, and what was behind is treated as late below.

Audio: `AudioRing.append` takes no timestamps, so the ring's sample count is the
audio's time. A chunk whose session start is within `tolerance` of the ring's end
is appended as is (sample count wins over jitter; the ring's end may so lie up to
`tolerance` past the clock). One that starts later leaves a
gap: the gap is filled with zeros (missing audio stays missing at its time, it
never shifts later audio earlier), counted in `gap_seconds`. One that starts
earlier (late, or overlapping after the offset was lowered) has its overlapping
head dropped, counted in `late_audio_seconds`.

Jumps: a message whose time lies more than `max_jump` from the session clock (its
mapped end that far ahead of now or behind it: a client clock that jumped, not one
that drifts) and an audio chunk that would leave a gap of more than `max_jump` after
the ring's end make `feed` raise `CaptureFormatError` (the server closes the client
with the reason). So the zeros of a gap are bounded (at most `max_jump` s per message,
a few MB of memset) and a client cannot make the server's thread fill hours of audio.

Video: frames keep their mapped time; a frame not later than the previous one is
dropped (counted). While audio comes with no frame for `video_absent_after` s the
feed is marked absent (`frames.present = False`, as a camera that stopped), until
the next frame. A JPEG whose header declares a size outside `CaptureLimits` makes
`feed` raise `CaptureFormatError` (the server disconnects the client with its
reason); one that fails to decode is counted in `decode_errors` and skipped.

Memory: the ring's `capacity_seconds`, one pending JPEG, one frame, and `RecentStats`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from hcl.features.media import ANALYSIS_MAX_SIDE
from realtime.core.clock import SessionClock
from realtime.core.component import RecentStats, Worker
from realtime.core.streams import AudioRing, FrameFeed
from realtime.sources import FrameTap
from realtime.sources.capture_wire import (
    DEFAULT_LIMITS,
    SAMPLE_RATE,
    CaptureFormatError,
    CaptureHello,
    CaptureKind,
    CaptureLimits,
    CaptureMessage,
    check_jpeg_size,
)

log = logging.getLogger(__name__)

_PAD_PIECE = 10 * SAMPLE_RATE  # zeros for a gap are appended in pieces of at most 10 s


@dataclass(frozen=True)
class BrowserTiming:
    """How client capture times become session times (see the module docstring)."""

    tolerance: float = 0.03  # s: an audio chunk this close to the ring's end is appended as is
    max_lag: float = 1.0  # s: resync when every message of the last lag_window came later than this
    lag_window: float = 5.0  # s
    video_absent_after: float = 3.0  # s of audio without a frame: the camera counts as absent
    max_jump: float = 60.0  # s: a message this far from the session clock, or an audio gap this long, is refused

    def __post_init__(self) -> None:
        if (self.tolerance < 0 or self.max_lag <= 0 or self.lag_window <= 0 or self.video_absent_after <= 0
                or not self.max_jump > self.max_lag):
            raise ValueError("BrowserTiming needs tolerance >= 0, max_lag, lag_window, video_absent_after > 0 "
                             f"and max_jump > max_lag: {self}")


class BrowserSource(Worker):
    """Audio and/or video of one capture client (a browser tab), fed by the server.
    Messages are timed on `clock` (the session clock, see `Source`) from `start()` on;
    `frame_tap` (the recording's) gets every decoded frame."""

    kind = "browser"
    duration = None

    def __init__(
        self,
        *,
        audio: bool = True,
        video: bool = True,
        name: str = "browser",
        limits: CaptureLimits = DEFAULT_LIMITS,
        timing: BrowserTiming = BrowserTiming(),
        capacity_seconds: float = 120.0,
        max_side: int | None = None,
        clock: SessionClock | None = None,
        frame_tap: FrameTap | None = None,
    ) -> None:
        super().__init__()
        if not (audio or video):
            raise ValueError("BrowserSource needs audio or video")
        self.clock = clock if clock is not None else SessionClock(running=False)
        self.frame_tap: FrameTap | None = (frame_tap if frame_tap is not None else FrameTap()) if video else None
        self.name = name
        self.limits = limits
        self.timing = timing
        self.max_side = ANALYSIS_MAX_SIDE if max_side is None else max_side
        self.audio: AudioRing | None = AudioRing(sample_rate=SAMPLE_RATE, capacity_seconds=capacity_seconds) if audio else None
        self.frames: FrameFeed | None = FrameFeed(latest_only=True) if video else None
        self._started = False  # messages are timed (and kept) from start() on
        self._cond = threading.Condition()
        self._pending: tuple[float, bytes] | None = None  # the newest JPEG not yet decoded
        self._ended = False
        self._offset: float | None = None  # session time = client time + offset
        self._window_start = 0.0  # session time the lag window was last reset
        self._lag: collections.deque[tuple[float, float]] = collections.deque()  # (arrival, delay), increasing delays
        self._last_seq: int | None = None
        self._last_frame_t = float("-inf")
        self._video_since: float | None = None
        self._zeros = np.zeros(0, np.float32)
        # figures
        self.audio_seconds = 0.0  # real audio appended
        self.gap_seconds = 0.0  # zeros appended for audio that never came
        self.late_audio_seconds = 0.0  # audio dropped for arriving behind the ring's end
        self.audio_chunks = 0
        self.frames_received = 0
        self.frames_decoded = 0
        self.frames_replaced = 0  # a newer JPEG came before the previous one was decoded
        self.frames_out_of_order = 0
        self.decode_errors = 0
        self.seq_gaps = 0  # messages the sequence numbers say are missing
        self.out_of_order = 0  # messages whose seq was not above the previous one (dropped)
        self.before_start = 0  # messages fed before start() (dropped: no session clock yet)
        self.after_end = 0
        self.resyncs = 0
        self.clamped = 0  # messages that would have been ahead of the session clock
        self.jumps = 0  # messages refused for lying more than timing.max_jump from the session clock
        self.video_outages = 0  # times frames stopped coming while audio went on
        self.delay_ms = RecentStats()  # arrival - mapped capture end
        self.decode_ms = RecentStats()

    @classmethod
    def from_hello(cls, hello: CaptureHello, **kwargs: Any) -> "BrowserSource":
        """The source a client's hello announces (audio and/or video)."""
        name = kwargs.pop("name", None) or ("browser" + (f" ({hello.agent[:60]})" if hello.agent else ""))
        return cls(audio=hello.audio, video=hello.video, name=name, **kwargs)

    # ---------------------------------------------------------------- contract
    def open(self) -> None:
        """Nothing to open: the client already holds the devices."""

    def start(self) -> None:
        """Start the decoding thread; messages are timed on the session clock from here."""
        self.clock.begin()  # the pipeline began it already, after loading its models
        self._started = True
        super().start()

    def release(self, t: float) -> None:
        """A live client never waits for the consumers."""

    def stop(self) -> None:
        """Stop at once: close the outputs, drop what was not decoded. Idempotent."""
        super().stop()
        self.end()

    def end(self) -> None:
        """The client finished: the ring closes now, the feed after the pending frame is decoded."""
        with self._cond:
            if self._ended:
                return
            self._ended = True
            self._cond.notify_all()
        if self.audio is not None:
            self.audio.close()
        if self._thread is None:  # never started: nothing will close the feed
            self.finish()

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def started(self) -> bool:
        """True once started: messages fed before are dropped."""
        return self._started

    # ---------------------------------------------------------------- input
    def feed(self, msg: CaptureMessage) -> None:
        """One decoded capture message from the client (the server's receiving thread)."""
        if msg.kind is CaptureKind.END:
            self.end()
            return
        if msg.kind is CaptureKind.HELLO:
            return
        if msg.kind is CaptureKind.AUDIO and self.audio is None or msg.kind is CaptureKind.VIDEO and self.frames is None:
            return  # not announced in the hello: ignored
        if self._ended:
            self.after_end += 1
            return
        if not self._started:
            self.before_start += 1
            return
        if self._last_seq is not None:
            if msg.seq <= self._last_seq:
                self.out_of_order += 1
                return
            self.seq_gaps += msg.seq - self._last_seq - 1
        self._last_seq = msg.seq
        if msg.kind is CaptureKind.VIDEO:
            check_jpeg_size(msg.payload, self.limits)  # raises: the server disconnects with the reason
        t_session = self._map(msg.t, msg.duration, self.clock.now())
        if msg.kind is CaptureKind.AUDIO:
            self._add_audio(t_session, msg.payload)
            self._watch_video(t_session + msg.duration)
        else:
            self._add_frame(t_session, msg.payload)

    def _map(self, t_client: float, duration: float, now: float) -> float:
        """Session time of the start of a message captured at client time `t_client`."""
        end = t_client + duration
        if self._offset is None:
            self._offset = now - end
            self._window_start = now
        delay = now - (end + self._offset)
        if abs(delay) > self.timing.max_jump:
            self.jumps += 1
            raise CaptureFormatError(
                f"capture time {t_client * 1000:.0f} ms is {abs(delay):.0f} s {'behind' if delay > 0 else 'ahead of'} "
                f"the session clock (limit {self.timing.max_jump:g} s): stamp messages in ms from the capture start")
        if delay < 0:  # would be ahead of the session clock
            self._offset += delay
            self.clamped += 1
            delay = 0.0
        self.delay_ms.add(delay * 1000)
        lag = self._lag
        while lag and lag[-1][1] >= delay:
            lag.pop()
        lag.append((now, delay))
        while lag[0][0] < now - self.timing.lag_window:
            lag.popleft()
        if now - self._window_start >= self.timing.lag_window and lag[0][1] > self.timing.max_lag:
            self._offset += lag[0][1]
            self.resyncs += 1
            log.info("%s: every message of the last %g s came over %.2f s late; resynced to the present",
                     self.name, self.timing.lag_window, lag[0][1])
            lag.clear()
            self._window_start = now
        return t_client + self._offset

    def _add_audio(self, t: float, payload: bytes) -> None:
        ring = self.audio
        x = np.frombuffer(payload, "<i2").astype(np.float32) * (1.0 / 32768.0)
        self.audio_chunks += 1
        if ring.start_time is None:
            ring.append(x, start_time=t)
            self.audio_seconds += len(x) / SAMPLE_RATE
            return
        gap = t - ring.horizon
        if gap > self.timing.max_jump:
            self.jumps += 1
            raise CaptureFormatError(
                f"audio at {t:.1f} s would leave a gap of {gap:.0f} s after the last chunk (limit {self.timing.max_jump:g} s): "
                "send audio continuously (silence as zeros) or reconnect")
        if gap > self.timing.tolerance:
            self._pad(int(round(gap * SAMPLE_RATE)))
        elif gap < -self.timing.tolerance:
            late = min(len(x), int(round(-gap * SAMPLE_RATE)))
            self.late_audio_seconds += late / SAMPLE_RATE
            x = x[late:]
        if len(x):
            ring.append(x)
            self.audio_seconds += len(x) / SAMPLE_RATE

    def _pad(self, n: int) -> None:
        self.gap_seconds += n / SAMPLE_RATE
        if len(self._zeros) < min(n, _PAD_PIECE):
            self._zeros = np.zeros(min(n, _PAD_PIECE), np.float32)
        while n > 0:
            piece = min(n, _PAD_PIECE)
            self.audio.append(self._zeros[:piece])
            n -= piece

    def _watch_video(self, t: float) -> None:
        """Mark the camera absent when audio goes on `video_absent_after` s past the last
        frame (a camera turned off or taken by another program); the next frame marks it back."""
        if self.frames is None or not self.frames.present:
            return
        if self._video_since is None:
            self._video_since = t  # frames are expected from the first message on
        last = max(self._last_frame_t, self._video_since)
        if t - last > self.timing.video_absent_after:
            self.frames.present = False
            self.video_outages += 1
            log.info("%s: no frame for %.1f s; video absent", self.name, t - last)

    def _add_frame(self, t: float, jpeg: bytes) -> None:
        self.frames_received += 1
        self.frames.present = True
        if t <= self._last_frame_t:
            self.frames_out_of_order += 1
            return
        self._last_frame_t = t
        with self._cond:
            if self._pending is not None:
                self.frames_replaced += 1
            self._pending = (t, jpeg)
            self._cond.notify_all()

    # ---------------------------------------------------------------- decoding thread
    def run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._ended and not self.stopping:
                    self._cond.wait(0.5)
                if self.stopping or (self._pending is None and self._ended):
                    return
                t, jpeg = self._pending
                self._pending = None
            t0 = time.perf_counter()
            bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                self.decode_errors += 1
                continue
            h, w = bgr.shape[:2]
            if self.max_side and max(h, w) > self.max_side:
                k = self.max_side / max(h, w)
                bgr = cv2.resize(bgr, (max(2, round(w * k)), max(2, round(h * k))), interpolation=cv2.INTER_AREA)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            self.decode_ms.add((time.perf_counter() - t0) * 1000)
            self.frames_decoded += 1
            self.frames.put(t, rgb)
            self.frame_tap(t, rgb)

    def finish(self) -> None:
        if self.audio is not None:
            self.audio.close()
        if self.frames is not None:
            self.frames.close()

    # ---------------------------------------------------------------- figures
    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out.update(
            kind=self.kind,
            name=self.name,
            ended=self._ended,
            seq_gaps=self.seq_gaps,
            out_of_order=self.out_of_order,
            before_start=self.before_start,
            resyncs=self.resyncs,
            clamped=self.clamped,
            jumps=self.jumps,
            delay_ms=self.delay_ms.summary(),
        )
        if self.audio is not None:
            out["audio"] = {
                "seconds": round(self.audio_seconds, 3),
                "chunks": self.audio_chunks,
                "gap_seconds": round(self.gap_seconds, 3),
                "late_seconds": round(self.late_audio_seconds, 3),
            }
        if self.frames is not None:
            out["video"] = {
                "frames": self.frames_received,
                "decoded": self.frames_decoded,
                "present": bool(self.frames.present),
                "outages": self.video_outages,
                "replaced": self.frames_replaced + self.frames.replaced,
                "out_of_order": self.frames_out_of_order,
                "decode_errors": self.decode_errors,
                "decode_ms": self.decode_ms.summary(),
            }
        return out
