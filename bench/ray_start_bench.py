"""How long `hcl-live --ray`, as the README gives it, takes to serve, to stop, and to refuse.

    python bench/ray_start_bench.py [--runs 3] [--out bench/results/ray_start.json]
    python bench/ray_start_bench.py --report       # re-print a saved run

Each run starts the installed command in a fresh process on this machine's own local
Ray, exactly as a user would (`hcl-live --ray --no-browser --port P`, no settings), and
measures: seconds until the dashboard page answers 200 over HTTP on 127.0.0.1 (Ray's
start, Serve's, the three deployments' model loads, all included), seconds from SIGINT
until the process has exited, and its exit status. Then the same command with
`--ray-setting ingress_cpus=64`: seconds until it exits, its status and its error line.
The load average (the machine is shared) is recorded before each run. Prints a table
with medians and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIMIT_S = 900.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(*args: str) -> list[str]:
    script = shutil.which("hcl-live", path=str(pathlib.Path(sys.executable).parent))
    if script is None:
        sys.exit("the hcl-live script is not installed next to this Python (pip install -e .)")
    return [script, *args]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def serve_run(folder: pathlib.Path) -> dict:
    port = free_port()
    log = folder / f"serve-{port}.log"
    load = os.getloadavg()[0]
    started = time.monotonic()
    proc = subprocess.Popen(command("--ray", "--no-browser", "--port", str(port)), stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    served = None
    while proc.poll() is None and time.monotonic() - started < LIMIT_S:
        if answers(f"http://127.0.0.1:{port}/"):
            served = time.monotonic() - started
            break
        time.sleep(0.5)
    # the proxy answers as the application turns RUNNING; the command prints what it reserved just after
    printed = time.monotonic() + 60
    while served is not None and "reserved: " not in log.read_text(errors="replace") and time.monotonic() < printed:
        time.sleep(0.2)
    stop_started = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        status = proc.wait(180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        status = proc.wait(30)
    text = log.read_text(errors="replace")
    reserved = next((line.split("reserved: ", 1)[1].split(";")[0] for line in text.splitlines() if "reserved: " in line), None)
    return {"load_before": round(load, 2), "serve_s": None if served is None else round(served, 1),
            "stop_s": round(time.monotonic() - stop_started, 1), "status": status, "reserved": reserved,
            "traceback": "Traceback" in text}


def refuse_run(folder: pathlib.Path) -> dict:
    port = free_port()
    load = os.getloadavg()[0]
    started = time.monotonic()
    done = subprocess.run(command("--ray", "--no-browser", "--port", str(port), "--ray-setting", "ingress_cpus=64"),
                          capture_output=True, text=True, timeout=LIMIT_S, cwd=folder)
    error = next((line for line in done.stderr.splitlines() if line.startswith("error: ")), None)
    return {"load_before": round(load, 2), "exit_s": round(time.monotonic() - started, 1), "status": done.returncode,
            "error": error, "traceback": "Traceback" in done.stderr}


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def print_table(result: dict) -> None:
    print(f"hcl-live --ray on {result['machine']} ({result['cpus']} CPUs), {len(result['serve'])} runs")
    print("| run | load before | served after s | stopped after SIGINT s | exit | reserved |")
    print("|---|---|---|---|---|---|")
    for i, r in enumerate(result["serve"], 1):
        print(f"| {i} | {r['load_before']} | {r['serve_s']} | {r['stop_s']} | {r['status']} | {r['reserved']} |")
    print(f"median: served after {result['median_serve_s']} s, stopped {result['median_stop_s']} s after SIGINT")
    print("| run | load before | --ray-setting ingress_cpus=64 exits after s | exit |")
    print("|---|---|---|---|")
    for i, r in enumerate(result["refuse"], 1):
        print(f"| {i} | {r['load_before']} | {r['exit_s']} | {r['status']} |")
    print(f"median: refused after {result['median_refuse_s']} s")
    if result["refuse"]:
        print(result["refuse"][0]["error"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ray_start.json"))
    parser.add_argument("--report", action="store_true", help="print a saved run")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    if args.report:
        print_table(json.loads(out.read_text()))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        serve = [serve_run(folder) for _ in range(args.runs)]
        refuse = [refuse_run(folder) for _ in range(args.runs)]
    result = {"machine": platform.node(), "cpus": os.cpu_count(), "serve": serve, "refuse": refuse,
              "median_serve_s": median(r["serve_s"] for r in serve), "median_stop_s": median(r["stop_s"] for r in serve),
              "median_refuse_s": median(r["exit_s"] for r in refuse)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print_table(result)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
