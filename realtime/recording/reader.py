"""Reading a session folder back (for hcl-replay, the dashboard's export, tests).

scores.jsonl holds one row per window (the live pipeline records a window's final
revision when the window closes); should a file hold several rows for one seq, the
last one wins (`protocol.final_windows`), as on the dashboard.

A `kill -9` leaves every finished window readable: a truncated last line of
scores.jsonl or words.jsonl is skipped, `read_wav` repairs a header whose sizes
were not patched, and video.mp4 plays up to its last complete fragment.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from realtime.core import protocol
from realtime.recording.layout import AUDIO, INFO, SCORES, VIDEO, WORDS, WORDS_V1, SessionError
from realtime.recording.wav import read_wav


@dataclass
class RecordedSession:
    directory: pathlib.Path
    info: dict[str, Any]
    windows: list[dict[str, Any]]
    words: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False  # the last line of scores.jsonl was cut (kill -9 mid-write)

    @property
    def session_id(self) -> str:
        if self.windows:
            return str(self.windows[0].get("session", self.directory.name))
        return str(self.info.get("session", self.directory.name))

    @property
    def audio_path(self) -> pathlib.Path | None:
        p = self.directory / AUDIO
        return p if p.is_file() else None

    @property
    def video_path(self) -> pathlib.Path | None:
        p = self.directory / VIDEO
        return p if p.is_file() else None

    def read_audio(self) -> tuple[np.ndarray, int]:
        if self.audio_path is None:
            raise SessionError(f"{self.directory} has no {AUDIO}")
        return read_wav(self.audio_path)

    def session_message(self) -> dict[str, Any]:
        """The protocol "session" message a replaying DashboardServer sends."""
        return protocol.session_message(session=self.session_id, windows=self.windows, words=self.words)


def read_jsonl(path: pathlib.Path, what: str) -> tuple[list[dict[str, Any]], bool]:
    """The JSON objects of a .jsonl file and whether its last line was cut (kill -9
    mid-write: skipped); a damaged line before the last raises SessionError naming it."""
    lines = path.read_bytes().split(b"\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if i == last:
                return records, True  # a write cut short by kill -9 / power loss
            raise SessionError(f"{path}, line {i + 1}: not {what} ({exc}); the file is damaged") from None
        records.append(rec)
    return records, False


def read_words(directory: pathlib.Path) -> list[dict[str, Any]]:
    """The words on file: words.jsonl (format 2) or words.json (format 1, rewritten whole
    every few seconds; an unreadable one counts as empty, the windows hold the words too)."""
    if (directory / WORDS).is_file():
        return read_jsonl(directory / WORDS, "a word")[0]
    if (directory / WORDS_V1).is_file():
        try:
            words = json.loads((directory / WORDS_V1).read_text(encoding="utf-8"))
        except ValueError:
            return []
        return words if isinstance(words, list) else []
    return []


def _words_from_windows(windows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, float], dict[str, Any]] = {}
    for win in windows:
        for w in win.get("words") or ():
            seen.setdefault((w["w"], w["start"]), w)
    return sorted(seen.values(), key=lambda w: w["start"])


def read_session(directory: str | os.PathLike) -> RecordedSession:
    """Read a session folder (written by SessionRecorder, either format), tolerating a kill -9."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise SessionError(f"{directory} is not a folder; pass the session folder that hcl-live --record wrote")
    info_path, scores_path = directory / INFO, directory / SCORES
    if not info_path.is_file() and not scores_path.is_file():
        raise SessionError(
            f"{directory} is not a recorded session: it has neither {INFO} nor {SCORES}; "
            "pass the session folder that hcl-live --record wrote"
        )
    info: dict[str, Any] = {}
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise SessionError(f"{info_path} is not valid JSON ({exc})") from None
    windows, truncated = read_jsonl(scores_path, "a window message") if scores_path.is_file() else ([], False)
    windows = protocol.final_windows(windows)
    words = read_words(directory)
    # the windows carry their words too: after a kill -9 they hold any word the words
    # file lacks (format 1 rewrote words.json only every few seconds)
    last = words[-1]["start"] if words else -math.inf
    words = words + [w for w in _words_from_windows(windows) if w["start"] > last]
    return RecordedSession(directory=directory, info=info, windows=windows, words=words, truncated=truncated)
