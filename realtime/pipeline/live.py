"""One live session: source -> (faces, speech) -> windowing -> scoring -> record / publish.

    pipeline = build_session(source=..., scorer=..., options=PipelineOptions(), mode="live",
                             publish=channel.publish, record_to=folder)   # realtime.pipeline.build
    pipeline.start(); pipeline.wait(); pipeline.stop(); pipeline.join()

Each modality becomes features in one stage (frames in `FaceWorker`, speech in
`SpeechWorker`, audio steps in `WindowAssembler`, every text the session scores in its one
`TextEncoding` thread, which the windowing and the revisions wait on); the scoring loop
only runs the model and hands each message to the recording (one `RecordingFeed`, which
also gets the frames from the source's tap), then to `publish` and `on_window`.

Window messages carry per-stage latencies in ms (capture, features, scoring, send);
`metrics()` merges the components' `stats()` for /metrics."""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import logging
import math
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from hcl.features.fer import FerClassifier
from hcl.features.readouts import FaceReadouts
from hcl.features.segment import SegmentFeaturizer
from realtime.core import protocol
from realtime.core.clock import SessionClock
from realtime.core.component import Policy, RecentStats, Worker
from realtime.core.load import Backlog, Level
from realtime.pipeline.faces import FaceWorker
from realtime.pipeline.record import RecordingFeed
from realtime.pipeline.speech import SpeechOptions, SpeechWorker, transcriber_for
from realtime.pipeline.text import TextEncoding
from realtime.pipeline.windowing import Window, WindowAssembler, WindowQueue, window_text

log = logging.getLogger(__name__)
# how far (s) the face analysis may run in front of the windowing before its frames are
# forgotten: covers a file's read-ahead (FileSource.read_ahead, 30 s) plus a window
FACE_KEEP_SECONDS = 60.0


@dataclass(frozen=True)
class PipelineOptions:
    """How a session runs (`policy`) and the live settings of its stages."""

    policy: Policy = Policy.REPRODUCIBLE
    queue_size: int = 4  # windows waiting for the scorer; the oldest is dropped past this (LIVE)
    transcribe: bool = True  # run speech recognition (when the source has audio)
    speech: SpeechOptions = field(default_factory=SpeechOptions)
    # at most this many seconds of transcript form a window's text: longer than the 4 s
    # window because words arrive after they are spoken (speech passes + agreement)
    text_context: float | None = 7.0
    # the window's text follows the current utterance: it starts where the latest stretch
    # of speech after this many seconds of quiet starts (None: the whole text_context)
    utterance_pause: float | None = 0.45
    max_wait: float = 0.15  # live devices: how long past its end a window waits for audio
    torch_threads: int | None = 1
    prefetch_text: bool = True  # encode the next window's text ahead of time (off the critical path)
    history: int = 600  # window messages kept in `LivePipeline.messages` (the newest)
    # the newest window is scored again as soon as its words change (words commit), and sent
    # as a new revision of its seq instead of waiting for the next step (None: on in the live
    # policy; the other policies send one message per window)
    rescore_on_commit: bool | None = None
    # windows also read the speech recogniser's latest hypothesis (words no two passes agree
    # on yet), marked provisional, and are scored again when those words commit; the
    # recording keeps committed words only (None: off; live policy only)
    provisional_words: bool | None = None
    # per-window readouts for people (every face's smile, ..., head movement; the voice's
    # loudness, pitch, rate, pauses): in the window messages, the recording and the CSV;
    # not model inputs, they do not change the score (hcl.features.readouts)
    readouts: bool = True
    # with readouts: each face's FER2013 expression probabilities too (an uncalibrated
    # classifier, ~3-6 ms per face per analysed frame; hcl.features.fer)
    expressions: bool = False

    def __post_init__(self) -> None:
        for name in ("rescore_on_commit", "provisional_words"):
            if getattr(self, name) and self.policy is not Policy.LIVE:
                raise ValueError(
                    f"{name} needs the live policy: {self.policy.value} runs score each window once, on committed "
                    f"words, so that a file gives the same windows every time (leave {name} unset)")

    @property
    def provisional(self) -> bool:
        """Windows may read provisional words (and are revised when they commit)."""
        return bool(self.provisional_words) and self.policy is Policy.LIVE

    @property
    def revises(self) -> bool:
        """Windows may be sent again with a higher revision."""
        on = self.policy is Policy.LIVE if self.rescore_on_commit is None else self.rescore_on_commit
        return bool(on) or self.provisional


