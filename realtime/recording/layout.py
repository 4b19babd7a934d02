"""The session folder's layout: its file names, its format version, and its errors.

    session.json     settings, model, versions, start (and, after close, end) time
    scores.jsonl     one protocol window message per line, flushed + fsync'ed per line
    words.jsonl      one transcribed word {w, start, end[, p]} per line, appended per batch
                     (format 1 wrote words.json instead, rewritten whole: still read)
    transcript.vtt   the same words as WebVTT cues, on disk cue by cue (the cue still
                     growing is rewritten in place at the end of the file)
    audio.wav        16 kHz mono int16; the header's sizes are patched on every write
    video.mp4        frames with the score drawn on, H.264, and the session audio, AAC,
                     as fragmented MP4: a fragment per second of video, readable while
                     it is written and after a crash
"""

from __future__ import annotations

FORMAT_VERSION = 2  # 2: words.jsonl, appended; 1: words.json, rewritten whole
INFO = "session.json"
SCORES = "scores.jsonl"
WORDS = "words.jsonl"
WORDS_V1 = "words.json"  # format 1's words file, still read
VTT = "transcript.vtt"
AUDIO = "audio.wav"
VIDEO = "video.mp4"


class SessionError(ValueError):
    """A folder (or a file in it) that is not a readable session."""


class RecorderClosed(RuntimeError):
    """A write after SessionRecorder.stop() (e.g. a capture thread still running at Ctrl-C)."""


class RecordingStopped(RuntimeError):
    """Why a SessionRecorder stopped early (a write failed: a full disk) or could not
    finish a file; its `error`. What was written before stays readable."""
