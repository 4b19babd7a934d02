"""A session folder, written while the monitor runs, and read back for replay.

    session.json     settings, model, versions, start (and, after close, end) time
    scores.jsonl     one protocol window message per line, flushed + fsync'ed per line
    words.json       every transcribed word [{w, start, end, p}] (rewritten atomically)
    transcript.vtt   the same words as WebVTT cues, on disk cue by cue (the cue still
                     growing is rewritten in place at the end of the file)
    audio.wav        16 kHz mono int16; the header's sizes are patched on every write
    video.mp4        frames with the score drawn on, H.264, and the session audio, AAC,
                     as fragmented MP4: a fragment per second of video, readable while
                     it is written and after a crash

A `kill -9` leaves every finished window readable; `read_session` skips a
truncated last line, `read_wav` recovers a header whose sizes were not patched,
and video.mp4 plays up to its last complete fragment.

A failing disk (ENOSPC, EIO, ...) stops the recording, never the caller: every
`write_*` returns normally from then on, `stats()["error"]` says what happened
(logged once), and what was written before stays readable.
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
import logging
import math
import os
import pathlib
import platform
import queue
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from realtime import protocol

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SAMPLE_RATE = 16000
SCORES = "scores.jsonl"
INFO = "session.json"
WORDS = "words.json"
VTT = "transcript.vtt"
AUDIO = "audio.wav"
VIDEO = "video.mp4"
INFO_SLACK = 2048  # spare bytes at the end of session.json (see SessionRecorder._write_info)
VIDEO_QUEUE_BYTES = 32 << 20  # frames waiting for the encoder hold at most this much (and at least 4 frames)


class SessionError(ValueError):
    """A folder that is not a readable session."""


class RecorderClosed(RuntimeError):
    """A write after SessionRecorder.close() (e.g. a capture thread still running at Ctrl-C)."""


# ---------------------------------------------------------------- small pure helpers
def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _atomic_write_text(path: pathlib.Path, text: str) -> None:
    """Replace `path` by `text` so that a reader sees the old or the new file, never a
    part; on failure (a full disk) the old file stays and no temporary file is left."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for dist in ("hcl-live", "numpy", "torch", "av", "websockets"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def vtt_timestamp(seconds: float) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def normalize_word(word: Any) -> dict[str, Any]:
    """A protocol word {w, start, end[, p]} from a dict or a `Word(text, start, end, probability)`."""
    if isinstance(word, dict):
        text = word.get("w", word.get("text"))
        start, end, p = word.get("start"), word.get("end"), word.get("p", word.get("probability"))
    else:
        text, start, end = word.text, word.start, word.end
        p = getattr(word, "probability", None)
    if text is None or start is None or end is None:
        raise ValueError(f"a word needs text, start and end; got {word!r}")
    out = {"w": str(text).strip(), "start": round(float(start), 3), "end": round(float(end), 3)}
    if p is not None:
        out["p"] = round(float(p), 3)
    return out


def cue_groups(words: Sequence[dict[str, Any]], *, max_words: int = 10, max_gap: float = 1.0) -> list[list[dict[str, Any]]]:
    """Group words into subtitle cues: a new cue after a pause or `max_words` words."""
    groups: list[list[dict[str, Any]]] = []
    for w in words:
        if not groups or len(groups[-1]) >= max_words or w["start"] - groups[-1][-1]["end"] > max_gap:
            groups.append([])
        groups[-1].append(w)
    return groups


def format_cue(group: Sequence[dict[str, Any]]) -> str:
    start, end = group[0]["start"], max(group[-1]["end"], group[0]["start"] + 0.001)
    text = " ".join(w["w"] for w in group).replace("-->", "->")
    return f"{vtt_timestamp(start)} --> {vtt_timestamp(end)}\n{text}\n\n"


def wav_header(n_data_bytes: int, *, sample_rate: int = SAMPLE_RATE, channels: int = 1, bits: int = 16) -> bytes:
    block = channels * bits // 8
    return (
        b"RIFF" + struct.pack("<I", 36 + n_data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, bits)
        + b"data" + struct.pack("<I", n_data_bytes)
    )


