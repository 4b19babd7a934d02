"""Generated clips with two real faces, for the per-face readouts and the tracker.

`make_two_face_clip` writes an mp4 (H.264, no sound) of two crops of the
astronaut photograph (`skimage.data.astronaut()`, a real face) side by side:

- the left face is smaller, slides sideways and tilts its head back and forth
  (a roll of +-`roll_degrees` at `swing_hz`, made by rotating its crop): planted
  head movement;
- the right face is larger (so it is the speaker) and still, mirrored so that
  the two are not pixel copies. It may instead be any other face image
  (`right=`), e.g. a frame of the real MOSI clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hcl.features.media import write_media

CANVAS = (320, 560)  # height, width
LEFT_SIZE = (200, 170)  # the moving face's crop, (h, w)
RIGHT_SIZE = (280, 240)  # the still face's crop


@dataclass(frozen=True)
class TwoFaceClip:
    path: Path
    fps: int
    seconds: float
    roll_degrees: float  # amplitude of the left face's head tilt
    swing_hz: float

    def left_roll(self, t: float) -> float:
        """The left face's planted tilt at t seconds, degrees."""
        return self.roll_degrees * math.sin(2 * math.pi * self.swing_hz * t)

    def left_turn_speed(self, t: float) -> float:
        """|d roll / dt| of the left face at t, degrees per second."""
        return abs(2 * math.pi * self.swing_hz * self.roll_degrees * math.cos(2 * math.pi * self.swing_hz * t))


def astronaut_face(h: int, w: int, *, mirror: bool = False) -> np.ndarray:
    """The astronaut's head and shoulders, resized to (h, w) RGB uint8."""
    from skimage.data import astronaut
    from skimage.transform import resize

    img = resize(astronaut()[0:240, 140:340], (h, w), anti_aliasing=True, preserve_range=True).astype(np.uint8)
    return img[:, ::-1].copy() if mirror else img


def fit(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """`img` resized to (h, w) RGB uint8."""
    from skimage.transform import resize

    return resize(img, (h, w), anti_aliasing=True, preserve_range=True).astype(np.uint8)


def two_face_frame(t: float, clip_roll: float, *, right: np.ndarray, slide: float) -> np.ndarray:
    """One frame: the left face tilted by `clip_roll` degrees and shifted `slide` px; `right` still."""
    from skimage.transform import rotate

    canvas = np.full((*CANVAS, 3), 40, np.uint8)
    left = astronaut_face(*LEFT_SIZE)
    left = rotate(left, clip_roll, mode="edge", preserve_range=True).astype(np.uint8)
    y0, x0 = 60, 30 + int(round(slide))
    canvas[y0 : y0 + LEFT_SIZE[0], x0 : x0 + LEFT_SIZE[1]] = left
    ry, rx = 20, CANVAS[1] - RIGHT_SIZE[1] - 20
    canvas[ry : ry + RIGHT_SIZE[0], rx : rx + RIGHT_SIZE[1]] = right
    return canvas


def make_two_face_clip(
    path: Path,
    *,
    seconds: float = 3.0,
    fps: int = 10,
    roll_degrees: float = 12.0,
    swing_hz: float = 0.5,
    slide_px: float = 40.0,
    right: np.ndarray | None = None,
) -> TwoFaceClip:
    """Write the two-face clip (see the module docstring) to `path` (.mp4)."""
    right_img = astronaut_face(*RIGHT_SIZE, mirror=True) if right is None else fit(right, *RIGHT_SIZE)
    clip = TwoFaceClip(Path(path), fps, seconds, roll_degrees, swing_hz)
    frames = []
    for k in range(int(round(seconds * fps))):
        t = k / fps
        slide = slide_px * 0.5 * (1 - math.cos(2 * math.pi * swing_hz * t))
        frames.append(two_face_frame(t, clip.left_roll(t), right=right_img, slide=slide))
    write_media(path, frames, None, fps=fps)
    return clip
