"""Reading audio and video from media files (PyAV; wav, mp3, mp4, webm, mkv, ...).

`read_media(path)` decodes the whole audio track at once (resampled to 16 kHz
mono float32, the rate every extractor expects) and opens the video lazily:
`MediaClip.frames(fps, start, end)` decodes only the stretch asked for and
yields frames at about `fps` per second as `(t_seconds, rgb uint8 (H, W, 3))`.

A file that is missing, unreadable, or without any audio/video stream raises
`MediaError`, whose message names the file and says what to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
import os
from typing import Iterator, Sequence

import numpy as np

SAMPLE_RATE = 16000
MEDIA_EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".wav", ".flac", ".mp3", ".ogg", ".m4a")


class MediaError(RuntimeError):
    """A media file could not be read; the message names the file and the remedy."""


@dataclass
class MediaClip:
    """A decoded media file.

    audio: (N,) float32 in [-1, 1] at `sample_rate` (16 kHz) mono; empty if the
    file has no audio track (`has_audio` False).
    """

    path: Path
    audio: np.ndarray
    sample_rate: int
    duration: float
    has_audio: bool
    has_video: bool
    video_fps: float | None = None
    video_size: tuple[int, int] | None = None  # (width, height)
    meta: dict = field(default_factory=dict)

    def audio_span(self, start: float, end: float) -> np.ndarray:
        """Audio samples of [start, end) seconds; (n,) float32, zero-padded past the end of the track."""
        a = max(0, int(round(start * self.sample_rate)))
        b = max(a, int(round(end * self.sample_rate)))
        out = self.audio[a:b]
        if len(out) < b - a:
            out = np.concatenate([out, np.zeros(b - a - len(out), np.float32)])
        return out

    def frames(self, fps: float, start: float = 0.0, end: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
        """Video frames of [start, end) at about `fps` per second.

        Yields (t_seconds from the start of the file, rgb uint8 (H, W, 3)),
        start <= t < end. A frame is yielded when it is on screen at the next
        target time (start, start + 1/fps, ...), so a source slower than `fps`
        yields each of its frames once. Nothing is yielded without video.
        """
        if not self.has_video:
            return
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        av = _import_av()
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as exc:  # pragma: no cover - the file changed since read_media
            raise MediaError(f"{self.path}: cannot reopen the video ({exc})") from exc
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            half_frame = 0.5 / (self.video_fps or 30.0)
            if start > 1.0 and stream.time_base is not None:
                container.seek(int(max(0.0, start - 1.0) / stream.time_base), stream=stream, backward=True)
            step = 1.0 / fps
            target = start
            try:
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    t = float(frame.pts * stream.time_base)
                    if end is not None and t >= end:
                        break
                    if t < start - 1e-6 or t + half_frame < target:
                        continue
                    yield t, frame.to_ndarray(format="rgb24")
                    while target <= t + half_frame:
                        target += step
            except av.FFmpegError as exc:
                raise MediaError(f"{self.path}: the video stream is damaged near {target:.2f} s ({exc}); "
                                 "re-encode it (e.g. ffmpeg -i in.mp4 out.mp4) or remove it") from exc


def _import_av():
    try:
        import av
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MediaError("reading media needs PyAV: pip install av") from exc
    return av


def read_media(path: str | Path) -> MediaClip:
    """Decode `path`: audio to 16 kHz mono float32 now, video frames on demand (`MediaClip.frames`)."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, not a media file")
    av = _import_av()
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(
            f"{path}: not a readable audio/video file ({exc}); check that it is a complete "
            "mp4/webm/mkv/wav file, re-encode it with ffmpeg, or remove it"
        ) from exc
    with container:
        has_audio = len(container.streams.audio) > 0
        has_video = len(container.streams.video) > 0
        if not has_audio and not has_video:
            raise MediaError(f"{path}: has no audio or video stream; give a file with sound and/or pictures")
        video_fps = video_size = None
        durations = []
        if has_video:
            v = container.streams.video[0]
            rate = v.average_rate or v.guessed_rate
            video_fps = float(rate) if rate else None
            if v.codec_context is not None and v.codec_context.width:
                video_size = (int(v.codec_context.width), int(v.codec_context.height))
            if v.duration is not None and v.time_base is not None:
                durations.append(float(v.duration * v.time_base))
        audio = np.zeros(0, np.float32)
        if has_audio:
            audio = _decode_audio(av, container, path)
            durations.append(len(audio) / SAMPLE_RATE)
        if container.duration is not None:
            durations.append(container.duration / 1_000_000)
    duration = max(durations) if durations else 0.0
    if has_video and duration <= 0:
        duration = _count_video_duration(av, path, video_fps)
    if duration <= 0 or (has_audio and not has_video and len(audio) == 0):
        raise MediaError(f"{path}: contains no decodable audio or video; the file may be truncated — re-encode or remove it")
    return MediaClip(
        path=path,
        audio=audio,
        sample_rate=SAMPLE_RATE,
        duration=float(duration),
        has_audio=has_audio and len(audio) > 0,
        has_video=has_video,
        video_fps=video_fps,
        video_size=video_size,
    )


