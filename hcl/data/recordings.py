"""Labelled recordings: a person's own sentiment labels beside an hcl-live session folder.

A session folder (written by `hcl-live --record DIR`; its layout is
realtime/recording/layout.py) holds, among others:

    session.json     the session's settings
    words.jsonl      one transcribed word {w, start, end[, p]} per line (format 1: words.json, a list)
    audio.wav        16 kHz mono; sample 0 is session time 0
    video.mp4        the frames (with the score drawn in a band across the top), pts on the session clock

hcl does not import realtime (the arrows point from realtime to hcl), so the names
above are repeated here; tests/test_recording_labels.py checks that they agree.

Labels live in `labels.json` beside those files (UTF-8 JSON, rewritten whole and
atomically by `write_labels`):

    {
      "format": "hcl-labels",
      "format_version": 1,
      "spans": [
        {"start": 3.0, "end": 7.5, "label": 1.5},
        {"start": 9.0, "end": 12.0, "label": -2.0, "mode": "test", "note": "about the delay"}
      ]
    }

A span is `start`, `end` (seconds on the session clock, end - start >= `MIN_SPAN_SECONDS`),
`label` (sentiment in [-3, 3], as MOSI: -3 strongly negative ... +3 strongly positive), and
optionally `mode` ("train", "valid" or "test") and a free-text `note`. Spans may not overlap
(one moment, one label). Spans without a mode are split per recording in time order: the
last `VALID_SHARE` of them (at least one, when the recording has two or more) are "valid",
the others "train"; "test" is never assigned, only marked (a held-out test set is chosen
by the person, once).

`hcl-extract SESSION_DIR ... -o DATASET` turns each span into one sample: the span's audio
(from audio.wav), frames (from video.mp4) and the words whose middle lies in the span (the
recorded transcript; Whisper only when the folder has no words file).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from hcl.atomic_file import atomic_write
from hcl.features.media import MediaClip, read_media

LABELS = "labels.json"
LABELS_FORMAT = "hcl-labels"
LABELS_FORMAT_VERSION = 1
MIN_SPAN_SECONDS = 0.5
VALID_SHARE = 0.2
MODES = ("train", "valid", "test")

# a session folder's files, as realtime/recording/layout.py names them
SESSION_INFO = "session.json"
SESSION_WORDS = "words.jsonl"
SESSION_WORDS_V1 = "words.json"
SESSION_AUDIO = "audio.wav"
SESSION_VIDEO = "video.mp4"


class LabelsError(ValueError):
    """A labels.json that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class SpanLabel:
    start: float  # seconds on the session clock
    end: float
    label: float  # sentiment in [-3, 3]
    mode: str | None = None  # "train" / "valid" / "test"; None = split by `assign_modes`
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


def _span(raw: Any, where: str) -> SpanLabel:
    if not isinstance(raw, dict):
        raise LabelsError(f"{where}: a span is an object {{start, end, label[, mode, note]}}, got {raw!r}")
    unknown = sorted(set(raw) - {"start", "end", "label", "mode", "note"})
    if unknown:
        raise LabelsError(f"{where}: unknown key(s) {unknown}; a span has start, end, label and optionally mode, note")
    try:
        start, end, label = float(raw["start"]), float(raw["end"]), float(raw["label"])
    except KeyError as exc:
        raise LabelsError(f"{where}: missing {exc.args[0]!r}; a span needs start, end (seconds) and label ([-3, 3])") from None
    except (TypeError, ValueError):
        raise LabelsError(f"{where}: start, end and label must be numbers, got {raw!r}") from None
    if not all(math.isfinite(v) for v in (start, end, label)):
        raise LabelsError(f"{where}: start, end and label must be finite numbers, got {raw!r}")
    if start < 0 or end - start < MIN_SPAN_SECONDS:
        raise LabelsError(f"{where}: needs 0 <= start and end - start >= {MIN_SPAN_SECONDS} s, got {start}-{end}")
    if not -3.0 <= label <= 3.0:
        raise LabelsError(f"{where}: label {label} is outside [-3, 3] (-3 strongly negative ... +3 strongly positive)")
    mode = raw.get("mode")
    if mode is not None and mode not in MODES:
        raise LabelsError(f"{where}: mode must be one of {list(MODES)} or absent, got {mode!r}")
    note = raw.get("note", "")
    if not isinstance(note, str):
        raise LabelsError(f"{where}: note must be text, got {note!r}")
    return SpanLabel(start, end, label, mode, note)


def check_spans(spans: Sequence[SpanLabel], where: str = "labels") -> list[SpanLabel]:
    """The spans sorted by start; refuses overlapping spans, naming them."""
    ordered = sorted(spans, key=lambda s: (s.start, s.end))
    for a, b in zip(ordered, ordered[1:]):
        if b.start < a.end:
            raise LabelsError(
                f"{where}: spans {a.start:g}-{a.end:g} s and {b.start:g}-{b.end:g} s overlap; "
                "one moment gets one label: shorten or merge them"
            )
    return ordered


