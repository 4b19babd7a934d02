"""Models shared by every session of one server: one scoring thread and one speech thread.

    scoring = ScorerService(WindowScorer(max_streams=4))        # max_batch = max_streams
    speech = SpeechService(SpeechTranscriber(...))
    scoring.start(); speech.start(); scoring.warm_up()
    pipeline = LivePipeline(source=..., scorer=scoring.client(sid), transcriber=speech.client(sid), ...)
    ...
    pipeline.stop(); pipeline.join(); scoring_client.close(); speech_client.close()   # session ends
    scoring.stop(); speech.stop()                                       # when the server ends

`ScorerService` owns a `WindowScorer` and runs it on ONE thread: each pass takes the
pending score requests of all sessions and scores them as one `score_many` batch.
`ScorerService.client(session)` is what a session's pipeline gets as its `scorer`: it
has the `WindowScorer` interface the pipeline uses (`score`, `encode_text`,
`warm_up`, `features`, `config`, `model_info`, `path`, `stats`), and its `score(window)`
blocks the session's scoring loop until the shared thread has scored that window.

Bounded per-session queue: a session's scoring loop has at most one request in
flight (it blocks on it), so what waits for the model is held by the pipeline's own
`WindowQueue` (bounded, drop-oldest under `Policy.LIVE`): a session whose windows pile
up drops its own oldest ones and never delays the others by more than one pass.

Fairness: a pass takes at most one window per session (the oldest of that session),
sessions in the order of their oldest pending request, at most `max_batch` of them.
With no more sessions than `max_batch` every request is scored by the pass after the
one running when it came; a session submitting continuously cannot hold another back
(its next request is younger than the other's).

`SpeechService` runs the Whisper passes of all sessions on ONE thread, round-robin over
the sessions with pending passes, first in first out within a session. One thread:
CTranslate2 already spreads one pass over `cpu_threads` cores, two passes at once on
2 cores only slow each other, and one thread makes the order fair. Batching: faster-
whisper's `BatchedInferencePipeline.transcribe` batches the VAD chunks of ONE long
audio (one clip list, one running word-timing state), so it cannot take the short
independent passes of several sessions; its `forward` step can, and
`realtime.sessions.batched_whisper.BatchedWhisper` wraps a `SpeechTranscriber` so that
`transcribe_many` decodes several passes (each with its own VAD) as one batch. Given
such a transcriber and `max_batch > 1`, each turn takes the oldest pending pass of up
to `max_batch` sessions in rotation order and runs them together (about half the
cost of one by one at B = 2 to 4 on this CPU: bench/sessions_bench.py
--whisper-batch); the words can differ a little from a pass alone (see that module).

Closing: `client.close()` ends a session's use of a service; its pending requests fail
at once with `SessionClosed` (the waiting pipeline thread gets the exception), later
calls raise it too. Stopping a service fails every pending request the same way.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from realtime.core.component import RecentStats, Worker
from realtime.pipeline.windowing import Window

log = logging.getLogger(__name__)


class SessionClosed(RuntimeError):
    """The request's session was closed, or its service stopped, before it was served."""


class _Request:
    """One call waiting for a service thread (score a window / transcribe a pass)."""

    __slots__ = ("session", "args", "t_submit", "t_start", "event", "result", "error")

    def __init__(self, session: str, args: tuple) -> None:
        self.session = session
        self.args = args
        self.t_submit = time.perf_counter()
        self.t_start = 0.0
        self.event = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def resolve(self, result: Any = None, error: BaseException | None = None) -> bool:
        """Set the outcome once (the first one wins: a close may beat the result)."""
        if self.event.is_set():
            return False
        self.result, self.error = result, error
        self.event.set()
        return True


@dataclass
class _SessionFigures:
    """One session's figures in a service (bounded: `RecentStats`)."""

    requests: int = 0
    served: int = 0
    failed: int = 0
    wait_ms: RecentStats = field(default_factory=RecentStats)  # submitted -> its pass starts
    run_ms: RecentStats = field(default_factory=RecentStats)  # its pass (scorer: the batch's pass)
    closed: bool = False

    def summary(self) -> dict[str, Any]:
        return {"requests": self.requests, "served": self.served, "failed": self.failed,
                "wait_ms": self.wait_ms.summary(), "run_ms": self.run_ms.summary(), "closed": self.closed}


