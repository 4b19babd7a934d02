"""The versioned JSON message schema between server and dashboard: one place.

Server -> client messages (all carry "type" and "v"):

- "hello": sent once on connect.
    {type, v, session, mode: "live"|"replay", model: {name, version, inputs},
     settings: {step_seconds, window_steps}, modalities: ["text","audio","video"],
     clusters: K,
     # added by the server for each connecting page:
     history: {kept, cut, limit},      # windows sent after hello; older ones cut (live)
     model_card: "/model-card" | null, # the model's README.md as plain text
     recording: {csv, video} | null}   # URLs of the whole session's CSV and its video
- "status": what the session is doing; sent after hello and whenever it changes.
    {type, v, state: "loading"|"running"|"finished", detail}
- "window": one scored window.
    {type, v, session, seq, revision,            # revision: 0, then 1, 2, ... when the same window
                                                 # is scored again on newer words (see below)
     start, end,                                  # seconds on the session clock
     score,                                       # float in [-3, 3]
     class7,                                      # int in -3..3 (round + clip)
     label,                                       # e.g. "weakly positive"
     polarity,                                    # "negative" | "neutral" | "positive"
     presence: {text: bool, audio: bool, video: bool},
     weights: {text: [K floats], audio: [...], video: [...]},   # COWA group weights
     attention: [[T floats] x T] | null,          # last guidance layer map
     words: [{w, start, end[, provisional: true]}],  # words of the text context: the window or
                                                  # more (PipelineOptions.text_context, 7 s)
     provisional: bool,                           # the score read provisional words
     latency_ms: {capture, features, scoring, send},
     dropped: int,                                # windows dropped so far
     readouts: {t0, t1, frames, faces: [...], voice: {...} | null} | null}
                                                  # protocol version 3: what each face and the voice
                                                  # did in the window, for people; NOT model inputs,
                                                  # they do not change the score (see below)

  Readouts (protocol version 3; `hcl.features.readouts.WindowReadouts.to_dict()`, help
  texts in READOUT_HELP / VOICE_HELP there, docs/readouts.md): `faces` holds one entry
  per face seen in the window, the speaker (the face the model reads) first:
  {face_id, speaker, frames, smile, frown, brow_lowered, brow_raised, eyes_widened,
  jaw_open, head_movement, uncalibrated_expression}; `voice` {t0, t1, loudness_dbfs,
  pitch_hz, pitch_variability_st, voiced_fraction, speaking_rate, words, pauses,
  pause_seconds}. null when the session runs without readouts. A revision keeps its
  window's readouts (computed once, when the window was assembled).

  Revisions (protocol version 2; live policy only): when words commit, the newest
  window is scored again at once and sent again with the same `seq` and a higher
  `revision` (`PipelineOptions.rescore_on_commit`). With
  `PipelineOptions.provisional_words` a window may be scored on the speech
  recogniser's latest hypothesis before two passes agree on it: those words carry
  `provisional: true` and so does the message; the window is sent again when they
  commit. A page keeps, per seq, the message with the highest revision. The last
  message of every seq reads committed words only and is the one recorded
  (scores.jsonl holds one row per seq). Reproducible and FAST runs (hcl-annotate)
  send revision 0 only, never provisional.
- "stats": periodic health figures (same body as GET /metrics).
- "session": a whole recorded session for replay: {type, v, session, windows: [...], words: [...]}
- "error": {type, v, message}
- "pong": the answer to a client's {type: "ping"}: {type, v, t} (server clock, seconds)
- "labels": a replayed recording's sentiment labels (protocol version 3), sent after
  "session" and after every change: {type, v, spans: [{start, end, label[, mode, note]}],
  saved: bool, error: str | null}; the schema of `hcl.data.recordings` (labels.json).

Client -> server messages are small JSON objects {type: "ping"},
{type: "get_session"} (answered at most once every 2 s per client), and, on a replay
page of a recording, {type: "set_label", start, end, label} (a span [start, end) s with
a sentiment in [-3, 3]; spans it overlaps are replaced) and {type: "delete_label", start, end}
(removes the spans overlapping [start, end)), each answered with "labels"; anything larger
than MAX_CLIENT_MESSAGE bytes or not valid JSON is refused with an "error" message
and otherwise ignored.

CSV export (the dashboard's Export CSV and GET /recording/scores.csv) has the columns
CSV_COLUMNS: the window's times, and text_start/text_end, the span of the words the
score read (the text context reaches further back than the window); then the readouts
(READOUT_COLUMNS, empty without them): the number of faces, the speaker's face id and
readouts, the voice's readouts, and every face's readouts as JSON (faces_json).
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Iterable, Sequence

from hcl.features.config import MODALITIES

PROTOCOL_VERSION = 3  # 2: window revisions and provisional words; 3: window readouts, labels
MAX_CLIENT_MESSAGE = 4096

STATUS_LOADING = "loading"
STATUS_RUNNING = "running"
STATUS_FINISHED = "finished"
STATUSES = (STATUS_LOADING, STATUS_RUNNING, STATUS_FINISHED)

FACE_COLUMNS = ("smile", "frown", "brow_lowered", "brow_raised", "eyes_widened", "jaw_open", "head_movement")
VOICE_COLUMNS = ("loudness_dbfs", "pitch_hz", "pitch_variability_st", "voiced_fraction", "speaking_rate",
                 "pauses", "pause_seconds")
READOUT_COLUMNS = (
    "faces", "speaker_face_id", *(f"speaker_{k}" for k in FACE_COLUMNS), *VOICE_COLUMNS, "faces_json",
)
CSV_COLUMNS = (
    "session", "seq", "start", "end", "text_start", "text_end", "score", "class7", "label", "polarity",
    "text", "audio", "video", "words", *READOUT_COLUMNS,
)

CLASS7_LABELS = {
    -3: "strongly negative",
    -2: "negative",
    -1: "weakly negative",
    0: "neutral",
    1: "weakly positive",
    2: "positive",
    3: "strongly positive",
}


def class7(score: float) -> int:
    """Round and clip to -3..3, as Acc-7 does."""
    if not math.isfinite(score):
        return 0
    return int(max(-3, min(3, round(score))))


def polarity(score: float) -> str:
    c = class7(score)
    return "neutral" if c == 0 else ("positive" if c > 0 else "negative")


def _r(x: float, nd: int = 4) -> float:
    return round(float(x), nd)


def window_message(
    *,
    session: str,
    seq: int,
    start: float,
    end: float,
    score: float,
    presence: dict[str, bool],
    weights: dict[str, Sequence[float]] | None = None,
    attention: Sequence[Sequence[float]] | None = None,
    words: Sequence[dict[str, Any]] = (),
    latency_ms: dict[str, float] | None = None,
    dropped: int = 0,
    revision: int = 0,
    readouts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One scored window; a word with a true "provisional" key is marked provisional
    (and so is the message: its score read a word that may still change). `readouts`:
    `WindowReadouts.to_dict()` or None (not model inputs: see the module docstring)."""
    c = class7(score)
    marked = [_word(w) for w in words]
    return {
        "type": "window",
        "v": PROTOCOL_VERSION,
        "session": session,
        "seq": int(seq),
        "revision": int(revision),
        "start": _r(start, 3),
        "end": _r(end, 3),
        "score": _r(score),
        "class7": c,
        "label": CLASS7_LABELS[c],
        "polarity": polarity(score),
        "presence": {k: bool(presence.get(k, False)) for k in MODALITIES},
        "weights": {k: [_r(x) for x in v] for k, v in (weights or {}).items()},
        "attention": [[_r(x) for x in row] for row in attention] if attention is not None else None,
        "words": marked,
        "provisional": any("provisional" in w for w in marked),
        "latency_ms": {k: _r(v, 2) for k, v in (latency_ms or {}).items()},
        "dropped": int(dropped),
        "readouts": readouts,
    }


