"""The session's words: words.jsonl (append-only) and transcript.vtt (cue by cue).

Both writers keep only what is not final yet (the VTT cue still growing, at most
`max_words` words), so their memory and the cost of a write do not grow with the
session: after 8 hours a batch of words still costs one appended line per word.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Iterable, Sequence


def normalize_word(word: Any) -> dict[str, Any]:
    """A protocol word {w, start, end[, p]} from a dict or a `Word(text, start, end, probability)`."""
    if isinstance(word, dict):
        text = word.get("w", word.get("text"))
        start, end, p = word.get("start"), word.get("end"), word.get("p", word.get("probability"))
    else:
        text, start, end = word.text, word.start, word.end
        p = getattr(word, "probability", None)
    if text is None or start is None or end is None:
        raise ValueError(f"a word needs text, start and end; got {word!r}")
    out = {"w": str(text).strip(), "start": round(float(start), 3), "end": round(float(end), 3)}
    if p is not None:
        out["p"] = round(float(p), 3)
    return out


def normalize_words(words: Iterable[Any] | None) -> list[dict[str, Any]]:
    """Protocol words, empty ones dropped."""
    out = [normalize_word(w) for w in words or ()]
    return [w for w in out if w["w"]]


def vtt_timestamp(seconds: float) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def cue_groups(words: Sequence[dict[str, Any]], *, max_words: int = 10, max_gap: float = 1.0) -> list[list[dict[str, Any]]]:
    """Group words into subtitle cues: a new cue after a pause or `max_words` words."""
    groups: list[list[dict[str, Any]]] = []
    for w in words:
        if not groups or len(groups[-1]) >= max_words or w["start"] - groups[-1][-1]["end"] > max_gap:
            groups.append([])
        groups[-1].append(w)
    return groups


def format_cue(group: Sequence[dict[str, Any]]) -> str:
    start, end = group[0]["start"], max(group[-1]["end"], group[0]["start"] + 0.001)
    text = " ".join(w["w"] for w in group).replace("-->", "->")
    return f"{vtt_timestamp(start)} --> {vtt_timestamp(end)}\n{text}\n\n"


class WordsLog:
    """words.jsonl: one word per line, appended a batch at a time (flushed, fsync'ed)."""

    def __init__(self, path: pathlib.Path, *, fsync: bool = True) -> None:
        self.path = pathlib.Path(path)
        self.fsync = fsync
        self.count = 0
        self._f = open(self.path, "a", encoding="utf-8")

    def append(self, words: Sequence[dict[str, Any]]) -> None:
        if not words:
            return
        self._f.write("".join(json.dumps(w, separators=(",", ":"), allow_nan=False) + "\n" for w in words))
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())
        self.count += len(words)

    def close(self) -> None:
        self._f.close()


class VttWriter:
    """transcript.vtt written cue by cue. Finished cues are appended; the last cue (which
    may grow until the speaker pauses) is written after them and replaced by the next
    write, so the file always holds every word and never repeats one."""

    HEADER = b"WEBVTT\n\n"

    def __init__(self, path: pathlib.Path, *, fsync: bool = True, max_words: int = 10, max_gap: float = 1.0) -> None:
        self.path = pathlib.Path(path)
        self.fsync = fsync
        self.max_words = max_words
        self.max_gap = max_gap
        self.cues = 0  # finished cues on disk
        self._growing: list[dict[str, Any]] = []  # the words of the last cue (at most max_words)
        self._f = open(self.path, "w+b")
        self._f.write(self.HEADER)
        self._f.flush()
        self._end = len(self.HEADER)  # byte offset after the finished cues

    def add(self, words: Sequence[dict[str, Any]], *, final: bool = False) -> None:
        """Add words (in time order); `final` also closes the last cue."""
        if not words and not final:
            return
        groups = cue_groups(self._growing + list(words), max_words=self.max_words, max_gap=self.max_gap)
        finished = groups if final else groups[:-1]
        growing = [] if final else groups[-1] if groups else []
        done = "".join(format_cue(g) for g in finished).encode("utf-8")
        tail = format_cue(growing).encode("utf-8") if growing else b""
        self._f.seek(self._end)
        self._f.write(done + tail)
        self._f.truncate()
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())
        self._end += len(done)
        self.cues += len(finished)
        self._growing = growing

    def close(self) -> None:
        """Close the file (call `add([], final=True)` first to close the last cue)."""
        self._f.close()
