"""Capture sources: threads that timestamp audio and video on the session clock.

Each source fills an `AudioRing` (16 kHz mono) and/or a `FrameFeed` (RGB frames).
Devices are opened only when a source is started; heavy imports (cv2,
sounddevice, PyAV) happen inside the modules that need them.
"""

from __future__ import annotations


class SourceError(RuntimeError):
    """A capture device or file cannot be used; the message says what exists / what to do."""


__all__ = ["SourceError"]
