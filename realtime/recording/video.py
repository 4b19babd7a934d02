"""video.mp4: H.264 frames and AAC sound in a fragmented MP4 that survives a crash."""

from __future__ import annotations

import pathlib
from fractions import Fraction

import av
import cv2
import numpy as np

from hcl.features.config import SAMPLE_RATE


class VideoWriter:
    """The session video: H.264 (and, when audio is given, AAC) in a fragmented MP4.

    Frames are placed at round(t * fps) (later duplicates dropped). A keyframe every
    `fragment_seconds` starts a new MP4 fragment and every fragment is flushed to
    the file as it is finished, so a crash (kill -9) loses at most the fragment in
    progress; the moov box comes first (empty_moov), so the file never needs a
    trailer to be read. Frames larger than `max_side` are scaled down (aspect kept).
    Audio: 16 kHz mono float32 chunks placed by their first sample's index on the
    session clock (`write_audio(samples, first_sample)`), so picture and sound stay
    in sync even when audio arrives late or in bursts.
    """

    def __init__(
        self,
        path: pathlib.Path,
        *,
        fps: float = 10.0,
        audio: bool = False,
        sample_rate: int = SAMPLE_RATE,
        fragment_seconds: float = 1.0,
        max_side: int | None = 1280,
    ) -> None:
        self.path = path
        self.fps = fps
        self.audio = audio
        self.sample_rate = sample_rate
        self.fragment_seconds = fragment_seconds
        self.max_side = max_side
        self.frames = 0
        self.audio_samples = 0
        self._container = None
        self._stream = None
        self._astream = None
        self._last_pts = -1
        self._size: tuple[int, int] | None = None
        self._abuf = np.zeros(0, np.float32)  # audio not yet encoded, starting at sample _apos
        self._apos = 0
        self._aframe = 1024

    @property
    def opened(self) -> bool:
        return self._container is not None

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the encoded frames, once the first frame came."""
        return self._size

    def _frame_size(self, w: int, h: int) -> tuple[int, int]:
        if self.max_side and max(w, h) > self.max_side:
            k = self.max_side / max(w, h)
            w, h = int(round(w * k)), int(round(h * k))
        return max(2, w - w % 2), max(2, h - h % 2)

    def _open(self, w: int, h: int) -> None:
        rate = Fraction(self.fps).limit_denominator(1000)
        gop = max(1, int(round(self.fps * self.fragment_seconds)))
        container = av.open(
            str(self.path),
            mode="w",
            format="mp4",
            options={"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"},
        )
        try:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = w, h
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = 1 / rate
            # zerolatency: no lookahead / B-frames, so packets leave the encoder at once
            stream.options = {"preset": "veryfast", "crf": "23", "tune": "zerolatency", "g": str(gop), "keyint_min": str(gop)}
            if self.audio:
                astream = container.add_stream("aac", rate=self.sample_rate, layout="mono")
                self._astream = astream
                self._aframe = astream.codec_context.frame_size or 1024
        except BaseException:
            container.close()
            raise
        self._container = container
        self._stream = stream
        self._size = (w, h)

    def write(self, rgb: np.ndarray, t: float) -> bool:
        pts = int(round(t * self.fps))
        if pts <= self._last_pts:
            return False
        h, w = rgb.shape[:2]
        if self._container is None:
            self._open(*self._frame_size(w, h))
        assert self._size is not None
        if (w, h) != self._size:
            if (w - w % 2, h - h % 2) == self._size:
                rgb = rgb[: self._size[1], : self._size[0]]
            else:
                rgb = cv2.resize(rgb, self._size, interpolation=cv2.INTER_AREA)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._last_pts = pts
        self.frames += 1
        return True

    def write_audio(self, samples: np.ndarray, first_sample: int) -> None:
        """Encode audio whose first sample is sample `first_sample` of the session
        (needs `audio=True` and an open file: call after the first frame)."""
        if self._astream is None:
            return
        x = np.asarray(samples, np.float32).reshape(-1)
        end = self._apos + len(self._abuf)
        if first_sample > end:  # a gap (audio dropped before the video began): encode what is held, jump
            self._encode_audio(final=True)
            self._apos, self._abuf = first_sample, x
        elif first_sample < end:  # overlap: keep only what is new
            self._abuf = np.concatenate([self._abuf, x[end - first_sample :]])
        else:
            self._abuf = np.concatenate([self._abuf, x]) if len(self._abuf) else x
        self._encode_audio(final=False)

    def _encode_audio(self, *, final: bool) -> None:
        n = self._aframe
        while len(self._abuf) >= n or (final and len(self._abuf)):
            part = self._abuf[:n]
            if len(part) < n:  # the encoder takes whole frames only: pad the last one with silence
                part = np.concatenate([part, np.zeros(n - len(part), np.float32)])
            frame = av.AudioFrame.from_ndarray(np.clip(part, -1.0, 1.0)[None, :], format="fltp", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = self._apos
            for packet in self._astream.encode(frame):
                self._container.mux(packet)
            self._abuf = self._abuf[n:]
            self._apos += n
            self.audio_samples += n

    def close(self) -> None:
        """Flush the encoders, finish the file and free them: the streams hold the codec
        contexts (libx264 keeps ~8 threads and MBs of buffers until its context is freed),
        so they are dropped here, not when this writer is (a hub keeps ended sessions).
        Idempotent."""
        if self._container is None:
            return
        container, self._container = self._container, None
        try:
            for packet in self._stream.encode():
                container.mux(packet)
            if self._astream is not None:
                self._container = container
                self._encode_audio(final=True)
                self._container = None
                for packet in self._astream.encode():
                    container.mux(packet)
        finally:
            self._container = None
            self._stream = self._astream = None
            self._abuf = np.zeros(0, np.float32)
            container.close()

