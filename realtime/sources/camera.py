"""An OpenCV camera as a thread that keeps only the latest frame.

A camera that disappears mid-session marks video absent (`feed.present = False`)
and is retried with backoff; the session goes on with audio and text. So does
a camera that stalls: `cv2.VideoCapture.read()` has no timeout (a network
camera whose socket stays open but sends nothing blocks it forever), so frames
are read on a connection thread of their own and a watchdog marks the camera
absent when no frame came for `stall_seconds`, abandons that connection (its
capture is released if its read ever returns) and opens a new one. `stop()`
never waits for a blocked read. Frames larger than `max_side` are scaled down
as they arrive.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import time
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from hcl.features.media import ANALYSIS_MAX_SIDE
from realtime.core.clock import SessionClock
from realtime.core.component import Worker
from realtime.core.streams import FrameFeed
from realtime.sources import FrameTap, SourceError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """cv2's log output silenced for the block (probing absent cameras warns loudly)."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_VIDEOIO_DEBUG", "0")
    previous = cv2.getLogLevel() if hasattr(cv2, "getLogLevel") else None
    with contextlib.suppress(Exception):
        cv2.setLogLevel(0)  # LOG_LEVEL_SILENT
    try:
        yield
    finally:
        if previous is not None:
            with contextlib.suppress(Exception):
                cv2.setLogLevel(previous)


def _linux_nodes() -> list[int] | None:
    """Indices of /dev/videoN nodes on Linux (None elsewhere)."""
    if os.name != "posix" or os.uname().sysname != "Linux":
        return None
    return sorted(int(p[len("/dev/video") :]) for p in glob.glob("/dev/video*") if p[len("/dev/video") :].isdigit())


def list_cameras(max_index: int = 4) -> list[int]:
    """Indices of cameras that open and deliver a frame (probing 0..max_index-1 quietly).

    On Linux only indices with a /dev/videoN node are probed, so a machine without
    cameras answers at once.
    """
    nodes = _linux_nodes()
    candidates = list(range(max_index)) if nodes is None else [i for i in nodes if i < max_index]
    found = []
    with _quiet_opencv():
        for index in candidates:
            cap = cv2.VideoCapture(index)
            try:
                if cap.isOpened() and cap.read()[0]:
                    found.append(index)
            finally:
                cap.release()
    return found


def describe_cameras(cameras: list[int]) -> str:
    if not cameras:
        return "no cameras were found on this machine (use --file PATH or --demo instead)"
    return "cameras that exist: " + ", ".join(f"--camera {i}" for i in cameras)


class _Connection(Worker):
    """One opened capture and the thread reading it; abandoned (stopped, never joined) when
    it stalls: a read blocked on a silent network camera cannot be interrupted."""

    name = "camera-read"

    def __init__(self, source: "CameraSource", cap: Any) -> None:
        super().__init__()
        self.source = source
        self.cap = cap
        self.clock = source.clock
        self.frames = 0
        self.last = time.monotonic()  # last sign of life: created, opened, or a frame

    def run(self) -> None:
        cap = self.cap
        try:
            if cap is None:
                cap = self.cap = self.source._opener()  # may block on a stalled network camera
                if cap is None or self.stopping:
                    return
                self.last = time.monotonic()
            while not self.stopping:
                ok, bgr = cap.read()  # no timeout: the watchdog covers a read that never returns
                if self.stopping or not ok or bgr is None:
                    return
                self.last = time.monotonic()
                self.frames += 1
                self.source._deliver(self.clock.now(), bgr)
        except Exception as exc:  # a backend error ends this connection; the watchdog reconnects
            log.warning("camera %s: reading failed: %s", self.source.index, exc)
        finally:
            if cap is not None:
                try:
                    cap.release()
                except Exception:
                    pass

    def stalled(self, seconds: float) -> bool:
        return self.running and time.monotonic() - self.last > seconds


