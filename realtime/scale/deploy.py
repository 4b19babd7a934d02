"""Deploying the Serve application (`realtime.scale.serve`) onto a Ray cluster: the
replicas' reservations fitted to the cluster and checked before deploying
(`realtime.scale.placement`), then a bounded wait for the replicas to come up instead
of Serve's endless one.

    with serving(settings, given={"scorer_gpus"}, address=None, host="127.0.0.1", port=8765) as placed:
        ...                                      # the dashboard is served; `placed`: the settings used

On a local Ray (no address) the settings are first checked against this machine's
CPUs, before Ray is started: a reservation larger than the machine is refused in the
time the command takes to start, not after Ray's.

Ray is the optional extra hcl-live[ray]: this module is imported only for --ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Collection, Iterator

import ray
from ray import serve
from ray.serve.schema import ApplicationStatus

from realtime.core.errors import SetupError
from realtime.scale.placement import PlacementError, check_placement, fit_to_cluster
from realtime.scale.serve import APP_NAME, build_app
from realtime.scale.settings import ServeSettings

log = logging.getLogger(__name__)

START_TIMEOUT_S = 900.0  # the longest wait for every replica to run (model loads on a busy node included)
POLL_S = 1.0


def cluster_nodes() -> list[dict[str, float]]:
    """The CPUs and GPUs of each alive node of the Ray cluster this process is connected to."""
    return [{"CPU": float(n["Resources"].get("CPU", 0.0)), "GPU": float(n["Resources"].get("GPU", 0.0))}
            for n in ray.nodes() if n.get("Alive")]


def machine_nodes() -> list[dict[str, float]]:
    """This machine as the one node of a local Ray, by what bounds it: Ray counts at most
    os.cpu_count() CPUs here (fewer under a cgroup quota); its GPUs are not known yet."""
    return [{"CPU": float(os.cpu_count() or 1)}]


def check_address(address: str) -> None:
    """SetupError when `address` is HOST:PORT and nothing listens there (Ray would retry for
    minutes); "auto" and ray:// addresses are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise SetupError(f"--ray-address {address}: no Ray cluster answers there ({exc}); give the head node's "
                         f"address (ray start --head prints it), auto on a node of the cluster, or leave "
                         f"--ray-address out for a local Ray") from None


def run_until_serving(app, *, name: str, timeout_s: float = START_TIMEOUT_S) -> None:
    """Deploy `app` and wait until every replica runs: PlacementError, instead of Serve's
    endless wait, when the application fails to deploy (a replica's constructor raised)
    or has not started after `timeout_s` (what each deployment waits for named).

    A replica Serve reports as "taken more than 30s to be scheduled" is not an error by
    itself: on a busy node Ray's worker processes take that long to start even once the
    replica's CPUs are reserved for it (and on a cluster an autoscaler may add a node).
    That the reservations fit at all is `check_placement`'s to say, before this."""
    serve._run(app, name=name, route_prefix="/", _blocking=False)  # serve.run would wait for ever
    deadline = time.monotonic() + timeout_s
    reported = ""
    while True:
        status = serve.status().applications.get(name)
        if status is not None:
            if status.status == ApplicationStatus.RUNNING:
                return
            if status.status == ApplicationStatus.DEPLOY_FAILED:
                raise PlacementError(f"the Serve application {name!r} failed to start: {status.message.strip()}")
            waiting = next((d.message for d in status.deployments.values() if d.message), "")
            if waiting and waiting != reported:
                log.info("waiting for the replicas: %s", waiting)
                reported = waiting
        if time.monotonic() > deadline:
            states = "; ".join(f"{n}: {d.status.value} {d.message}".strip() for n, d in status.deployments.items()) \
                if status is not None else "not deployed"
            raise PlacementError(
                f"the Serve application {name!r} did not start in {timeout_s:.0f} s ({states}); `ray status` shows what "
                f"the cluster holds: lower the reservations (--ray-setting, e.g. ingress_cpus=0.5) or add nodes")
        time.sleep(POLL_S)


def place(settings: ServeSettings, *, given: Collection[str]) -> ServeSettings:
    """`settings` fitted to the cluster this process is connected to, and checked."""
    nodes = cluster_nodes()
    settings = fit_to_cluster(settings, given=given, nodes=nodes)
    check_placement(settings, nodes, given=given)
    return settings


@contextlib.contextmanager
def serving(settings: ServeSettings, *, given: Collection[str], address: str | None, host: str, port: int,
            verbose: bool = False, timeout_s: float = START_TIMEOUT_S) -> Iterator[ServeSettings]:
    """Ray (a local one when `address` is None), Serve's HTTP proxy on host:port and the
    application, its replicas placed and running; yields the settings it runs with (the
    `given` ones as they are, the others fitted). On leaving, the application is deleted
    (every session ends, its recording closes) and this process leaves Ray."""
    if address is None:  # a reservation larger than this machine: say so before Ray's start
        where = "a local Ray on this machine"
        check_placement(fit_to_cluster(settings, given=given, nodes=machine_nodes(), where=where), machine_nodes(),
                        given=given, where=where)
    if address is not None:
        check_address(address)
    if address is None:
        # a local Ray starts its workers at nice 15, made for batch jobs: the Serve replicas
        # score live sessions, and on a busy machine they then starved (about 4 % of a core
        # each beside two busy processes); they run at normal priority, like hcl-live itself
        os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=verbose)
    except ConnectionError as exc:
        raise SetupError(f"--ray-address {address}: {exc} Start the cluster first (ray start --head), "
                         f"or leave --ray-address out for a local Ray.") from None
    try:
        settings = place(settings, given=given)
        serve.start(http_options={"host": host, "port": port})
        try:
            run_until_serving(build_app(settings), name=APP_NAME, timeout_s=timeout_s)
            yield settings
        finally:
            serve.delete(APP_NAME)
    finally:
        ray.shutdown()
