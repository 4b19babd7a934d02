"""Live sessions on Ray Serve: many browser sessions spread over the replicas of a cluster.

    serve run realtime.scale.serve:app checkpoint=models/x.pt ingress_replicas=2 record_dir=/shared/rec
    hcl-live --ray [--ray-address auto] [--ray-setting ingress_replicas=2 ...]   # the same, from the CLI

Four deployments (`build_app(ServeSettings)`):

- `Ingress` (FastAPI ingress, `ingress_replicas` of them): each replica runs what
  `hcl-live --browser` runs, a `SessionHub` behind a `DashboardServer`, on a port of its
  own node. Serve's HTTP proxy hands a websocket to one replica for the websocket's
  whole life; the replica relays it, frame for frame and close code for close code,
  to its own dashboard server. So the capture protocol, admission, recording, the
  session links and the dashboard's files are exactly those of the single-process
  server: a capture websocket (/capture) opens a session on the replica that took it.
- `Scorer`: loads the checkpoint once; `score` is a `@serve.batch` over single
  windows, so windows of every session on every ingress replica are scored together
  (up to `batch_size`, waiting at most `batch_wait_s` for more).
- `Speech`: runs the Whisper passes (one at a time per replica: CTranslate2 already
  spreads one pass over its threads).
- `Directory`: the ingress replicas (how many sessions each holds) and which one holds
  which session link. A dashboard stream (/ws?session=<secret>) or page (/s/<secret>)
  that Serve hands to another replica is relayed by that replica to the holder's
  dashboard server; a capture that Serve hands to a full replica is relayed to the
  replica with the most room (refused only when every replica is full).

In an ingress replica the hub's shared scorer and Whisper are `RemoteScorer` and
`RemoteTranscriber`: the `WindowScorer` / `SpeechTranscriber` interface the hub's
`ScorerService` and `SpeechService` already use, each call a `DeploymentHandle` call
waited for on the session's own thread.

A replica that dies ends its own sessions only: their capture websockets close, their
recordings (`record_dir/<session id>/`, written atomically per window) stay readable,
and Serve starts a new replica. The other replicas' sessions go on.
"""

# no `from __future__ import annotations`: FastAPI reads the routes' parameter types at run time
import asyncio
import collections
import dataclasses
import json
import logging
import os
import pathlib
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np
import ray
import torch
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import Response
from ray import serve
from websockets.asyncio.client import connect
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hcl.checkpoint import default_live_checkpoint, load_checkpoint
from realtime.core.component import Policy, percentiles
from realtime.pipeline.live import PipelineOptions, session_hello
from realtime.pipeline.scorer import WindowScorer
from realtime.pipeline.speech import SpeechOptions, transcriber_for
from realtime.sessions.batched_whisper import BatchedWhisper
from realtime.sessions.hub import HubConfig, SessionHub
from realtime.scale.settings import ServeSettings
from realtime.sessions.services import ScorerService
from realtime.web import http
from realtime.web.access import Access
from realtime.web.server import DashboardServer

log = logging.getLogger(__name__)

APP_NAME = "hcl-live"
HEARTBEAT_S = 2.0  # how often an ingress replica tells the directory how many sessions it holds
# the headers of the dashboard server's answer a relayed HTTP answer keeps
_KEPT_HEADERS = ("content-type", "cache-control", "content-security-policy", "x-content-type-options",
                 "referrer-policy", "x-frame-options", "location", "accept-ranges", "content-range",
                 "content-disposition", "www-authenticate", "allow")


