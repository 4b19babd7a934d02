"""The `--demo` clip: a real face (scikit-image's astronaut) saying one clearly
positive and one clearly negative sentence (espeak-ng), muxed with PyAV.

Generated on first use into the cache folder (`$XDG_CACHE_HOME/hcl-live` or
`~/.cache/hcl-live`); a JSON file next to it says when each sentence is spoken.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import wave
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import skimage.data
import skimage.transform

from hcl.features.config import SAMPLE_RATE
from hcl.features.media import write_media

DEMO_VERSION = 3
POSITIVE = "I absolutely love this, it is wonderful and makes me so happy."
NEGATIVE = "This is terrible, I hate it, it is the worst thing ever."
DEFAULT_SENTENCES = (POSITIVE, NEGATIVE)


class DemoError(RuntimeError):
    """The demo clip cannot be made (e.g. espeak-ng missing)."""


@dataclass(frozen=True)
class Utterance:
    text: str
    start: float  # seconds in the clip
    end: float


def cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "hcl-live"


def demo_clip(*, directory: pathlib.Path | None = None) -> pathlib.Path:
    """The path of the demo clip, made on first use."""
    folder = pathlib.Path(directory) if directory is not None else cache_dir()
    path = folder / f"demo-v{DEMO_VERSION}.mp4"
    if not (path.is_file() and utterances_path(path).is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        make_clip(path)
    return path


def utterances_path(clip: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(clip).with_suffix(".json")


def read_utterances(clip: pathlib.Path) -> list[Utterance]:
    data = json.loads(utterances_path(clip).read_text())
    return [Utterance(**u) for u in data["utterances"]]


def speak(text: str, *, voice: str = "en-us", words_per_minute: int = 150) -> np.ndarray:
    """espeak-ng speech of `text` as float32 16 kHz mono."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DemoError(
            "espeak-ng is not installed; the demo clip is spoken by it. "
            "Install it with `sudo apt-get install espeak-ng` (Debian/Ubuntu) "
            "or `brew install espeak-ng` (macOS), or pass --file PATH instead of --demo."
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "speech.wav"
        subprocess.run(
            [exe, "-v", voice, "-s", str(words_per_minute), "-w", str(out), text],
            check=True,
            capture_output=True,
        )
        with wave.open(str(out), "rb") as wf:
            rate = wf.getframerate()
            channels = wf.getnchannels()
            raw = wf.readframes(wf.getnframes())
    pcm = np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1)
    return resample(pcm, rate, SAMPLE_RATE)


def resample(wave_in: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling of a whole signal (windowed-sinc low-pass, then interpolation)."""
    if rate_in == rate_out:
        return wave_in.astype(np.float32)
    if rate_out < rate_in:
        cutoff = 0.45 * rate_out / rate_in  # cycles per input sample
        n = np.arange(101) - 50
        taps = np.sinc(2 * cutoff * n) * np.hamming(101)
        wave_in = np.convolve(wave_in, taps / taps.sum(), mode="same")
    n_out = int(round(len(wave_in) * rate_out / rate_in))
    positions = np.arange(n_out) * (rate_in / rate_out)
    return np.interp(positions, np.arange(len(wave_in)), wave_in).astype(np.float32)


def face_image(size: int = 320) -> np.ndarray:
    """The astronaut's head and shoulders, square, RGB uint8."""
    img = skimage.data.astronaut()[0:400, 50:450]
    return (skimage.transform.resize(img, (size, size), anti_aliasing=True) * 255).astype(np.uint8)


def compose_audio(
    sentences: Sequence[str], *, lead: float = 0.5, gap: float = 2.5, tail: float = 2.5
) -> tuple[np.ndarray, list[Utterance]]:
    """Sentences separated by `gap` s of silence, `tail` s after the last one (time for
    the live transcript to catch up before the file ends); returns the wave and when
    each sentence is spoken."""
    parts = [np.zeros(int(lead * SAMPLE_RATE), np.float32)]
    utterances = []
    t = lead
    for text in sentences:
        speech = speak(text)
        utterances.append(Utterance(text=text, start=round(t, 3), end=round(t + len(speech) / SAMPLE_RATE, 3)))
        parts += [speech, np.zeros(int(gap * SAMPLE_RATE), np.float32)]
        t += len(speech) / SAMPLE_RATE + gap
    parts[-1] = np.zeros(int(tail * SAMPLE_RATE), np.float32)
    return np.concatenate(parts), utterances


def make_clip(
    path: pathlib.Path,
    *,
    sentences: Sequence[str] = DEFAULT_SENTENCES,
    lead: float = 0.5,
    gap: float = 2.5,
    tail: float = 6.0,
    fps: int = 15,
    size: int = 320,
    with_video: bool = True,
) -> list[Utterance]:
    """Write an mp4 (H.264 + AAC) of the face speaking `sentences`; also `<path>.json`."""
    path = pathlib.Path(path)
    audio, utterances = compose_audio(sentences, lead=lead, gap=gap, tail=tail)
    duration = len(audio) / SAMPLE_RATE
    tmp = path.with_name(path.name + ".part" + path.suffix)
    if with_video:
        face = face_image(size)
        write_media(tmp, [face] * int(np.ceil(duration * fps)), audio, fps=fps, crf=30)
    else:
        write_media(tmp, [], audio, fps=fps)
    tmp.replace(path)
    utterances_path(path).write_text(
        json.dumps({"version": DEMO_VERSION, "duration": duration, "utterances": [asdict(u) for u in utterances]}, indent=1)
    )
    return utterances
