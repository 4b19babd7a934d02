"""The models every session of a hub shares: one scorer and one speech engine, behind the
batching services of realtime.sessions.services (or, "locked", called under a lock)."""

from __future__ import annotations

import threading
from typing import Any

from hcl.features.speech import SpeechTranscriber
from realtime.core.component import Policy
from realtime.pipeline.speech import SpeechOptions, transcriber_for
from realtime.sessions.batched_whisper import BatchedWhisper
from realtime.sessions.services import ScorerService, SpeechService


class SharedScorer:
    """One process-wide `WindowScorer` behind the WindowScorer interface, one caller at a
    time (its buffers and text cache are not thread-safe). What a session gets from
    `SharedModels.scorer_client` with `HubConfig.shared_models="locked"`."""

    def __init__(self, scorer, lock: threading.RLock) -> None:
        self._scorer = scorer
        self._lock = lock
        self.features = scorer.features
        self.config = scorer.config
        self.model_info = scorer.model_info
        self.path = scorer.path

    def score(self, window):
        with self._lock:
            return self._scorer.score(window)

    def encode_text(self, text: str):
        with self._lock:
            return self._scorer.encode_text(text)

    def warm_up(self) -> None:
        with self._lock:
            self._scorer.warm_up()

    def stats(self) -> dict[str, Any]:
        return self._scorer.stats()

    def close(self) -> None:
        pass


class SharedTranscriber:
    """One process-wide speech engine for every session, one pass at a time."""

    def __init__(self, transcriber, lock: threading.Lock) -> None:
        self._transcriber = transcriber
        self._lock = lock

    @property
    def model(self):
        with self._lock:
            return self._transcriber.model

    def transcribe(self, wave, offset: float = 0.0):
        with self._lock:
            return self._transcriber.transcribe(wave, offset=offset)

    def close(self) -> None:
        pass



class SharedModels:
    """One scorer and one speech engine for every session: `scorer_client(id)` / `speech_client(id)`
    give a session their interfaces. With `services` (the default) a `ScorerService` batches
    windows of every session and a `SpeechService` runs their speech passes (up to
    `speech_batch` at once through `BatchedWhisper` when the engine is Whisper; Moonshine
    one at a time), both started on first use; otherwise
    each model is called under a lock. `busy_fraction(recent_s)` is the speech thread's
    (None before it runs, or when locked): the load governor's measure."""

    def __init__(self, scorer, *, transcriber=None, speech: SpeechOptions = SpeechOptions(), services: bool = True,
                 max_batch: int = 1, speech_batch: int = 4, speech_gather: float = 0.0) -> None:
        self.scorer = scorer
        self.speech = speech
        self.uses_services = services
        self._transcriber = transcriber
        self._max_batch = max_batch
        self._speech_batch = speech_batch
        self._speech_gather = speech_gather
        self._scorer_lock = threading.RLock()
        self._speech_lock = threading.Lock()
        self._lock = threading.Lock()
        self.scorer_service: ScorerService | None = None
        self.speech_service: SpeechService | None = None

    def services(self) -> tuple[ScorerService, SpeechService] | None:
        """The shared (scorer, speech) services, started on first use; None when locked."""
        if not self.uses_services:
            return None
        with self._lock:
            if self.scorer_service is None:
                streams = int(getattr(self.scorer, "max_streams", 1))
                scoring = ScorerService(self.scorer, max_batch=max(1, min(streams, self._max_batch)))
                whisper, batch = self.whisper(), self._speech_batch
                if batch > 1 and not callable(getattr(whisper, "transcribe_many", None)):
                    if isinstance(whisper, SpeechTranscriber):
                        whisper = BatchedWhisper(whisper)
                    else:  # a transcriber that cannot batch: one pass at a time
                        batch = 1
                speech = SpeechService(whisper, max_batch=batch, gather=self._speech_gather)
                scoring.start()
                speech.start()
                self.scorer_service, self.speech_service = scoring, speech
        return self.scorer_service, self.speech_service

    def whisper(self):
        """The one speech engine (live decoding), made on first use."""
        with self._speech_lock:
            if self._transcriber is None:
                self._transcriber = transcriber_for(self.scorer.features, self.speech, Policy.LIVE)
        return self._transcriber

    def scorer_client(self, session_id: str):
        """What a session scores through: a client of the shared scorer."""
        shared = self.services()
        if shared is not None:
            return shared[0].client(session_id)
        return SharedScorer(self.scorer, self._scorer_lock)

    def speech_client(self, session_id: str):
        """What a session transcribes with: a client of the shared speech engine."""
        shared = self.services()
        if shared is not None:
            return shared[1].client(session_id)
        return SharedTranscriber(self.whisper(), self._speech_lock)

    def warm_up(self, *, speech: bool = True) -> None:
        """Load and warm the models now (the scorer's graphs, the speech engine)."""
        scorer = self.scorer_client("warm-up")
        try:
            scorer.warm_up()
        finally:
            scorer.close()
        if speech:
            client = self.speech_client("warm-up")
            try:
                _ = client.model
            finally:
                client.close()

    def busy_fraction(self, recent: float) -> float | None:
        return self.speech_service.busy_fraction(recent) if self.speech_service is not None else None

    @property
    def running(self) -> bool:
        return self.scorer_service is not None

    def stop(self) -> None:
        for service in (self.scorer_service, self.speech_service):
            if service is not None:
                service.stop()

    def join(self, timeout: float | None = None) -> None:
        for service in (self.scorer_service, self.speech_service):
            if service is not None:
                service.join(timeout)

    def stats(self) -> dict[str, Any]:
        return {"shared_models": "services" if self.running else "locked"}
