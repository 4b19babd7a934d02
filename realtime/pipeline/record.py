"""The one writer of a session's recording: what the pipeline hands its `SessionRecorder`."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from realtime.core.streams import AudioRing
from realtime.pipeline.speech import Transcript
from realtime.pipeline.windowing import Window

log = logging.getLogger(__name__)


class RecordingFeed:
    """Feeds `recorder` from the session: each final window message with the audio up to
    its end and the words committed since the last one (scoring thread), every captured
    frame (the source's frame tap, capture thread), the last words when the speech ends."""

    def __init__(self, recorder, *, audio: AudioRing | None, transcript: Transcript | None) -> None:
        self.recorder = recorder
        self.audio = audio
        self.transcript = transcript
        self._audio_until = 0.0
        self._words_seen = 0

    def window(self, msg: dict[str, Any], window: Window) -> None:
        audio: np.ndarray | None = None
        ring = self.audio
        if ring is not None:
            until = min(window.end, ring.horizon)
            if until > self._audio_until:
                audio = ring.read(self._audio_until, until)
                self._audio_until = until
        self.recorder.write_window(msg, audio=audio, words=self._new_words())

    def frame(self, t: float, rgb: np.ndarray) -> None:
        try:
            self.recorder.write_frame(rgb, t)
        except RuntimeError:  # recorder closed during shutdown
            pass

    def last_words(self) -> None:
        """The words of the final speech pass (after the last window)."""
        try:
            self.recorder.add_words(self._new_words())
        except RuntimeError:  # the pipeline stopped and closed the recorder while a slow last pass ran
            log.warning("the last speech pass ended after the recording closed; its words are not recorded")

    def _new_words(self) -> list[dict[str, Any]]:
        if self.transcript is None:
            return []
        words, self._words_seen = self.transcript.since(self._words_seen)
        return [w.as_dict() for w in words]
