"""A session folder, written while the monitor runs, and read back for replay.

    layout     the folder's file names and format version, SessionError, RecorderClosed, RecordingStopped
    recorder   SessionRecorder: the sink after scoring and the frame tap that write it
    reader     read_session -> RecordedSession (both formats, tolerant of a kill -9)
    wav        audio.wav: WavWriter (the standard `wave` module), read_wav
    video      video.mp4: VideoWriter (fragmented MP4, H.264 + AAC)
    overlay    draw_score: the score drawn on a video frame
    words      words.jsonl (WordsLog), transcript.vtt (VttWriter), word and cue helpers

The names below are the package's public interface: `from realtime.recording import
SessionRecorder, read_session, ...`.
"""

from realtime.recording.layout import (
    AUDIO,
    FORMAT_VERSION,
    INFO,
    SCORES,
    VIDEO,
    VTT,
    WORDS,
    WORDS_V1,
    RecorderClosed,
    RecordingStopped,
    SessionError,
)
from realtime.recording.overlay import draw_score
from realtime.recording.reader import RecordedSession, read_session
from realtime.recording.recorder import SessionRecorder
from realtime.recording.video import VideoWriter
from realtime.recording.wav import WavWriter, read_wav, to_int16
from realtime.recording.words import cue_groups, format_cue, normalize_word, vtt_timestamp

__all__ = [
    "AUDIO", "FORMAT_VERSION", "INFO", "SCORES", "VIDEO", "VTT", "WORDS", "WORDS_V1",
    "RecordedSession", "RecorderClosed", "RecordingStopped", "SessionError", "SessionRecorder", "VideoWriter", "WavWriter",
    "cue_groups", "draw_score", "format_cue", "normalize_word", "read_session", "read_wav", "to_int16",
    "vtt_timestamp",
]
