"""Many live sessions on one server: who is being monitored, with which pipeline, on
which stream, and whether the machine can take one more.

    hub = SessionHub(scorer=scorer, config=HubConfig(max_sessions=4, record_dir=...))
    server = DashboardServer(..., sessions=hub)       # captures at /capture open sessions here
    hub.start()                                       # the health monitor
    session = hub.open_browser(hello, channels=server)  # AdmissionRefused says why not
    hub.start_session(session)                        # loads the face model, starts the clock
    ...  session.source.feed(msg) ...                 # the server's capture socket
    hub.end(session.id)                               # windows finish, the recording closes

A `LiveSession` has an id (the recording's folder name), an unguessable link secret
(`secrets.token_urlsafe`: /s/<secret> is its page, /ws?session=<secret> its stream),
its `LivePipeline`, its optional `SessionRecorder` (`record_dir/<session id>/`) and
its publish channel (only that session's viewers get its windows).

Models are shared: every session scores through one scorer and transcribes with
one speech engine (Moonshine by default, or Whisper). `realtime.sessions.services` (a batching scorer thread and a speech service)
provides them; with `HubConfig(shared_models="locked")`, one `WindowScorer` /
`SpeechTranscriber` per process, called under a lock (neither is safe to call from two threads).

Load: with the shared services, a `realtime.sessions.governor.LoadGovernor` watches the
live sessions once a second and thins every session alike when they fall behind
(speech passes late or skipped, windows dropped: face analysis 10 -> 5 fps, speech
passes every 0.75 -> 3 s); it falls back when the shared speech thread has room. The
level is in `stats()["load"]` and each session's line.

Admission: a new session is refused when `max_sessions` are live, or when the
measured health says the machine is not keeping up: a live session dropped
windows within the last `health_window` s, or its transcript lag p95 is over
`max_lag_p95`, or the governor says one more would not fit even at the thinnest
level. The monitor thread samples every session once a second (its threads' CPU
time, its drops), so the check costs nothing at admission time.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import pathlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from realtime.core import protocol
from realtime.core.component import Policy, Worker
from realtime.core.errors import SetupError
from realtime.pipeline.build import build_session
from realtime.pipeline.live import PipelineOptions, new_session_id, session_hello
from realtime.pipeline.speech import SpeechOptions
from realtime.sessions.governor import GovernorConfig, LoadGovernor
from realtime.sessions.shared import SharedModels
from realtime.sources.browser import BrowserSource

log = logging.getLogger(__name__)

LINK_PREFIX = "/s/"


class AdmissionRefused(RuntimeError):
    """A new session cannot be taken now; `reason` is what the page shows."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class HubConfig:
    """How many sessions, when to refuse one, and where they are recorded."""

    max_sessions: int = 4
    # refuse a new session while any live one has a transcript lag p95 above this (s)
    max_lag_p95: float | None = 2.5
    # ... or dropped windows within the last `health_window` s
    refuse_on_drops: bool = True
    health_window: float = 10.0
    monitor_interval: float = 1.0
    record_dir: pathlib.Path | None = None  # each session in record_dir/<session id>/
    end_timeout: float = 20.0  # s a closing session has to score what it has
    keep_ended: int = 16  # ended sessions listed (and their streams kept) for late viewers
    # "auto" or "services": realtime.sessions.services (one batching scorer thread, one speech
    # thread); "locked": one scorer / speech engine per process under a lock
    shared_models: str = "auto"
    # most sessions' Whisper passes decoded as one batch (realtime.sessions.batched_whisper); 1: one at a time
    speech_batch: int = 4
    # s a batch that is not full waits for the sessions of the last one (SpeechService.gather);
    # off: it made bigger batches but no faster transcript in the one comparison measured
    speech_gather: float = 0.0
    # thinning every session alike under load, and refusing what would not fit (None: off)
    governor: GovernorConfig | None = dataclasses.field(default_factory=GovernorConfig)

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ValueError("max_sessions must be >= 1")
        if self.shared_models not in ("auto", "services", "locked"):
            raise ValueError("shared_models must be 'auto', 'services' or 'locked'")
        if self.health_window <= 0 or self.monitor_interval <= 0:
            raise ValueError("health_window and monitor_interval must be > 0 s")
        if self.speech_batch < 1:
            raise ValueError("speech_batch must be >= 1")