def new_session_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


class ScoreSummary:
    """Count, mean, min and max of a session's scores in constant memory."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, score: float) -> None:
        self.count += 1
        self.total += score
        self.min = min(self.min, score)
        self.max = max(self.max, score)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


def _word_keys(words) -> list[tuple]:
    return [(str(w["w"]), round(float(w["start"]), 3), round(float(w["end"]), 3), bool(w.get("provisional"))) for w in words]


class ScoringLoop(Worker):
    """Takes windows from `queue`, scores them, and hands each message to its sinks in
    order: `record(msg, window)` first (on disk before any client sees it: after a crash
    the recording holds every window a dashboard showed), then `publish(msg)`, then
    `on_window(msg)`. `after()` runs once on this thread when the queue is done.

    Revisions (`words_at` given and `revise`): the newest window stays open until the
    next one comes. `request_revision()` (any thread: words committed, the hypothesis
    changed) makes the loop, once its queue is empty, read the open window's words again
    (`words_at(end, provisional=...)`) and, if they changed, score it again and send it
    with the same seq and the next `revision`. With `provisional`, a window is shown
    scored on its committed words followed by the latest hypothesis, and also scored on
    its committed words alone: that message (the *final* one) is the one recorded, when
    the window closes (the next window comes, or the loop ends), and is sent last if the
    last message sent was provisional, so every seq ends on committed words and the
    recording holds one row per seq. A crash loses at most the open window."""

    name = "scorer"

    def __init__(
        self,
        *,
        queue: WindowQueue,
        scorer,
        session_id: str,
        record: Callable[[dict[str, Any], Window], None] | None = None,
        publish: Callable[[dict[str, Any]], None] | None = None,
        on_window: Callable[[dict[str, Any]], None] | None = None,
        after: Callable[[], None] | None = None,
        history: int = 600,
        words_at: Callable[..., list[dict[str, Any]]] | None = None,
        revise: bool = False,
        provisional: bool = False,
        encode_text: Callable[[str], Any] | None = None,
    ) -> None:
        super().__init__()
        self.queue = queue
        self.scorer = scorer
        # a revision's text: the session's text encoder (LivePipeline), else the scorer's
        self.encode_text = encode_text if encode_text is not None else getattr(scorer, "encode_text", None)
        self.session_id = session_id
        self.record = record
        self.publish = publish
        self.on_window = on_window
        self.after = after
        self.words_at = words_at
        self.revise = bool(revise and words_at is not None)
        self.provisional = bool(provisional and self.revise)
        self.messages: collections.deque[dict[str, Any]] = collections.deque(maxlen=max(1, history))
        self.latencies = {k: RecentStats() for k in ("capture", "features", "scoring", "send", "total")}
        self.scores = ScoreSummary()
        self.revisions = 0  # messages sent again for a seq already sent
        self.provisional_messages = 0
        self._pending = threading.Event()
        self._open: Window | None = None  # the newest window, while it may still be revised
        self._final: tuple[dict[str, Any], Window] | None = None  # its message on committed words
        self._shown: dict[str, Any] | None = None  # its last message sent

    def run(self) -> None:
        while True:  # runs until the queue is closed and empty, even after stop(): what is queued is scored
            window = self.queue.get(timeout=0.2)
            if window is None:
                if self.queue.closed:
                    break
                if self._pending.is_set():
                    self._pending.clear()
                    self.revise_open()
                continue
            self.handle(window)

    def finish(self) -> None:
        if self.after is not None:
            self.after()
        self.close_open()

    def request_revision(self, *_: Any) -> None:
        """The words changed (any thread): revise the open window once the queue is empty."""
        if self.revise:
            self._pending.set()
            self.queue.wake()

    def _score(self, window: Window, revision: int, t_start: float | None = None) -> dict[str, Any]:
        result = self.scorer.score(window)
        t_scored = time.perf_counter()
        if t_start is None:  # the window's first scoring: latencies from when it was assembled
            latency = {
                "capture": window.capture_ms,
                "features": (window.t_assembled - window.t_ready) * 1000 + result.text_ms,
                "scoring": (t_scored - window.t_assembled) * 1000 - result.text_ms,
            }
        else:  # a revision: from reading its words (text encoding and model included)
            latency = {"capture": 0.0, "features": result.text_ms, "scoring": (t_scored - t_start) * 1000 - result.text_ms}
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
            revision=revision,
            readouts=window.readouts,
        )
        msg["latency_ms"]["send"] = round((time.perf_counter() - t_scored) * 1000, 2)
        return msg

    def _send(self, msg: dict[str, Any]) -> None:
        """Publish a message (and note it): the dashboard, `messages`, `on_window`."""
        t0 = time.perf_counter()
        if self.publish is not None:
            self.publish(msg)
        if msg["revision"]:
            self.revisions += 1
            if self.messages and self.messages[-1]["seq"] == msg["seq"]:
                self.messages.pop()  # `messages` holds the last message of each seq
        else:
            latency = {k: msg["latency_ms"][k] for k in ("capture", "features", "scoring")}
            latency["send"] = msg["latency_ms"]["send"] + (time.perf_counter() - t0) * 1000
            latency["total"] = sum(latency.values())
            for k, v in latency.items():
                self.latencies[k].add(v)
        if msg["provisional"]:
            self.provisional_messages += 1
        self.messages.append(msg)
        self._shown = msg
        if self.on_window is not None:
            self.on_window(msg)

    def handle(self, window: Window) -> dict[str, Any]:
        """Score a new window and send it; the window before it closes first."""
        self.close_open()
        words = self.words_at(window.end, provisional=True) if self.provisional else []
        if any(w.get("provisional") for w in words):
            # shown at once on the hypothesis; then scored on its committed words (to record)
            shown = self._score(self._with_words(window, words), 0)
            self._send(shown)
            self._open, self._final = window, (self._score(window, 0), window)
            return shown
        msg = self._score(window, 0)
        if not self.revise:
            if self.record is not None:
                self.record(msg, window)
            self._send(msg)
            self.scores.add(msg["score"])
            return msg
        self._open, self._final = window, (msg, window)
        self._send(msg)
        return msg

    def revise_open(self) -> dict[str, Any] | None:
        """Score the open window again if its words changed; the message sent, or None."""
        window, shown = self._open, self._shown
        if window is None or shown is None or self.final is None or len(self.queue):
            return None
        t0 = time.perf_counter()
        committed = self.words_at(window.end, provisional=False)
        revision = shown["revision"] + 1
        if _word_keys(committed) != _word_keys(self._final[0]["words"]):
            w = self._with_words(window, committed)
            self._final = (self._score(w, revision, t0), w)
        final_msg = self._final[0]
        target = self.words_at(window.end, provisional=True) if self.provisional else committed
        if _word_keys(target) == _word_keys(shown["words"]):
            return None
        if _word_keys(target) == _word_keys(final_msg["words"]):
            msg = dict(final_msg, revision=revision)
        else:
            msg = self._score(self._with_words(window, target), revision, t0)
        self._send(msg)
        return msg

    @property
    def final(self) -> dict[str, Any] | None:
        """The open window's message on committed words (what will be recorded)."""
        return self._final[0] if self._final is not None else None

    def close_open(self) -> None:
        """The open window gets no more revisions: send its final message if the last one
        sent differs (was provisional), and record it."""
        if self._open is None or self._final is None:
            return
        msg, window = self._final
        shown = self._shown
        self._open = self._final = None
        if shown is not None and _word_keys(shown["words"]) != _word_keys(msg["words"]):
            msg = dict(msg, revision=shown["revision"] + 1)
            sent = False
        else:
            msg = shown if shown is not None else msg
            sent = True
        if self.record is not None:
            self.record(msg, window)
        if not sent:
            self._send(msg)
        self.scores.add(msg["score"])

    def _with_words(self, window: Window, words: list[dict[str, Any]]) -> Window:
        """The window with other words and their text's features (a shared scorer's thread
        then only runs the model)."""
        text = window_text(words)
        return dataclasses.replace(window, words=words, text=text, text_features=self.encode_text(text),
                                   presence={**window.presence, "text": bool(text.strip())})

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "windows": self.scores.count,
            "dropped_windows": self.queue.dropped,
            "queued_windows": len(self.queue),
            "revisions": self.revisions,
            "provisional_messages": self.provisional_messages,
            "latency_ms": {k: v.summary() for k, v in self.latencies.items()},
        }