def _one_thread(threads: int) -> None:
    """Keep a replica to its share of the cores (torch and OpenMP default to all of them)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        torch.set_num_threads(threads)
    except Exception:  # a count torch refuses leaves its default; the replica still serves
        pass


def _thread_env(threads: int) -> dict[str, Any]:
    return {"env_vars": {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}}


# ====================================================================== model deployments
@serve.deployment(name="Scorer")
class ScorerDeployment:
    """One `WindowScorer`; windows of all sessions and ingress replicas batched together."""

    def __init__(self, settings: ServeSettings) -> None:
        _one_thread(settings.threads)
        self.scorer = WindowScorer(checkpoint=settings.checkpoint, max_streams=settings.batch_size,
                                   device="cuda" if settings.scorer_gpus > 0 else "cpu")
        # trace every batch size now, not in the first live passes (ScorerService's warm-up)
        ScorerService(self.scorer, max_batch=settings.batch_size).warm_up()
        self._lock = threading.Lock()  # the scorer's buffers and text cache: one caller at a time
        self.score.set_max_batch_size(settings.batch_size)
        self.score.set_batch_wait_timeout_s(settings.batch_wait_s)
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=512)

    def describe(self) -> dict[str, Any]:
        """What a session's pipeline reads of its scorer besides the scores."""
        s = self.scorer
        return {"features": s.features, "config": s.config, "model_info": s.model_info,
                "path": None if s.path is None else str(s.path)}

    def _score_many(self, windows: list) -> list:
        with self._lock:
            return self.scorer.score_many(windows)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)  # set from the settings in __init__
    async def score(self, windows: list) -> list:
        self.batch_sizes.append(len(windows))
        return await asyncio.to_thread(self._score_many, windows)

    async def encode_text(self, text: str):
        def encode():
            with self._lock:
                return self.scorer.encode_text(text)

        return await asyncio.to_thread(encode)

    def warm_up(self) -> bool:
        return True  # warmed in __init__

    def stats(self) -> dict[str, Any]:
        out = dict(self.scorer.stats())
        out["serve_batch_size"] = percentiles(list(self.batch_sizes))
        return out


@serve.deployment(name="Speech")
class SpeechDeployment:
    """Whisper for the sessions' speech passes: a `@serve.batch` over passes of every
    session and replica, decoded together (`realtime.sessions.batched_whisper.BatchedWhisper`),
    one batch at a time per replica (CTranslate2 already spreads one over its threads)."""

    def __init__(self, settings: ServeSettings) -> None:
        _one_thread(settings.threads)
        path = settings.checkpoint or default_live_checkpoint()
        features = load_checkpoint(pathlib.Path(path), map_location="cpu").features
        if settings.speech_gpus > 0:
            features = dataclasses.replace(features, speech=dataclasses.replace(features.speech, device="cuda"))
        engine = transcriber_for(features, SpeechOptions(max_backlog=4.0, threads=settings.threads,
                                                       **({"engine": settings.asr} if settings.asr else {})),
                                 Policy.LIVE)
        # Whisper decodes a batch of passes together; Moonshine takes them one by one
        self.whisper = BatchedWhisper(engine) if engine.name == "whisper" else engine
        _ = self.whisper.model  # load the engine now, not at the first session's first pass
        self.transcribe.set_max_batch_size(settings.speech_batch)
        self.transcribe.set_batch_wait_timeout_s(settings.batch_wait_s)
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=512)

    def _many(self, items: list) -> list:
        if len(items) > 1 and hasattr(self.whisper, "transcribe_many"):
            try:
                return self.whisper.transcribe_many(items)
            except Exception:  # find the pass at fault: one by one, so an error reaches only its caller
                log.warning("a batch of %d speech passes failed; running them one by one", len(items), exc_info=True)
        if len(items) == 1:
            return [self.whisper.transcribe(items[0][0], offset=items[0][1])]
        out = []  # an engine without batches (Moonshine), or a failed batch: one pass at a time
        for wave, offset in items:
            try:
                out.append(self.whisper.transcribe(wave, offset=offset))
            except Exception as exc:
                out.append(exc)
        return out

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)  # set from the settings in __init__
    async def transcribe(self, items: list) -> list:
        self.batch_sizes.append(len(items))
        return await asyncio.to_thread(self._many, items)

    def ready(self) -> bool:
        return True


@serve.deployment(name="Directory", num_replicas=1, ray_actor_options={"num_cpus": 0})
class SessionDirectory:
    """The ingress replicas (their dashboard servers' addresses, how many sessions each
    holds, heard from every `HEARTBEAT_S`) and which replica holds which session link."""

    keep = 4096

    def __init__(self) -> None:
        self._where: collections.OrderedDict[str, str] = collections.OrderedDict()  # link secret -> address
        self._replicas: dict[str, tuple[str, int, int, float]] = {}  # address -> (replica, live, max, heard at)

    def heartbeat(self, address: str, replica: str, live: int, most: int) -> None:
        self._replicas[address] = (replica, int(live), int(most), time.monotonic())

    def replica_of(self, address: str) -> str | None:
        entry = self._replicas.get(address)
        return entry[0] if entry else None

    def room(self, exclude: str) -> tuple[str, str] | None:
        """(address, replica) of the live replica with the most free places, None when all are full."""
        now = time.monotonic()
        free = [(most - live, address, replica) for address, (replica, live, most, heard) in self._replicas.items()
                if address != exclude and now - heard < 3 * HEARTBEAT_S and live < most]
        if not free:
            return None
        _, address, replica = max(free)
        self._replicas[address] = (replica, self._replicas[address][1] + 1, *self._replicas[address][2:])  # until its next beat
        return address, replica

    def put(self, secret: str, address: str) -> None:
        self._where[secret] = address
        self._where.move_to_end(secret)
        while len(self._where) > self.keep:
            self._where.popitem(last=False)

    def get(self, secret: str) -> str | None:
        return self._where.get(secret)


