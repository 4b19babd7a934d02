"""Readouts a person can read: what each face and the voice are doing, measured.

Readouts are shown beside the score; they are not model inputs and do not change it.

Faces, per analysed frame (`FaceReadouts.step(faces, t)` -> `FrameReadouts`):
every face FaceLandmarker found (up to `FaceFeatureConfig.max_faces`) gets a
stable id from `hcl.features.face_tracks.FaceTracker` and the readouts below.
Six come from mediapipe's blendshapes, each a fixed weighted mean of named
blendshapes (weights in `FACE_READOUTS`), each in [0, 1]:

    smile          mean of mouthSmileLeft, mouthSmileRight
    frown          mean of mouthFrownLeft, mouthFrownRight
    brow_lowered   mean of browDownLeft, browDownRight
    brow_raised    1/2 browInnerUp + 1/4 browOuterUpLeft + 1/4 browOuterUpRight
    eyes_widened   mean of eyeWideLeft, eyeWideRight
    jaw_open       jawOpen

and `head_movement` is how fast the head turns, in degrees per second: the
angle of the rotation between the face's previous analysed frame and this one
(from FaceLandmarker's facial transformation matrix), divided by the time
between them; None on a face's first frame. The speaker is the face the model
reads (`hcl.features.face.speaker_index`: the largest), marked `speaker=True`.
With an `ExpressionClassifier` (`hcl.features.fer`) each face also gets the
FER2013 classifier's 7 expression probabilities as `uncalibrated_expression`: an
uncalibrated classifier's output, not a measurement of what the person feels.

Voice, per window (`voice_readouts(wave, words, t0, t1)` -> `VoiceReadouts`), a
pure function of the window's 16 kHz audio and the transcript's word timings:

    loudness_dbfs        level of the window's non-silent 25 ms frames (those above
                         `silence_dbfs`), RMS in dBFS: a full-scale sine reads 0;
                         `LOUDNESS_FLOOR_DBFS` when all is silent
    pitch_hz             median F0 of the voiced frames (YIN), None with < `min_voiced_frames`
    pitch_variability_st standard deviation of the voiced frames' F0, in semitones
    voiced_fraction      share of the window's 10 ms frames that are voiced
    speaking_rate        words per second: words whose middle lies in [t0, t1) / (t1 - t0)
    pauses, pause_seconds   gaps of at least `min_pause_seconds` between consecutive
                         words, the part inside [t0, t1) (silence before the first
                         and after the last word is not a pause: the person may be listening)

Windows (`window_readouts(frames, t0, t1, voice)` -> `WindowReadouts`): each face's
frames in the window summarised (readout means, the median head movement, the
mean expression probabilities; a face is the window's speaker if it was in most
of its frames), with the window's voice readouts: one row of one schema.

Everything is computed with numpy on the calling thread: no model, no state
beyond the tracker's. A live part calls `FaceReadouts.step` per analysed frame
and `voice_readouts` + `window_readouts` per window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np

from hcl.features.config import SAMPLE_RATE
from hcl.features.face import BLENDSHAPE_NAMES, FaceObservation, speaker_index
from hcl.features.face_tracks import FaceTracker, TrackerConfig

LOUDNESS_FLOOR_DBFS = -100.0
SINE_RMS_DB = 20 * math.log10(math.sqrt(2))  # +3.01 dB: a full-scale sine's RMS reads 0 dBFS


# ---------------------------------------------------------------------------------- faces
@dataclass(frozen=True)
class BlendshapeReadout:
    """A readout that is a fixed weighted mean of mediapipe blendshapes."""

    name: str
    weights: Mapping[str, float]  # blendshape name -> weight; the weights sum to 1
    help: str  # one sentence for a person


FACE_READOUTS: tuple[BlendshapeReadout, ...] = (
    BlendshapeReadout("smile", {"mouthSmileLeft": 0.5, "mouthSmileRight": 0.5},
                      "How far the mouth corners are pulled up and out, from 0 (not at all) to 1 (a full smile)."),
    BlendshapeReadout("frown", {"mouthFrownLeft": 0.5, "mouthFrownRight": 0.5},
                      "How far the mouth corners are pulled down, from 0 to 1."),
    BlendshapeReadout("brow_lowered", {"browDownLeft": 0.5, "browDownRight": 0.5},
                      "How far the eyebrows are pulled down (as in concentrating or scowling), from 0 to 1."),
    BlendshapeReadout("brow_raised", {"browInnerUp": 0.5, "browOuterUpLeft": 0.25, "browOuterUpRight": 0.25},
                      "How far the eyebrows are raised (as in surprise or emphasis), from 0 to 1."),
    BlendshapeReadout("eyes_widened", {"eyeWideLeft": 0.5, "eyeWideRight": 0.5},
                      "How far the eyelids are opened wider than at rest, from 0 to 1."),
    BlendshapeReadout("jaw_open", {"jawOpen": 1.0},
                      "How far the jaw is open (talking, laughing, surprise), from 0 to 1."),
)
HEAD_MOVEMENT_HELP = "How fast the head turns (nodding, shaking, tilting), in degrees per second; moving without turning does not count."
EXPRESSION_HELP = ("Probabilities of 7 expressions from a small FER2013 classifier: uncalibrated, "
                   "untested on webcams here, and not a measure of what the person feels.")
READOUT_HELP: dict[str, str] = {
    **{r.name: r.help for r in FACE_READOUTS},
    "head_movement": HEAD_MOVEMENT_HELP,
    "uncalibrated_expression": EXPRESSION_HELP,
}

# (6, 52): readouts = weights @ blendshapes
_WEIGHTS = np.zeros((len(FACE_READOUTS), len(BLENDSHAPE_NAMES)), np.float32)
for _i, _r in enumerate(FACE_READOUTS):
    for _name, _w in _r.weights.items():
        _WEIGHTS[_i, BLENDSHAPE_NAMES.index(_name)] = _w
    assert abs(sum(_r.weights.values()) - 1.0) < 1e-6, _r.name


@dataclass(frozen=True)
class FaceReadout:
    """The readouts of one face in one frame (help texts: `READOUT_HELP`)."""

    face_id: int  # stable across frames while the face stays in view (FaceTracker)
    speaker: bool  # the face the model reads (the largest)
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the frame's width/height
    smile: float
    frown: float
    brow_lowered: float
    brow_raised: float
    eyes_widened: float
    jaw_open: float
    head_movement: float | None  # degrees per second; None on the face's first frame
    # FER2013 label -> probability: an uncalibrated classifier (the name says so wherever the
    # readout goes: JSON rows, CSV columns); None when no classifier runs
    uncalibrated_expression: Mapping[str, float] | None = None

    def to_dict(self, digits: int = 4) -> dict[str, Any]:
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, float):
                out[k] = round(v, digits)
        out["box"] = [round(v, digits) for v in self.box]
        if self.uncalibrated_expression is not None:
            out["uncalibrated_expression"] = {k: round(float(v), digits) for k, v in self.uncalibrated_expression.items()}
        return out


@dataclass(frozen=True)
class FrameReadouts:
    """Every face of one analysed frame, the speaker first when there is one."""

    t: float  # seconds on the session clock
    faces: tuple[FaceReadout, ...] = ()

    @property
    def speaker(self) -> FaceReadout | None:
        return next((f for f in self.faces if f.speaker), None)

    def face(self, face_id: int) -> FaceReadout | None:
        return next((f for f in self.faces if f.face_id == face_id), None)

    def to_dict(self, digits: int = 4) -> dict[str, Any]:
        return {"t": round(self.t, 3), "faces": [f.to_dict(digits) for f in self.faces]}


class ExpressionClassifier(Protocol):
    """Expression probabilities of the faces in a frame (e.g. `hcl.features.fer.FerClassifier`)."""

    labels: tuple[str, ...]

    def classify(self, rgb: np.ndarray, boxes: Sequence[tuple[float, float, float, float]]) -> np.ndarray:
        """(len(boxes), len(labels)) probabilities for the faces at `boxes` (fractions of the frame)."""
        ...


def rotation_degrees(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees of the rotation taking transformation matrix a's rotation to b's."""
    ra = np.asarray(a, np.float64)[:3, :3]
    rb = np.asarray(b, np.float64)[:3, :3]
    ra = ra / np.maximum(np.linalg.norm(ra, axis=0, keepdims=True), 1e-9)  # drop any scale
    rb = rb / np.maximum(np.linalg.norm(rb, axis=0, keepdims=True), 1e-9)
    cos = (np.trace(ra.T @ rb) - 1.0) / 2.0
    return math.degrees(math.acos(float(np.clip(cos, -1.0, 1.0))))