class _Stopping(Worker):
    """The thread that ends a session after `LivePipeline.stop()` (its joins may take seconds)."""

    name = "session-stop"

    def __init__(self, close: Callable[[], None]) -> None:
        super().__init__()
        self.close = close

    def run(self) -> None:
        self.close()


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
        on_words: Callable[[list], None] | None = None,
    ) -> None:
        """`publish(msg)`: each window message, after `recorder` has it on disk; `on_window(msg)`
        after both; `on_words(words)`: each speech pass's committed `TimedWord`s (speech thread).
        `featurizer` (a SegmentFeaturizer) and `transcriber` (Whisper, or a shared service's
        client) default to the session's own. The source is opened here (idempotent): what
        it carries decides which parts the session has."""
        source.open()
        self.source = source
        self.scorer = scorer
        self.publish = publish
        self.recorder = recorder
        self.options = options
        self.policy = options.policy
        self.session_id = session_id or new_session_id()
        self.settings = scorer.features
        self.featurizer = featurizer if featurizer is not None else SegmentFeaturizer(settings=self.settings)
        self._own_featurizer = featurizer is None
        self.transcribes = source.audio is not None and options.transcribe
        if self.transcribes and transcriber is None:
            transcriber = transcriber_for(self.settings, options.speech, self.policy)
        self.transcriber = transcriber if self.transcribes else None
        self.on_window = on_window
        self.on_words = on_words
        self.clock: SessionClock = source.clock  # the source stamps on it; begun in start(), after the models load
        self.queue = WindowQueue(maxsize=options.queue_size, policy=options.policy)
        # every text of the session is encoded on this one thread: the window's (windowing
        # waits), a revision's (scoring waits) and the next window's guess (nobody waits)
        guess = self._next_text if options.prefetch_text and self.transcribes else None
        self.text = TextEncoding(encode=scorer.encode_text, guess=guess)
        self.scoring = ScoringLoop(
            queue=self.queue,
            scorer=scorer,
            session_id=self.session_id,
            record=self._record if recorder is not None else None,
            publish=publish,
            on_window=on_window,
            after=self._after_scoring,
            history=options.history,
            # no speech, no words to revise: each window is recorded before it is sent
            words_at=self._words_at if self.transcribes else None,
            revise=options.revises,
            provisional=options.provisional,
            encode_text=self.text.revision,
        )
        self.faces: FaceWorker | None = self._face_worker() if source.frames is not None else None
        self.speech: SpeechWorker | None = None
        if self.transcriber is not None:
            self.speech = SpeechWorker(
                audio=source.audio,
                transcribe=self.transcriber.transcribe,
                clock=self.clock,
                options=options.speech,
                policy=self.policy,
                on_commit=self._on_words,
                on_hypothesis=self.scoring.request_revision if options.provisional else None,
            )
        self.assembler = WindowAssembler(
            featurizer=self.featurizer,
            out=self.queue,
            clock=self.clock,
            audio=source.audio,
            faces=self.faces,
            speech=self.speech,
            policy=self.policy,
            max_wait=options.max_wait,
            text_context=options.text_context,
            utterance_pause=options.utterance_pause,
            pause_db=options.speech.pause_db,
            encode_text=self.text.encode,
            on_window=self._on_window_queued,
            readouts=options.readouts,
        )
        # the recorder's one writer; it gets every captured frame through the source's tap
        self.recording: RecordingFeed | None = None
        if recorder is not None:
            self.recording = RecordingFeed(recorder, audio=source.audio,
                                           transcript=self.speech.transcript if self.speech is not None else None)
            if source.frame_tap is not None:
                source.frame_tap.connect(self.recording.frame)
        self.finished = self.scoring.done
        self._stop = threading.Event()
        self._lifecycle = threading.Lock()  # start() and stop(): parts never start after stop()
        self._stopping = _Stopping(self._close)
        self._started = False
        self._started_wall = 0.0
        self._started_cpu = 0.0

    def _face_worker(self) -> FaceWorker:
        """The face analysis of the source's frames. Its calls reach the face model through the
        featurizer, which loads it in start(), before the clock begins."""
        featurizer, opts = self.featurizer, self.options
        keep = math.inf if self.policy is Policy.REPRODUCIBLE else FACE_KEEP_SECONDS  # a file waiting for slow speech
        fps = self.settings.face.frames_per_second
        if opts.readouts:  # the same landmarker call gives every face: the speaker's features and the readouts
            readouts = FaceReadouts(expressions=FerClassifier() if opts.expressions else None)
            return FaceWorker(feed=self.source.frames, observe=lambda rgb, ms: featurizer.face.faces(rgb, ms),
                              readouts=readouts, fps=fps, keep_seconds=keep)
        return FaceWorker(feed=self.source.frames, extract=lambda rgb, ms: featurizer.face.frame(rgb, ms), fps=fps,
                          keep_seconds=keep)

    # the session's figures (the scoring loop holds them)
    messages = property(lambda self: list(self.scoring.messages))  # the newest `options.history` window messages
    latencies = property(lambda self: self.scoring.latencies)
    scores = property(lambda self: self.scoring.scores)
    error = property(lambda self: self.scoring.error)

    # ---------------------------------------------------------------- set-up
    def hello(self, mode: str = "live") -> dict[str, Any]:
        return session_hello(session_id=self.session_id, scorer=self.scorer, mode=mode)

    def start(self) -> None:
        """Load the models, then begin the session clock and start the parts (the source last)."""
        if self.options.torch_threads:
            torch.set_num_threads(self.options.torch_threads)
        self.scorer.warm_up()
        if self.faces is not None:
            _ = self.featurizer.face  # load the face model before the clock starts
        if self.transcriber is not None:
            _ = self.transcriber.model  # load before the clock starts
        with self._lifecycle:
            if self._stop.is_set():  # stopped while the models loaded: nothing starts
                return
            self.clock.begin()
            self._started = True
            self._started_wall = time.perf_counter()
            self._started_cpu = time.process_time()
            for part in self._workers():
                part.start()
            self.source.start()

    @property
    def started(self) -> bool:
        """start() ran: the session clock counts and the parts run."""
        return self._started

    def _workers(self) -> list:
        """The pipeline's own components, in data order (the source is started last)."""
        return [p for p in (self.text, self.faces, self.speech, self.assembler, self.scoring) if p is not None]

    def _words_at(self, end: float, provisional: bool = False) -> list[dict[str, Any]]:
        return self.assembler.words_at(end, provisional=provisional)

    def _next_text(self) -> str:
        """The text the next window would have with the words known now (the encoder's guess)."""
        a = self.assembler
        return window_text(a.words_at(a.position + a.step))

    def _on_words(self, words) -> None:
        self.scoring.request_revision()
        self.text.poke()
        if self.on_words is not None:
            self.on_words(words)

    def _on_window_queued(self, t: float) -> None:
        # every window up to t is out (the file reader may run `read_ahead` s past it; the
        # audio ring keeps enough behind for the text span and the speech context)
        self.source.release(t)
        self.text.poke()

    # ---------------------------------------------------------------- the sink
    def _record(self, msg: dict[str, Any], window: Window) -> None:
        self.recording.window(msg, window)

    def _after_scoring(self) -> None:
        """The final speech pass commits the last words: wait for it, revise the last window
        with them (when windows are revised), record them."""
        if self.speech is not None:
            self.speech.join(60)
            if not self._stop.is_set():
                self.scoring.revise_open()
        self.scoring.close_open()
        if self.recording is not None:
            self.recording.last_words()

    # ---------------------------------------------------------------- lifecycle
    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the source ended and every window was scored; True if so."""
        return self.finished.wait(timeout)

    def stop(self) -> None:
        """Ask the session to end and return at once (idempotent): capture stops, what is
        queued is still scored, then the recorder closes, on a `session-stop` thread;
        `join(timeout)` waits for it."""
        with self._lifecycle:
            if self._stop.is_set():
                return
            self._stop.set()
            self.source.stop()
            for part in (self.faces, self.speech, self.assembler):
                if part is not None:
                    part.stop()
            self._stopping.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the session ended after `stop()` (every thread joined, the recording
        closed); before `stop()`, until every window was scored."""
        if self._stop.is_set():
            self._stopping.join(timeout)
        else:
            self.finished.wait(timeout)

    def _close(self, timeout: float = 10.0) -> None:
        """The end of a session, on the `session-stop` thread: the windows queued are scored
        (their texts encoded), then every part is joined and the recorder closed."""
        self.assembler.join(timeout)
        self.queue.close()
        self.scoring.join(timeout)
        self.text.stop()  # after the scoring loop: its revisions still encode
        self.source.join(timeout)
        for part in (self.faces, self.speech, self.text):
            # a text encoding still running at interpreter exit aborts the process
            # ("terminate called without an active exception", rc 134): join it
            if part is not None:
                part.join(timeout)
        if self.recorder is not None:
            self.recorder.stop()
            self.recorder.join()
        if self._own_featurizer and (self.faces is None or not self.faces.running):
            # close mediapipe now (idempotent): its finaliser can hang at interpreter exit
            self.featurizer.close()

    # ---------------------------------------------------------------- load
    def throttle(self, level: Level) -> None:
        """A loaded server's setting for this session's live parts (face rate, speech passes)."""
        for part in (self.faces, self.speech):
            if part is not None:
                part.throttle(level)

    def backlog(self) -> Backlog | None:
        """How far this session's live speech is behind (None: no live speech)."""
        backlog = self.speech.backlog() if self.speech is not None else None
        if backlog is None:
            return None
        return dataclasses.replace(backlog, dropped_windows=int(self.queue.dropped))

    def thinning(self) -> dict[str, float | None]:
        """The face analysis rate and speech pass period this session runs at now."""
        return {"face_fps": self.faces.fps if self.faces is not None else None,
                "speech_period_s": self.speech.period if self.speech is not None else None}

    def threads(self) -> list[threading.Thread]:
        """The threads that work for this session alone (a shared model's are not counted)."""
        parts = [self.source, self.faces, self.speech, self.assembler, self.scoring, self.text]
        return [t for t in (getattr(p, "thread", None) for p in parts if p is not None) if t is not None]

    def problems(self) -> list[str]:
        out = []
        for name, part in (("source", self.source), ("faces", self.faces), ("speech", self.speech),
                           ("windowing", self.assembler), ("text", self.text), ("scoring", self.scoring)):
            err = part.error if part is not None else None
            if err is not None:
                out.append(f"{name}: {type(err).__name__}: {err}")
        return out

    # ---------------------------------------------------------------- figures
    def metrics(self) -> dict[str, Any]:
        """The /metrics "pipeline" body: the components' `stats()`, merged. Its cost does not
        grow with the session (every figure is over a bounded recent set or a running total)."""
        wall = max(1e-9, time.perf_counter() - self._started_wall) if self._started_wall else 0.0
        cpu = time.process_time() - self._started_cpu if self._started_wall else 0.0
        scoring = self.scoring.stats()
        scorer = self.scorer.stats()
        out: dict[str, Any] = {
            "session": self.session_id,
            "source": self.source.name,
            "policy": self.policy.value,
            "windows": scoring["windows"],
            "dropped_windows": scoring["dropped_windows"],
            "queued_windows": scoring["queued_windows"],
            "latency_ms": scoring["latency_ms"],
            "scorer_step_ms": scorer["step_ms"],
            "text_cache": scorer["text_cache"],
            "cpu_percent": round(100 * cpu / wall, 1) if wall else None,
            "cores": os.cpu_count(),
            "problems": self.problems(),
            "components": {"source": self.source.stats(), "scoring": scoring},
        }
        if self.clock.started:
            out["session_time"] = round(self.clock.now(), 3)
        out["components"]["windowing"] = self.assembler.stats()
        out["components"]["text"] = self.text.stats()
        if self.speech is not None:
            speech = self.speech.stats()
            out["transcript"] = {k: speech[k] for k in ("words", "lag_s", "pass_ms", "skipped_passes")}
            out["components"]["speech"] = speech
        if self.faces is not None:
            faces = self.faces.stats()
            out["video"] = {k: faces[k] for k in ("present", "frames", "faces", "dropped_frames", "face_ms")}
            out["components"]["faces"] = faces
        return out


def session_hello(*, session_id: str, scorer, mode: str = "live") -> dict[str, Any]:
    """The hello message of a session (what the dashboard needs before the first window)."""
    settings = scorer.features
    return protocol.hello_message(
        session=session_id,
        mode=mode,
        model=scorer.model_info,
        step_seconds=settings.step_seconds,
        window_steps=settings.window_steps,
        clusters=scorer.config.clusters,
    )
