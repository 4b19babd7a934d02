"""What the load governor (realtime.sessions.governor) and the live parts it thins say to
each other: a `Level` given to `throttle(level)`, a `Backlog` read from `backlog()`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Level:
    """One setting of a loaded server, the same for every live session."""

    face_fps: float  # face analysis rate of a live camera feed
    speech_period: float  # s between periodic speech passes of live speech


@dataclass(frozen=True)
class Backlog:
    """How far one live session is behind, as running totals (the governor takes differences)."""

    lateness: float = 0.0  # s the live speech passes are behind the audio now
    skipped_passes: int = 0  # speech passes skipped to catch up, so far
    dropped_windows: int = 0  # windows dropped, so far