def blendshape_readouts(blendshapes: np.ndarray) -> np.ndarray:
    """(..., 52) blendshapes -> (..., 6) readouts in `FACE_READOUTS` order."""
    return np.asarray(blendshapes, np.float32) @ _WEIGHTS.T


class FaceReadouts:
    """Per-face readouts, one frame at a time: a synchronous step object.

        readouts = FaceReadouts()                      # or FaceReadouts(expressions=FerClassifier())
        frame = readouts.step(extractor.faces(rgb, t_ms), t, rgb)

    `faces` are one frame's `FaceObservation`s; `t` (seconds) must not decrease;
    `rgb` is needed only with an expression classifier (it reads the face crops).
    """

    def __init__(self, *, tracker: TrackerConfig = TrackerConfig(), expressions: ExpressionClassifier | None = None) -> None:
        self._tracker = FaceTracker(tracker)
        self._expressions = expressions
        self._last: dict[int, tuple[float, np.ndarray]] = {}  # face id -> (t, matrix) of its latest frame

    def step(self, faces: Sequence[FaceObservation], t: float, rgb: np.ndarray | None = None) -> FrameReadouts:
        if self._expressions is not None and faces and rgb is None:
            raise ValueError("FaceReadouts with an expression classifier needs the frame: step(faces, t, rgb)")
        t = float(t)
        ids = self._tracker.step([f.box for f in faces], t)
        speaker = speaker_index(faces)
        values = blendshape_readouts(np.stack([f.blendshapes for f in faces])) if faces else np.zeros((0, 6))
        probs = None
        if self._expressions is not None and faces:
            probs = self._expressions.classify(rgb, [f.box for f in faces])
        names = [r.name for r in FACE_READOUTS]
        out = []
        for i, (face, fid) in enumerate(zip(faces, ids)):
            movement = None
            if face.matrix is not None:
                prev = self._last.get(fid)
                if prev is not None and t > prev[0]:
                    movement = rotation_degrees(prev[1], face.matrix) / (t - prev[0])
                self._last[fid] = (t, np.asarray(face.matrix, np.float64))
            expression = None
            if probs is not None:
                expression = {k: float(p) for k, p in zip(self._expressions.labels, probs[i])}
            out.append(FaceReadout(
                face_id=fid, speaker=i == speaker, box=tuple(float(v) for v in face.box),
                **{n: float(v) for n, v in zip(names, values[i])},
                head_movement=movement, uncalibrated_expression=expression,
            ))
        alive = {tr.id for tr in self._tracker.tracks}
        self._last = {k: v for k, v in self._last.items() if k in alive}
        out.sort(key=lambda r: (not r.speaker, r.face_id))
        return FrameReadouts(t, tuple(out))


