"""Stable ids for the faces of a video: a small greedy tracker, one frame at a time.

    tracker = FaceTracker(TrackerConfig())
    ids = tracker.step(boxes, t)       # one id per box, in the boxes' order

A box is (x0, y0, x1, y1) in any fixed units (the readouts use fractions of
the frame's width and height). Each frame's boxes are matched to the tracks
alive after the previous frame, greedily, best pair first:

1. pairs that overlap with IoU >= `min_iou` (IoU = intersection / union), the
   larger IoU first; then
2. pairs that do not overlap enough but whose centres lie within
   `max_centre_shift` box sizes of each other (size = the mean of the two
   boxes' mean side), the nearer first (a face that moved fast between two
   analysed frames).

A matched track takes the new box. A box left unmatched starts a new track
with the next id (1, 2, 3, ...; ids are never reused). A track left unmatched
is kept for `max_missing_frames` frames (a blink of the detector, a hand in
front of the face) and then dropped: a face that comes back after that gets
a new id. The tracker is a synchronous step object: it holds no thread and no
clock of its own; `t` (seconds) must not decrease.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1


@dataclass(frozen=True)
class TrackerConfig:
    min_iou: float = 0.2  # overlap that counts as the same face between two analysed frames
    max_centre_shift: float = 0.75  # centre distance (in box sizes) still matched without overlap
    max_missing_frames: int = 10  # frames a track survives unseen (1 s at the 10 fps analysis rate)

    def __post_init__(self) -> None:
        if not 0.0 < self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {self.min_iou}")
        if self.max_centre_shift < 0:
            raise ValueError(f"max_centre_shift must be >= 0, got {self.max_centre_shift}")
        if self.max_missing_frames < 0:
            raise ValueError(f"max_missing_frames must be >= 0, got {self.max_missing_frames}")


@dataclass
class Track:
    id: int
    box: Box
    first_seen: float  # t of the frame that started it
    last_seen: float  # t of the latest frame that matched it
    missing: int = 0  # frames since it was last matched


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _centre_shift(a: Box, b: Box) -> float:
    """Distance of the centres in units of the boxes' mean size."""
    size = 0.25 * ((a[2] - a[0]) + (a[3] - a[1]) + (b[2] - b[0]) + (b[3] - b[1]))
    d = np.hypot(0.5 * (a[0] + a[2] - b[0] - b[2]), 0.5 * (a[1] + a[3] - b[1] - b[3]))
    return float(d / size) if size > 0 else float("inf")


def _check_box(box: Sequence[float]) -> Box:
    if len(box) != 4:
        raise ValueError(f"a box is (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (np.isfinite([x0, y0, x1, y1]).all() and x1 >= x0 and y1 >= y0):
        raise ValueError(f"a box needs finite x0 <= x1 and y0 <= y1, got {box!r}")
    return x0, y0, x1, y1


class FaceTracker:
    """Greedy IoU / centre-distance matching with a max-missing-frames rule (see the module docstring)."""

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self._tracks: list[Track] = []
        self._next_id = 1
        self._t: float | None = None

    @property
    def tracks(self) -> tuple[Track, ...]:
        """Tracks alive now (seen in the latest frame or missing for at most `max_missing_frames`)."""
        return tuple(self._tracks)

    def step(self, boxes: Sequence[Sequence[float]], t: float) -> list[int]:
        """Match this frame's face boxes to the tracks; returns one track id per box, in order."""
        if self._t is not None and t < self._t:
            raise ValueError(f"frame time went back from {self._t} to {t}: feed frames in time order")
        self._t = float(t)
        found = [_check_box(b) for b in boxes]
        cfg = self.config
        pairs: list[tuple[int, float, int, int]] = []  # (rank, -score, track index, box index)
        for ti, track in enumerate(self._tracks):
            for bi, box in enumerate(found):
                overlap = iou(track.box, box)
                if overlap >= cfg.min_iou:
                    pairs.append((0, -overlap, ti, bi))
                else:
                    shift = _centre_shift(track.box, box)
                    if shift <= cfg.max_centre_shift:
                        pairs.append((1, shift, ti, bi))
        pairs.sort()
        ids: list[int | None] = [None] * len(found)
        matched: set[int] = set()
        for _, _, ti, bi in pairs:
            if ti in matched or ids[bi] is not None:
                continue
            track = self._tracks[ti]
            track.box, track.last_seen, track.missing = found[bi], self._t, 0
            ids[bi] = track.id
            matched.add(ti)
        for ti, track in enumerate(self._tracks):
            if ti not in matched:
                track.missing += 1
        self._tracks = [tr for tr in self._tracks if tr.missing <= cfg.max_missing_frames]
        for bi, box in enumerate(found):
            if ids[bi] is None:
                track = Track(self._next_id, box, self._t, self._t)
                self._next_id += 1
                self._tracks.append(track)
                ids[bi] = track.id
        return [int(i) for i in ids]  # type: ignore[arg-type]