def read_labels(folder: str | os.PathLike) -> list[SpanLabel]:
    """The spans of `folder/labels.json`, sorted by start (checked: see the module docstring)."""
    path = Path(folder) / LABELS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no labels; mark spans in hcl-replay or write {LABELS} (see hcl.data.recordings)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise LabelsError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != LABELS_FORMAT:
        raise LabelsError(f"{path}: not an hcl labels file (format must be {LABELS_FORMAT!r})")
    if int(data.get("format_version", 0)) > LABELS_FORMAT_VERSION:
        raise LabelsError(f"{path}: format version {data.get('format_version')} is newer than this hcl-live reads; upgrade")
    spans = data.get("spans")
    if not isinstance(spans, list):
        raise LabelsError(f"{path}: 'spans' must be a list")
    return check_spans([_span(raw, f"{path}, span {i + 1}") for i, raw in enumerate(spans)], str(path))


def write_labels(folder: str | os.PathLike, spans: Sequence[SpanLabel]) -> Path:
    """Write `folder/labels.json` atomically (checked first: nothing is written for bad spans)."""
    path = Path(folder) / LABELS
    checked = check_spans([_span(s.to_dict(), f"span {i + 1}") for i, s in enumerate(spans)], str(path))
    data = {"format": LABELS_FORMAT, "format_version": LABELS_FORMAT_VERSION, "spans": [s.to_dict() for s in checked]}
    with atomic_write(path) as fh:
        json.dump(data, fh, indent=1)
    return path


def assign_modes(spans: Sequence[SpanLabel]) -> list[SpanLabel]:
    """Spans (of one recording, sorted) with every mode set: the marked ones keep theirs; of the
    unmarked ones the last `VALID_SHARE` in time (at least one of two or more) become "valid"."""
    free = [i for i, s in enumerate(spans) if s.mode is None]
    n_valid = 0 if len(free) < 2 else max(1, int(round(VALID_SHARE * len(free))))
    valid = set(free[len(free) - n_valid :])
    return [s if s.mode is not None else replace(s, mode="valid" if i in valid else "train") for i, s in enumerate(spans)]


def is_recording(folder: Path) -> bool:
    """A session folder with labels: labels.json and a video.mp4 or an audio.wav."""
    return (folder / LABELS).is_file() and ((folder / SESSION_VIDEO).is_file() or (folder / SESSION_AUDIO).is_file())


def find_recordings(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Labelled session folders among `inputs` (each a folder, searched recursively), sorted."""
    found: dict[Path, None] = {}
    for item in inputs:
        p = Path(item)
        if not p.is_dir():
            continue
        if is_recording(p):
            found.setdefault(p, None)
        for labels in sorted(p.rglob(LABELS)):
            if is_recording(labels.parent):
                found.setdefault(labels.parent, None)
    return sorted(found)


def read_words(folder: Path) -> list[dict[str, Any]] | None:
    """The recorded words [{w, start, end, ...}] sorted by start, or None when the folder has no words
    file (then the transcript must come from Whisper). A last line cut by a crash is skipped."""
    path = folder / SESSION_WORDS
    if path.is_file():
        words = []
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                words.append(json.loads(line))
            except ValueError:
                if i == len(lines) - 1:
                    break  # a write cut short
                raise LabelsError(f"{path}, line {i + 1}: not a word; the file is damaged") from None
    elif (folder / SESSION_WORDS_V1).is_file():
        try:
            words = json.loads((folder / SESSION_WORDS_V1).read_text(encoding="utf-8"))
        except ValueError:
            return None
    else:
        return None
    return sorted((w for w in words if isinstance(w, dict) and "start" in w and "end" in w), key=lambda w: float(w["start"]))


def span_text(words: Sequence[dict[str, Any]], start: float, end: float) -> str:
    """The words whose middle lies in [start, end), joined by spaces."""
    out = []
    for w in words:
        mid = 0.5 * (float(w["start"]) + float(w["end"]))
        if start <= mid < end:
            out.append(str(w.get("w", w.get("text", ""))).strip())
    return " ".join(t for t in out if t)


@dataclass
class RecordingClip(MediaClip):
    """A session's video.mp4 (frames) with its audio.wav (sound): the wav's sample 0 is
    session time 0, so the sound comes from it rather than from the mp4's track."""

    sound: MediaClip | None = None

    def audio_chunks(self, start: float = 0.0, end: float | None = None) -> Iterator[np.ndarray]:
        if self.sound is None:
            return super().audio_chunks(start, end)
        return self.sound.audio_chunks(start, end)


def open_recording(folder: Path, *, load_audio_seconds: float) -> MediaClip:
    """The session's media as one clip: frames from video.mp4, sound from audio.wav (loaded
    whole when it is at most `load_audio_seconds` long, else streamed)."""
    video = folder / SESSION_VIDEO
    wav = folder / SESSION_AUDIO
    sound = None
    if wav.is_file():
        sound = read_media(wav, load_audio=False)
        if sound.duration <= load_audio_seconds:
            sound = read_media(wav)
    if not video.is_file():
        assert sound is not None  # is_recording: one of the two is there
        return sound
    frames = read_media(video, load_audio=False)
    if sound is None:
        return frames if frames.duration > load_audio_seconds or not frames.has_audio else read_media(video)
    fields = {k: getattr(frames, k) for k in ("path", "sample_rate", "has_video", "video_fps", "video_size", "meta")}
    return RecordingClip(
        **fields,
        audio=sound.audio,
        duration=max(frames.duration, sound.duration),
        has_audio=sound.has_audio,
        sound=sound,
    )