# ---------------------------------------------------------------------------------- voice
class TimedWord(Protocol):
    start: float
    end: float


@dataclass(frozen=True)
class VoiceReadoutConfig:
    sample_rate: int = SAMPLE_RATE
    frame_ms: float = 25.0  # YIN integration window and loudness frame
    hop_ms: float = 10.0
    f0_min: float = 60.0
    f0_max: float = 500.0
    yin_threshold: float = 0.15  # YIN dip threshold: lower = stricter voicing
    silence_dbfs: float = -50.0  # frames quieter than this are silence (no loudness, no pitch)
    min_voiced_frames: int = 5  # fewer voiced frames: no pitch readouts
    min_pause_seconds: float = 0.25  # shorter gaps between words are not pauses

    def __post_init__(self) -> None:
        if not 0 < self.hop_ms <= self.frame_ms:
            raise ValueError(f"voice readouts need 0 < hop_ms <= frame_ms, got {self.hop_ms}/{self.frame_ms}")
        if not 0 < self.f0_min < self.f0_max < self.sample_rate / 4:
            raise ValueError(f"voice readouts need 0 < f0_min < f0_max < sample_rate / 4, got {self.f0_min}/{self.f0_max}")


VOICE_HELP: dict[str, str] = {
    "loudness_dbfs": "How loud the voice is, in dB below the loudest a recording can hold (0 dBFS); silent moments are left out.",
    "pitch_hz": "How high the voice is: the median pitch of the voiced moments, in Hz.",
    "pitch_variability_st": "How much the pitch moves (a lively versus a flat voice): its spread in semitones.",
    "voiced_fraction": "The share of the window in which the voice sounds (vowels and other voiced sounds).",
    "speaking_rate": "Words per second in the window, from the transcript's word timings.",
    "pauses": "How many gaps of a quarter second or more lie between consecutive words in the window.",
    "pause_seconds": "The total length of those gaps inside the window, in seconds.",
}


