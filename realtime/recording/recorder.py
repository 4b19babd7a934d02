"""SessionRecorder: writes a session folder (see `realtime.recording.layout`) while the
monitor runs.

A failing disk (ENOSPC, EIO, ...) stops the recording, never the caller: every
`write_*` returns normally from then on, `error` (a `RecordingStopped`) and
`stats()["error"]` say what happened (logged once), and what was written before stays
readable.
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
import logging
import os
import pathlib
import platform
import queue
import threading
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from hcl.atomic_file import atomic_write_text
from hcl.features.config import SAMPLE_RATE
from realtime.core.component import Worker
from realtime.recording.layout import (
    AUDIO,
    FORMAT_VERSION,
    INFO,
    SCORES,
    VIDEO,
    VTT,
    WORDS,
    RecorderClosed,
    RecordingStopped,
)
from realtime.recording.overlay import draw_score
from realtime.recording.video import VideoWriter
from realtime.recording.wav import WavWriter
from realtime.recording.words import VttWriter, WordsLog, normalize_words

log = logging.getLogger(__name__)

INFO_SLACK = 2048  # spare bytes at the end of session.json (see SessionRecorder._write_info)
VIDEO_QUEUE_BYTES = 32 << 20  # frames waiting for the encoder hold at most this much (and at least 4 frames)
# audio chunks waiting for the video's sound track: before the first frame (nothing is
# encoded yet) the oldest are dropped beyond this many, so the sound track then starts
# later, still in sync (240 chunks: two minutes of audio at the 0.5 s window step)
PENDING_AUDIO_CHUNKS = 240


class _VideoEncoder(Worker):
    """The recorder's encoder thread ("session-video"): takes frames off `frames` (a
    bounded queue; None = the end) and runs `encode(rgb, t, score)`, or `idle()` (mux the
    audio handed over) when none came for 0.25 s. The steps report their own errors."""

    name = "session-video"

    def __init__(self, frames: queue.Queue, *, encode: Callable[..., None], idle: Callable[[], None]) -> None:
        super().__init__()
        self.frames = frames
        self.encode = encode
        self.idle = idle

    def run(self) -> None:
        while True:
            try:
                item = self.frames.get(timeout=0.25)
            except queue.Empty:
                item = ()
            if item is None:
                return
            if item:
                self.encode(*item)  # keeps draining after an error, so write_frame never blocks
            else:
                self.idle()

    def finish_queue(self) -> None:
        """Put the end mark (the encoder drains the queue, so it finds room) and wait."""
        while self.running:
            try:
                self.frames.put(None, timeout=0.5)
                break
            except queue.Full:
                continue
        self.join()


class _Finisher(Worker):
    """The thread that finishes a stopped recording's files ("session-finish"), so that
    stop() returns at once; `finish_files` keeps its error (not logged twice)."""

    name = "session-finish"

    def __init__(self, finish_files: Callable[[], None]) -> None:
        super().__init__()
        self.finish_files = finish_files

    def run(self) -> None:
        self.finish_files()


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for dist in ("hcl-live", "numpy", "torch", "av", "websockets"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


class SessionRecorder:
    """Writes a session folder while the monitor runs: a sink after scoring and a frame tap.

    Who calls what:

    - `write_window(msg, audio=..., words=...)`: the thread that scores windows, once per
      window. Appends the window's line to scores.jsonl, the audio since the last call to
      audio.wav (and hands it to the video's sound track), and the words committed since
      the last call to words.jsonl and transcript.vtt; all on disk when it returns, the
      window line first (a dashboard never shows a window the recording lacks). When
      windows are revised (live policy: re-scored as words commit), the pipeline calls it
      once per window with its final revision, when the window closes; the dashboard may
      then show the open window's earlier revisions before the line is on disk.
    - `write_frame(rgb, t)`: the capture thread, at capture rate. The frame is queued for
      the encoder thread ("session-video"), which draws the last window's score on it
      and encodes it with the sound handed over so far. It never waits: when the encoder
      lags, frames are dropped and counted. `video_queue=0` encodes in the caller instead.
    - `stop()` then `join()`: any thread, after both callers stopped (a later write raises
      RecorderClosed). Use the recorder as a context manager or call both (also on
      Ctrl-C) so that the last cue, the last video fragment and the end time are written.

    The component contract: the files are opened at construction (a folder that already
    holds a session is refused before anything starts); `start()` has nothing to do (the
    encoder, a `Worker`, starts with the first frame: its queue is sized by the frame);
    `stop()` refuses later writes and returns at once, the files are finished on the
    "session-finish" thread; `join(timeout)` waits until they are; `error` is why the
    recording stopped early or did not finish cleanly (a `RecordingStopped`, None while
    it goes on); `stats()`. Every line is on disk (fsync'ed) when its write returns, so a
    recording killed before it finished stays readable. Its bounds are its own: the
    frame queue (at most `video_queue` frames and VIDEO_QUEUE_BYTES),
    PENDING_AUDIO_CHUNKS of audio for the video's sound track.
    - `write_audio(chunk)` / `add_words(words)`: the same writes as write_window's keyword
      arguments, safe from any thread, for callers that feed audio or words apart.

    Locks: `_lock` serialises the scorer-side files (scores, words, vtt, wav) against
    stop() and against the separate write_audio/add_words; `_video_lock` serialises
    starting the encoder thread (or, with video_queue=0, encoding) against stop();
    `_error_lock` makes the first write error the one reported. The frame queue and the
    audio handed to the encoder (a deque of at most PENDING_AUDIO_CHUNKS chunks) need none.

    Memory stays flat however long the session: nothing here keeps a list that grows
    with it (the VTT writer holds the growing cue only, at most 10 words).

    `audio=True` muxes the audio into video.mp4 too (audio.wav is written either way).
    A write that fails with an OSError (a full disk) stops the recording and nothing
    else: see `stats()` / `error`; `on_error(message)` is called once, from the writing
    thread, so a dashboard can show it.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        session_info: dict[str, Any],
        video_fps: float = 10.0,
        fsync: bool = True,
        video_queue: int = 32,
        audio: bool = True,
        video_max_side: int | None = 1280,
        on_error: Callable[[str], Any] | None = None,
    ) -> None:
        self.directory = pathlib.Path(directory)
        if (self.directory / SCORES).exists() or (self.directory / INFO).exists():
            raise FileExistsError(
                f"{self.directory} already holds a recorded session; choose a new folder "
                "(hcl-live names one by date when --record is given a parent folder)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.video_fps = video_fps
        self.video_audio = audio
        self.video_max_side = video_max_side
        self.on_error = on_error
        self.windows = 0
        self.error: RecordingStopped | None = None  # why the recording stopped early (None while it goes on)
        self.video_error: str | None = None  # why the video alone stopped
        self.video_dropped = 0
        self._closed = False
        self._finisher: _Finisher | None = None  # made by stop()
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
        self._words = WordsLog(self.directory / WORDS, fsync=fsync)
        self._vtt = VttWriter(self.directory / VTT, fsync=fsync)
        self._wav: WavWriter | None = None  # opened with the first audio
        self._audio_samples = 0  # samples written to audio.wav so far (sample 0 = session time 0)
        self._score_now: float | None = None  # the last window's score, drawn on the frames
        self._video: VideoWriter | None = None  # opened with the first frame, used by one thread
        self._video_queue_size = video_queue
        self._encoder: _VideoEncoder | None = None  # made and started with the first frame
        # audio for the video's sound track: (first sample, samples), appended by the scorer
        # thread, taken by the encoder (deque append/popleft are atomic)
        self._pending_audio: collections.deque[tuple[int, np.ndarray]] = collections.deque(maxlen=PENDING_AUDIO_CHUNKS)
        self._lock = threading.Lock()
        self._video_lock = threading.Lock()
        self._error_lock = threading.Lock()

    # ------------------------------------------------------------ the contract
    name = "recorder"

    def start(self) -> None:
        """Nothing to start: the files are open, the encoder starts with the first frame. Idempotent."""

    def stop(self) -> None:
        """Refuse later writes and finish every file (last cue, last video fragment,
        session.json's end time) on the "session-finish" thread; returns at once,
        idempotent. A write in flight finishes first."""
        with self._lock:  # a write_window in flight finishes first; later ones are refused
            if self._closed:
                return
            self._closed = True
            self._finisher = _Finisher(self._finish_files)
        self._finisher.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the files are finished after stop() (before it: for the encoder thread)."""
        if self._finisher is not None:
            self._finisher.join(timeout)
        elif self._encoder is not None:
            self._encoder.join(timeout)

    @property
    def thread(self) -> threading.Thread | None:
        """The encoder's thread once the first frame started it (for its CPU time)."""
        return self._encoder.thread if self._encoder is not None else None

    def __enter__(self) -> "SessionRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.join()

    # ------------------------------------------------------------ session.json
    def _write_info(self) -> None:
        # trailing spaces (valid JSON) keep room in the file's blocks for the end-of-session
        # fields, so that they can still be written in place when the disk is full
        text = json.dumps(self._info, indent=2, default=str) + "\n"
        atomic_write_text(self.directory / INFO, text + " " * INFO_SLACK)

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

    # ------------------------------------------------------------ state and errors
    def _check_open(self) -> None:
        if self._closed:
            raise RecorderClosed(f"SessionRecorder for {self.directory} is closed; nothing more is written")

    def _fail(self, what: str, exc: BaseException) -> None:
        """Stop recording after a write error (a full disk): report once, write nothing more."""
        with self._error_lock:
            if self.error is not None:
                return
            message = f"recording stopped: writing {what} in {self.directory} failed ({type(exc).__name__}: {exc})"
            self.error = RecordingStopped(message)
            self.error.__cause__ = exc
        log.error("%s; the monitoring goes on without recording", message)
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:  # a reporting hook must not break the writer
                log.debug("on_error hook failed", exc_info=True)

    def _attempt(self, what: str, fn: Callable[..., None], *args: Any) -> bool:
        """Run one file write; an OSError stops the recording (False)."""
        try:
            fn(*args)
        except OSError as exc:
            self._fail(what, exc)
            return False
        return True

    def stats(self) -> dict[str, Any]:
        """What the recording holds so far, and whether it still runs (for /metrics and the dashboard)."""
        return {
            "directory": str(self.directory),
            "recording": not self._closed and self.error is None,
            "encoder_running": self._encoder is not None and self._encoder.running,
            "video_queued": self._encoder.frames.qsize() if self._encoder is not None else 0,  # bounded by video_queue
            "windows": self.windows,
            "words": self._words.count,
            "audio_seconds": round(self._audio_samples / SAMPLE_RATE, 3),
            "video_frames": self._video.frames if self._video else 0,
            "video_frames_dropped": self.video_dropped,
            "video_size": list(self._video.size) if self._video and self._video.size else None,
            "error": None if self.error is None else str(self.error),
            "video_error": self.video_error,
        }

    # ------------------------------------------------------------ the sink after scoring
    def write_window(
        self, msg: dict[str, Any], *, audio: np.ndarray | None = None, words: Iterable[Any] | None = None
    ) -> None:
        """Record one scored window: its message, the 16 kHz float32 mono audio since the
        last call (None or empty: none), and the words committed since the last call
        (dicts {w, start, end[, p]} or `Word`s, in time order). On disk (flushed,
        fsync'ed) when this returns."""
        line = json.dumps(msg, separators=(",", ":"), allow_nan=False) + "\n"
        x = None if audio is None else np.asarray(audio, np.float32).reshape(-1)
        new = normalize_words(words)
        score = msg.get("score")
        if isinstance(score, (int, float)):
            self._score_now = float(score)
        with self._lock:
            self._check_open()
            if self.error is not None:
                return
            if not self._attempt(SCORES, self._write_line, line):
                return
            self.windows += 1
            if x is not None and len(x) and not self._attempt(AUDIO, self._write_audio, x):
                return
            if new:
                self._attempt(f"{WORDS} / {VTT}", self._write_words, new)

    def write_audio(self, chunk: np.ndarray) -> None:
        """Append float32 16 kHz mono samples in [-1, 1] (sample 0 = session time 0);
        the same as write_window's `audio=`."""
        x = np.asarray(chunk, np.float32).reshape(-1)
        with self._lock:
            self._check_open()
            if self.error is None and len(x):
                self._attempt(AUDIO, self._write_audio, x)

    def add_words(self, words: Iterable[Any]) -> None:
        """Add transcribed words (dicts {w, start, end} or `Word`s), in time order; the
        same as write_window's `words=`."""
        new = normalize_words(words)
        with self._lock:
            self._check_open()
            if self.error is None and new:
                self._attempt(f"{WORDS} / {VTT}", self._write_words, new)

    def _write_line(self, line: str) -> None:
        self._scores.write(line)
        self._scores.flush()
        if self.fsync:
            os.fsync(self._scores.fileno())

    def _write_audio(self, x: np.ndarray) -> None:
        if self._wav is None:
            self._wav = WavWriter(self.directory / AUDIO)
        self._wav.write(x)
        first = self._audio_samples
        self._audio_samples += len(x)
        if self.video_audio and self.video_error is None:
            self._pending_audio.append((first, x.copy()))  # the caller may reuse its buffer

    def _write_words(self, words: list[dict[str, Any]]) -> None:
        self._words.append(words)
        self._vtt.add(words)

    # ------------------------------------------------------------ the frame tap
    def write_frame(self, rgb: np.ndarray, t: float, score: float | None = None) -> None:
        """Queue an RGB frame at time t (s) for the video, with `score` (default: the last
        window's) drawn on. Never waits for the encoder (frames are dropped if it lags)."""
        self._check_open()
        if self.error is not None or self.video_error is not None:
            return
        item = (np.array(rgb, dtype=np.uint8, copy=True), float(t), self._score_now if score is None else score)
        if self._video_queue_size <= 0:  # no encoder thread: encode here
            with self._video_lock:
                self._check_open()
                self._guarded(self._encode, *item)
            return
        if self._encoder is None:
            with self._video_lock:
                self._check_open()
                if self._encoder is None:
                    size = max(4, min(self._video_queue_size, VIDEO_QUEUE_BYTES // max(1, item[0].nbytes)))
                    encoder = _VideoEncoder(queue.Queue(maxsize=size), encode=lambda *it: self._guarded(self._encode, *it),
                                            idle=lambda: self._guarded(self._mux_pending_audio))
                    encoder.start()
                    self._encoder = encoder
        try:
            self._encoder.frames.put_nowait(item)
        except queue.Full:
            self.video_dropped += 1

    # ------------------------------------------------------------ the encoder (one thread owns self._video)
    def _encode(self, rgb: np.ndarray, t: float, score: float | None) -> None:
        if self._video is None:
            self._video = VideoWriter(
                self.directory / VIDEO, fps=self.video_fps, audio=self.video_audio, max_side=self.video_max_side
            )
        if self.video_max_side and max(rgb.shape[:2]) > self.video_max_side:
            h, w = rgb.shape[:2]
            k = self.video_max_side / max(w, h)
            rgb = cv2.resize(rgb, (max(2, int(round(w * k))), max(2, int(round(h * k)))), interpolation=cv2.INTER_AREA)
        self._video.write(draw_score(rgb, score, t), t)
        self._mux_pending_audio()

    def _mux_pending_audio(self) -> None:
        """Encode the audio handed over so far (once the video is open: its first frame
        sets the file up; until then the audio waits, the oldest dropped past the bound)."""
        if self._video is None or not self._video.opened or self.video_error is not None:
            return
        while True:
            try:
                first, x = self._pending_audio.popleft()
            except IndexError:
                return
            self._video.write_audio(x, first)

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        """Run a video step; a disk error stops the recording, an encoder error the video only."""
        if self.error is not None or self.video_error is not None:
            return
        try:
            fn(*args)
        except OSError as exc:
            self.video_error = f"{type(exc).__name__}: {exc}"
            self._fail(VIDEO, exc)
        except Exception as exc:
            self.video_error = f"{type(exc).__name__}: {exc}"
            log.error("session video %s stopped: %s", self.directory / VIDEO, self.video_error)

    def _finish_video(self) -> None:
        if self._encoder is not None:
            self._encoder.finish_queue()
        if self._video is not None:
            try:
                self._guarded(self._mux_pending_audio)
            finally:
                self._video.close()  # frees the encoders and their threads
        self._pending_audio.clear()

    # ------------------------------------------------------------ the end
    def _finish_words(self) -> None:
        try:
            if self.error is None:
                self._vtt.add([], final=True)  # the growing cue becomes a finished one
        finally:
            try:
                self._vtt.close()
            finally:
                self._words.close()

    def _finish_files(self) -> None:
        """Finish every file, on the finisher thread. A write error (a full disk) is kept
        in `error` by _fail; any other failure to finish a file is kept there too."""
        with self._video_lock:  # so does an encoder start (or an inline encode) in flight
            pass
        errors: list[str] = []
        for name, finish in (
            (SCORES, self._scores.close),
            (f"{WORDS} / {VTT}", self._finish_words),
            (AUDIO, lambda: self._wav and self._wav.close()),
            (VIDEO, self._finish_video),
        ):
            try:
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
            words=self._words.count,
            audio_seconds=round(self._audio_samples / SAMPLE_RATE, 3),
            video_frames=self._video.frames if self._video else 0,
            video_frames_dropped=self.video_dropped,
        )
        if self.error is not None:
            rec["stopped_early"] = str(self.error)
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
            message = f"finishing session {self.directory}: " + "; ".join(errors)
            log.error("%s", message)
            with self._error_lock:
                if self.error is None:
                    self.error = RecordingStopped(message)