def to_int16(chunk: np.ndarray) -> np.ndarray:
    x = np.asarray(chunk, dtype=np.float32).reshape(-1)
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """float32 samples in [-1, 1] and the sample rate of a 16-bit PCM wav; recovers
    files whose header sizes are 0 or stale (a recorder killed before patching)."""
    path = pathlib.Path(path)
    data = path.read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SessionError(f"{path} is not a WAV file (no RIFF/WAVE header)")
    pos, rate, channels, bits, samples = 12, SAMPLE_RATE, 1, 16, None
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = pos + 8
        if chunk_id == b"fmt ":
            _fmt, channels, rate, _br, _ba, bits = struct.unpack("<HHIIHH", data[body : body + 16])
        elif chunk_id == b"data":
            available = len(data) - body
            size = available if size == 0 or size > available else size
            samples = data[body : body + size - size % (channels * bits // 8)]
            break
        pos = body + size + (size & 1)
    if samples is None:
        raise SessionError(f"{path} has no data chunk")
    if bits != 16:
        raise SessionError(f"{path}: only 16-bit PCM is supported, found {bits}-bit")
    audio = np.frombuffer(samples, dtype="<i2").astype(np.float32) / 32767.0
    if channels > 1:
        audio = audio.reshape(-1, channels).mean(axis=1)
    return audio, rate


# ---------------------------------------------------------------- writers
class WavWriter:
    """16-bit mono PCM written incrementally; the header always matches the data."""

    def __init__(self, path: pathlib.Path, *, sample_rate: int = SAMPLE_RATE) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.n_bytes = 0
        self._f = open(path, "wb")
        self._f.write(wav_header(0, sample_rate=sample_rate))
        self._f.flush()

    def write(self, chunk: np.ndarray) -> None:
        pcm = to_int16(chunk).tobytes()
        if not pcm:
            return
        self._f.seek(0, os.SEEK_END)
        self._f.write(pcm)
        self.n_bytes += len(pcm)
        self._f.seek(4)
        self._f.write(struct.pack("<I", 36 + self.n_bytes))
        self._f.seek(40)
        self._f.write(struct.pack("<I", self.n_bytes))
        self._f.flush()

    @property
    def seconds(self) -> float:
        return self.n_bytes / 2 / self.sample_rate

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def draw_score(rgb: np.ndarray, score: float | None, t: float) -> np.ndarray:
    """A copy of the frame with the score, its label and a [-3, 3] gauge drawn on top."""
    import cv2

    img = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    h, w = img.shape[:2]
    scale = max(0.5, w / 640)
    bar_h = int(56 * scale)
    overlay = img[:bar_h].astype(np.float32) * 0.35
    img[:bar_h] = overlay.astype(np.uint8)
    if score is None or not math.isfinite(score):
        text, colour = "--  waiting for the first window", (220, 220, 220)
    else:
        c = protocol.class7(score)
        colour = (90, 200, 120) if c > 0 else (235, 90, 80) if c < 0 else (220, 220, 220)
        text = f"{score:+.2f}  {protocol.CLASS7_LABELS[c]}"
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, text, (int(10 * scale), int(30 * scale)), font, 0.8 * scale, colour, max(1, int(2 * scale)), cv2.LINE_AA)
    cv2.putText(img, f"t={t:7.2f}s", (w - int(130 * scale), int(30 * scale)), font, 0.5 * scale, (200, 200, 200), 1, cv2.LINE_AA)
    # gauge: [-3, 3] across the width, a tick at 0, a marker at the score
    y = int(46 * scale)
    x0, x1 = int(10 * scale), w - int(10 * scale)
    cv2.line(img, (x0, y), (x1, y), (120, 120, 120), max(1, int(2 * scale)))
    mid = (x0 + x1) // 2
    cv2.line(img, (mid, y - int(5 * scale)), (mid, y + int(5 * scale)), (200, 200, 200), 1)
    if score is not None and math.isfinite(score):
        xs = int(mid + (max(-3.0, min(3.0, score)) / 3.0) * (x1 - mid))
        cv2.circle(img, (xs, y), max(3, int(6 * scale)), colour, -1, cv2.LINE_AA)
    return img


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
        import av
        from fractions import Fraction

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
        import av

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
                import cv2

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
        import av

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
            container.close()


# ---------------------------------------------------------------- the recorder
class SessionRecorder:
    """Writes a session folder while the monitor runs. Thread-safe: windows, words,
    audio and frames may come from different threads. Use as a context manager or
    call close() (also on Ctrl-C) so that the last video fragment and the end time
    are written.

    `audio=True` muxes the audio given to `write_audio` into video.mp4 too (audio.wav
    is written either way). A write that fails with an OSError (a full disk) stops
    the recording and nothing else: see `stats()` / `error`; `on_error(message)` is
    called once, from the writing thread, so a dashboard can show it.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        session_info: dict[str, Any],
        video_fps: float = 10.0,
        fsync: bool = True,
        words_every: float = 2.0,
        video_queue: int = 32,
        audio: bool = True,
        video_max_side: int | None = 1280,
        on_error=None,
    ) -> None:
        self.directory = pathlib.Path(directory)
        if (self.directory / SCORES).exists() or (self.directory / INFO).exists():
            raise FileExistsError(
                f"{self.directory} already holds a recorded session; choose a new folder "
                "(hcl-live names one by date when --record is given a parent folder)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.words_every = words_every
        self.video_fps = video_fps
        self.video_audio = audio
        self.video_max_side = video_max_side
        self.on_error = on_error
        self.windows = 0
        self.words: list[dict[str, Any]] = []
        self.error: str | None = None  # why the recording stopped early (None while it goes on)
        self.video_error: str | None = None  # why the video alone stopped
        self._vtt_cued = 0  # words already written as finished cues
        self._vtt_end = 0  # byte offset in transcript.vtt after the finished cues
        self._words_written_at = 0.0
        self._closed = False
        self._info: dict[str, Any] = {
            **session_info,
            "recording": {
                "format": FORMAT_VERSION,
                "started_at": _now_iso(),
                "ended_at": None,
                "versions": _versions(),
                "files": {"scores": SCORES, "words": WORDS, "transcript": VTT, "audio": AUDIO, "video": VIDEO},
            },
        }
        self._write_info()
        self._scores = open(self.directory / SCORES, "a", encoding="utf-8")
        header = b"WEBVTT\n\n"
        with open(self.directory / VTT, "wb") as f:
            f.write(header)
        self._vtt_end = len(header)
        _atomic_write_text(self.directory / WORDS, "[]\n")
        self._wav: WavWriter | None = None
        self._video: VideoWriter | None = None
        self._score_now: float | None = None
        # frames are drawn and encoded on a thread of their own, so a capture thread never
        # waits for x264; when that thread falls behind, frames are dropped and counted
        self._video_queue_size = video_queue
        self._frames: queue.Queue | None = None
        self._video_thread: threading.Thread | None = None
        self._video_exc: BaseException | None = None
        self.video_dropped = 0
        # audio for the video's sound track, waiting for the encoder: (first sample, samples)
        self._pending_audio: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        self._pending_audio_samples = 0
        self._audio_samples = 0  # samples written to audio.wav so far
        self._locks = {k: threading.Lock() for k in ("scores", "words", "audio", "video")}
        self._error_lock = threading.Lock()
        self._pending_lock = threading.Lock()

    def __enter__(self) -> "SessionRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_info(self) -> None:
        # trailing spaces (valid JSON) keep room in the file's blocks for the end-of-session
        # fields, so that they can still be written in place when the disk is full
        text = json.dumps(self._info, indent=2, default=str) + "\n"
        _atomic_write_text(self.directory / INFO, text + " " * INFO_SLACK)

    def _write_info_in_place(self) -> None:
        """session.json rewritten inside the bytes it already has (no new disk space):
        the fallback when the disk is full. Refuses (OSError) when the text does not fit."""
        text = (json.dumps(self._info, indent=2, default=str) + "\n").encode("utf-8")
        path = self.directory / INFO
        size = path.stat().st_size
        if len(text) > size:
            raise OSError(f"{path}: the end-of-session fields do not fit in its {size} bytes")
        with open(path, "r+b") as f:
            f.write(text + b" " * (size - len(text)))
            f.flush()
            os.fsync(f.fileno())

    def _check_open(self) -> None:
        if self._closed:
            raise RecorderClosed(f"SessionRecorder for {self.directory} is closed; nothing more is written")

    @property
    def failed(self) -> bool:
        return self.error is not None

    def _fail(self, what: str, exc: BaseException) -> None:
        """Stop recording after a write error (a full disk): report once, write nothing more."""
        with self._error_lock:
            if self.error is not None:
                return
            self.error = f"recording stopped: writing {what} in {self.directory} failed ({type(exc).__name__}: {exc})"
        log.error("%s; the monitoring goes on without recording", self.error)
        if self.on_error is not None:
            try:
                self.on_error(self.error)
            except Exception:  # a reporting hook must not break the writer
                log.debug("on_error hook failed", exc_info=True)

    def stats(self) -> dict[str, Any]:
        """What the recording holds so far, and whether it still runs (for /metrics and the dashboard)."""
        return {
            "directory": str(self.directory),
            "recording": not self._closed and self.error is None,
            "windows": self.windows,
            "words": len(self.words),
            "audio_seconds": round(self._audio_samples / SAMPLE_RATE, 3),
            "video_frames": self._video.frames if self._video else 0,
            "video_frames_dropped": self.video_dropped,
            "video_size": list(self._video.size) if self._video and self._video.size else None,
            "error": self.error,
            "video_error": self.video_error,
        }

    def write_window(self, msg: dict[str, Any]) -> None:
        """Append one window message; on disk (flushed, fsync'ed) when this returns."""
        line = json.dumps(msg, separators=(",", ":"), allow_nan=False) + "\n"
        score = msg.get("score")
        if isinstance(score, (int, float)):
            self._score_now = float(score)
        with self._locks["scores"]:
            self._check_open()
            if self.error is not None:
                return
            try:
                self._scores.write(line)
                self._scores.flush()
                if self.fsync:
                    os.fsync(self._scores.fileno())
            except OSError as exc:
                self._fail(SCORES, exc)
                return
            self.windows += 1

    def add_words(self, words: Iterable[Any]) -> None:
        """Add transcribed words (dicts {w, start, end} or `Word`s), in time order."""
        new = [normalize_word(w) for w in words]
        new = [w for w in new if w["w"]]
        with self._locks["words"]:
            self._check_open()
            if not new:
                return
            self.words.extend(new)
            if self.error is not None:
                return
            try:
                self._flush_words(final=False)
            except OSError as exc:
                self._fail(f"{VTT} / {WORDS}", exc)

    def _flush_words(self, *, final: bool) -> None:
        # finished cues are appended after the ones on disk; the last cue (which may still
        # grow until the speaker pauses) is written after them and replaced on the next call
        groups = cue_groups(self.words[self._vtt_cued :])
        finished = groups if final else groups[:-1]
        growing = [] if final else groups[-1:]
        done = "".join(format_cue(g) for g in finished).encode("utf-8")
        tail = "".join(format_cue(g) for g in growing).encode("utf-8")
        with open(self.directory / VTT, "r+b") as f:
            f.seek(self._vtt_end)
            f.write(done + tail)
            f.truncate()
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        self._vtt_end += len(done)
        self._vtt_cued += sum(len(g) for g in finished)
        now = time.monotonic()
        if final or now - self._words_written_at >= self.words_every:
            _atomic_write_text(self.directory / WORDS, json.dumps(self.words, separators=(",", ":")) + "\n")
            self._words_written_at = now

    def write_audio(self, chunk: np.ndarray) -> None:
        """Append float32 16 kHz mono samples in [-1, 1] (sample 0 = session time 0)."""
        x = np.asarray(chunk, np.float32).reshape(-1)
        with self._locks["audio"]:
            self._check_open()
            if self.error is not None:
                return
            try:
                if self._wav is None:
                    self._wav = WavWriter(self.directory / AUDIO)
                self._wav.write(x)
            except OSError as exc:
                self._fail(AUDIO, exc)
                return
            first = self._audio_samples
            self._audio_samples += len(x)
        if self.video_audio and len(x):
            self._queue_video_audio(first, x.copy())

    def _queue_video_audio(self, first: int, x: np.ndarray) -> None:
        with self._pending_lock:
            if self.video_error is not None:
                return
            self._pending_audio.append((first, x))
            self._pending_audio_samples += len(x)
            # before the first frame nothing is encoded: hold at most a minute (older audio is
            # dropped; the sound track then starts later, still in sync)
            while self._pending_audio_samples > 60 * SAMPLE_RATE and len(self._pending_audio) > 1:
                _, old = self._pending_audio.popleft()
                self._pending_audio_samples -= len(old)
        if self._video_queue_size <= 0:  # no encoder thread: encode here
            with self._locks["video"]:
                if not self._closed:
                    self._guarded(self._mux_pending_audio)

    def _mux_pending_audio(self) -> None:
        """Encode the audio waiting for the video (on the thread that owns the video)."""
        if self._video is None or not self._video.opened or self.video_error is not None:
            return
        with self._pending_lock:
            items = list(self._pending_audio)
            self._pending_audio.clear()
            self._pending_audio_samples = 0
        for first, x in items:
            self._video.write_audio(x, first)

    def write_frame(self, rgb: np.ndarray, t: float, score: float | None = None) -> None:
        """Queue an RGB frame at time t (s) for the video, with `score` (default: the last
        window's) drawn on. Never waits for the encoder (frames are dropped if it lags)."""
        self._check_open()
        if self.error is not None or self.video_error is not None:
            return
        item = (np.array(rgb, dtype=np.uint8, copy=True), float(t), self._score_now if score is None else score)
        if self._video_queue_size <= 0:
            with self._locks["video"]:
                self._check_open()
                self._encode_guarded(*item)
            return
        with self._locks["video"]:
            self._check_open()
            if self._video_thread is None:
                size = max(4, min(self._video_queue_size, VIDEO_QUEUE_BYTES // max(1, item[0].nbytes)))
                self._frames = queue.Queue(maxsize=size)
                self._video_thread = threading.Thread(target=self._video_loop, name="session-video", daemon=True)
                self._video_thread.start()
        try:
            self._frames.put_nowait(item)
        except queue.Full:
            self.video_dropped += 1

    def _encode(self, rgb: np.ndarray, t: float, score: float | None) -> None:
        if self._video is None:
            self._video = VideoWriter(
                self.directory / VIDEO, fps=self.video_fps, audio=self.video_audio, max_side=self.video_max_side
            )
        if self.video_max_side and max(rgb.shape[:2]) > self.video_max_side:
            import cv2

            h, w = rgb.shape[:2]
            k = self.video_max_side / max(w, h)
            rgb = cv2.resize(rgb, (max(2, int(round(w * k))), max(2, int(round(h * k)))), interpolation=cv2.INTER_AREA)
        self._video.write(draw_score(rgb, score, t), t)
        self._mux_pending_audio()

    def _encode_guarded(self, *item) -> None:
        self._guarded(self._encode, *item)

    def _guarded(self, fn, *args) -> None:
        """Run a video step; a disk error stops the recording, an encoder error the video only."""
        if self.error is not None or self.video_error is not None:
            return
        try:
            fn(*args)
        except OSError as exc:
            self._video_exc = exc
            self.video_error = f"{type(exc).__name__}: {exc}"
            self._fail(VIDEO, exc)
        except Exception as exc:
            self._video_exc = exc
            self.video_error = f"{type(exc).__name__}: {exc}"
            log.error("session video %s stopped: %s", self.directory / VIDEO, self.video_error)

    def _video_loop(self) -> None:
        assert self._frames is not None
        while True:
            try:
                item = self._frames.get(timeout=0.25)
            except queue.Empty:
                item = ()
            if item is None:
                return
            if item:
                self._encode_guarded(*item)  # keeps draining after an error, so write_frame never blocks
            else:
                self._guarded(self._mux_pending_audio)

    def _finish_video(self) -> None:
        if self._video_thread is not None:
            self._frames.put(None)
            self._video_thread.join()
        if self._video is not None:
            try:
                self._guarded(self._mux_pending_audio)
            finally:
                self._video.close()

    def close(self) -> None:
        """Finish every file (last video fragment, words, session.json end time). Idempotent.
        Never raises for a recording that already stopped on a write error (see `stats()`)."""
        if self._closed:
            return
        for lock in self._locks.values():  # let writes in flight finish, then refuse new ones
            with lock:
                self._closed = True
        errors: list[str] = []
        for name, finish in (
            ("scores", self._scores.close),
            ("words", lambda: self.error is None and self._flush_words(final=True)),
            ("audio", lambda: self._wav and self._wav.close()),
            ("video", self._finish_video),
        ):
            try:
                with self._locks[name]:
                    finish()
            except OSError as exc:  # a full disk: record why, finish the other files anyway
                self._fail(name, exc)
            except Exception as exc:
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
        if self.video_error is not None and self.error is None:
            errors.append(f"video: {self.video_error}")
        rec = self._info["recording"]
        rec.update(
            ended_at=_now_iso(),
            windows=self.windows,
            words=len(self.words),
            audio_seconds=round(self._wav.seconds, 3) if self._wav else 0.0,
            video_frames=self._video.frames if self._video else 0,
            video_frames_dropped=self.video_dropped,
        )
        if self.error is not None:
            rec["stopped_early"] = self.error
        if errors:
            rec["errors"] = errors
        try:
            self._write_info()
        except OSError as exc:
            self._fail(INFO, exc)
            try:  # a full disk: overwrite the bytes session.json already holds
                self._write_info_in_place()
            except OSError as exc2:  # the old session.json stays (without the end time)
                log.error("%s: the end time could not be written (%s)", self.directory / INFO, exc2)
        if errors:
            raise RuntimeError(f"closing session {self.directory}: " + "; ".join(errors))


# ---------------------------------------------------------------- the reader
@dataclass
class RecordedSession:
    directory: pathlib.Path
    info: dict[str, Any]
    windows: list[dict[str, Any]]
    words: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False  # the last line of scores.jsonl was cut (kill -9 mid-write)

    @property
    def session_id(self) -> str:
        if self.windows:
            return str(self.windows[0].get("session", self.directory.name))
        return str(self.info.get("session", self.directory.name))

    @property
    def audio_path(self) -> pathlib.Path | None:
        p = self.directory / AUDIO
        return p if p.is_file() else None

    @property
    def video_path(self) -> pathlib.Path | None:
        p = self.directory / VIDEO
        return p if p.is_file() else None

    def read_audio(self) -> tuple[np.ndarray, int]:
        if self.audio_path is None:
            raise SessionError(f"{self.directory} has no {AUDIO}")
        return read_wav(self.audio_path)

    def session_message(self) -> dict[str, Any]:
        """The protocol "session" message a replaying DashboardServer sends."""
        return protocol.session_message(session=self.session_id, windows=self.windows, words=self.words)


def _read_windows(path: pathlib.Path) -> tuple[list[dict[str, Any]], bool]:
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    windows: list[dict[str, Any]] = []
    truncated = False
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        is_last = all(not rest.strip() for rest in lines[i + 1 :])
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if is_last:
                truncated = True  # a write cut short by kill -9 / power loss
                break
            raise SessionError(f"{path}, line {i + 1}: not a window message ({exc}); the file is damaged") from None
        windows.append(msg)
    return windows, truncated


def _words_from_windows(windows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, float], dict[str, Any]] = {}
    for win in windows:
        for w in win.get("words") or ():
            seen.setdefault((w["w"], w["start"]), w)
    return sorted(seen.values(), key=lambda w: w["start"])


def read_session(directory: str | os.PathLike) -> RecordedSession:
    """Read a session folder (written by SessionRecorder), tolerating a kill -9."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise SessionError(f"{directory} is not a folder; pass the session folder that hcl-live --record wrote")
    info_path, scores_path = directory / INFO, directory / SCORES
    if not info_path.is_file() and not scores_path.is_file():
        raise SessionError(
            f"{directory} is not a recorded session: it has neither {INFO} nor {SCORES}; "
            "pass the session folder that hcl-live --record wrote"
        )
    info: dict[str, Any] = {}
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise SessionError(f"{info_path} is not valid JSON ({exc})") from None
    windows, truncated = _read_windows(scores_path) if scores_path.is_file() else ([], False)
    words: list[dict[str, Any]] = []
    words_path = directory / WORDS
    if words_path.is_file():
        try:
            words = json.loads(words_path.read_text(encoding="utf-8"))
        except ValueError:
            words = []
    # words.json is rewritten every few seconds: after a kill -9 the windows hold the newest words
    last = words[-1]["start"] if words else -math.inf
    words = words + [w for w in _words_from_windows(windows) if w["start"] > last]
    return RecordedSession(directory=directory, info=info, windows=windows, words=words, truncated=truncated)