class Channel(Protocol):
    """A session's publish channel (realtime.web.server.DashboardServer.open_channel)."""

    def publish(self, msg: dict[str, Any]) -> None: ...

    def set_status(self, state: str, detail: str = "") -> None: ...

    def attach_recording(self, directory: Any) -> None: ...


class ChannelOpener(Protocol):
    def open_channel(self, key: str, hello: dict[str, Any]) -> Channel: ...

    def close_channel(self, key: str) -> None: ...


# ------------------------------------------------------------------ one session
def _thread_cpu(thread: threading.Thread | None) -> float:
    """CPU seconds a live thread has used (0 when it is gone or the platform cannot say)."""
    if thread is None or thread.ident is None or not thread.is_alive():
        return 0.0
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (AttributeError, OSError, ValueError):
        return 0.0


@dataclass
class LiveSession:
    id: str
    secret: str
    kind: str  # browser, file, camera, ...
    name: str
    pipeline: Any
    channel: Any = None
    channels: Any = None  # the ChannelOpener that opened `channel` (closes it when the session is forgotten)
    recorder: Any = None
    peer: str = ""
    owned: bool = True  # the hub starts and ends it (False: adopted, its owner does)
    created_at: float = dataclasses.field(default_factory=time.time)
    started: float | None = None  # monotonic
    ended: float | None = None
    end_reason: str = ""
    scorer_client: Any = None
    speech_client: Any = None
    # its operator-view line, frozen when it ended: the hub then lets its pipeline go (the
    # audio ring, the face model, the encoders), so a kept ended session costs a dict
    final: dict[str, Any] | None = None
    # measured by the hub's monitor
    cpu_percent: float | None = None  # of one core, over the last interval
    cpu_seconds: float = 0.0
    _drops: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=120))
    _cpu_last: tuple[float, dict[int, float]] | None = None

    @property
    def link(self) -> str:
        return LINK_PREFIX + self.secret

    @property
    def stream(self) -> str:
        return "/ws?session=" + self.secret

    @property
    def source(self):
        return self.pipeline.source

    @property
    def live(self) -> bool:
        return self.ended is None

    def sample(self, now: float) -> None:
        """One monitor tick: CPU since the last tick, the dropped-window count."""
        cpu = {t.ident: _thread_cpu(t) for t in self.pipeline.threads() if t.ident is not None}
        if self._cpu_last is not None:
            t_last, last = self._cpu_last
            used = sum(max(0.0, v - last.get(k, 0.0)) for k, v in cpu.items())
            self.cpu_seconds += used
            if now > t_last:
                self.cpu_percent = round(100 * used / (now - t_last), 1)
        self._cpu_last = (now, cpu)
        self._drops.append((now, self.dropped()))

    def dropped(self) -> int:
        return int(self.pipeline.queue.dropped)

    def drops_within(self, seconds: float, now: float) -> int:
        """Windows dropped in the last `seconds` (by the monitor's samples)."""
        recent = [d for t, d in self._drops if t >= now - seconds]
        if not recent:
            return 0
        older = [d for t, d in self._drops if t < now - seconds]
        return max(0, self.dropped() - (older[-1] if older else 0))

    def lag_p95(self) -> float | None:
        speech = self.pipeline.speech
        if speech is None:
            return None
        return speech.transcript.stats()["lag_s"].get("p95")

    def summary(self, *, now: float | None = None, window: float = 10.0) -> dict[str, Any]:
        """This session's line in the operator view and /metrics."""
        if self.final is not None:
            return self.final
        now = time.monotonic() if now is None else now
        p = self.pipeline
        scoring = p.scoring.stats()
        out = {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "peer": self.peer,
            "link": self.link,
            "live": self.live,
            "end_reason": self.end_reason or None,
            "age_s": round(now - self.started, 1) if self.started is not None else 0.0,
            "windows": scoring["windows"],
            "dropped_windows": scoring["dropped_windows"],
            "dropped_recent": self.drops_within(window, now),
            "latency_ms": scoring["latency_ms"].get("total"),
            "transcript_lag_s": p.speech.transcript.stats()["lag_s"] if p.speech is not None else None,
            "cpu_percent": self.cpu_percent,
            "cpu_seconds": round(self.cpu_seconds, 2),
            # what the load governor gives this session now (speech_period_s, face_fps)
            **p.thinning(),
            "recording": str(self.recorder.directory) if self.recorder is not None else None,
            "problems": p.problems(),
        }
        if getattr(p.source, "kind", "") == "browser":
            s = p.source.stats()
            out["capture"] = {k: s.get(k) for k in ("delay_ms", "gap_seconds", "late_audio_seconds", "frames_decoded",
                                                     "before_start", "resyncs") if k in s}
        return out


