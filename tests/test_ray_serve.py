"""The live sessions on Ray Serve (realtime.scale.serve), against a real local Ray.

Two simulated capture clients (espeak-ng speech over a real face, the binary capture
protocol at the browser's pace) connect to Serve's HTTP proxy at once; two ingress
replicas share one scorer and one Whisper deployment. Each client's session follows
its own windows only (read by a dashboard stream opened through Serve, which may land
on the other replica: then it is relayed to the holder). Killing the ingress replica
of one session ends that session only: its capture socket closes, its recording reads
back, the other session goes on to its end, and Serve starts a new replica."""

from __future__ import annotations

import json
import pathlib
import socket
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
websockets = pytest.importorskip("websockets")

from capture_clients import clip_messages, jpeg_of, send_paced
from media_fixtures import espeak_available, face_image, faint_noise, speak
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

FPS = 5.0


def test_settings_from_serve_run_arguments_are_typed_and_checked():
    from realtime.scale.serve import ServeSettings

    s = ServeSettings.from_args({"ingress_replicas": "3", "scorer_gpus": "0.5", "transcribe": "no", "record_dir": "/r"})
    assert (s.ingress_replicas, s.scorer_gpus, s.transcribe, s.record_dir) == (3, 0.5, False, "/r")
    with pytest.raises(ValueError, match="unknown setting 'replicas'.*ingress_replicas"):
        ServeSettings.from_args({"replicas": "2"})
    with pytest.raises(ValueError, match="threads='two': expected int"):
        ServeSettings.from_args({"threads": "two"})
    with pytest.raises(ValueError, match="ingress_replicas must be >= 1"):
        ServeSettings(ingress_replicas=0)