class _SharedService(Worker):
    """The request bookkeeping both services share: per-session FIFO queues, waiting with
    liveness checks, closing a session, failing everything at the end."""

    poll = 0.25  # s: how often a waiting caller checks that the service still runs

    def __init__(self, *, max_sessions_kept: int = 256) -> None:
        super().__init__()
        self._cond = threading.Condition()
        self._queues: dict[str, collections.deque[_Request]] = {}
        self._closed: set[str] = set()
        self._figures: collections.OrderedDict[str, _SessionFigures] = collections.OrderedDict()
        self._max_kept = max(1, int(max_sessions_kept))  # figures of closed sessions kept for /metrics
        self._started_at: float | None = None
        self._busy_s = 0.0
        self._recent_busy: collections.deque[tuple[float, float]] = collections.deque(maxlen=512)  # (start, end)

    # ---------------------------------------------------------------- sessions
    def _open(self, session: str) -> None:
        with self._cond:
            if session in self._queues:
                raise ValueError(f"session {session!r} already has a client of {self.name}; close it first")
            self._closed.discard(session)
            self._queues[session] = collections.deque()
            self._figures[session] = _SessionFigures()
            self._figures.move_to_end(session)
            self._forget_old()

    def _forget_old(self) -> None:
        while len(self._figures) > self._max_kept:
            oldest = next((s for s, f in self._figures.items() if f.closed), None)
            if oldest is None:
                break
            del self._figures[oldest]

    def _close(self, session: str) -> None:
        """Fail the session's pending requests now; later calls raise SessionClosed."""
        with self._cond:
            queue = self._queues.pop(session, None)
            if queue is None:
                return
            self._closed.add(session)
            fig = self._figures.get(session)
            if fig is not None:
                fig.closed = True
            pending = list(queue)
            self._cond.notify_all()
        for req in pending:
            if req.resolve(error=SessionClosed(f"session {session!r} was closed while its request waited in {self.name}")):
                if fig is not None:
                    fig.failed += 1

    def _submit(self, session: str, *args: Any) -> _Request:
        with self._cond:
            if session not in self._queues:
                if session in self._closed:
                    raise SessionClosed(f"session {session!r} is closed: make a new client for a new session")
                raise KeyError(f"session {session!r} has no client of {self.name}")
            if self._thread is None or self.stopping or self.done.is_set():
                raise SessionClosed(f"{self.name} is not running: start() it before its sessions use it")
            req = _Request(session, args)
            self._queues[session].append(req)
            self._figures[session].requests += 1
            self._cond.notify_all()
        return req

    def _wait(self, req: _Request) -> Any:
        """Block until `req` has its outcome; fail fast when the service ended."""
        while not req.event.wait(self.poll):
            if self.done.is_set() or (self._thread is not None and not self._thread.is_alive()):
                error = self.error
                req.resolve(error=SessionClosed(f"{self.name} stopped" + (f": {type(error).__name__}: {error}" if error else "")))
        if req.error is not None:
            raise req.error
        return req.result

    def _pending_sessions(self) -> int:
        return sum(1 for q in self._queues.values() if q)

    # ---------------------------------------------------------------- thread
    def start(self) -> None:
        self._started_at = time.perf_counter()
        super().start()

    def stop(self) -> None:
        super().stop()
        with self._cond:
            self._cond.notify_all()

    def finish(self) -> None:
        """Fail what is still pending (the callers must not wait for a thread that is gone)."""
        with self._cond:
            pending = [r for q in self._queues.values() for r in q]
            for q in self._queues.values():
                q.clear()
        reason = f"{self.name} stopped" + (f": {type(self.error).__name__}: {self.error}" if self.error else "")
        for req in pending:
            req.resolve(error=SessionClosed(reason))

    def _serve(self, batch: list[_Request], many: Callable[[list[tuple]], list], one: Callable[[tuple], Any]) -> None:
        """Run `batch` as one call of `many` (the requests' args in order); if that fails,
        each request alone with `one`, so an error reaches only its own caller. Then hand
        every caller its result and count the figures."""
        t0 = time.perf_counter()
        for req in batch:
            req.t_start = t0
        outcomes: list[tuple[Any, BaseException | None]]
        try:
            if len(batch) == 1:
                outcomes = [(one(batch[0].args), None)]
            else:
                outcomes = [(r, None) for r in many([req.args for req in batch])]
        except Exception as exc:
            if len(batch) == 1:
                outcomes = [(None, exc)]
            else:  # find the request at fault: one by one
                log.warning("%s: a batch of %d failed (%s); running them one by one", self.name, len(batch), exc)
                outcomes = []
                for req in batch:
                    try:
                        outcomes.append((one(req.args), None))
                    except Exception as err:
                        outcomes.append((None, err))
        t1 = time.perf_counter()
        self._busy(t0, t1)
        self.pass_ms.add((t1 - t0) * 1000)
        self.batch_sizes.add(len(batch))
        with self._cond:
            for req, (result, error) in zip(batch, outcomes):
                fig = self._figures.get(req.session)
                if not req.resolve(result, error) or fig is None:
                    continue
                fig.wait_ms.add((t0 - req.t_submit) * 1000)
                fig.run_ms.add((t1 - t0) * 1000)
                if error is None:
                    fig.served += 1
                else:
                    fig.failed += 1

    def _busy(self, t0: float, t1: float) -> None:
        self._busy_s += t1 - t0
        self._recent_busy.append((t0, t1))

    def busy_fraction(self, recent: float | None = None) -> float | None:
        """Share of wall time the thread spent running the model: since start, or over the
        last `recent` seconds (of the last 512 passes)."""
        if self._started_at is None:
            return None
        now = time.perf_counter()
        if recent is None:
            return self._busy_s / max(1e-9, now - self._started_at)
        since = max(self._started_at, now - recent)
        busy = sum(min(b, now) - max(a, since) for a, b in list(self._recent_busy) if b > since)
        return busy / max(1e-9, now - since)

    def session_stats(self, session: str) -> dict[str, Any]:
        with self._cond:
            fig = self._figures.get(session)
            queued = len(self._queues.get(session, ()))
        return {} if fig is None else {**fig.summary(), "queued": queued}

    def stats(self) -> dict[str, Any]:
        with self._cond:
            sessions = {s: f.summary() for s, f in self._figures.items()}
            queued = {s: len(q) for s, q in self._queues.items()}
        for s, n in queued.items():
            sessions[s]["queued"] = n
        busy = self.busy_fraction()
        recent = self.busy_fraction(10.0)
        return {
            **super().stats(),
            "sessions_open": len(queued),
            "busy_fraction": None if busy is None else round(busy, 3),
            "busy_fraction_10s": None if recent is None else round(recent, 3),
            "sessions": sessions,
        }