# ------------------------------------------------------------------ the hub
class SessionHub(Worker):
    """Creates, lists and ends live sessions; shares the models; admits or refuses.

    A component: `start()` runs the health monitor, `stop()` ends every session it
    owns (their recordings close), `stats()` is the operator view's body."""

    name = "sessions"

    def __init__(
        self,
        *,
        scorer,
        transcriber=None,
        config: HubConfig = HubConfig(),
        options: PipelineOptions | None = None,
        governor: LoadGovernor | None = None,
    ) -> None:
        """`scorer` and `transcriber` (default: the session options' speech engine, made on first use) are shared by every
        session (`models`); `governor` defaults to one over the shared speech thread."""
        super().__init__()
        self.config = config
        self.options = options if options is not None else PipelineOptions(
            policy=Policy.LIVE, speech=SpeechOptions(max_backlog=4.0))
        self.models = SharedModels(scorer, transcriber=transcriber, speech=self.options.speech,
                                   services=config.shared_models != "locked", max_batch=config.max_sessions,
                                   speech_batch=config.speech_batch, speech_gather=config.speech_gather)
        self._sessions: dict[str, LiveSession] = {}
        self._by_secret: dict[str, LiveSession] = {}
        self._ended: collections.deque[LiveSession] = collections.deque()
        self._pending = 0  # admitted, not yet registered
        self._lock = threading.RLock()
        self.refused: collections.Counter[str] = collections.Counter()
        self.created = 0
        self._wake = threading.Event()
        self._shut = False  # the sessions were ended and the models stopped (once)
        # measures nothing until the shared speech service runs
        self.governor = governor or LoadGovernor(self.models, config.governor or GovernorConfig(enabled=False))

    def warm_up(self) -> None:
        """Load and warm the shared models now (the scorer's graphs, the speech engine), so a new
        session starts in about the time its own face model takes to load."""
        self.models.warm_up(speech=self.options.transcribe)

    # ---------------------------------------------------------------- admission
    def check_admission(self, now: float | None = None) -> None:
        """Raise AdmissionRefused (with what to do) when a new session cannot be taken."""
        now = time.monotonic() if now is None else now
        cfg = self.config
        with self._lock:
            if self.stopping:
                raise AdmissionRefused("the server is stopping; try again when it is back")
            live = [s for s in self._sessions.values() if s.live]
            if len(live) + self._pending >= cfg.max_sessions:
                raise AdmissionRefused(f"the server is full: {cfg.max_sessions} sessions are live (--max-sessions); "
                                       "try again when one ends")
            for s in live:
                if cfg.refuse_on_drops:
                    drops = s.drops_within(cfg.health_window, now)
                    if drops:
                        raise AdmissionRefused(
                            f"the server is not keeping up: a session dropped {drops} windows in the last "
                            f"{cfg.health_window:g} s; try again later")
                lag = s.lag_p95()
                if cfg.max_lag_p95 is not None and lag is not None and lag > cfg.max_lag_p95:
                    raise AdmissionRefused(
                        f"the server is not keeping up: transcript lag p95 {lag:.1f} s (bound "
                        f"{cfg.max_lag_p95:g} s); try again later")
            reason = self.governor.refusal(len(live) + self._pending, now)
            if reason is not None:
                raise AdmissionRefused(reason)

    def _admit(self) -> None:
        with self._lock:
            try:
                self.check_admission()
            except AdmissionRefused as exc:
                self.refused[exc.reason.split(":")[0]] += 1
                raise
            self._pending += 1

    # ---------------------------------------------------------------- sessions
    def _new_secret(self) -> str:
        while True:
            secret = secrets.token_urlsafe(18)
            if secret not in self._by_secret:
                return secret

    def open_browser(self, hello, *, peer: str = "", channels: ChannelOpener | None = None) -> LiveSession:
        """A session for a capture client's hello (not started: `start_session`)."""
        source = BrowserSource.from_hello(hello)
        return self.open(source, kind="browser", peer=peer, channels=channels)

    def open(self, source, *, kind: str, peer: str = "", session_id: str | None = None,
             channels: ChannelOpener | None = None) -> LiveSession:
        """Admit, then build a session around `source` (its pipeline, its recorder under
        `config.record_dir`, its channel from `channels`: the server its viewers watch)."""
        self._admit()
        scorer = speech = channel = None
        try:
            session_id = session_id or new_session_id()
            secret = self._new_secret()
            scorer = self.models.scorer_client(session_id)
            speech = self.models.speech_client(session_id) if source.audio is not None and self.options.transcribe else None
            hello = session_hello(session_id=session_id, scorer=scorer, mode="live")
            channel = channels.open_channel(secret, hello) if channels is not None else None
            root = self.config.record_dir
            pipeline = build_session(
                source=source, scorer=scorer, transcriber=speech, options=self.options, mode="live", session_id=session_id,
                publish=channel.publish if channel is not None else None,
                record_to=pathlib.Path(root) / session_id if root is not None else None,
                on_recording_error=lambda message: self._recording_failed(session_id, channel, message))
            if channel is not None and pipeline.recorder is not None:
                channel.attach_recording(pipeline.recorder.directory)
            session = LiveSession(id=session_id, secret=secret, kind=kind, name=source.name, pipeline=pipeline,
                                  channel=channel, channels=channels, recorder=pipeline.recorder, peer=peer,
                                  scorer_client=scorer, speech_client=speech)
            self._register(session)
            return session
        except BaseException as exc:  # half a session: its clients' queues and its channel go too
            for client in (scorer, speech):
                if client is not None and callable(getattr(client, "close", None)):
                    client.close()
            if channel is not None:
                channels.close_channel(secret)
            if isinstance(exc, OSError) and self.config.record_dir is not None:
                raise SetupError(f"this server cannot record sessions: give hcl-live --record a writable folder "
                                 f"({type(exc).__name__}: {exc})") from exc
            raise
        finally:
            with self._lock:
                self._pending -= 1

    def adopt(self, pipeline, *, kind: str, channel=None, recorder=None, secret: str | None = None) -> LiveSession:
        """List a session whose owner runs it (hcl-live's own --camera/--file session): it is
        counted, measured and reachable by its link, but its owner starts and stops it."""
        with self._lock:
            session = LiveSession(id=pipeline.session_id, secret=secret or self._new_secret(), kind=kind,
                                  name=pipeline.source.name, pipeline=pipeline, channel=channel, recorder=recorder,
                                  owned=False)
            session.started = time.monotonic()
            self._register(session)
        return session

    def _register(self, session: LiveSession) -> None:
        with self._lock:
            self._sessions[session.id] = session
            self._by_secret[session.secret] = session
            self.created += 1

    @staticmethod
    def _recording_failed(session_id: str, channel, message: str) -> None:
        """A session's recorder stopped (e.g. the disk is full): the log and its viewers are told."""
        log.warning("session %s: %s", session_id, message)
        if channel is not None:
            channel.publish(protocol.error_message(message))

    def start_session(self, session: LiveSession) -> None:
        """Start its pipeline (loads the per-session face model; blocks a second or two).
        A failure ends the session and raises."""
        p = session.pipeline
        if p is None:  # ended before it started (the server is stopping)
            return
        try:
            p.start()
        except BaseException as exc:
            self.end(session.id, reason=f"could not start: {exc}", wait=False)
            raise
        session.started = time.monotonic()
        if session.ended is not None:  # ended while it started: stop what just started
            p.stop()
            return
        self.governor.apply(p)
        if session.channel is not None:
            session.channel.set_status("running", "")
        self._wake.set()

    def get(self, session_id: str) -> LiveSession | None:
        with self._lock:
            return self._sessions.get(session_id)

    def by_secret(self, secret: str) -> LiveSession | None:
        with self._lock:
            return self._by_secret.get(secret)

    def sessions(self, *, live_only: bool = True) -> list[LiveSession]:
        with self._lock:
            out = list(self._sessions.values())
            if not live_only:
                out += list(self._ended)
        return out

    def end(self, session_id: str, *, reason: str = "ended", wait: bool = True) -> LiveSession | None:
        """End a session the hub owns: its source ends (a browser: no more input), the
        windows already captured are scored (up to `end_timeout` s), the recording closes,
        its viewers are told it finished. Idempotent; blocks (call it off the event loop)."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or session.ended is not None:
                return session
            session.ended = time.monotonic()
            session.end_reason = reason
        p = session.pipeline
        try:
            end = getattr(p.source, "end", None)
            if end is not None:
                end()
            if wait and p.started:
                p.wait(self.config.end_timeout)
        finally:
            if session.owned:
                p.stop()
                p.join()  # its queued windows scored, its recording closed
            for client in (session.scorer_client, session.speech_client):
                close = getattr(client, "close", None)
                if close is not None:
                    close()
            if session.channel is not None:
                m = p.scoring.stats()
                session.channel.set_status("finished", f"{reason}: {m['windows']} windows")
            if session.owned:  # keep its figures, let the rest go (the owner of an adopted one keeps it)
                try:
                    session.final = session.summary()
                    session.pipeline = session.scorer_client = session.speech_client = None
                except Exception:
                    log.debug("session %s: no final summary; its pipeline is kept", session.id, exc_info=True)
            with self._lock:
                self._sessions.pop(session.id, None)
                self._ended.append(session)
                while len(self._ended) > self.config.keep_ended:
                    old = self._ended.popleft()
                    self._by_secret.pop(old.secret, None)
                    if old.channels is not None:
                        old.channels.close_channel(old.secret)
        return session

    # ---------------------------------------------------------------- monitor
    def run(self) -> None:
        while not self.stopping:
            now = time.monotonic()
            running = [s for s in self.sessions() if s.started is not None]
            for session in running:
                try:
                    session.sample(now)
                except Exception:  # a figure must never stop the monitor
                    log.debug("sampling session %s failed", session.id, exc_info=True)
            try:
                self.governor.tick([s.pipeline for s in running], now)
            except Exception:
                log.exception("the load governor failed")
            self._wake.wait(self.config.monitor_interval)
            self._wake.clear()

    def stop(self) -> None:
        """Refuse new sessions and return. The hub's thread then ends every session it owns
        (their queued windows are scored, their recordings close), then stops the shared
        models they used; `join()` waits for that. A hub never started does it here."""
        super().stop()  # admission refuses from here on
        self._wake.set()
        if self.thread is None:
            self._shut_down()

    def finish(self) -> None:
        self._shut_down()  # on the hub's thread, after the monitor's last tick

    def _shut_down(self) -> None:
        with self._lock:
            if self._shut:
                return
            self._shut = True
        pipelines = [s.pipeline for s in self.sessions(live_only=False) if s.pipeline is not None]
        for session in self.sessions():
            if session.owned:
                try:
                    self.end(session.id, reason="server stopping", wait=False)
                except Exception:
                    log.exception("ending session %s", session.id)
        if self.models.running:
            # a session's last scoring or speech pass may still be running on a busy machine:
            # let it finish on the shared service before that stops
            deadline = time.monotonic() + self.config.end_timeout
            for p in pipelines:
                for part in (p.scoring, p.speech):
                    if part is not None:
                        part.join(max(0.0, deadline - time.monotonic()))
            self.models.stop()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the sessions to end and the shared services to stop: a speech pass still
        running in a daemon thread while the interpreter exits can hang it in native code."""
        deadline = None if timeout is None else time.monotonic() + timeout
        super().join(timeout)
        self.models.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def stats(self) -> dict[str, Any]:
        """The operator view: every live (and recently ended) session with its lag, drops
        and CPU share, and the admission state."""
        now = time.monotonic()
        sessions = self.sessions(live_only=False)
        lines = [s.summary(now=now, window=self.config.health_window) for s in sessions]
        try:
            self.check_admission(now)
            admitting, why = True, None
        except AdmissionRefused as exc:
            admitting, why = False, exc.reason
        return {
            **super().stats(),
            "live": sum(1 for s in sessions if s.live),
            "max_sessions": self.config.max_sessions,
            "created": self.created,
            "admitting": admitting,
            "refusing_because": why,
            "refused": dict(self.refused),
            "cores": os.cpu_count(),
            **self.models.stats(),
            "load": self.governor.state(),
            "sessions": lines,
        }