def _word(w: dict[str, Any]) -> dict[str, Any]:
    out = {"w": str(w["w"]), "start": _r(w["start"], 3), "end": _r(w["end"], 3)}
    if w.get("provisional"):
        out["provisional"] = True
    return out


def final_windows(windows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One window message per seq, the last given for each (a later revision replaces an
    earlier one, in the place of the first): what a page shows and a recording keeps."""
    last: dict[Any, dict[str, Any]] = {}
    for i, w in enumerate(windows):
        last[w.get("seq", ("no seq", i))] = w
    return list(last.values())


def hello_message(
    *, session: str, mode: str, model: dict[str, Any], step_seconds: float, window_steps: int, clusters: int
) -> dict[str, Any]:
    return {
        "type": "hello",
        "v": PROTOCOL_VERSION,
        "session": session,
        "mode": mode,
        "model": model,
        "settings": {"step_seconds": step_seconds, "window_steps": window_steps},
        "modalities": list(MODALITIES),
        "clusters": clusters,
    }


def error_message(message: str) -> dict[str, Any]:
    return {"type": "error", "v": PROTOCOL_VERSION, "message": message}


def stats_message(body: dict[str, Any]) -> dict[str, Any]:
    """A periodic health message; `body` is the same JSON as GET /metrics."""
    return {"type": "stats", "v": PROTOCOL_VERSION, **body}


def session_message(
    *, session: str, windows: Sequence[dict[str, Any]], words: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """A whole recorded session (window messages + transcript words) for replay."""
    return {"type": "session", "v": PROTOCOL_VERSION, "session": session, "windows": list(windows), "words": list(words)}


def status_message(state: str, detail: str = "") -> dict[str, Any]:
    if state not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {state!r}")
    return {"type": "status", "v": PROTOCOL_VERSION, "state": state, "detail": str(detail)}


def text_span(window: dict[str, Any]) -> tuple[float, float] | None:
    """(first word's start, last word's end) of the words the window's score read."""
    words = window.get("words") or ()
    if not words:
        return None
    return min(float(w["start"]) for w in words), max(float(w["end"]) for w in words)


def readout_cells(window: dict[str, Any]) -> list[Any]:
    """The READOUT_COLUMNS cells of a window message (empty without readouts)."""
    r = window.get("readouts")
    if not r:
        return [""] * len(READOUT_COLUMNS)
    faces = r.get("faces") or []
    speaker = next((f for f in faces if f.get("speaker")), None)
    voice = r.get("voice") or {}
    blank = lambda v: "" if v is None else v  # noqa: E731
    return [
        len(faces), speaker["face_id"] if speaker else "",
        *(blank(speaker.get(k)) if speaker else "" for k in FACE_COLUMNS),
        *(blank(voice.get(k)) for k in VOICE_COLUMNS),
        json.dumps(faces, separators=(",", ":")) if faces else "",
    ]


def csv_row(window: dict[str, Any]) -> list[Any]:
    p = window.get("presence") or {}
    span = text_span(window)
    return [
        window.get("session", ""), window.get("seq", ""), window.get("start", ""), window.get("end", ""),
        span[0] if span else "", span[1] if span else "",
        window.get("score", ""), window.get("class7", ""), window.get("label", ""), window.get("polarity", ""),
        int(bool(p.get("text"))), int(bool(p.get("audio"))), int(bool(p.get("video"))),
        " ".join(str(w["w"]) for w in window.get("words") or ()),
        *readout_cells(window),
    ]


def csv_text(windows: Iterable[dict[str, Any]]) -> str:
    """Window messages as CSV with CSV_COLUMNS (what the dashboard's Export CSV writes)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for w in windows:
        writer.writerow(csv_row(w))
    return out.getvalue()


def labels_message(spans: Sequence[dict[str, Any]], *, saved: bool = False, error: str | None = None) -> dict[str, Any]:
    """A replayed recording's labels (labels.json's spans), after a change or on connect."""
    return {"type": "labels", "v": PROTOCOL_VERSION, "spans": list(spans), "saved": bool(saved), "error": error}


def pong_message(t: float) -> dict[str, Any]:
    return {"type": "pong", "v": PROTOCOL_VERSION, "t": _r(t, 3)}


WINDOW_KEYS = frozenset(window_message(session="s", seq=0, start=0, end=1, score=0, presence={}).keys())
