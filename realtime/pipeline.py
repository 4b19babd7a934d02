"""The live session: source -> (faces, speech) -> windowing -> scorer -> publish / record.

    pipeline = LivePipeline(source=FileSource(path=...), scorer=WindowScorer(),
                            publish=server.publish, recorder=recorder, options=PipelineOptions())
    pipeline.start(); pipeline.wait(); pipeline.stop()

Every window message carries per-stage latencies in ms (capture: window end to
its inputs being complete; features: step features, transcript words, text
encoding; scoring: queue wait + model; send: message building and hand-over to
the server); `metrics()` has counters and percentiles for /metrics.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from realtime import protocol
from realtime.clock import SessionClock
from realtime.windowing import Window, WindowAssembler, WindowQueue, percentile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineOptions:
    """How a session runs. `strict` (files): windows wait for their inputs, so a file
    gives the same windows at any pace; `realtime`: follow the session clock."""

    strict: bool = True
    realtime: bool = True
    queue_size: int = 4  # windows waiting for the scorer; the oldest is dropped past this
    speech: bool = True
    speech_period: float = 1.0
    speech_margin: float = 0.5
    speech_delay: float = 1.5
    speech_context: float = 8.0
    speech_threads: int = 2
    # Whisper beam: None = greedy (1) in the live policy (strict=False: cheaper passes, lower
    # transcript lag), the checkpoint's SpeechConfig for reproducible runs and hcl-annotate
    speech_beam_size: int | None = None
    speech_max_backlog: float = 4.0  # real-time strict runs: skip speech passes past this backlog
    # Whisper's encoder sees a pass's audio + 1 s instead of 30 s of padding (cheaper passes)
    speech_fit_encoder: bool = True
    speech_temperature_fallback: bool = False  # live passes decode once, at temperature 0
    # a pass as soon as the audio shows a pause after speech, committing its words at once;
    # None = on in the live policy (strict=False), off for reproducible runs
    speech_pause_passes: bool | None = None
    speech_pause: float = 0.25  # s of quiet (below speech_pause_db) that ends a phrase
    speech_pause_db: float = -45.0
    # at most this many seconds of transcript form a window's text: longer than the 4 s
    # window because words arrive after they are spoken (speech passes + agreement)
    text_context: float | None = 7.0
    # the window's text follows the current utterance: it starts where the latest stretch
    # of speech after this many seconds of quiet starts (None: the whole text_context)
    utterance_pause: float | None = 0.45
    max_wait: float = 0.15  # live devices: how long past its end a window waits for audio
    read_ahead: float = 30.0  # as-fast-as-possible files: how far the reader may run ahead
    torch_threads: int | None = 1
    prefetch_text: bool = True  # encode the next window's text ahead of time (off the critical path)


def new_session_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


class LivePipeline:
    def __init__(
        self,
        *,
        source,
        scorer,
        publish: Callable[[dict[str, Any]], None] | None = None,
        recorder=None,
        options: PipelineOptions = PipelineOptions(),
        session_id: str | None = None,
        featurizer=None,
        transcriber=None,
        on_window: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.source = source
        self.scorer = scorer
        self.publish = publish
        self.recorder = recorder
        self.options = options
        self.session_id = session_id or new_session_id()
        self.settings = scorer.features
        self._featurizer = featurizer
        self._own_featurizer = featurizer is None
        self._transcriber = transcriber
        self.on_window = on_window
        self.clock: SessionClock | None = None
        self.faces = None
        self.speech = None
        self.assembler: WindowAssembler | None = None
        self.queue = WindowQueue(maxsize=options.queue_size, block=not options.realtime)
        self.messages: list[dict[str, Any]] = []  # every window message, in order
        self.latencies: dict[str, list[float]] = {k: [] for k in ("capture", "features", "scoring", "send", "total")}
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._audio_recorded_until = 0.0
        self._prefetch: threading.Event | None = None
        self._prefetch_thread: threading.Thread | None = None
        self._started_wall = 0.0
        self._started_cpu = 0.0

    # ---------------------------------------------------------------- set-up
    def hello(self, mode: str = "live") -> dict[str, Any]:
        return protocol.hello_message(
            session=self.session_id,
            mode=mode,
            model=self.scorer.model_info,
            step_seconds=self.settings.step_seconds,
            window_steps=self.settings.window_steps,
            clusters=self.scorer.config.clusters,
        )

    @property
    def featurizer(self):
        if self._featurizer is None:
            from hcl.features.segment import SegmentFeaturizer

            self._featurizer = SegmentFeaturizer(settings=self.settings)
        return self._featurizer

    def start(self) -> None:
        """Open everything and start the threads (the session clock starts here)."""
        opts = self.options
        if opts.torch_threads:
            import torch

            torch.set_num_threads(opts.torch_threads)
        if getattr(self.source, "clip", None) is None and hasattr(self.source, "open") and self.source.kind == "file":
            self.source.open()
        self.scorer.warm_up()
        featurizer = self.featurizer
        if self.source.frames is not None:
            from realtime.faces import FaceWorker

            face = featurizer.face  # load the face model before the clock starts
            self.faces = FaceWorker(
                feed=self.source.frames,
                extract=face.frame,
                fps=self.settings.face.frames_per_second,
                on_frame=self._record_frame if self.recorder is not None else None,
            )
        if self.source.audio is not None and opts.speech:
            if self._transcriber is None:
                from hcl.features.speech import SpeechTranscriber

                config = self.settings.speech
                beam = opts.speech_beam_size if opts.speech_beam_size is not None else (None if opts.strict else 1)
                if beam is not None:
                    config = dataclasses.replace(config, beam_size=beam)
                self._transcriber = SpeechTranscriber(
                    config=config,
                    cpu_threads=opts.speech_threads,
                    fit_encoder=opts.speech_fit_encoder,
                    temperature_fallback=opts.speech_temperature_fallback,
                )
            _ = self._transcriber.model  # load before the clock starts
            self.speech = None  # made below, once the clock exists
        self.clock = SessionClock()
        if self.source.audio is not None and opts.speech:
            from realtime.speech import SpeechWorker

            self.speech = SpeechWorker(
                audio=self.source.audio,
                transcribe=self._transcriber.transcribe,
                clock=self.clock,
                period=opts.speech_period,
                margin=opts.speech_margin,
                delay=opts.speech_delay,
                context=opts.speech_context,
                pause=opts.speech_pause,
                pause_db=opts.speech_pause_db,
                pause_passes=(not opts.strict) if opts.speech_pause_passes is None else opts.speech_pause_passes,
                catch_up=not opts.strict,
                max_backlog=opts.speech_max_backlog if opts.realtime else None,
            )
            if self.recorder is not None:
                self.speech.transcript.listeners.append(lambda words: self.recorder.add_words([w.as_dict() for w in words]))
        self.assembler = WindowAssembler(
            featurizer=featurizer,
            out=self.queue,
            clock=self.clock,
            audio=self.source.audio,
            faces=self.faces,
            speech=self.speech,
            strict=opts.strict,
            realtime=opts.realtime,
            max_wait=opts.max_wait,
            text_context=opts.text_context,
            utterance_pause=opts.utterance_pause,
            pause_db=opts.speech_pause_db,
        )
        if opts.prefetch_text and self.speech is not None:
            self._prefetch = threading.Event()
            self.assembler.on_window = lambda t: self._prefetch.set()
            self.speech.transcript.listeners.append(lambda words: self._prefetch.set())
            self._prefetch_thread = threading.Thread(target=self._prefetch_loop, name="text-prefetch", daemon=True)
        if getattr(self.source, "kind", "") == "file" and not opts.realtime:
            self.source.gate = self._gate
        self._started_wall = time.perf_counter()
        self._started_cpu = time.process_time()
        for part in (self.faces, self.speech, self.assembler):
            if part is not None:
                part.start()
        self._thread = threading.Thread(target=self._score_loop, name="scorer", daemon=True)
        self._thread.start()
        if self._prefetch_thread is not None:
            self._prefetch_thread.start()
        self.source.start(self.clock)

    def _prefetch_loop(self) -> None:
        """Encode the text the next window will have (as the transcript stands now)."""
        from realtime.windowing import window_text

        assembler = self.assembler
        while not self._stop.is_set() and not self.finished.is_set():
            if not self._prefetch.wait(0.5):
                continue
            self._prefetch.clear()
            if self._stop.is_set():
                break
            try:
                text = window_text(assembler.words_at(assembler.position + assembler.step))
                self.scorer.encode_text(text)
            except Exception:  # a prefetch is only a hint
                log.debug("text prefetch failed", exc_info=True)

    def _gate(self, t: float) -> None:
        while not self._stop.is_set() and self.assembler is not None and t > self.assembler.position + self.options.read_ahead:
            time.sleep(0.02)

    # ---------------------------------------------------------------- scoring
    def _score_loop(self) -> None:
        try:
            while True:
                window = self.queue.get(timeout=0.2)
                if window is None:
                    if self.queue.closed:
                        break
                    continue
                self._handle(window)
        except BaseException as exc:
            self.error = exc
            log.exception("scoring stopped")
        finally:
            if self.speech is not None:  # its last pass commits the final words (recorded too)
                self.speech.join(60)
            self.finished.set()

    def _handle(self, window: Window) -> None:
        result = self.scorer.score(window)
        t_scored = time.perf_counter()
        assemble_ms = (window.t_assembled - window.t_ready) * 1000
        features_ms = assemble_ms + result.text_ms
        scoring_ms = (t_scored - window.t_assembled) * 1000 - result.text_ms
        latency = {"capture": window.capture_ms, "features": features_ms, "scoring": scoring_ms}
        msg = protocol.window_message(
            session=self.session_id,
            seq=window.seq,
            start=window.start,
            end=window.end,
            score=result.score,
            presence=window.presence,
            weights=result.weights,
            attention=result.attention,
            words=window.words,
            latency_ms={**latency, "send": 0.0},
            dropped=self.queue.dropped,
        )
        send_ms = (time.perf_counter() - t_scored) * 1000
        msg["latency_ms"]["send"] = round(send_ms, 2)
        # on disk before any client sees it: after a crash the recording holds every
        # window a dashboard showed
        if self.recorder is not None:
            self.recorder.write_window(msg)
        if self.publish is not None:
            self.publish(msg)
        latency["send"] = send_ms
        latency["total"] = sum(latency.values())
        for k, v in latency.items():
            self.latencies[k].append(v)
        self.messages.append(msg)
        if self.recorder is not None:
            self._record_audio(window.end)
        if self.on_window is not None:
            self.on_window(msg)

    def _record_audio(self, until: float) -> None:
        audio = self.source.audio
        if audio is None or until <= self._audio_recorded_until:
            return
        t0 = self._audio_recorded_until
        until = min(until, audio.horizon)
        if until > t0:
            self.recorder.write_audio(audio.read(t0, until))
            self._audio_recorded_until = until

    def _record_frame(self, t: float, rgb) -> None:
        try:
            self.recorder.write_frame(rgb, t)
        except RuntimeError:  # recorder closed during shutdown
            pass

    # ---------------------------------------------------------------- lifecycle
    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the source ended and every window was scored; True if so."""
        return self.finished.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop capturing, score what is queued, close the recorder. Idempotent."""
        self._stop.set()
        self.source.stop()
        for part in (self.faces, self.speech):
            if part is not None:
                part.stop()
        if self.assembler is not None:
            self.assembler.stop()
            self.assembler.join(timeout)
        self.queue.close()
        if self._thread is not None:
            self._thread.join(timeout)
        for part in (self.source, self.faces, self.speech):
            if part is not None:
                part.join(timeout)
        if self._prefetch_thread is not None:
            # a text encoding still running in this thread at interpreter exit aborts the
            # process ("terminate called without an active exception", rc 134)
            self._prefetch.set()
            if self._prefetch_thread.is_alive():
                self._prefetch_thread.join(timeout)
        if self.recorder is not None:
            self.recorder.close()
        if self._own_featurizer and self._featurizer is not None and (self.faces is None or not self.faces._thread or not self.faces._thread.is_alive()):
            # close mediapipe now: its finaliser can hang at interpreter exit
            self._featurizer.close()
            self._featurizer = None

    def problems(self) -> list[str]:
        out = []
        for name, part in (("source", self.source), ("faces", self.faces), ("speech", self.speech), ("windowing", self.assembler)):
            err = getattr(part, "error", None) if part is not None else None
            if err is not None:
                out.append(f"{name}: {type(err).__name__}: {err}")
        if self.error is not None:
            out.append(f"scoring: {type(self.error).__name__}: {self.error}")
        return out

    # ---------------------------------------------------------------- figures
    def metrics(self) -> dict[str, Any]:
        wall = max(1e-9, time.perf_counter() - self._started_wall) if self._started_wall else 0.0
        cpu = time.process_time() - self._started_cpu if self._started_wall else 0.0
        lat = {k: _pct(v) for k, v in self.latencies.items()}
        out: dict[str, Any] = {
            "session": self.session_id,
            "source": getattr(self.source, "name", "?"),
            "windows": len(self.messages),
            "dropped_windows": self.queue.dropped,
            "queued_windows": len(self.queue),
            "latency_ms": lat,
            "scorer_step_ms": _pct(self.scorer.step_ms),
            "text_cache": {"hits": getattr(self.scorer, "text_hits", 0), "misses": getattr(self.scorer, "text_misses", 0)},
            "cpu_percent": round(100 * cpu / wall, 1) if wall else None,
            "cores": os.cpu_count(),
            "problems": self.problems(),
        }
        if self.clock is not None:
            out["session_time"] = round(self.clock.now(), 3)
        if self.speech is not None:
            tr = self.speech.transcript
            out["transcript"] = {
                "words": tr.committed,
                "lag_s": _pct(tr.lags, 3),
                "pass_ms": _pct(tr.pass_ms),
                "skipped_passes": self.speech.skipped,
            }
        if self.faces is not None:
            feed = self.faces.feed
            out["video"] = {
                "present": bool(feed.present),
                "frames": self.faces.track.frames,
                "faces": self.faces.track.faces,
                "dropped_frames": feed.dropped,
                "face_ms": _pct(self.faces.busy_ms),
            }
        return out


def _pct(values, nd: int = 2) -> dict[str, float | None]:
    values = list(values)
    out = {}
    for q in (50, 95):
        p = percentile(values, q)
        out[f"p{q}"] = None if p is None else round(p, nd)
    out["n"] = len(values)
    return out
