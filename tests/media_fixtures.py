"""Real media made on the spot for the extractor tests.

`make_talking_video` writes an mp4 (PyAV: H.264 + AAC) whose first part is
espeak-ng speech over frames of a real face (`skimage.data.astronaut()`), and
whose second part is near-silence (faint noise) over frames without a face.
"""

from __future__ import annotations

import shutil
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hcl.features.media import write_media

SR = 16000


@dataclass(frozen=True)
class TalkingVideo:
    path: Path
    sentence: str
    speech_end: float  # seconds: speech (and the face) end here, rounded up to a step
    duration: float
    fps: int


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, *, speed: int = 140) -> np.ndarray:
    """espeak-ng speech of `text` as 16 kHz mono float32 (N,) (the demo clip's voice)."""
    from realtime.sources.demo import speak as demo_speak

    return demo_speak(text, words_per_minute=speed)


def tone(freq: float, seconds: float, *, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def faint_noise(seconds: float, *, level: float = 0.002, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, level, int(seconds * SR)).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int = SR) -> Path:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return path


def face_image(size: int = 256) -> np.ndarray:
    """The astronaut photograph (a real face), resized to size x size RGB uint8."""
    from skimage.data import astronaut
    from skimage.transform import resize

    img = resize(astronaut(), (size, size), anti_aliasing=True, preserve_range=True)
    return img.astype(np.uint8)


def faceless_image(size: int = 256) -> np.ndarray:
    """A smooth colour gradient: nothing a face detector should take for a face."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([80 + 100 * x, 90 + 60 * y, 140 - 60 * x * y], axis=-1)
    return img.astype(np.uint8)


def make_talking_video(
    path: Path,
    *,
    sentence: str = "I really love this wonderful movie. The music is beautiful.",
    silence_seconds: float = 2.5,
    fps: int = 15,
    step_seconds: float = 0.5,
    size: int = 256,
) -> TalkingVideo:
    """Speech over a face, then faint noise over face-free frames (see the module docstring)."""
    speech = speak(sentence)
    n_speech_steps = int(np.ceil(len(speech) / SR / step_seconds))
    speech_end = n_speech_steps * step_seconds
    speech = np.concatenate([speech, faint_noise(speech_end - len(speech) / SR, seed=1)])
    audio = np.concatenate([speech, faint_noise(silence_seconds, seed=2)])
    duration = len(audio) / SR
    face, empty = face_image(size), faceless_image(size)
    n_frames = int(round(duration * fps))
    frames = [face if (i + 0.5) / fps < speech_end else empty for i in range(n_frames)]
    write_media(path, frames, audio, fps=fps)
    return TalkingVideo(path=path, sentence=sentence, speech_end=speech_end, duration=duration, fps=fps)
