"""Reading audio and video from media files (PyAV; wav, mp3, mp4, webm, mkv, ...).

`read_media(path)` decodes the whole audio track at once (resampled to 16 kHz
mono float32, the rate every extractor expects) and opens the video lazily:
`MediaClip.frames(fps, start, end)` decodes only the stretch asked for and
yields frames at about `fps` per second as `(t_seconds, rgb uint8 (H, W, 3))`.

`read_media(path, load_audio=False)` reads only the header (and probes the
first audio packet): the audio is then streamed, `MediaClip.audio_chunks()`
yields it in pieces and `audio_span()` decodes just the span asked for, so
memory does not grow with the file's length. `frames(..., max_side=N)` scales
larger frames down as they are decoded (a 4K video never holds 4K frames).

A file that is missing, unreadable, or without any audio/video stream raises
`MediaError`, whose message names the file and says what to do. A file cut
short (e.g. half of a downloaded mp4 whose index is at the front) gives what
can be decoded, with a warning that says where it stops.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
import os
from typing import Iterator, Sequence

import av
import numpy as np

from hcl.features.config import SAMPLE_RATE

log = logging.getLogger(__name__)

MEDIA_EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".wav", ".flac", ".mp3", ".ogg", ".m4a")
# frames wider or taller than this are scaled down for face analysis (mediapipe works on
# a 192-256 px face crop, so 1280 px loses nothing; a 4K frame costs 25 MB, this one 2.7 MB)
ANALYSIS_MAX_SIDE = 1280
# a frame time within this many seconds of a target counts as on it: a 15 fps frame at
# 3/15 s and the 10 fps target 2/10 s differ only by float rounding of the stream's pts
FRAME_TIME_EPS = 1e-6
AUDIO_CHUNK_SAMPLES = SAMPLE_RATE * 10  # streamed audio comes in pieces of about 10 s


class MediaError(RuntimeError):
    """A media file could not be read; the message names the file and the remedy."""


def _warn_cut(path: Path, what: str, at: float, exc: BaseException) -> None:
    log.warning(
        "%s: the %s stops decoding at %.2f s (%s); using what decoded up to there "
        "(the file is cut short or damaged: re-encode or re-download it for the rest)", path, what, at, exc
    )


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) scaled down (aspect kept, even sizes) so that neither exceeds max_side."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    k = max_side / max(width, height)
    return max(2, int(round(width * k / 2)) * 2), max(2, int(round(height * k / 2)) * 2)


@dataclass
class MediaClip:
    """A media file, its audio decoded now (default) or streamed on demand.

    audio: (N,) float32 in [-1, 1] at `sample_rate` (16 kHz) mono; empty if the
    file has no audio track (`has_audio` False). None when read with
    `load_audio=False`: use `audio_chunks()` / `audio_span()` then.
    """

    path: Path
    audio: np.ndarray | None
    sample_rate: int
    duration: float
    has_audio: bool
    has_video: bool
    video_fps: float | None = None
    video_size: tuple[int, int] | None = None  # (width, height)
    meta: dict = field(default_factory=dict)

    def audio_chunks(self, start: float = 0.0, end: float | None = None) -> Iterator[np.ndarray]:
        """The audio of [start, end) in consecutive float32 pieces (about 10 s each); with the
        audio loaded these are slices of it, else decoded from the file as they are asked for."""
        if not self.has_audio:
            return
        a = max(0, int(round(start * self.sample_rate)))
        b = None if end is None else max(a, int(round(end * self.sample_rate)))
        if self.audio is not None:
            stop = len(self.audio) if b is None else min(b, len(self.audio))
            for i in range(a, stop, AUDIO_CHUNK_SAMPLES):
                yield self.audio[i : min(stop, i + AUDIO_CHUNK_SAMPLES)]
            return
        pos = 0
        for chunk in _stream_audio(self.path):
            lo, hi = max(a - pos, 0), len(chunk) if b is None else min(len(chunk), b - pos)
            if hi > lo:
                yield chunk[lo:hi]
            pos += len(chunk)
            if b is not None and pos >= b:
                return

    def audio_span(self, start: float, end: float) -> np.ndarray:
        """Audio samples of [start, end) seconds; (n,) float32, zero-padded past the end of the track."""
        a = max(0, int(round(start * self.sample_rate)))
        b = max(a, int(round(end * self.sample_rate)))
        if self.audio is not None:
            out = self.audio[a:b]
        else:
            parts = list(self.audio_chunks(start, end))
            out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if len(out) < b - a:
            out = np.concatenate([out, np.zeros(b - a - len(out), np.float32)])
        return out

    def frames(
        self, fps: float, start: float = 0.0, end: float | None = None, *, max_side: int | None = None
    ) -> Iterator[tuple[float, np.ndarray]]:
        """Video frames of [start, end) at about `fps` per second.

        Yields (t_seconds from the start of the file, rgb uint8 (H, W, 3)),
        start <= t < end: for each target time k / fps (a grid anchored at the start
        of the file, computed, not accumulated) the first frame at or after it. So the
        frames of a span are exactly those a pass over the whole file yields in that
        span (live playback decodes from the start, training data cuts spans), and a
        source slower than `fps` yields each of its frames once. Nothing is yielded
        without video.
        Frames larger than `max_side` are scaled down as they are converted.
        A stream damaged or cut short part-way ends there, with a warning.
        """
        if not self.has_video:
            return
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as exc:  # pragma: no cover - the file changed since read_media
            raise MediaError(f"{self.path}: cannot reopen the video ({exc})") from exc
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if max_side and self.video_size and max(self.video_size) > 2 * max_side:
                # each decoder thread holds whole frames (12 MB at 4K): a few threads suffice
                stream.codec_context.thread_count = min(4, os.cpu_count() or 1)
            if start > 1.0 and stream.time_base is not None:
                container.seek(int(max(0.0, start - 1.0) / stream.time_base), stream=stream, backward=True)
            k = math.ceil((start - FRAME_TIME_EPS) * fps)  # the first target at or after `start`
            yielded = 0
            decoded = container.decode(stream)
            while True:
                try:
                    frame = next(decoded)
                except StopIteration:
                    break
                except av.FFmpegError as exc:
                    if yielded == 0:
                        raise MediaError(f"{self.path}: the video stream is damaged near {k / fps:.2f} s ({exc}); "
                                         "re-encode it (e.g. ffmpeg -i in.mp4 out.mp4) or remove it") from exc
                    _warn_cut(self.path, "video", k / fps, exc)
                    break
                if frame.pts is None:
                    continue
                t = float(frame.pts * stream.time_base)
                if end is not None and t >= end:
                    break
                if t < start - FRAME_TIME_EPS or t < k / fps - FRAME_TIME_EPS:
                    continue
                w, h = scaled_size(frame.width, frame.height, max_side)
                if (w, h) != (frame.width, frame.height):
                    rgb = frame.to_ndarray(format="rgb24", width=w, height=h)
                else:
                    rgb = frame.to_ndarray(format="rgb24")
                yield t, rgb
                yielded += 1
                k = math.floor((t + FRAME_TIME_EPS) * fps) + 1  # the next target after this frame


def read_media(path: str | Path, *, load_audio: bool = True) -> MediaClip:
    """Open `path`: audio to 16 kHz mono float32 now (or, `load_audio=False`, streamed
    later), video frames on demand (`MediaClip.frames`)."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, not a media file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(
            f"{path}: not a readable audio/video file ({exc}); check that it is a complete "
            "mp4/webm/mkv/wav file, re-encode it with ffmpeg, or remove it"
        ) from exc
    cut_at: float | None = None
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
        audio_header = None  # the audio track's length as the header states it
        if has_audio:
            a = container.streams.audio[0]
            if a.duration is not None and a.time_base is not None:
                audio_header = float(a.duration * a.time_base)
                if not load_audio:
                    durations.append(audio_header)
        if container.duration is not None:
            durations.append(container.duration / 1_000_000)
    audio: np.ndarray | None = np.zeros(0, np.float32)
    audio_seconds = 0.0
    if has_audio and load_audio:
        audio, cut = _decode_audio(path)
        audio_seconds = len(audio) / SAMPLE_RATE
        durations.append(audio_seconds)
        if not cut and audio_header is not None and audio_header - audio_seconds > max(1.0, 0.02 * audio_header):
            # the data ends early without an error: a download or copy cut short (the index
            # at the front still describes the whole file)
            log.warning(
                "%s: the audio ends at %.2f s although the file's header says %.2f s; the file is cut "
                "short: using the %.2f s that decode (re-download or re-encode it for the rest)",
                path, audio_seconds, audio_header, audio_seconds,
            )
            cut = True
        if cut:
            cut_at = audio_seconds
    elif has_audio:
        audio = None
        first = next(_stream_audio(path, probe=True), None)  # fail now, not mid-session, on a bad track
        audio_seconds = 0.0 if first is None else len(first) / SAMPLE_RATE
        if not durations:  # no duration in the header: count the samples (streamed)
            durations.append(sum(len(c) for c in _stream_audio(path)) / SAMPLE_RATE)
    duration = max(durations) if durations else 0.0
    if cut_at is not None and cut_at > 0:
        duration = cut_at  # the header's duration promises more than the file holds
    if has_video and duration <= 0:
        duration = _count_video_duration(av, path, video_fps)
    if duration <= 0 or (has_audio and not has_video and audio_seconds == 0):
        raise MediaError(f"{path}: contains no decodable audio or video; the file may be truncated — re-encode or remove it")
    return MediaClip(
        path=path,
        audio=audio,
        sample_rate=SAMPLE_RATE,
        duration=float(duration),
        has_audio=has_audio and audio_seconds > 0,
        has_video=has_video,
        video_fps=video_fps,
        video_size=video_size,
    )


