"""Capture sources: threads that timestamp audio and video on the session clock.

Each source fills an `AudioRing` (16 kHz mono) and/or a `FrameFeed` (RGB frames).
Devices are opened only when a source is started; heavy imports (cv2,
sounddevice, PyAV) happen inside the modules that need them.
"""

from __future__ import annotations


class SourceError(RuntimeError):
    """A capture device or file cannot be used; the message says what exists / what to do."""


__all__ = ["DeviceSource", "SourceError"]


class DeviceSource:
    """A camera and/or a microphone as one source (either may be None)."""

    kind = "devices"
    realtime = True
    duration = None

    def __init__(self, *, camera=None, microphone=None) -> None:
        if camera is None and microphone is None:
            raise ValueError("DeviceSource needs a camera or a microphone")
        self.camera = camera
        self.microphone = microphone
        self.frames = camera.frames if camera is not None else None
        self.audio = microphone.audio if microphone is not None else None
        self.name = " + ".join(p.name for p in (camera, microphone) if p is not None)

    @property
    def error(self):
        return None

    def open(self) -> None:
        for part in (self.camera, self.microphone):
            if part is not None:
                part.open()

    def start(self, clock) -> None:
        for part in (self.camera, self.microphone):
            if part is not None:
                part.start(clock)

    def stop(self) -> None:
        for part in (self.camera, self.microphone):
            if part is not None:
                part.stop()

    def join(self, timeout: float | None = None) -> None:
        for part in (self.camera, self.microphone):
            if part is not None:
                part.join(timeout)
