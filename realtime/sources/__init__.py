"""Capture sources: threads that timestamp audio and video on the session clock.

Every source follows `Source`: it fills an `AudioRing` (16 kHz mono) and/or a
`FrameFeed` (RGB frames). Devices are opened by `open()` (idempotent; a
`SourceError` says what exists); heavy imports (cv2, sounddevice, PyAV) happen
inside the modules that need them. Every source's thread is a
`realtime.core.component.Worker` (`DeviceSource` composes two of them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from realtime.core.clock import SessionClock
    from realtime.core.streams import AudioRing, FrameFeed

# on_frame(t, rgb): called on the capture thread with every frame delivered, at the
# capture rate (the recording's frame tap); it must not block
FrameTap = Callable[[float, np.ndarray], None]


class SourceError(RuntimeError):
    """A capture device or file cannot be used; the message says what exists / what to do."""


@runtime_checkable
class Source(Protocol):
    """The capture side of the component contract.

    `start(clock, on_frame)` gets the session clock (and the frame tap) because both
    exist only once the session starts; `release(t)`: the consumers are done with
    everything before session time t (a file read as fast as possible waits on it;
    devices ignore it)."""

    name: str  # for people: "file clip.mp4", "camera 0 + microphone 2 (USB)"
    kind: str  # "file", "devices", "browser"
    audio: "AudioRing | None"
    frames: "FrameFeed | None"
    duration: float | None  # seconds, when known in advance (a file)
    error: BaseException | None

    def open(self) -> None: ...

    def start(self, clock: "SessionClock", on_frame: FrameTap | None = None) -> None: ...

    def release(self, t: float) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...

    def stats(self) -> dict[str, Any]: ...


__all__ = ["DeviceSource", "FrameTap", "Source", "SourceError"]


class DeviceSource:
    """A camera and/or a microphone as one source (either may be None)."""

    kind = "devices"
    duration = None

    def __init__(self, *, camera=None, microphone=None) -> None:
        if camera is None and microphone is None:
            raise ValueError("DeviceSource needs a camera or a microphone")
        self.camera = camera
        self.microphone = microphone
        self.frames = camera.frames if camera is not None else None
        self.audio = microphone.audio if microphone is not None else None
        self.name = " + ".join(p.name for p in self._parts())

    def _parts(self) -> list:
        return [p for p in (self.camera, self.microphone) if p is not None]

    @property
    def error(self) -> BaseException | None:
        return next((p.error for p in self._parts() if p.error is not None), None)

    def open(self) -> None:
        for part in self._parts():
            part.open()

    def start(self, clock, on_frame: FrameTap | None = None) -> None:
        if self.camera is not None:
            self.camera.start(clock, on_frame)
        if self.microphone is not None:
            self.microphone.start(clock)

    def release(self, t: float) -> None:
        pass  # devices never wait for their consumers

    def stop(self) -> None:
        for part in self._parts():
            part.stop()

    def join(self, timeout: float | None = None) -> None:
        for part in self._parts():
            part.join(timeout)

    def stats(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, **{p.kind: p.stats() for p in self._parts()}}
