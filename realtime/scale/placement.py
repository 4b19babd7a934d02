"""Where the Serve application's replicas go (plain arithmetic, no Ray): the CPU
reservations fitted to a cluster, and a check that the replicas can be placed on it.

    nodes = [{"CPU": 2.0, "GPU": 0.0}]                       # each node's CPUs and GPUs
    settings = fit_to_cluster(settings, given={"scorer_gpus"}, nodes=nodes)
    check_placement(settings, nodes, given={"scorer_gpus"})  # PlacementError naming the setting

Each replica of the `Ingress`, `Scorer` and `Speech` deployments reserves `*_cpus`
logical CPUs (and `*_gpus` GPUs); Ray places a replica only on a node with that much
free, and Serve waits for room without end. The defaults (1 CPU each) need 3 CPUs; on a
smaller cluster `fit_to_cluster` shares its CPUs among the replicas whose reservation
was not given (on 2 CPUs: 0.66 each). A reservation that was given is never changed: when
it cannot be placed, `check_placement` names the setting and what the cluster has.
A node without a "GPU" entry has an unknown number of GPUs (none are checked).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from realtime.core.errors import SetupError
from realtime.scale.settings import ServeSettings

MIN_CPUS = 0.1  # the smallest share of a CPU a fitted reservation gets (less: the user chooses)


class PlacementError(SetupError):
    """The application's replicas cannot be placed (or started) on the Ray cluster."""


@dataclass(frozen=True)
class Deployment:
    """One deployment's replicas and what each reserves, by the settings that say so."""

    name: str
    replicas_setting: str
    cpus_setting: str
    gpus_setting: str | None

    def replicas(self, settings) -> int:
        return int(getattr(settings, self.replicas_setting))

    def cpus(self, settings) -> float:
        return float(getattr(settings, self.cpus_setting))

    def gpus(self, settings) -> float:
        return float(getattr(settings, self.gpus_setting)) if self.gpus_setting else 0.0


# the deployments that reserve resources (the session directory reserves none)
DEPLOYMENTS = (
    Deployment("ingress", "ingress_replicas", "ingress_cpus", None),
    Deployment("scorer", "scorer_replicas", "scorer_cpus", "scorer_gpus"),
    Deployment("speech", "speech_replicas", "speech_cpus", "speech_gpus"),
)


def describe_cluster(nodes: Sequence[dict[str, float]]) -> str:
    """'2 CPUs and 0 GPUs on 1 node' (GPUs left out when unknown)."""
    cpus = sum(n.get("CPU", 0.0) for n in nodes)
    biggest = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    where = "1 node" if len(nodes) == 1 else f"{len(nodes)} nodes, the largest with {biggest:g} CPUs"
    if not all("GPU" in n for n in nodes):
        return f"{cpus:g} CPUs on {where}"
    return f"{cpus:g} CPUs and {sum(n['GPU'] for n in nodes):g} GPUs on {where}"


def describe_reservations(settings) -> str:
    """What the replicas reserve, e.g. 'ingress 1 x 0.66 CPU, scorer 1 x 0.66 CPU, speech 1 x 0.66 CPU'."""
    parts = []
    for d in DEPLOYMENTS:
        part = f"{d.name} {d.replicas(settings)} x {d.cpus(settings):g} CPU"
        if d.gpus(settings) > 0:
            part += f" + {d.gpus(settings):g} GPU"
        parts.append(part)
    return ", ".join(parts)


def _floor(x: float, step: float = 0.01) -> float:
    return round(math.floor(x / step + 1e-9) * step, 6)


def fit_to_cluster(settings: ServeSettings, *, given: Collection[str], nodes: Sequence[dict[str, float]],
                   where: str = "this Ray cluster") -> ServeSettings:
    """`settings` with the CPU reservations that were not `given` shrunk, all by one factor,
    so that the replicas fit the cluster: in all, and packed onto its nodes; unchanged when
    they already do. PlacementError when the given reservations leave less than MIN_CPUS
    per replica to fit."""
    total = sum(n.get("CPU", 0.0) for n in nodes)
    fixed = [d for d in DEPLOYMENTS if d.cpus_setting in given]
    free = [d for d in DEPLOYMENTS if d.cpus_setting not in given and d.cpus(settings) > 0]
    fixed_cpus = sum(d.replicas(settings) * d.cpus(settings) for d in fixed)
    wanted = sum(d.replicas(settings) * d.cpus(settings) for d in free)
    if not free or _unpacked(settings, nodes) is None:
        return settings
    if _unpacked(dataclasses.replace(settings, **{d.cpus_setting: 0.0 for d in free}), nodes) is not None:
        return settings  # the given reservations alone do not fit: check_placement says which
    factor = min(1.0, max(0.0, total - fixed_cpus) / wanted)
    while True:  # smaller shares until the replicas pack onto the nodes (one node: at once)
        fitted = dataclasses.replace(settings, **{d.cpus_setting: _floor(d.cpus(settings) * factor) for d in free})
        if any(d.cpus(fitted) < MIN_CPUS for d in free):
            short = [d.cpus_setting for d in free]
            mine = ", ".join(f"{d.cpus_setting}={d.cpus(settings):g} (x{d.replicas(settings)})" for d in fixed) or "none"
            raise PlacementError(
                f"{where} has {describe_cluster(nodes)}; with the CPU reservations given ({mine}) the other "
                f"replicas would get less than {MIN_CPUS:g} CPU each: give smaller values, or set "
                f"{', '.join(short)} too (--ray-setting KEY=VALUE)")
        if _unpacked(fitted, nodes) is None:
            return fitted
        factor *= 0.95


