"""A media file as a capture source: its audio and video delivered with the
timestamps a live capture would have (media second t = session second t), either
at real-time pace or as fast as the consumers take it.

Memory does not grow with the file: the audio is decoded in pieces as it is
played (never the whole track at once), the audio ring holds `buffer_seconds`
(the whole file only when nothing bounds how far the reader runs ahead), and
frames are scaled down to `max_side` as they are decoded (a 4K video never
queues 4K frames)."""

from __future__ import annotations

import logging
import pathlib

import numpy as np

from hcl.features.media import ANALYSIS_MAX_SIDE, MediaError, read_media, scaled_size
from realtime.core.clock import SessionClock
from realtime.core.component import Policy
from realtime.core.streams import AudioRing, FrameFeed
from realtime.sources import FrameTap, SourceError
from realtime.sources.playback import PlayedSource

log = logging.getLogger(__name__)
FRAME_QUEUE_BYTES = 24 << 20


class FileSource(PlayedSource):
    """Plays `path` into `audio` (AudioRing) and `frames` (FrameFeed, `fps` frames a second).

    Policies that follow the clock: the item at media time t is delivered when the
    session clock reads t; frames go through a bounded queue that drops the oldest
    when the consumer lags (LIVE) . FAST: as fast as possible; the frame queue waits
    instead of dropping, and the reader stays at most `read_ahead` seconds in front
    of what the consumers `release`d.
    `buffer_seconds`: audio kept for the consumers (None = the whole file); pass a
    bound only under FAST, where `read_ahead` keeps the reader that close to them.
    `clock` / `frame_tap`: the session clock and the recording's frame tap (see `Source`).
    """

    kind = "file"
    thread_name = "file-source"

    def __init__(
        self,
        *,
        path: str | pathlib.Path,
        policy: Policy = Policy.LIVE,
        fps: float = 10.0,
        chunk_seconds: float = 0.02,
        read_ahead: float = 30.0,
        clock: SessionClock | None = None,
        frame_tap: FrameTap | None = None,
        buffer_seconds: float | None = None,
        max_side: int | None = None,
    ) -> None:
        super().__init__(policy=policy, read_ahead=read_ahead, clock=clock, frame_tap=frame_tap)
        self.path = pathlib.Path(path)
        self.fps = float(fps)
        self.chunk_seconds = float(chunk_seconds)
        self.buffer_seconds = buffer_seconds
        self.max_side = ANALYSIS_MAX_SIDE if max_side is None else max_side
        self.name = f"file {self.path.name}"
        self.clip = None
        self.duration: float | None = None

    def open(self) -> None:
        """Read the file's header (and its first audio); raises SourceError naming the file.
        Idempotent."""
        if self.clip is not None:
            return
        if not self.path.exists():
            raise SourceError(f"{self.path}: no such file (give --file an existing audio/video file)")
        try:
            clip = read_media(self.path, load_audio=False)
        except MediaError as exc:
            raise SourceError(f"{self.path}: cannot be read as audio/video ({exc})") from exc
        except Exception as exc:  # corrupt container, unsupported codec, ...
            raise SourceError(f"{self.path}: cannot be read as audio/video ({type(exc).__name__}: {exc})") from exc
        if not clip.has_audio and not clip.has_video:
            raise SourceError(f"{self.path}: has neither audio nor video")
        self.clip = clip
        self.duration = float(clip.duration)
        seconds = max(self.duration + 1.0, 30.0)
        if self.buffer_seconds is not None:
            seconds = min(seconds, max(float(self.buffer_seconds), 30.0))
        self.audio = AudioRing(sample_rate=clip.sample_rate, capacity_seconds=seconds) if clip.has_audio else None
        if clip.has_video:
            # two seconds of frames, but no more than FRAME_QUEUE_BYTES of them (large videos)
            w, h = scaled_size(*(clip.video_size or (640, 480)), self.max_side)
            size = max(4, min(int(2 * self.fps), FRAME_QUEUE_BYTES // (w * h * 3)))
            self.frames = FrameFeed(latest_only=False, maxsize=size, policy=self.policy)

    def _events(self):
        """(t, kind, payload) in time order: audio chunks stamped by their end, frames by their time."""
        clip = self.clip
        rate = clip.sample_rate
        frames = iter(clip.frames(self.fps, max_side=self.max_side)) if self.frames is not None else iter(())
        pieces = clip.audio_chunks() if self.audio is not None else iter(())
        step = max(1, int(round(self.chunk_seconds * rate)))
        buf = np.zeros(0, np.float32)  # decoded audio not yet delivered; sample 0 of it is `done`
        done = 0
        nxt_frame = next(frames, None)
        while True:
            if len(buf) < step:  # top up from the decoder (about 10 s at a time)
                more = next(pieces, None)
                if more is not None:
                    buf = np.concatenate([buf, more]) if len(buf) else more
                    continue
            if not len(buf) and nxt_frame is None:
                return
            n = min(step, len(buf))
            t_audio = (done + n) / rate if n else float("inf")
            if nxt_frame is not None and nxt_frame[0] <= t_audio:
                yield float(nxt_frame[0]), "frame", nxt_frame[1]
                nxt_frame = next(frames, None)
            else:
                yield t_audio, "audio", buf[:n]
                buf = buf[n:]
                done += n