# ====================================================================== scoring
class ScorerService(_SharedService):
    """One thread scoring the windows of every session with one `WindowScorer`, batched.

    `scorer`: a `WindowScorer` built with `max_streams >= max_batch` (its input buffers
    hold `max_streams` rows; `score_many` refuses more). `max_batch`: most windows per
    pass (default: `scorer.max_streams`). Each pass takes at most one window per session,
    the sessions with the oldest pending request first (see the module docstring).

    A batch that raises is scored again window by window, so a bad window fails only its
    own caller (with the scorer's exception) and the others get their scores.
    """

    name = "scorer-service"

    def __init__(self, scorer, *, max_batch: int | None = None, warm_batches: bool = True) -> None:
        super().__init__()
        streams = int(getattr(scorer, "max_streams", 1))
        self.max_batch = streams if max_batch is None else int(max_batch)
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if self.max_batch > streams:
            raise ValueError(
                f"max_batch {self.max_batch} > the scorer's max_streams {streams}: "
                f"build the WindowScorer with max_streams={self.max_batch}"
            )
        self.scorer = scorer
        self.warm_batches = warm_batches
        self._model_lock = threading.Lock()  # the scorer's buffers: one pass at a time
        self._warm = False
        self.passes = 0
        self.batch_sizes = RecentStats()
        self.pass_ms = RecentStats()

    def client(self, session_id: str) -> "ScorerClient":
        """The `scorer` of one session's pipeline."""
        self._open(session_id)
        return ScorerClient(self, session_id)

    def warm_up(self) -> None:
        """Warm the scorer, and (`warm_batches`) trace every batch size up to `max_batch`
        now: a batch size's first pass traces its graph (about a second), which would
        stall every session if it happened live. Idempotent, thread-safe."""
        with self._model_lock:
            if self._warm:
                return
            self.scorer.warm_up()
            if self.warm_batches and self.max_batch > 1:
                window = _blank_window(self.scorer)
                for n in range(2, self.max_batch + 1):
                    self.scorer.score_many([window] * n)
            self._warm = True

    def run(self) -> None:
        while True:
            with self._cond:
                while not self.stopping and not self._pending_sessions():
                    self._cond.wait(0.5)
                if self.stopping:
                    return
                # the oldest request of each session, oldest sessions first
                heads = sorted((q[0] for q in self._queues.values() if q), key=lambda r: r.t_submit)[: self.max_batch]
                for req in heads:
                    self._queues[req.session].popleft()
            self._run_batch(heads)

    def _run_batch(self, batch: list[_Request]) -> None:
        with self._model_lock:
            self._serve(batch, many=lambda args: self.scorer.score_many([a[0] for a in args]),
                        one=lambda a: self.scorer.score_many([a[0]])[0])
        self.passes += 1

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out.update(
            max_batch=self.max_batch,
            passes=self.passes,
            batch_size=self.batch_sizes.summary(),
            pass_ms=self.pass_ms.summary(),
            step_ms=self.scorer.step_ms.summary() if hasattr(self.scorer, "step_ms") else None,
        )
        return out