def _decode_audio(av, container, path: Path) -> np.ndarray:
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    first_t: float | None = None
    try:
        for frame in container.decode(stream):
            if first_t is None and frame.pts is not None and frame.time_base is not None:
                first_t = float(frame.pts * frame.time_base)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        raise MediaError(
            f"{path}: the audio stream cannot be decoded ({exc}); re-encode the file "
            "(e.g. ffmpeg -i in.mp4 out.mp4) or remove it"
        ) from exc
    audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    # align the track to the file's clock when the first sample starts late
    if first_t is not None and 0 < first_t < 10:
        audio = np.concatenate([np.zeros(int(round(first_t * SAMPLE_RATE)), np.float32), audio])
    return np.clip(audio, -1.0, 1.0)


def _count_video_duration(av, path: Path, fps: float | None) -> float:
    last = 0.0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                if frame.pts is not None:
                    last = float(frame.pts * stream.time_base)
    except av.FFmpegError:
        return 0.0
    return last + (1.0 / fps if fps else 0.0)


def n_steps_for(duration: float, step_seconds: float) -> int:
    """Steps covering `duration` seconds: a final partial step counts, a sliver (<1 % of a step) does not."""
    return max(1, math.ceil(duration / step_seconds - 0.01))


def write_media(
    path: str | os.PathLike, frames: Sequence[np.ndarray], audio: np.ndarray | None, *, fps: int = 15, crf: int = 20
) -> Path:
    """Write RGB uint8 frames (all one size) and, if given, 16 kHz mono float32 audio.

    .mp4/.mkv = H.264 + AAC, .webm = VP8 + Opus (48 kHz). Used by the demo clip
    and by the tests' generated media."""
    import av

    webm = Path(path).suffix == ".webm"
    with av.open(str(path), "w") as container:
        if len(frames):
            h, w = frames[0].shape[:2]
            vs = container.add_stream("libvpx" if webm else "libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            if not webm:
                vs.options = {"preset": "ultrafast", "crf": str(crf)}
        astream = None
        if audio is not None:
            astream = container.add_stream("libopus" if webm else "aac", rate=48000 if webm else SAMPLE_RATE, layout="mono")
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in vs.encode(frame):
                container.mux(packet)
        if len(frames):
            for packet in vs.encode():
                container.mux(packet)
        if astream is not None:
            chunk = 1024
            for i in range(0, len(audio), chunk):
                part = audio[i : i + chunk]
                frame = av.AudioFrame.from_ndarray(part[None, :].astype(np.float32), format="fltp", layout="mono")
                frame.sample_rate = SAMPLE_RATE
                frame.pts = i
                for packet in astream.encode(frame):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return Path(path)