@dataclass(frozen=True)
class VoiceReadouts:
    """The voice readouts of one window [t0, t1) (help texts: `VOICE_HELP`)."""

    t0: float
    t1: float
    loudness_dbfs: float
    pitch_hz: float | None
    pitch_variability_st: float | None
    voiced_fraction: float
    speaking_rate: float  # words per second
    words: int  # words whose middle lies in the window
    pauses: int
    pause_seconds: float

    def to_dict(self, digits: int = 3) -> dict[str, Any]:
        return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _frames(x: np.ndarray, length: int, hop: int, n: int) -> np.ndarray:
    """(n, length) frames starting at k * hop (zero padded at the end)."""
    need = (n - 1) * hop + length
    if len(x) < need:
        x = np.concatenate([x, np.zeros(need - len(x), x.dtype)])
    return np.lib.stride_tricks.sliding_window_view(x, length)[::hop][:n]


def yin_pitch(wave: np.ndarray, config: VoiceReadoutConfig = VoiceReadoutConfig()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YIN on the frames of `wave` ((N,) float, config.sample_rate) every hop.

    Returns (f0 Hz (F,), 0 where unvoiced; voiced (F,) bool; level dBFS (F,) of each
    frame's first `frame_ms`). Frame k starts at k * hop; F = N // hop (at least 1)."""
    cfg = config
    sr = cfg.sample_rate
    w = int(round(sr * cfg.frame_ms / 1000))
    hop = int(round(sr * cfg.hop_ms / 1000))
    tmin = max(2, int(math.floor(sr / cfg.f0_max)))
    tmax = int(math.ceil(sr / cfg.f0_min))
    n = max(1, len(wave) // hop)
    x = _frames(np.asarray(wave, np.float64), w + tmax + 1, hop, n)  # (F, w + tmax + 1)
    x = x - x.mean(axis=1, keepdims=True)
    level = 10 * np.log10(np.mean(x[:, :w] ** 2, axis=1) + 1e-12) + SINE_RMS_DB
    f0 = np.zeros(n)
    voiced = np.zeros(n, bool)
    loud = np.flatnonzero(level > cfg.silence_dbfs)  # silent frames are never voiced: skip them
    if len(loud):
        f0[loud], voiced[loud] = _yin(x[loud], w, tmin, tmax, sr, cfg)
    return f0, voiced, level


def _yin(x: np.ndarray, w: int, tmin: int, tmax: int, sr: int, cfg: VoiceReadoutConfig) -> tuple[np.ndarray, np.ndarray]:
    """YIN of frames x (F, w + tmax + 1): (F0 Hz (F,), found (F,) bool)."""
    n = len(x)
    head = x[:, :w]
    nfft = 1 << (w + tmax + 1).bit_length()  # > tmax + w: the negative lags do not wrap onto 0..tmax
    # r[t] = sum_{j<w} x_j x_{j+t}, t = 0..tmax, by FFT cross-correlation
    r = np.fft.irfft(np.fft.rfft(x, nfft) * np.conj(np.fft.rfft(head, nfft)), nfft)[:, : tmax + 1]
    sq = np.concatenate([np.zeros((n, 1)), np.cumsum(x**2, axis=1)], axis=1)  # sq[i] = sum_{j<i} x_j^2
    lags = np.arange(tmax + 1)
    e0 = sq[:, w : w + 1]
    d = np.maximum(e0 + sq[:, lags + w] - sq[:, lags] - 2 * r, 0.0)  # YIN difference function (F, tmax + 1)
    csum = np.cumsum(d[:, 1:], axis=1)
    cmnd = np.ones_like(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        cmnd[:, 1:] = np.where(csum > 1e-6 * np.maximum(e0, 1e-12), d[:, 1:] * lags[1:] / csum, 1.0)
    cm = cmnd[:, tmin : tmax + 1]
    below = cm < cfg.yin_threshold
    has = below.any(axis=1)
    first = np.where(has, below.argmax(axis=1), 0)
    # the lowest point of the first dip under the threshold
    idx = np.arange(cm.shape[1])
    after = idx[None, :] >= first[:, None]
    left_dip = np.cumsum(after & ~below, axis=1) > 0
    best = np.where(below & after & ~left_dip, cm, np.inf).argmin(axis=1)
    rows = np.arange(n)
    y0 = cm[rows, np.clip(best - 1, 0, cm.shape[1] - 1)]
    y1 = cm[rows, best]
    y2 = cm[rows, np.clip(best + 1, 0, cm.shape[1] - 1)]
    denom = y0 - 2 * y1 + y2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.clip(np.where(np.abs(denom) > 1e-9, 0.5 * (y0 - y2) / denom, 0.0), -0.5, 0.5)
    f0 = sr / np.maximum(best + tmin + shift, 1.0)
    found = has & (f0 >= cfg.f0_min * 0.95) & (f0 <= cfg.f0_max * 1.05)
    return np.where(found, f0, 0.0), found


def _word_span(word: Any) -> tuple[float, float]:
    """(start, end) of a word given as an object with .start/.end or a mapping with those keys."""
    if isinstance(word, Mapping):
        return float(word["start"]), float(word["end"])
    return float(word.start), float(word.end)


def voice_readouts(
    wave: np.ndarray,
    words: Iterable[TimedWord | Mapping[str, Any]],
    t0: float,
    t1: float,
    *,
    wave_start: float | None = None,
    config: VoiceReadoutConfig = VoiceReadoutConfig(),
) -> VoiceReadouts:
    """Voice readouts of the window [t0, t1) (see the module docstring).

    wave: (N,) float mono audio at `config.sample_rate`, in [-1, 1]; it starts at
    `wave_start` seconds (default t0) and [t0, t1) is cut from it (audio missing at
    either end counts as silence). words: the transcript's words with start/end
    seconds on the same clock, those around the window included (a pause across t0
    needs the word before it)."""
    if not t1 > t0:
        raise ValueError(f"empty window [{t0}, {t1})")
    wave = np.asarray(wave, np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected mono audio of shape (N,), got {wave.shape}; average the channels first")
    sr = config.sample_rate
    start = t0 if wave_start is None else float(wave_start)
    a = int(round((t0 - start) * sr))
    b = a + int(round((t1 - t0) * sr))
    seg = np.zeros(b - a, np.float32)
    lo, hi = max(a, 0), min(b, len(wave))
    if hi > lo:
        seg[lo - a : hi - a] = wave[lo:hi]
    seg = np.clip(np.nan_to_num(seg), -1.0, 1.0)

    f0, voiced, level = yin_pitch(seg, config)
    active = level > config.silence_dbfs
    if active.any():
        loudness = float(10 * np.log10(np.mean(10 ** (level[active] / 10))))
    else:
        loudness = LOUDNESS_FLOOR_DBFS
    loudness = max(loudness, LOUDNESS_FLOOR_DBFS)
    pitch = variability = None
    if int(voiced.sum()) >= config.min_voiced_frames:
        hz = f0[voiced]
        pitch = float(np.median(hz))
        variability = float(np.std(12 * np.log2(hz / pitch)))

    spans = sorted(_word_span(w) for w in words)
    n_words = sum(1 for s, e in spans if t0 <= 0.5 * (s + e) < t1)
    pauses, pause_s = 0, 0.0
    for (_, prev_end), (next_start, _) in zip(spans, spans[1:]):
        g0, g1 = max(prev_end, t0), min(next_start, t1)
        if next_start - prev_end >= config.min_pause_seconds and g1 - g0 >= config.min_pause_seconds:
            pauses += 1
            pause_s += g1 - g0
    return VoiceReadouts(
        t0=float(t0), t1=float(t1),
        loudness_dbfs=loudness,
        pitch_hz=pitch,
        pitch_variability_st=variability,
        voiced_fraction=float(voiced.mean()),
        speaking_rate=n_words / (t1 - t0),
        words=n_words,
        pauses=pauses,
        pause_seconds=float(pause_s),
    )


# ---------------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class FaceSummary:
    """One face's readouts over a window: means of its frames (head movement: the median)."""

    face_id: int
    speaker: bool  # the speaker in most of the window's frames that show this face
    frames: int  # the window's analysed frames that show this face
    smile: float
    frown: float
    brow_lowered: float
    brow_raised: float
    eyes_widened: float
    jaw_open: float
    head_movement: float | None  # median degrees per second; None without two frames of the face
    uncalibrated_expression: Mapping[str, float] | None = None  # mean FER2013 probabilities

    def to_dict(self, digits: int = 3) -> dict[str, Any]:
        out = {k: (round(v, digits) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        if self.uncalibrated_expression is not None:
            out["uncalibrated_expression"] = {k: round(float(v), digits) for k, v in self.uncalibrated_expression.items()}
        return out


@dataclass(frozen=True)
class WindowReadouts:
    """Everything a window shows beside its score: each face over the window, and the voice.

    The one schema of a readouts row (e.g. a line of a recording's readouts.jsonl)."""

    t0: float
    t1: float
    frames: int  # analysed frames in [t0, t1)
    faces: tuple[FaceSummary, ...]  # the speaker first, then by id
    voice: VoiceReadouts | None = None

    @property
    def speaker(self) -> FaceSummary | None:
        return next((f for f in self.faces if f.speaker), None)

    def to_dict(self, digits: int = 3) -> dict[str, Any]:
        return {
            "t0": round(self.t0, 3), "t1": round(self.t1, 3), "frames": self.frames,
            "faces": [f.to_dict(digits) for f in self.faces],
            "voice": None if self.voice is None else self.voice.to_dict(digits),
        }


def window_readouts(
    frames: Sequence[FrameReadouts], t0: float, t1: float, voice: VoiceReadouts | None = None
) -> WindowReadouts:
    """Summarise the frames with t0 <= t < t1 per face id (frames outside are ignored)."""
    inside = [fr for fr in frames if t0 <= fr.t < t1]
    per_face: dict[int, list[FaceReadout]] = {}
    for fr in inside:
        for face in fr.faces:
            per_face.setdefault(face.face_id, []).append(face)
    names = [r.name for r in FACE_READOUTS]
    out = []
    for fid, seen in per_face.items():
        values = np.mean([[getattr(f, n) for n in names] for f in seen], axis=0)
        moves = [f.head_movement for f in seen if f.head_movement is not None]
        expressions = [f.uncalibrated_expression for f in seen if f.uncalibrated_expression is not None]
        expression = None
        if expressions:
            expression = {k: float(np.mean([e[k] for e in expressions])) for k in expressions[0]}
        out.append(FaceSummary(
            face_id=fid, speaker=2 * sum(f.speaker for f in seen) > len(seen), frames=len(seen),
            **{n: float(v) for n, v in zip(names, values)},
            head_movement=float(np.median(moves)) if moves else None, uncalibrated_expression=expression,
        ))
    out.sort(key=lambda s: (not s.speaker, s.face_id))
    return WindowReadouts(float(t0), float(t1), len(inside), tuple(out), voice)
