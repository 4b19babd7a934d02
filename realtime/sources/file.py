"""A media file as a capture source: its audio and video delivered with the
timestamps a live capture would have (media second t = session second t), either
at real-time pace or as fast as the consumers take it."""

from __future__ import annotations

import logging
import pathlib
import threading
from typing import Callable

import numpy as np

from realtime.clock import SessionClock
from realtime.sources import SourceError
from realtime.streams import AudioRing, FrameFeed

log = logging.getLogger(__name__)


class FileSource:
    """Plays `path` into `audio` (AudioRing) and `frames` (FrameFeed, `fps` frames a second).

    `realtime=True`: item at media time t is delivered when the session clock reads t;
    frames go through a bounded queue that drops the oldest when the consumer lags.
    `realtime=False`: as fast as possible; the frame queue blocks instead of dropping,
    and `gate(t)` (if given) may block to keep the reader from running too far ahead.
    """

    kind = "file"

    def __init__(
        self,
        *,
        path: str | pathlib.Path,
        realtime: bool = True,
        fps: float = 10.0,
        chunk_seconds: float = 0.02,
        gate: Callable[[float], None] | None = None,
    ) -> None:
        self.path = pathlib.Path(path)
        self.realtime = bool(realtime)
        self.fps = float(fps)
        self.chunk_seconds = float(chunk_seconds)
        self.gate = gate
        self.name = f"file {self.path.name}"
        self.clip = None
        self.duration: float | None = None
        self.audio: AudioRing | None = None
        self.frames: FrameFeed | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        """Decode the file's header and audio now; raises SourceError naming the file."""
        from hcl.features.media import MediaError, read_media

        if not self.path.exists():
            raise SourceError(f"{self.path}: no such file (give --file an existing audio/video file)")
        try:
            clip = read_media(self.path)
        except MediaError as exc:
            raise SourceError(f"{self.path}: cannot be read as audio/video ({exc})") from exc
        except Exception as exc:  # corrupt container, unsupported codec, ...
            raise SourceError(f"{self.path}: cannot be read as audio/video ({type(exc).__name__}: {exc})") from exc
        if len(clip.audio) == 0 and not clip.has_video:
            raise SourceError(f"{self.path}: has neither audio nor video")
        self.clip = clip
        self.duration = float(clip.duration)
        seconds = max(self.duration + 1.0, 30.0)
        self.audio = AudioRing(sample_rate=clip.sample_rate, capacity_seconds=seconds) if len(clip.audio) else None
        if clip.has_video:
            self.frames = FrameFeed(latest_only=False, maxsize=max(4, int(2 * self.fps)), block=not self.realtime)

    def start(self, clock: SessionClock) -> None:
        if self.clip is None:
            self.open()
        self._thread = threading.Thread(target=self._run, args=(clock,), name="file-source", daemon=True)
        self._thread.start()

    def _events(self):
        """(t, kind, payload) in time order: audio chunks stamped by their end, frames by their time."""
        clip = self.clip
        frames = iter(clip.frames(self.fps)) if self.frames is not None else iter(())
        audio = clip.audio if self.audio is not None else np.zeros(0, np.float32)
        step = max(1, int(round(self.chunk_seconds * clip.sample_rate)))
        a_pos = 0
        nxt_frame = next(frames, None)
        while a_pos < len(audio) or nxt_frame is not None:
            a_end = min(a_pos + step, len(audio))
            t_audio = a_end / clip.sample_rate if a_pos < len(audio) else float("inf")
            if nxt_frame is not None and nxt_frame[0] <= t_audio:
                yield float(nxt_frame[0]), "frame", nxt_frame[1]
                nxt_frame = next(frames, None)
            else:
                yield t_audio, "audio", audio[a_pos:a_end]
                a_pos = a_end

    def _run(self, clock: SessionClock) -> None:
        try:
            for t, kind, payload in self._events():
                if self._stop.is_set():
                    break
                if self.realtime:
                    if not clock.sleep_until(t, self._stop):
                        break
                elif self.gate is not None:
                    self.gate(t)
                if kind == "audio":
                    self.audio.append(payload, start_time=0.0)
                else:
                    self.frames.put(t, np.ascontiguousarray(payload))
        except BaseException as exc:  # a decode error mid-file ends the source, reported
            self.error = exc
            log.error("%s: reading stopped: %s", self.path, exc)
        finally:
            if self.audio is not None:
                self.audio.close()
            if self.frames is not None:
                self.frames.close()

    def stop(self) -> None:
        self._stop.set()
        if self.frames is not None:
            self.frames.close()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def finished(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()