def test_hcl_live_ray_refuses_a_bad_setting_before_starting_ray(capsys):
    from realtime.app.live import live_main

    assert live_main(["--ray", "--ray-setting", "ingress_replicas"]) == 2
    assert "give KEY=VALUE" in capsys.readouterr().err
    assert live_main(["--ray", "--ray-setting", "nope=1"]) == 2
    assert "unknown setting 'nope'" in capsys.readouterr().err
    assert live_main(["--ray", "--file", "x.mp4"]) == 2
    assert not ray.is_initialized()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One simulated browser: its capture socket (session reply, close code) and its
    dashboard stream (/ws?session=<secret>, the windows it is sent), both through Serve."""

    def __init__(self, base: str, events, name: str) -> None:
        self.base, self.events, self.name = base, events, name
        self.reply: dict | None = None
        self.windows: list[dict] = []
        self.close: tuple[int | None, str] | None = None
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.sent_all = threading.Event()
        self.closed_early = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Client:
        self.thread.start()
        assert self.ready.wait(120), f"{self.name}: no session reply"
        assert self.reply is not None and self.reply.get("type") == "session", self.reply
        self.viewer = threading.Thread(target=self._view, daemon=True)
        self.viewer.start()
        return self

    def _run(self) -> None:
        with connect(f"ws://{self.base}/capture", max_size=None, open_timeout=60) as ws:
            ws.send(self.events[0][1])  # hello
            self.reply = json.loads(ws.recv(60))
            self.started_at = time.monotonic()
            self.ready.set()
            def send() -> None:
                try:
                    send_paced(ws.send, self.events[1:], stop=self.stop)
                    self.sent_all.set()
                except ConnectionClosed:
                    pass

            threading.Thread(target=send, daemon=True).start()
            try:
                while True:
                    ws.recv()
            except ConnectionClosed:
                pass
            self.close = (ws.close_code, ws.close_reason)
            self.closed_early = not self.sent_all.is_set()  # before its clip was all sent
            self.closed_at = time.monotonic()

    def _view(self) -> None:
        """Follow the session's stream; reconnect (as the dashboard does) while the capture
        runs: a replica that relayed the stream may go away."""
        while True:
            try:
                with connect(f"ws://{self.base}{self.reply['stream']}", max_size=None, open_timeout=60) as ws:
                    for raw in ws:
                        msg = json.loads(raw)
                        if msg.get("type") == "window":
                            self.windows.append(msg)
                        if msg.get("type") == "status" and msg.get("state") == "finished":
                            return  # every window of the session was sent before this
            except (ConnectionClosed, OSError):
                pass
            if self.close is not None:
                return
            time.sleep(0.5)

    def seqs(self) -> set[int]:
        return {w["seq"] for w in self.windows}


@pytest.fixture(scope="module")
def clip():
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    speech = speak("I absolutely love this, it is wonderful and makes me so happy.")
    audio = np.concatenate([faint_noise(0.5), speech, faint_noise(18.0 - len(speech) / 16000 - 0.5, seed=1)])
    return audio.astype(np.float32), [jpeg_of(face_image(256))]


@pytest.fixture(scope="module")
def served(live_checkpoint, tmp_path_factory):
    """A local Ray (2 CPUs), Serve on a free port, the app with two ingress replicas."""
    from realtime.scale.serve import APP_NAME, ServeSettings, build_app

    record = tmp_path_factory.mktemp("recordings")
    port = _free_port()
    # address="local": a Ray of its own even when another one runs on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        settings = ServeSettings(checkpoint=str(live_checkpoint), ingress_replicas=2, ingress_cpus=0.25,
                                 scorer_cpus=0.5, speech_cpus=0.5, max_sessions=1, batch_size=4,
                                 record_dir=str(record))
        serve.run(build_app(settings), name=APP_NAME, route_prefix="/")
        yield f"127.0.0.1:{port}", record
    finally:
        serve.shutdown()
        ray.shutdown()


def _ingress_replicas() -> set[str]:
    from realtime.scale.serve import APP_NAME

    status = serve.status().applications[APP_NAME].deployments["Ingress"]
    assert status.status.value == "HEALTHY", status
    # the replicas' actors (named for their replica ids; a killed one is no longer listed)
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and "#Ingress#" in a["name"]}


def _read(record: pathlib.Path, session: str):
    from realtime.recording import read_session

    return read_session(record / session)


@pytest.mark.slow
def test_the_dashboard_files_are_served(served):
    base, _ = served
    import urllib.request

    with urllib.request.urlopen(f"http://{base}/") as r:
        assert r.status == 200 and b"<html" in r.read().lower()
    with urllib.request.urlopen(f"http://{base}/connection.js") as r:
        assert r.headers["Content-Type"].startswith("text/javascript")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://{base}/s/no-such-session")
    assert err.value.code == 404


@pytest.mark.slow
def test_two_clients_get_their_own_windows_and_a_killed_replica_ends_only_its_sessions(served, clip):
    base, record = served
    audio, frames = clip
    events = [clip_messages(audio, frames, fps=FPS, agent=f"client {i}") for i in range(2)]
    # two sessions at once, one place per replica: whichever replica Serve hands b's
    # capture to, b's session is held by the replica a's is not on (a full replica relays
    # a capture to the one with room, and stays in its path)
    a = Client(base, events[0], "a").start()
    b = Client(base, events[1], "b").start()
    assert a.reply["replica"] != b.reply["replica"], (a.reply, b.reply)
    replicas_before = _ingress_replicas()
    assert a.reply["replica"] in replicas_before and b.reply["replica"] in replicas_before

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (len(a.seqs()) < 6 or len(b.seqs()) < 6):
        time.sleep(0.5)
    assert len(a.seqs()) >= 6 and len(b.seqs()) >= 6, (len(a.seqs()), len(b.seqs()))

    # kill b's replica (a's capture went straight to its own: nothing of a passes there
    # but, maybe, a's dashboard stream, which reconnects as the page does): b's capture
    # socket closes before its clip ends, a goes on to its end
    killed = b.reply["replica"]
    ray.kill(ray.get_actor(killed, namespace="serve"), no_restart=True)
    b.thread.join(30)
    assert b.close is not None and b.closed_early, b.close
    a_windows_at_kill = len(a.seqs())
    a.thread.join(90)
    assert a.close is not None and a.close[0] == 1000 and not a.closed_early, a.close
    a.viewer.join(30)
    assert len(a.seqs()) > a_windows_at_kill  # it went on after the kill

    # each stream carried its own session's windows only
    assert {w["session"] for w in a.windows} == {a.reply["session"]}
    assert {w["session"] for w in b.windows} == {b.reply["session"]}

    # both recordings read back: the killed one up to its last written window
    rec_a, rec_b = _read(record, a.reply["session"]), _read(record, b.reply["session"])
    # (a window is recorded once its words are final: the recording may trail the stream)
    assert len(rec_b.windows) >= 1 and {w["seq"] for w in rec_b.windows} <= b.seqs(), (len(rec_b.windows), b.seqs())
    assert len(rec_a.windows) >= len(a.seqs()) >= 20, (len(rec_a.windows), len(a.seqs()))

    # Serve replaced the killed replica
    deadline = time.monotonic() + 90
    replicas = set()
    while time.monotonic() < deadline:
        try:
            replicas = _ingress_replicas()
        except AssertionError:
            replicas = set()
        if len(replicas) == 2 and killed not in replicas:
            break
        time.sleep(1.0)
    assert len(replicas) == 2 and killed not in replicas, replicas
