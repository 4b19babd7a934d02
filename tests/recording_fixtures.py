"""A labelled session folder made on the spot, as `hcl-live --record` lays one out.

`make_labelled_session` writes session.json, words.jsonl, audio.wav (16 kHz mono,
sample 0 = session time 0), video.mp4 (H.264 frames of a real face, the
astronaut photograph, timed on the session clock) and labels.json (one span
per part). Each part is a tone (its pitch is the planted signal) under the
same words, so the words carry nothing about the label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hcl.data.recordings import SpanLabel, write_labels
from hcl.features.media import write_media
from media_fixtures import SR, face_image, write_wav


@dataclass(frozen=True)
class Part:
    seconds: float
    freq: float  # Hz of the tone (0 = faint noise)
    label: float
    text: str = "this is what i think about it"
    mode: str | None = None


def make_labelled_session(folder: Path, parts: list[Part], *, gap: float = 0.5, fps: int = 10) -> list[SpanLabel]:
    """Write the session folder; parts follow each other with `gap` seconds of near-silence
    between them (and before the first). Returns the spans written to labels.json."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    audio, words, spans = [], [], []
    t = 0.0

    def silence(seconds: float) -> np.ndarray:
        return rng.normal(0.0, 0.001, int(round(seconds * SR))).astype(np.float32)

    for part in parts:
        audio.append(silence(gap))
        t += gap
        n = int(round(part.seconds * SR))
        if part.freq > 0:
            k = np.arange(n) / SR
            audio.append((0.3 * np.sin(2 * np.pi * part.freq * k)).astype(np.float32))
        else:
            audio.append(silence(part.seconds))
        tokens = part.text.split()
        step = part.seconds / max(1, len(tokens))
        for i, w in enumerate(tokens):
            words.append({"w": w, "start": round(t + i * step, 3), "end": round(t + (i + 0.8) * step, 3), "p": 0.9})
        spans.append(SpanLabel(round(t, 3), round(t + part.seconds, 3), part.label, part.mode))
        t += part.seconds
    audio.append(silence(gap))
    wave = np.concatenate(audio)
    write_wav(folder / "audio.wav", wave)
    face = face_image(256)
    n_frames = int(len(wave) / SR * fps)
    write_media(folder / "video.mp4", [face] * n_frames, wave, fps=fps)
    (folder / "words.jsonl").write_text("".join(json.dumps(w) + "\n" for w in words))
    (folder / "session.json").write_text(json.dumps({"format_version": 2, "session": folder.name}))
    write_labels(folder, spans)
    return spans