class ScorerClient:
    """One session's view of a `ScorerService`: the `WindowScorer` interface the pipeline
    uses. `score(window)` waits for the shared thread; the rest is the shared scorer's."""

    def __init__(self, service: ScorerService, session_id: str) -> None:
        self.service = service
        self.session_id = session_id
        self.closed = False

    # what the pipeline reads of a scorer
    features = property(lambda self: self.service.scorer.features)
    config = property(lambda self: self.service.scorer.config)
    model_info = property(lambda self: self.service.scorer.model_info)
    path = property(lambda self: self.service.scorer.path)
    device = property(lambda self: getattr(self.service.scorer, "device", None))

    def warm_up(self) -> None:
        self.service.warm_up()

    def encode_text(self, text: str) -> np.ndarray:
        """The shared scorer's cached text encoding (thread-safe there)."""
        return self.service.scorer.encode_text(text)

    def score(self, window):
        """The window's `ScoreResult`, from the shared thread's next pass (blocks until then).
        Raises `SessionClosed` when this client or the service closed meanwhile, and the
        scorer's own exception when scoring this window failed."""
        if self.closed:
            raise SessionClosed(f"the scorer client of session {self.session_id!r} is closed")
        return self.service._wait(self.service._submit(self.session_id, window))

    def score_many(self, windows: Sequence) -> list:
        """Several windows of this session, each in its own pass (fairness: one per pass)."""
        return [self.score(w) for w in windows]

    def close(self) -> None:
        """The session ended: its pending request fails at once with `SessionClosed`. Idempotent."""
        self.closed = True
        self.service._close(self.session_id)

    def stats(self) -> dict[str, Any]:
        """The shared scorer's figures (`step_ms`, `text_cache`: what `LivePipeline.metrics`
        reads) and this session's (`session`: windows, wait_ms, run_ms, queued)."""
        out = dict(self.service.scorer.stats())
        out["session"] = self.service.session_stats(self.session_id)
        out["batch_size"] = self.service.batch_sizes.summary()
        return out


def _blank_window(scorer):
    """A window of zeros with the text "hello" (warm-up passes)."""
    steps = scorer.features.window_steps
    return Window(
        seq=0, start=0.0, end=float(steps * scorer.features.step_seconds),
        audio=np.zeros((steps, scorer.config.audio_dim), np.float32), audio_mask=np.ones(steps, bool),
        video=np.zeros((steps, scorer.config.video_dim), np.float32), video_mask=np.ones(steps, bool),
        words=[], text="hello", presence={}, text_features=scorer.encode_text("hello"),
    )