def _stream_audio(path: Path, *, probe: bool = False, report: dict | None = None) -> Iterator[np.ndarray]:
    """The file's first audio track as 16 kHz mono float32 pieces in [-1, 1], in order,
    aligned to the file's clock (a late first sample is preceded by silence).
    Raises MediaError when nothing decodes; a track damaged or cut short part-way ends
    there, with a warning (and `report["cut"] = True`). `probe`: stop after the first piece."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"{path}: not a readable audio/video file ({exc})") from exc
    with container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        decoded = container.decode(stream)
        pending: list[np.ndarray] = []
        n_pending = 0
        total = 0
        started = False
        while True:
            try:
                frame = next(decoded)
            except StopIteration:
                frame = None
            except av.FFmpegError as exc:
                if total + n_pending == 0:
                    raise MediaError(
                        f"{path}: the audio stream cannot be decoded ({exc}); re-encode the file "
                        "(e.g. ffmpeg -i in.mp4 out.mp4) or remove it"
                    ) from exc
                _warn_cut(path, "audio", (total + n_pending) / SAMPLE_RATE, exc)
                if report is not None:
                    report["cut"] = True
                frame = None
            if not started and frame is not None:
                started = True
                first_t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base is not None else None
                # align the track to the file's clock when the first sample starts late
                if first_t is not None and 0 < first_t < 10:
                    lead = np.zeros(int(round(first_t * SAMPLE_RATE)), np.float32)
                    pending.append(lead)
                    n_pending += len(lead)
            try:
                outs = resampler.resample(frame)
            except av.FFmpegError as exc:  # pragma: no cover - a resampler failure mid-track
                _warn_cut(path, "audio", (total + n_pending) / SAMPLE_RATE, exc)
                outs, frame = [], None
            for out in outs:
                x = out.to_ndarray().reshape(-1)
                pending.append(x)
                n_pending += len(x)
            if n_pending >= AUDIO_CHUNK_SAMPLES or (frame is None and n_pending):
                chunk = np.clip(np.concatenate(pending).astype(np.float32, copy=False), -1.0, 1.0)
                pending, n_pending = [], 0
                total += len(chunk)
                yield chunk
                if probe:
                    return
            if frame is None:
                return


def _decode_audio(path: Path) -> tuple[np.ndarray, bool]:
    """The whole audio track (see `_stream_audio`) and whether it was cut short."""
    report: dict = {}
    chunks = list(_stream_audio(path, report=report))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return audio, bool(report.get("cut"))


def _count_video_duration(av, path: Path, fps: float | None) -> float:
    last = 0.0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                if frame.pts is not None:
                    last = float(frame.pts * stream.time_base)
    except av.FFmpegError:
        pass  # cut short: the frames up to here count
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