# ====================================================================== remote models
class RemoteScorer:
    """The `WindowScorer` interface over the Scorer deployment, for a hub's `ScorerService`:
    `score_many` sends each window as its own call, so Serve's batcher can put windows of
    other replicas' sessions in the same pass. Calls block the calling (session) thread."""

    def __init__(self, handle, *, max_streams: int) -> None:
        self._handle = handle
        info = handle.describe.remote().result()
        self.features = info["features"]
        self.config = info["config"]
        self.model_info = info["model_info"]
        self.path = pathlib.Path(info["path"]) if info["path"] else None
        self.max_streams = int(max_streams)
        self._texts: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._texts_lock = threading.Lock()
        self._stats: tuple[float, dict[str, Any]] = (-1e9, {})

    def score_many(self, windows: Sequence) -> list:
        calls = [self._handle.score.remote(w) for w in windows]
        return [c.result() for c in calls]

    def score(self, window):
        return self.score_many([window])[0]

    def encode_text(self, text: str):
        """The deployment's text encoding, kept here too (a session asks for the same text
        once per window while it stands)."""
        with self._texts_lock:
            if text in self._texts:
                self._texts.move_to_end(text)
                return self._texts[text]
        value = self._handle.encode_text.remote(text).result()
        with self._texts_lock:
            self._texts[text] = value
            while len(self._texts) > 256:
                self._texts.popitem(last=False)
        return value

    def warm_up(self) -> None:
        self._handle.warm_up.remote().result()

    def stats(self) -> dict[str, Any]:
        """The deployment's figures, asked at most once a second."""
        t, cached = self._stats
        if time.monotonic() - t > 1.0:
            try:
                cached = self._handle.stats.remote().result(timeout_s=5)
            except Exception as exc:  # a figure must not fail a session
                cached = {"step_ms": {}, "text_cache": {}, "error": f"{type(exc).__name__}: {exc}"}
            self._stats = (time.monotonic(), cached)
        return dict(cached)


class RemoteTranscriber:
    """The `SpeechTranscriber` interface (`model`, `transcribe`) and `transcribe_many` (so
    the hub's `SpeechService` sends up to `speech_batch` passes at once) over the Speech deployment."""

    def __init__(self, handle) -> None:
        self._handle = handle

    @property
    def model(self) -> bool:
        return self._handle.ready.remote().result()  # the deployment loaded Whisper at start

    def transcribe(self, wave_16k, offset: float = 0.0):
        return self.transcribe_many([(wave_16k, offset)])[0]

    def transcribe_many(self, items) -> list:
        """Each pass its own call, sent at once: the deployment batches them with the
        passes of other replicas' sessions."""
        calls = [self._handle.transcribe.remote((np.asarray(wave), float(offset))) for wave, offset in items]
        out = [c.result() for c in calls]
        for words in out:
            if isinstance(words, BaseException):
                raise words
        return out


