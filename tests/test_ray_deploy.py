"""hcl-live --ray on the cluster it finds (realtime.scale.deploy).

The fast tests fit and check reservations against described clusters. The slow ones run
the command as the README gives it (`hcl-live --ray --no-browser --port P`, nothing else
chosen for the test) on this machine's own local Ray: it must serve the dashboard and a
capture session; settings that cannot be placed must end it within seconds with the
setting named; and a replica that never finds room must end the wait for it.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'hcl-live[ray]')")
pytest.importorskip("ray.serve")

from capture_clients import clip_messages, jpeg_of, send_paced
from media_fixtures import espeak_available, face_image, faint_noise, speak
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from realtime.scale.deploy import run_until_serving
from realtime.scale.placement import MIN_CPUS, PlacementError, check_placement, describe_reservations, fit_to_cluster
from realtime.scale.serve import APP_NAME, build_app
from realtime.scale.settings import ServeSettings

TWO_CPUS = [{"CPU": 2.0, "GPU": 0.0}]


# --------------------------------------------------------------------- fitting and checking (no Ray)
def _reserved(settings: ServeSettings) -> float:
    return (settings.ingress_replicas * settings.ingress_cpus + settings.scorer_replicas * settings.scorer_cpus
            + settings.speech_replicas * settings.speech_cpus)


def test_the_defaults_are_fitted_to_a_two_cpu_machine_and_left_alone_where_they_fit():
    defaults = ServeSettings()
    assert _reserved(defaults) == 3.0  # 1 CPU each for ingress, scorer and speech: more than 2
    with pytest.raises(PlacementError):
        check_placement(defaults, TWO_CPUS)
    fitted = fit_to_cluster(defaults, given=set(), nodes=TWO_CPUS)
    check_placement(fitted, TWO_CPUS)
    assert 1.9 <= _reserved(fitted) <= 2.0
    assert fitted.ingress_cpus == fitted.scorer_cpus == fitted.speech_cpus == 0.66
    assert describe_reservations(fitted) == "ingress 1 x 0.66 CPU, scorer 1 x 0.66 CPU, speech 1 x 0.66 CPU"
    big = [{"CPU": 16.0, "GPU": 1.0}]
    assert fit_to_cluster(defaults, given=set(), nodes=big) == defaults


def test_given_reservations_are_kept_and_the_others_share_what_is_left():
    settings = ServeSettings(scorer_cpus=1.0, ingress_replicas=2)
    fitted = fit_to_cluster(settings, given={"scorer_cpus", "ingress_replicas"}, nodes=TWO_CPUS)
    assert fitted.scorer_cpus == 1.0  # given: never changed
    assert fitted.ingress_cpus == fitted.speech_cpus and MIN_CPUS <= fitted.ingress_cpus <= 1.0 / 3
    check_placement(fitted, TWO_CPUS, given={"scorer_cpus"})
    # nothing left for the others: say so, naming the setting given
    with pytest.raises(PlacementError, match=r"scorer_cpus=2 .*set ingress_cpus, speech_cpus too"):
        fit_to_cluster(ServeSettings(scorer_cpus=2.0), given={"scorer_cpus"}, nodes=TWO_CPUS)


def test_fitted_replicas_pack_onto_small_nodes():
    nodes = [{"CPU": 1.0, "GPU": 0.0}] * 3  # 3 CPUs, but a replica of 0.75 would leave each node's rest unused
    fitted = fit_to_cluster(ServeSettings(ingress_replicas=2), given={"ingress_replicas"}, nodes=nodes)
    check_placement(fitted, nodes)
    assert fitted.ingress_cpus <= 0.5


@pytest.mark.parametrize("values, message", [
    ({"ingress_cpus": 64.0}, r"--ray-setting ingress_cpus=64 cannot be placed: .*2 CPUs and 0 GPUs on 1 node.*ingress_cpus <= 2"),
    ({"scorer_gpus": 1.0}, r"--ray-setting scorer_gpus=1 cannot be placed: .*0 GPUs.*scorer_gpus <= 0"),
    ({"ingress_replicas": 3, "ingress_cpus": 1.0}, r"would reserve 5 CPUs in all .*has 2 CPUs"),
])
def test_settings_that_cannot_be_placed_name_the_setting_and_what_the_cluster_has(values, message):
    given = set(values)
    settings = fit_to_cluster(ServeSettings(**values), given=given, nodes=TWO_CPUS)
    with pytest.raises(PlacementError, match=message):
        check_placement(settings, TWO_CPUS, given=given)


def test_without_a_gpu_count_gpus_are_not_checked():
    nodes = [{"CPU": 2.0}]  # a machine before Ray counted its GPUs
    settings = fit_to_cluster(ServeSettings(scorer_gpus=1.0), given={"scorer_gpus"}, nodes=nodes)
    check_placement(settings, nodes, given={"scorer_gpus"})
    with pytest.raises(PlacementError, match=r"ingress_cpus=3 cannot be placed: .*\(2 CPUs on 1 node\)"):
        check_placement(ServeSettings(ingress_cpus=3.0), nodes, given={"ingress_cpus"})


def test_a_reservation_larger_than_this_machine_is_refused_before_ray_starts(capsys):
    from realtime.app.live import live_main

    cpus = os.cpu_count()
    assert live_main(["--ray", "--no-browser", "--ray-setting", f"ingress_cpus={cpus + 1}"]) == 2
    err = capsys.readouterr().err
    assert f"error: --ray-setting ingress_cpus={cpus + 1} cannot be placed" in err, err
    assert f"a local Ray on this machine has no node with that many ({cpus} CPUs on 1 node); give ingress_cpus <= {cpus}" in err
    assert not ray.is_initialized()


def test_a_cluster_address_where_nothing_answers_is_refused_at_once(capsys):
    from realtime.app.live import live_main

    port = _free_port()  # closed again: nothing listens there
    started = time.monotonic()
    assert live_main(["--ray", "--no-browser", "--ray-address", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"error: --ray-address 127.0.0.1:{port}: no Ray cluster answers there" in err and "ray start --head" in err, err
    assert time.monotonic() - started < 30 and not ray.is_initialized()


def test_reservations_must_be_finite():
    for raw in ("nan", "inf", "-1"):
        with pytest.raises(ValueError, match="ingress_cpus must be a number >= 0"):
            ServeSettings.from_args({"ingress_cpus": raw})
    with pytest.raises(ValueError, match="max_sessions must be <= 256 .*ingress_replicas"):
        ServeSettings.from_args({"max_sessions": "1000000000"})


# --------------------------------------------------------------------- the command, on a real local Ray
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hcl_live(*args: str) -> list[str]:
    """The installed hcl-live script (as a user runs it), else the same entry point."""
    script = shutil.which("hcl-live", path=str(pathlib.Path(sys.executable).parent))
    if script:
        return [script, *args]
    return [sys.executable, "-c", "import sys; from realtime.app.live import live_command; sys.exit(live_command())", *args]


def _start(tmp_path: pathlib.Path, *args: str, unset: tuple[str, ...] = ()) -> tuple[subprocess.Popen, pathlib.Path]:
    log = tmp_path / "hcl-live.log"
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(_hcl_live(*args), stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    return proc, log


def _stop(proc: subprocess.Popen, timeout: float = 120) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            raise
    return proc.returncode


def _serve_replicas() -> dict[int, str]:
    """pid -> process title of every Ray Serve replica on this machine."""
    found = {}
    for proc in pathlib.Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::ServeReplica"):
                found[int(proc.name)] = title.strip()
    return found


def _page(url: str) -> tuple[int, bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except (urllib.error.URLError, OSError):
        return None


@pytest.mark.slow
def test_hcl_live_ray_as_the_readme_gives_it_serves_the_dashboard_and_a_capture_session(tmp_path):
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    speech = speak("I really love this, it is wonderful.")
    audio = np.concatenate([faint_noise(0.5), speech, faint_noise(2.0, seed=1)]).astype(np.float32)
    events = clip_messages(audio, [jpeg_of(face_image(256))], fps=5.0, agent="readme test")
    port, record = _free_port(), tmp_path / "rec"
    started = time.monotonic()
    # the product's own worker priority, not the tests' (conftest sets RAY_worker_niceness=0)
    proc, log = _start(tmp_path, "--ray", "--no-browser", "--port", str(port), "--record", str(record),
                       unset=("RAY_worker_niceness",))
    try:
        # Ray, Serve and three deployments loading their models on a busy 2-core machine: minutes
        deadline = time.monotonic() + 600
        page = None
        while time.monotonic() < deadline and proc.poll() is None and page is None:
            page = _page(f"http://127.0.0.1:{port}/")
            if page is None:
                time.sleep(1.0)
        output = log.read_text(errors="replace")
        while page is not None and "reserved:" not in output and time.monotonic() < deadline:
            time.sleep(0.5)  # the proxy answers as the app turns RUNNING; the command prints just after
            output = log.read_text(errors="replace")
        assert page is not None, f"no dashboard after {time.monotonic() - started:.0f} s (exit {proc.poll()}):\n{output[-3000:]}"
        print(f"hcl-live --ray served the dashboard {time.monotonic() - started:.1f} s after it started")
        assert page[0] == 200 and b"<html" in page[1].lower()
        assert re.search(r"reserved: ingress 1 x [\d.]+ CPU, scorer 1 x [\d.]+ CPU, speech 1 x [\d.]+ CPU", output), output
        # the replicas serve live sessions: the priority hcl-live runs at (this test's, if CI
        # itself is niced), not 15 more as Ray gives its batch workers
        replicas = _serve_replicas()
        assert len(replicas) >= 3, replicas
        niceness = {title: os.getpriority(os.PRIO_PROCESS, pid) for pid, title in replicas.items()}
        assert all(n == os.getpriority(os.PRIO_PROCESS, 0) for n in niceness.values()), niceness

        # a capture session, as the page's "Start my camera and microphone" opens it
        with connect(f"ws://127.0.0.1:{port}/capture", max_size=None, open_timeout=60) as ws:
            ws.send(events[0][1])
            reply = json.loads(ws.recv(120))
            assert reply.get("type") == "session" and reply.get("session"), reply
            send_paced(ws.send, events[1:])
            try:
                while True:
                    ws.recv(120)
            except ConnectionClosed:
                pass
            assert ws.close_code == 1000, (ws.close_code, ws.close_reason)
        from realtime.recording import read_session

        session = read_session(record / reply["session"])
        assert len(session.windows) >= 1  # scored through the Scorer deployment
    finally:
        code = _stop(proc)
    output = log.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert "stopping" in output and "Traceback" not in output, output[-3000:]


@pytest.mark.slow
def test_hcl_live_ray_refuses_settings_it_cannot_place_within_seconds(tmp_path):
    started = time.monotonic()
    proc, log = _start(tmp_path, "--ray", "--no-browser", "--port", str(_free_port()), "--ray-setting", "ingress_cpus=64")
    try:
        code = proc.wait(300)  # Ray's start on a busy machine; then the check is immediate
    finally:
        _stop(proc)
    took = time.monotonic() - started
    output = log.read_text(errors="replace")
    print(f"hcl-live --ray --ray-setting ingress_cpus=64 exited {code} after {took:.1f} s")
    assert code == 2, output[-3000:]
    assert re.search(r"error: --ray-setting ingress_cpus=64 cannot be placed: each ingress replica would reserve 64 CPUs, "
                     r"and a local Ray on this machine has no node with that many \(\d+ CPUs on 1 node\); "
                     r"give ingress_cpus <= \d+", output), output[-3000:]
    assert "Traceback" not in output and "Started a local Ray" not in output, output[-3000:]


@pytest.mark.slow
def test_hcl_live_ray_refuses_a_gpu_the_local_ray_does_not_have(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: scorer_gpus=1 fits")
    # Ray counts the GPUs once it has started: refused then, before any replica is deployed
    started = time.monotonic()
    proc, log = _start(tmp_path, "--ray", "--no-browser", "--port", str(_free_port()), "--ray-setting", "scorer_gpus=1")
    try:
        code = proc.wait(300)
    finally:
        _stop(proc)
    output = log.read_text(errors="replace")
    print(f"hcl-live --ray --ray-setting scorer_gpus=1 exited {code} after {time.monotonic() - started:.1f} s")
    assert code == 2, output[-3000:]
    assert re.search(r"error: --ray-setting scorer_gpus=1 cannot be placed: each scorer replica would reserve 1 GPUs, "
                     r"and this Ray cluster has no node with that many \(\d+ CPUs and 0 GPUs on 1 node\)", output), output[-3000:]
    assert "Traceback" not in output and "Deploying" not in output, output[-3000:]


@pytest.mark.slow
def test_replicas_that_never_find_room_end_the_wait_with_what_they_wait_for(monkeypatch):
    # Serve reports a replica waiting for resources after this many seconds (read by its
    # controller, a process of the Ray started here)
    monkeypatch.setenv("RAY_SERVE_SLOW_STARTUP_WARNING_S", "2")
    monkeypatch.setenv("RAY_SERVE_SLOW_STARTUP_WARNING_PERIOD_S", "2")
    ray.init(address="local", num_cpus=1, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False)
    from ray import serve

    try:
        @ray.remote(num_cpus=1)
        class Holder:  # another job holding the cluster's only CPU
            def ping(self) -> bool:
                return True

        holder = Holder.remote()
        assert ray.get(holder.ping.remote(), timeout=120)
        settings = ServeSettings(ingress_cpus=0.5, scorer_cpus=0.25, speech_cpus=0.25, transcribe=False)
        serve.start(http_options={"host": "127.0.0.1", "port": _free_port()})
        started = time.monotonic()
        with pytest.raises(PlacementError, match=r"did not start in 45 s \(.*to be scheduled.*lower the reservations"):
            run_until_serving(build_app(settings), name=APP_NAME, timeout_s=45)
        assert time.monotonic() - started < 120
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