class CameraSource(Worker):
    """Reads camera `index` (or a device path / stream URL) into a latest-only `FrameFeed`.

    `clock`: the session clock frames are stamped on (see `Source`); `frame_tap`: gets
    every frame delivered (the recording's).
    `stall_seconds`: no frame for this long marks the camera absent and reconnects.
    `opener`: () -> a capture (`read() -> (ok, bgr)`, `release()`) or None; defaults to
    OpenCV (tests pass fakes).

    A `Worker`: its thread is the watchdog (`run`), each connection's reads a `_Connection`
    worker of their own; `finish` closes the frame feed.
    """

    kind = "camera"
    thread_name = "camera"

    def __init__(
        self,
        *,
        index: int | str = 0,
        width: int | None = 640,
        height: int | None = 480,
        retry_max_seconds: float = 5.0,
        stall_seconds: float = 3.0,
        max_side: int | None = None,
        opener: Callable[[], Any] | None = None,
        clock: SessionClock | None = None,
        frame_tap: FrameTap | None = None,
    ) -> None:
        super().__init__()
        self.clock = clock if clock is not None else SessionClock(running=False)
        self.frame_tap = frame_tap if frame_tap is not None else FrameTap()
        # an index, or a device path / stream URL (anything cv2.VideoCapture opens)
        self.index = int(index) if isinstance(index, int) or str(index).isdigit() else str(index)
        self.width = width
        self.height = height
        self.retry_max_seconds = retry_max_seconds
        self.stall_seconds = stall_seconds
        self.max_side = ANALYSIS_MAX_SIDE if max_side is None else max_side
        self._opener = opener or self._open
        self.frames = FrameFeed(latest_only=True)
        self.audio = None
        self.duration: float | None = None
        self.name = f"camera {self.index}"
        self.reconnects = 0
        self.outages = 0  # times the camera stopped delivering frames (ended or stalled)
        self.stalls = 0  # of which: no frame for stall_seconds with the connection still open
        self._cap = None  # the capture open() checked, handed to the first connection
        self._opened = False
        self._conn: _Connection | None = None
        self._absent = False
        # `error` stays None: the camera reconnects rather than fail

    def _open(self):
        nodes = _linux_nodes()
        if isinstance(self.index, int) and nodes is not None and self.index not in nodes:
            return None
        with _quiet_opencv():
            timeouts = []
            if isinstance(self.index, str) and hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):
                # network streams: let FFmpeg give up on a silent server too (the watchdog is the backstop)
                ms = int(max(1.0, self.stall_seconds) * 1000)
                timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            cap = cv2.VideoCapture(self.index, cv2.CAP_ANY, timeouts) if timeouts else cv2.VideoCapture(self.index)
            if not cap.isOpened():
                cap.release()
                return None
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            return cap

    def open(self) -> None:
        """Open the device now; raises SourceError listing the cameras that exist. Idempotent:
        a camera opened once (or started) is not opened again."""
        if self._opened:
            return
        self._cap = self._opener()
        if self._cap is None or not self._cap.read()[0]:
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            hint = describe_cameras(list_cameras()) if isinstance(self.index, int) else "check the path or URL"
            raise SourceError(f"camera {self.index} cannot be opened; {hint}")
        self._opened = True

    def start(self) -> None:
        self.open()
        self.clock.begin()  # the pipeline began it already, after loading its models
        super().start()

    def _deliver(self, t: float, bgr: np.ndarray) -> None:
        if self.stopping:
            return
        h, w = bgr.shape[:2]
        if self.max_side and max(h, w) > self.max_side:
            k = self.max_side / max(h, w)
            bgr = cv2.resize(bgr, (max(2, int(round(w * k))), max(2, int(round(h * k)))), interpolation=cv2.INTER_AREA)
        if self._absent:
            self._absent = False
            self.reconnects += 1
            log.info("camera %s is back", self.index)
        self.frames.present = True
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self.frames.put(t, rgb)
        self.frame_tap(t, rgb)

    def run(self) -> None:
        """The watchdog: start a connection, watch that frames keep coming, reconnect with backoff."""
        cap, self._cap = self._cap, None
        conn = self._conn = _Connection(self, cap)
        conn.start()
        backoff = 0.25
        while not self._stop.wait(0.05):
            stalled = conn.stalled(self.stall_seconds)
            if conn.running and not stalled:
                if conn.frames:
                    backoff = 0.25
                continue
            if conn.frames or stalled:  # it was delivering (or is stuck): an outage
                if not self._absent:
                    why = f"no frame for {self.stall_seconds:g} s" if stalled else "it stopped delivering frames"
                    log.warning("camera %s: %s; video absent, reconnecting", self.index, why)
                    self._absent = True
                    self.outages += 1
                    self.stalls += bool(stalled)
                self.frames.present = False
            conn.stop()
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, self.retry_max_seconds)
            conn = self._conn = _Connection(self, None)
            conn.start()

    def finish(self) -> None:
        if self._conn is not None:
            self._conn.stop()
        self.frames.close()

    def stop(self) -> None:
        super().stop()
        if self._conn is not None:
            self._conn.stop()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the watchdog thread (never for a read blocked on a stalled camera)."""
        super().join(timeout)

    def release(self, t: float) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {
            **self.frames.stats(),
            **super().stats(),
            "reconnects": self.reconnects,
            "outages": self.outages,
            "stalls": self.stalls,
        }
