"""The score drawn on a session video frame: value, 7-class label, a [-3, 3] gauge, time."""

from __future__ import annotations

import math

import cv2
import numpy as np

from realtime.core import protocol


def draw_score(rgb: np.ndarray, score: float | None, t: float) -> np.ndarray:
    """A copy of the frame with the score, its label and a [-3, 3] gauge drawn on top."""
    img = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    h, w = img.shape[:2]
    scale = max(0.5, w / 640)
    bar_h = int(56 * scale)
    overlay = img[:bar_h].astype(np.float32) * 0.35
    img[:bar_h] = overlay.astype(np.uint8)
    if score is None or not math.isfinite(score):
        text, colour = "--  waiting for the first window", (220, 220, 220)
    else:
        c = protocol.class7(score)
        colour = (90, 200, 120) if c > 0 else (235, 90, 80) if c < 0 else (220, 220, 220)
        text = f"{score:+.2f}  {protocol.CLASS7_LABELS[c]}"
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, text, (int(10 * scale), int(30 * scale)), font, 0.8 * scale, colour, max(1, int(2 * scale)), cv2.LINE_AA)
    cv2.putText(img, f"t={t:7.2f}s", (w - int(130 * scale), int(30 * scale)), font, 0.5 * scale, (200, 200, 200), 1, cv2.LINE_AA)
    # gauge: [-3, 3] across the width, a tick at 0, a marker at the score
    y = int(46 * scale)
    x0, x1 = int(10 * scale), w - int(10 * scale)
    cv2.line(img, (x0, y), (x1, y), (120, 120, 120), max(1, int(2 * scale)))
    mid = (x0 + x1) // 2
    cv2.line(img, (mid, y - int(5 * scale)), (mid, y + int(5 * scale)), (200, 200, 200), 1)
    if score is not None and math.isfinite(score):
        xs = int(mid + (max(-3.0, min(3.0, score)) / 3.0) * (x1 - mid))
        cv2.circle(img, (xs, y), max(3, int(6 * scale)), colour, -1, cv2.LINE_AA)
    return img