# ====================================================================== speech
class SpeechService(_SharedService):
    """One thread running the speech passes of every session, round-robin.

    `transcriber`: an object with `.model` (loaded on first use) and
    `.transcribe(wave_16k, offset=0.0) -> list[Word]`: a speech engine
    (`hcl.features.speech_engine.make_engine`: Whisper, or Moonshine, which has no batches).
    Each turn takes the oldest pending pass of the next session in the rotation (sessions
    with nothing pending are skipped), so a session with a backlog waits its turn like
    the others and no session waits more than one pass of each other session.

    `max_batch > 1` with a transcriber that has `transcribe_many([(wave, offset), ...])`
    (`realtime.sessions.batched_whisper.BatchedWhisper`): a turn takes the oldest pending pass of
    up to `max_batch` sessions, in rotation order, and decodes them as one batch. A batch
    that raises is run again pass by pass, so an error reaches only its own caller.

    `gather` (s, batching only): a session served by the last turn usually submits its
    next pass a moment after it got its words (a live stream that fell behind has one due
    at once); a turn that is not full waits up to `gather` for those sessions, so N busy
    sessions share one batch instead of alternating in halves (each half waiting for the
    other's turn). Off by default: in the one comparison measured (bench/sessions_bench.py,
    4 sessions, a loaded machine) it made 3.0 passes per turn instead of 1.9 but no faster
    transcript: a batch is padded to its longest pass.
    """

    name = "speech-service"

    def __init__(self, transcriber, *, max_batch: int = 1, keep: int = 1024, gather: float = 0.0) -> None:
        super().__init__()
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_batch > 1 and not callable(getattr(transcriber, "transcribe_many", None)):
            raise ValueError("max_batch > 1 needs a transcriber with transcribe_many: wrap it in "
                             "realtime.sessions.batched_whisper.BatchedWhisper")
        self.transcriber = transcriber
        self.max_batch = int(max_batch)
        self.gather = max(0.0, float(gather)) if self.max_batch > 1 else 0.0
        self._last_served: set[str] = set()  # the sessions of the last turn
        self._load_lock = threading.Lock()
        self._rotation: collections.deque[str] = collections.deque()  # sessions in turn order
        self.passes = 0
        self.turns = 0
        self.pass_ms = RecentStats(keep)  # one turn (a pass, or a batch of them)
        self.batch_sizes = RecentStats(keep)

    def client(self, session_id: str) -> "SpeechClient":
        """The `transcriber` of one session's pipeline."""
        self._open(session_id)
        with self._cond:
            self._rotation.append(session_id)
        return SpeechClient(self, session_id)

    @property
    def model(self):
        """The shared Whisper model, loaded once (sessions starting together wait for one load)."""
        with self._load_lock:
            return self.transcriber.model

    def _close(self, session: str) -> None:
        super()._close(session)
        with self._cond:
            try:
                self._rotation.remove(session)
            except ValueError:
                pass

    def _next(self, out: list[_Request] | None = None) -> list[_Request]:
        """The oldest pending pass of the next sessions in turn (not those in `out` already),
        added to `out` up to `max_batch` (under _cond)."""
        out = [] if out is None else out
        taken = {r.session for r in out}
        for _ in range(len(self._rotation)):
            if len(out) >= self.max_batch:
                break
            session = self._rotation[0]
            self._rotation.rotate(-1)  # it goes to the back whether or not it had work
            if session in taken:
                continue
            queue = self._queues.get(session)
            if queue:
                out.append(queue.popleft())
        return out

    def _gather(self, batch: list[_Request]) -> list[_Request]:
        """Fill a turn that is not full with the passes the last turn's sessions submit
        within `gather` s (under _cond; see the class docstring)."""
        if not self.gather or len(batch) >= self.max_batch:
            return batch
        waiting = {s for s in self._last_served if s in self._queues} - {r.session for r in batch}
        deadline = time.perf_counter() + self.gather
        while waiting and not self.stopping:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            self._cond.wait(left)
            waiting = {s for s in waiting if s in self._queues and not self._queues[s]}
        return self._next(batch)

    def run(self) -> None:
        while True:
            with self._cond:
                batch: list[_Request] = []
                while not self.stopping and not (batch := self._next()):
                    self._cond.wait(0.5)
                batch = self._gather(batch)
                self._last_served = {r.session for r in batch}
                if self.stopping:
                    for req in reversed(batch):  # back in their queues: finish() fails them
                        self._queues.get(req.session, collections.deque()).appendleft(req)
                    return
            self._run_turn(batch)

    def _run_turn(self, batch: list[_Request]) -> None:
        self._serve(batch, many=lambda args: self.transcriber.transcribe_many(args),
                    one=lambda a: self.transcriber.transcribe(a[0], offset=a[1]))
        self.turns += 1
        self.passes += len(batch)

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out.update(max_batch=self.max_batch, gather_s=self.gather, passes=self.passes, turns=self.turns, turn_ms=self.pass_ms.summary(),
                   batch_size=self.batch_sizes.summary())
        return out


class SpeechClient:
    """One session's view of a `SpeechService`: the transcriber interface `LivePipeline`
    and `SpeechWorker` use (`model`, `transcribe`)."""

    def __init__(self, service: SpeechService, session_id: str) -> None:
        self.service = service
        self.session_id = session_id
        self.closed = False

    @property
    def model(self):
        return self.service.model

    @property
    def config(self):
        return getattr(self.service.transcriber, "config", None)

    def transcribe(self, wave_16k: np.ndarray, offset: float = 0.0):
        """The words of one pass, from the shared thread (blocks the caller until done).
        Raises `SessionClosed` when this client or the service closed meanwhile, and the
        transcriber's own exception when this pass failed."""
        if self.closed:
            raise SessionClosed(f"the speech client of session {self.session_id!r} is closed")
        return self.service._wait(self.service._submit(self.session_id, np.asarray(wave_16k), float(offset)))

    def close(self) -> None:
        """The session ended: its pending pass fails at once with `SessionClosed`. Idempotent."""
        self.closed = True
        self.service._close(self.session_id)

    def stats(self) -> dict[str, Any]:
        """This session's passes, queue wait and pass time in the shared service."""
        return self.service.session_stats(self.session_id)
