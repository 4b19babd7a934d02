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

from realtime.core.clock import SessionClock

if TYPE_CHECKING:
    from realtime.core.streams import AudioRing, FrameFeed

# sink(t, rgb): called on the capture thread with every frame delivered; it must not block
FrameSink = Callable[[float, np.ndarray], None]


class FrameTap:
    """A source's copy of every frame it delivers, at the capture rate, on its capture
    thread: the recording's video (the face analysis reads the `FrameFeed`, which may
    keep only the latest frame).

    Given to the source at construction. Its sink is the session's recording, which is
    made after the source (the recorder's settings come from it: its name, whether it
    has audio), so the pipeline `connect`s it once, before the source starts; until then,
    and with no recording, frames go nowhere. `FrameTap(sink)` is connected at once."""

    def __init__(self, sink: FrameSink | None = None) -> None:
        self._sink = sink

    def connect(self, sink: FrameSink) -> None:
        if self._sink is not None:
            raise RuntimeError("this frame tap is connected already (one recording per source)")
        self._sink = sink

    @property
    def connected(self) -> bool:
        return self._sink is not None

    def __call__(self, t: float, rgb: np.ndarray) -> None:
        sink = self._sink
        if sink is not None:
            sink(t, rgb)


class SourceError(RuntimeError):
    """A capture device or file cannot be used; the message says what exists / what to do."""


@runtime_checkable
class Source(Protocol):
    """The capture side of the component contract.

    Its inputs come at construction: `clock`, the session clock it stamps on (made
    before the session counts; the pipeline begins it after loading its models, a
    source started on its own begins it), and `frame_tap` (None without video), the
    recording's copy of every frame. `release(t)`: the consumers are done with
    everything before session time t (a file read as fast as possible waits on it;
    devices ignore it)."""

    name: str  # for people: "file clip.mp4", "camera 0 + microphone 2 (USB)"
    kind: str  # "file", "devices", "browser"
    audio: "AudioRing | None"
    frames: "FrameFeed | None"
    duration: float | None  # seconds, when known in advance (a file)
    error: BaseException | None
    clock: SessionClock
    frame_tap: FrameTap | None

    def open(self) -> None: ...

    def start(self) -> None: ...

    def release(self, t: float) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...

    def stats(self) -> dict[str, Any]: ...


__all__ = ["DeviceSource", "FrameSink", "FrameTap", "Source", "SourceError"]


class DeviceSource:
    """A camera and/or a microphone as one source (either may be None), on the one
    session clock both were given."""

    kind = "devices"
    duration = None

    def __init__(self, *, camera=None, microphone=None) -> None:
        if camera is None and microphone is None:
            raise ValueError("DeviceSource needs a camera or a microphone")
        if camera is not None and microphone is not None and camera.clock is not microphone.clock:
            raise ValueError("DeviceSource: give the camera and the microphone the same SessionClock")
        self.camera = camera
        self.microphone = microphone
        self.clock: SessionClock = (camera or microphone).clock
        self.frame_tap: FrameTap | None = camera.frame_tap if camera is not None else None
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

    def start(self) -> None:
        for part in self._parts():
            part.start()

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
