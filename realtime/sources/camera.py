"""An OpenCV camera as a thread that keeps only the latest frame.

A camera that disappears mid-session marks video absent (`feed.present = False`)
and is retried with backoff; the session goes on with audio and text.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import threading
from typing import Iterator

from realtime.clock import SessionClock
from realtime.sources import SourceError
from realtime.streams import FrameFeed

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[object]:
    """Import cv2 with its log output silenced (probing absent cameras warns loudly)."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_VIDEOIO_DEBUG", "0")
    import cv2

    previous = cv2.getLogLevel() if hasattr(cv2, "getLogLevel") else None
    with contextlib.suppress(Exception):
        cv2.setLogLevel(0)  # LOG_LEVEL_SILENT
    try:
        yield cv2
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
    with _quiet_opencv() as cv2:
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


class CameraSource:
    """Reads camera `index` in a thread into a latest-only `FrameFeed`."""

    kind = "camera"
    realtime = True

    def __init__(
        self,
        *,
        index: int | str = 0,
        width: int | None = 640,
        height: int | None = 480,
        retry_max_seconds: float = 5.0,
    ) -> None:
        # an index, or a device path / stream URL (anything cv2.VideoCapture opens)
        self.index = int(index) if isinstance(index, int) or str(index).isdigit() else str(index)
        self.width = width
        self.height = height
        self.retry_max_seconds = retry_max_seconds
        self.frames = FrameFeed(latest_only=True)
        self.audio = None
        self.duration: float | None = None
        self.name = f"camera {self.index}"
        self.reconnects = 0
        self.outages = 0  # times the camera stopped delivering frames
        self._cap = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _open(self):
        nodes = _linux_nodes()
        if isinstance(self.index, int) and nodes is not None and self.index not in nodes:
            return None
        with _quiet_opencv() as cv2:
            cap = cv2.VideoCapture(self.index)
            if not cap.isOpened():
                cap.release()
                return None
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            return cap

    def open(self) -> None:
        """Open the device now; raises SourceError listing the cameras that exist."""
        self._cap = self._open()
        if self._cap is None or not self._cap.read()[0]:
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            raise SourceError(f"camera {self.index} cannot be opened; {describe_cameras(list_cameras())}")

    def start(self, clock: SessionClock) -> None:
        if self._cap is None:
            self.open()
        self._thread = threading.Thread(target=self._run, args=(clock,), name="camera", daemon=True)
        self._thread.start()

    def _run(self, clock: SessionClock) -> None:
        import cv2

        cap = self._cap
        backoff = 0.25
        while not self._stop.is_set():
            if cap is None:
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.retry_max_seconds)
                cap = self._open()
                if cap is not None:
                    self.reconnects += 1
                    log.info("camera %s is back", self.index)
                continue
            ok, bgr = cap.read()
            t = clock.now()
            if not ok:
                log.warning("camera %s stopped delivering frames; video absent, retrying", self.index)
                self.frames.present = False
                self.outages += 1
                cap.release()
                cap = None
                backoff = 0.25
                continue
            self.frames.present = True
            backoff = 0.25
            self.frames.put(t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if cap is not None:
            cap.release()
        self.frames.close()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