# ====================================================================== ingress
# (defined before the ingress class: Serve pickles the FastAPI app, routes and their
# globals, when the class is decorated)
def _fetch(url: str, method: str, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    """One plain HTTP request to a dashboard server: (status, headers, body), errors included."""
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, list(r.headers.items()), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, list(exc.headers.items()), exc.read()
    except OSError as exc:
        return 502, [("Content-Type", "text/plain; charset=utf-8")], f"The session's replica cannot be reached: {exc}\n".encode()


ingress_api = FastAPI(title="hcl-live on Ray Serve", docs_url=None, redoc_url=None, openapi_url=None)


@serve.deployment(name="Ingress")
@serve.ingress(ingress_api)
class Ingress:
    """Sessions of this replica: a `SessionHub` behind a `DashboardServer` on this node,
    every websocket and page relayed to it (or to the replica holding the session)."""

    async def __init__(self, settings: ServeSettings, scorer, speech, directory) -> None:
        # the replica's constructor runs on its event loop: the blocking part (handle
        # calls, model loads, the server's start) in a thread
        await asyncio.to_thread(self._start, settings, scorer, speech, directory)
        self._beats = asyncio.get_running_loop().create_task(self._heartbeats())

    def _start(self, settings: ServeSettings, scorer, speech, directory) -> None:
        _one_thread(settings.threads)
        self.settings = settings
        self.directory = directory
        context = serve.get_replica_context()
        self.replica = context.replica_id.to_full_id_str()  # its actor's name (namespace "serve")
        remote = RemoteScorer(scorer, max_streams=settings.max_sessions)
        self.hub = SessionHub(
            scorer=remote, transcriber=RemoteTranscriber(speech) if settings.transcribe else None,
            config=HubConfig(max_sessions=settings.max_sessions, shared_models="services",
                             record_dir=pathlib.Path(settings.record_dir) if settings.record_dir else None),
            options=PipelineOptions(policy=Policy.LIVE, speech=SpeechOptions(max_backlog=4.0, **({"engine": settings.asr} if settings.asr else {})),
                                    transcribe=settings.transcribe))
        host = settings.internal_host or ray.util.get_node_ip_address()
        self.token = settings.internal_token or settings.token or secrets.token_urlsafe(24)
        hello = session_hello(session_id=f"serve-{context.replica_id.unique_id}", scorer=remote, mode="live")
        self.server = DashboardServer(host=host, port=0, token=self.token, hello=hello, sessions=self.hub)
        self.server.start()
        self.address = self.server.address
        self.hub.warm_up()
        self.hub.start()
        log.info("ingress replica %s: sessions served at %s", self.replica, self.address)

    def __del__(self) -> None:
        try:
            self.hub.stop()  # every session ends: its windows are scored, its recording closes
            self.hub.join(30)
            self.server.stop()
            self.server.join(10)
        except Exception:
            pass

    # ------------------------------------------------------------ where a request goes
    async def _holder(self, secret: str | None) -> str | None:
        """The dashboard server that holds session link `secret`: this replica's when it
        has it (or no session is asked for), else the one the directory names."""
        if not secret or self.server.channel_for(secret) is not None:
            return self.address
        return await self.directory.get.remote(secret)

    def _upstream_target(self, path: str, query: str) -> str:
        """The request target at the dashboard server: the user's token is checked here;
        the server gets this app's own."""
        params = [(k, v) for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True) if k != "token"]
        params.append(("token", self.token))
        return path + "?" + urllib.parse.urlencode(params)

    def _token_ok(self, given: str | None, path: str) -> bool:
        if self.settings.token is None or http.is_public_asset(path) or path.startswith("/s/"):
            return True
        return given is not None and secrets.compare_digest(given.encode(), self.settings.token.encode())

    @staticmethod
    def _given_token(query: str, headers) -> str | None:
        values = urllib.parse.parse_qs(query).get("token")
        if values:
            return values[0]
        auth = headers.get("authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    # ------------------------------------------------------------ websockets
    @ingress_api.websocket("/capture")
    async def capture(self, ws: WebSocket) -> None:
        holder, replica = self.address, self.replica
        if self._live() >= self.settings.max_sessions:
            # Serve picked a full replica: relay the capture to one with room (if none has,
            # this one refuses it, with the reason, as hcl-live --browser does)
            room = await self.directory.room.remote(self.address)
            if room is not None:
                holder, replica = room
        await self._relay(ws, "/capture", holder, replica=replica)
        await self._beat()

    def _live(self) -> int:
        return sum(1 for s in self.hub.sessions() if s.live)

    async def _beat(self) -> None:
        await self.directory.heartbeat.remote(self.address, self.replica, self._live(), self.settings.max_sessions)

    async def _heartbeats(self) -> None:
        while True:
            try:
                await self._beat()
            except Exception as exc:  # the directory restarting: the next beat registers again
                log.warning("heartbeat to the session directory failed: %s", exc)
            await asyncio.sleep(HEARTBEAT_S)

    @ingress_api.websocket("/ws")
    async def stream(self, ws: WebSocket) -> None:
        secret = ws.query_params.get("session")
        holder = await self._holder(secret)
        if holder is None:
            await ws.close(1008, "no live session at this link")
            return
        await self._relay(ws, "/ws", holder)

    async def _relay(self, ws: WebSocket, path: str, holder: str, *, replica: str | None = None) -> None:
        """Relay one websocket to the dashboard server at `holder`, both ways, until either
        side closes; the close code and reason go through."""
        query = ws.url.query
        headers = Headers(list(ws.headers.items()))
        if not self._token_ok(self._given_token(query, ws.headers), path) or not Access(
                host="127.0.0.1", token=self.settings.token).origin_allowed(headers):
            await ws.close(1008, "refused: the token is missing or wrong, or the page is of another site")
            return
        try:
            upstream = await connect(f"ws://{holder}{self._upstream_target(path, query)}", max_size=None,
                                     open_timeout=10, ping_interval=20, close_timeout=2)
        except InvalidStatus as exc:
            await ws.close(1008, f"refused ({exc.response.status_code})")
            return
        except OSError as exc:  # the holding replica is gone
            await ws.close(1011, f"the session's replica cannot be reached: {exc}"[:120])
            return
        await ws.accept()

        async def down() -> None:  # dashboard server -> client
            async for message in upstream:
                if isinstance(message, str):
                    if replica is not None and message.startswith('{"type": "session"'):
                        message = await self._registered(message, holder, replica)
                    await ws.send_text(message)
                else:
                    await ws.send_bytes(message)

        async def up() -> None:  # client -> dashboard server
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    await upstream.close(msg.get("code", 1000) if msg.get("code") not in (1005, 1006) else 1000,
                                         msg.get("reason") or "")
                    return
                if msg.get("bytes") is not None:
                    await upstream.send(msg["bytes"])
                elif msg.get("text") is not None:
                    await upstream.send(msg["text"])

        tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            # the client left: wait for the server's close (it ends the session, scores what was sent)
            await asyncio.wait([tasks[0]], timeout=30)
        except ConnectionClosed:
            pass
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            code, reason = upstream.close_code, upstream.close_reason
            await upstream.close()
            try:
                await ws.close(code if code not in (None, 1005, 1006) else 1000, reason or "")
            except Exception:  # the client is gone already
                pass

    async def _registered(self, message: str, holder: str, replica: str) -> str:
        """A new session's link goes into the directory (other replicas relay its viewers
        to its holder); the client is told which replica holds it."""
        msg = json.loads(message)
        secret = str(msg.get("link", "")).rsplit("/", 1)[-1]
        if secret:
            await self.directory.put.remote(secret, holder)
        msg["replica"] = replica
        return json.dumps(msg)

    # ------------------------------------------------------------ pages and files
    @ingress_api.api_route("/{path:path}", methods=["GET", "HEAD"])
    async def page(self, request: Request, path: str) -> Response:
        path = "/" + path
        query = request.url.query
        if not self._token_ok(self._given_token(query, request.headers), path):
            return Response("This dashboard needs its token: open …/?token=… or send 'Authorization: Bearer <token>'.\n",
                            401, media_type="text/plain; charset=utf-8")
        secret = path[len("/s/"):].rstrip("/") if path.startswith("/s/") and "/" not in path[3:].rstrip("/") else None
        holder = await self._holder(secret) or self.address
        url = f"http://{holder}{self._upstream_target(path, query)}"
        forward = {k: v for k, v in request.headers.items() if k.lower() in ("range", "if-none-match", "accept")}
        status, headers, body = await asyncio.to_thread(_fetch, url, request.method, forward)
        return Response(body, status, headers={k: v for k, v in headers if k.lower() in _KEPT_HEADERS})


# ====================================================================== the application
def build_app(settings: ServeSettings = ServeSettings()):
    """The Serve application: `serve.run(build_app(settings), name=APP_NAME)`."""
    if settings.internal_token is None:
        settings = dataclasses.replace(settings, internal_token=settings.token or secrets.token_urlsafe(24))
    scorer = ScorerDeployment.options(
        num_replicas=settings.scorer_replicas, max_ongoing_requests=max(64, 4 * settings.batch_size),
        ray_actor_options={"num_cpus": settings.scorer_cpus, "num_gpus": settings.scorer_gpus,
                           "runtime_env": _thread_env(settings.threads)},
    ).bind(settings)
    speech = SpeechDeployment.options(
        num_replicas=settings.speech_replicas, max_ongoing_requests=256,
        ray_actor_options={"num_cpus": settings.speech_cpus, "num_gpus": settings.speech_gpus,
                           "runtime_env": _thread_env(settings.threads)},
    ).bind(settings)
    return Ingress.options(
        num_replicas=settings.ingress_replicas,
        # every websocket (a capture, a viewer) is one ongoing request for its whole life
        max_ongoing_requests=16 * settings.max_sessions + 64,
        ray_actor_options={"num_cpus": settings.ingress_cpus, "runtime_env": _thread_env(settings.threads)},
    ).bind(settings, scorer, speech, SessionDirectory.bind())


def app(args: dict[str, str] | None = None):
    """The application builder of `serve run realtime.scale.serve:app [key=value ...]`."""
    return build_app(ServeSettings.from_args(dict(args or {})))
