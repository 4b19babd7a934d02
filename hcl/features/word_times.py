"""Word times for a recogniser that gives none (Moonshine): a phrase's words spread over
its speech by characters.

A recogniser that decodes one VAD segment (a phrase between pauses) to text knows
only the segment. `speech_span` finds where the sound in it starts and stops
(frame energy against the segment's own noise floor), and `spread_words` gives each
word a share of that span in proportion to its characters (+1 for the gap after
it), with the pauses inside the phrase (long quiet runs) kept out of the words that
border them: the words are laid out over the voiced time only. Against Whisper's
word times on generated speech the error is stated by bench/asr_bench.py.
"""

from __future__ import annotations

import numpy as np

FRAME_S = 0.01  # energy frames of 10 ms
MIN_PAUSE_S = 0.15  # a quiet run this long inside a phrase is a pause, not a stop consonant


def frame_energy(wave: np.ndarray, rate: int) -> np.ndarray:
    """RMS of each 10 ms frame of `wave` ((N,) float): (N // frame,)."""
    n = max(1, int(rate * FRAME_S))
    frames = len(wave) // n
    if frames == 0:
        return np.zeros(0, np.float32)
    x = np.asarray(wave[:frames * n], np.float32).reshape(frames, n)
    return np.sqrt(np.mean(x * x, axis=1))


def voiced_frames(wave: np.ndarray, rate: int) -> np.ndarray:
    """Which 10 ms frames carry sound: RMS above 4x the quietest tenth of the frames and
    above 3 % of the loudest (bool (frames,)). Works on a segment with its own noise."""
    rms = frame_energy(wave, rate)
    if not len(rms):
        return np.zeros(0, bool)
    floor = float(np.percentile(rms, 10))
    return rms > max(4 * floor, 0.03 * float(rms.max()), 1e-4)


def speech_span(wave: np.ndarray, rate: int) -> tuple[float, float] | None:
    """(start, end) seconds of the sound in `wave`, or None when nothing is voiced."""
    voiced = np.flatnonzero(voiced_frames(wave, rate))
    if not len(voiced):
        return None
    return voiced[0] * FRAME_S, (voiced[-1] + 1) * FRAME_S


def voiced_runs(wave: np.ndarray, rate: int, *, min_pause: float = MIN_PAUSE_S) -> list[tuple[float, float]]:
    """The voiced stretches of `wave` in seconds, split where a quiet run lasts >= `min_pause`."""
    voiced = voiced_frames(wave, rate)
    idx = np.flatnonzero(voiced)
    if not len(idx):
        return []
    runs, start, last = [], idx[0], idx[0]
    gap = int(round(min_pause / FRAME_S))
    for i in idx[1:]:
        if i - last > gap:
            runs.append((start * FRAME_S, (last + 1) * FRAME_S))
            start = i
        last = i
    runs.append((start * FRAME_S, (last + 1) * FRAME_S))
    return runs


def spread_words(words: list[str], runs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(start, end) seconds for each of `words`, laid over the voiced `runs` (in order) by
    characters: word i gets a share len(word) + 1 of the voiced time. A boundary between
    words that falls within half a word's share of a pause moves onto the pause, so
    words end before a pause and start after it."""
    if not words:
        return []
    if not runs:
        raise ValueError("spread_words needs at least one voiced run")
    weights = np.array([len(w) + 1 for w in words], np.float64)
    lengths = np.array([b - a for a, b in runs], np.float64)
    edges = np.concatenate([[0.0], np.cumsum(lengths)])  # voiced time at each run's start (and the end)
    bounds = np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum() * edges[-1]
    reach = 0.5 * edges[-1] / len(words)
    pauses = edges[1:-1]
    for j in range(1, len(words)):
        if len(pauses):
            near = pauses[np.argmin(np.abs(pauses - bounds[j]))]
            if abs(near - bounds[j]) <= reach and bounds[j - 1] < near < bounds[j + 1]:
                bounds[j] = near
    last = len(runs) - 1

    def clock(v: float, side: str) -> float:  # voiced time -> seconds; "right": a start, "left": an end
        k = int(np.clip(np.searchsorted(edges, v, side=side) - 1, 0, last))
        return float(runs[k][0] + v - edges[k])

    return [(round(clock(bounds[j], "right"), 3), round(clock(bounds[j + 1], "left"), 3)) for j in range(len(words))]