def _unpacked(settings: ServeSettings, nodes: Sequence[dict[str, float]]) -> Deployment | None:
    """The deployment of the first replica that finds no room when the replicas are placed
    first fit, largest first (Ray places each replica on one node); None when all fit."""
    room = [dict(n) for n in nodes]
    replicas = sorted(((d.gpus(settings), d.cpus(settings), i) for i, d in enumerate(DEPLOYMENTS)
                       for _ in range(d.replicas(settings))), reverse=True)
    for gpus, cpus, i in replicas:
        node = next((n for n in room if cpus <= n.get("CPU", 0.0) + 1e-9 and gpus <= n.get("GPU", math.inf) + 1e-9), None)
        if node is None:
            return DEPLOYMENTS[i]
        node["CPU"] = node.get("CPU", 0.0) - cpus
        node["GPU"] = node.get("GPU", math.inf) - gpus
    return None


def _named(setting: str, settings, given: Collection[str]) -> str:
    """How `setting` was set: '--ray-setting ingress_cpus=64', or 'scorer_gpus=0 (not given)'."""
    value = float(getattr(settings, setting))
    return f"--ray-setting {setting}={value:g}" if setting in given else f"{setting}={value:g} (not given)"


def check_placement(settings: ServeSettings, nodes: Sequence[dict[str, float]], *, given: Collection[str] = (),
                    where: str = "this Ray cluster") -> None:
    """PlacementError naming the setting at fault when the replicas cannot all be placed on
    `nodes` (each a node's {"CPU": n, "GPU": n}): a replica larger than every node, more in
    all than the cluster has, or no way to pack them onto the nodes (first fit, largest first).
    `where` names the cluster in the message."""
    cluster = describe_cluster(nodes)
    for d in DEPLOYMENTS:
        cpus, gpus = d.cpus(settings), d.gpus(settings)
        if not any(cpus <= n.get("CPU", 0.0) + 1e-9 and gpus <= n.get("GPU", math.inf) + 1e-9 for n in nodes):
            if not any(cpus <= n.get("CPU", 0.0) + 1e-9 for n in nodes):
                what, most, unit = d.cpus_setting, max((n.get("CPU", 0.0) for n in nodes), default=0.0), "CPUs"
            else:
                what, most, unit = d.gpus_setting, max((n.get("GPU", math.inf) for n in nodes), default=0.0), "GPUs"
            raise PlacementError(
                f"{_named(what, settings, given)} cannot be placed: each {d.name} replica would reserve "
                f"{float(getattr(settings, what)):g} {unit}, and {where} has no node with that many "
                f"({cluster}); give {what} <= {most:g}, or join a cluster with larger nodes (--ray-address)")
    for unit, of in (("CPU", Deployment.cpus), ("GPU", Deployment.gpus)):
        need = sum(d.replicas(settings) * of(d, settings) for d in DEPLOYMENTS)
        have = sum(n.get(unit, math.inf if unit == "GPU" else 0.0) for n in nodes)
        if need > have + 1e-9:
            raise PlacementError(
                f"the replicas would reserve {need:g} {unit}s in all ({describe_reservations(settings)}), and {where} "
                f"has {cluster}; lower the replicas' counts or {unit}s "
                f"({', '.join(_setting_list(settings, unit, given))}) or join a larger cluster (--ray-address)")
    d = _unpacked(settings, nodes)
    if d is not None:
        raise PlacementError(
            f"the replicas ({describe_reservations(settings)}) do not pack onto the nodes of {where} "
            f"({cluster}): no node has room left for a {d.name} replica; lower "
            f"{', '.join(_setting_list(settings, 'CPU', given))} or join a cluster with larger nodes")


def _setting_list(settings, unit: str, given: Collection[str]) -> list[str]:
    """The settings of `unit` ("CPU"/"GPU") that reserve some, as set: 'ingress_cpus=1, scorer_cpus=1 (not given)'."""
    out = []
    for d in DEPLOYMENTS:
        setting = d.cpus_setting if unit == "CPU" else d.gpus_setting
        if setting is None or float(getattr(settings, setting)) == 0:
            continue
        out.append(f"{setting}={float(getattr(settings, setting)):g}" + ("" if setting in given else " (not given)"))
    return out
