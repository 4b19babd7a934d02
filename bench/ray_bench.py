"""Archive throughput: single process vs `hcl-annotate --ray` with 1 and 2 workers.

    python bench/ray_bench.py [--clips 6] [--workers 1,2] [--cpus 2] [--out bench/results/ray.json]
    python bench/ray_bench.py --report       # re-print a saved run

N generated clips (two espeak-ng sentences over the astronaut's face, about 9 s
each, H.264 + AAC) are annotated three ways into fresh folders:

- single: one Python process, the scorer, face model and Whisper loaded once, the files
  one after another through `realtime.pipeline.build.annotate` (the hcl-annotate path with its
  default threads: torch 1, Whisper 2);
- ray-K: `realtime.scale.archive.annotate_archive` on a local Ray started here with
  `--cpus` CPUs and K actors (one torch / Whisper thread each), Ray Data streaming
  the files to the pool.

Per mode: wall time from the start (model loading, and for Ray the `ray.init` and
the actors' start, included), files per hour and windows per second over that wall
time, per-file seconds (median, p95: the annotate step alone, inside the actor), and
the start-up share = wall - (sum of per-file seconds / workers). The scores of every
mode are checked against the single process (max |difference|). The machine's load
average (shared with other work) is recorded before and after each mode.
Writes bench/results/ray.json.

    python bench/ray_bench.py --serve [--sessions 1,2] [--seconds 20]   # live sessions

Serve: N simulated browsers (the capture protocol at real-time pace over a websocket:
espeak-ng sentences over the astronaut's face, 10 JPEGs/s) at once, each followed by its
own dashboard stream, against (a) the single-process server (`hcl-live --browser`: one
SessionHub behind one DashboardServer) and (b) the Ray Serve application
(`realtime.scale.serve`, one local Ray with `--cpus` CPUs; `--ingress` replicas). Per N:
windows received, dropped windows, score latency p95 (the window's scoring stage,
queue + model), window latency p95 (all stages), transcript lag p95 (from the session's
own stats messages), and how many sessions were held in real time (no dropped window,
transcript lag p95 under 2.5 s: the admission bound). Writes bench/results/ray_serve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SENTENCES = (
    ("I really love this wonderful movie.", "The music is beautiful."),
    ("This was a terrible boring waste of time.", "I hated every minute."),
    ("The acting is fine.", "The story is quite good."),
)


def pct(values, q):
    from realtime.core.component import percentile

    v = percentile(list(values), q)
    return None if v is None else round(v, 3)


def make_clips(folder: pathlib.Path, n: int) -> list[pathlib.Path]:
    from realtime.sources.demo import make_clip

    out = []
    for i in range(n):
        path = folder / f"clip{i:02d}.mp4"
        make_clip(path, sentences=SENTENCES[i % len(SENTENCES)], lead=0.3, gap=1.5, tail=1.5, fps=10, size=256)
        for extra in folder.glob(f"clip{i:02d}*.json"):  # make_clip's utterance file
            extra.unlink()
        out.append(path)
    return out


def scores_of(folder: pathlib.Path) -> list[float]:
    from realtime.recording.reader import read_session

    return [w["score"] for w in read_session(folder).windows]


def run_single(files, out: pathlib.Path, checkpoint) -> dict:
    from hcl.features.segment import SegmentFeaturizer
    from realtime.pipeline.build import annotate
    from realtime.pipeline.build import load_scorer as _load_scorer

    t0 = time.perf_counter()
    scorer = _load_scorer(checkpoint, "cpu")
    scorer.warm_up()
    featurizer = SegmentFeaturizer(settings=scorer.features)
    _ = featurizer.face
    transcriber = None
    per_file, windows = [], 0
    for f in files:
        t = time.perf_counter()
        pipeline = annotate(str(f), str(out / f.stem), scorer=scorer, featurizer=featurizer, transcriber=transcriber, progress=False)
        transcriber = pipeline.transcriber  # keep the loaded Whisper for the next file, as an actor does
        per_file.append(time.perf_counter() - t)
        windows += pipeline.scores.count
    featurizer.close()
    return {"wall_s": time.perf_counter() - t0, "per_file": per_file, "windows": windows, "workers": 1, "ray_init_s": 0.0}


def run_ray(files, out: pathlib.Path, checkpoint, workers: int, cpus: int) -> dict:
    import ray

    from realtime.scale.archive import THREAD_ENV, ArchiveOptions, annotate_archive

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": dict(THREAD_ENV)})
    t_init = time.perf_counter() - t0
    try:
        rows = annotate_archive(files, ArchiveOptions(output=out, checkpoint=checkpoint, workers=workers), progress=False)
    finally:
        ray.shutdown()
    bad = [r for r in rows if r["status"] != "done"]
    if bad:
        raise SystemExit(f"ray-{workers}: {bad}")
    return {"wall_s": time.perf_counter() - t0, "per_file": [r["seconds"] for r in rows], "windows": sum(r["windows"] for r in rows),
            "workers": workers, "ray_init_s": t_init, "nodes": len({r["node"] for r in rows})}


def summarise(name: str, run: dict, n_files: int, audio_s: float, diff) -> dict:
    wall = run["wall_s"]
    busy = sum(run["per_file"]) / run["workers"]
    return {
        "mode": name,
        "workers": run["workers"],
        "wall_s": round(wall, 2),
        "files_per_hour": round(n_files / wall * 3600, 1),
        "windows_per_s": round(run["windows"] / wall, 2),
        "audio_x_realtime": round(audio_s / wall, 2),
        "per_file_s_p50": pct(run["per_file"], 50),
        "per_file_s_p95": pct(run["per_file"], 95),
        "startup_s": round(wall - busy, 2),
        "ray_init_s": round(run["ray_init_s"], 2),
        "steady_files_per_hour": round(run["workers"] * 3600 / pct(run["per_file"], 50), 1),
        "windows": run["windows"],
        "max_score_diff_vs_single": diff,
        "load_before": run.get("load_before"),
        "load_after": run.get("load_after"),
    }


def print_table(result: dict) -> None:
    cols = ("mode", "wall_s", "files_per_hour", "windows_per_s", "audio_x_realtime", "per_file_s_p50", "per_file_s_p95",
            "startup_s", "steady_files_per_hour", "max_score_diff_vs_single", "load_before")
    print(f"{result['clips']} clips, {result['audio_seconds']} s of media, {result['cpus']} CPUs ({result['machine']})")
    print(" | ".join(cols))
    for r in result["modes"]:
        print(" | ".join(str(r.get(c)) for c in cols))
    for k, v in result.get("ratios", {}).items():
        print(f"{k}: {v}")


# ---------------------------------------------------------------------- live: Serve
SERVE_SENTENCES = ("I really love this wonderful movie.", "This was a terrible boring waste of time.",
                   "The acting is fine and the music is beautiful.")
REAL_TIME_LAG_S = 2.5  # realtime.sessions.HubConfig.max_lag_p95


def live_clip(seconds: float):
    """(16 kHz audio, [JPEG]) of about `seconds`: the sentences over and over, the face."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests"))
    from capture_clients import jpeg_of

    from realtime.sources.demo import compose_audio, face_image

    audio, _ = compose_audio(SERVE_SENTENCES, lead=0.5, gap=1.5, tail=1.5)
    reps = int(np.ceil(seconds * 16000 / len(audio)))
    return np.tile(audio, reps)[: int(seconds * 16000)].astype(np.float32), [jpeg_of(face_image(256))]


def run_clients(base: str, n: int, clip, *, fps: float = 10.0, query: str = "") -> dict:
    """N simulated browsers at once against the server at `base` (host:port); each one's
    windows and last stats message come over its own session's stream."""
    import threading

    sys.path.insert(0, str(ROOT / "tests"))
    from capture_clients import clip_messages, send_paced
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    audio, frames = clip
    results = [dict(windows=[], stats=None, reply=None, close=None) for _ in range(n)]

    def one(i: int) -> None:
        r = results[i]
        events = clip_messages(audio, frames, fps=fps, agent=f"bench {i}")
        with connect(f"ws://{base}/capture{query}", max_size=None, open_timeout=120) as ws:
            ws.send(events[0][1])
            r["reply"] = json.loads(ws.recv(120))
            if r["reply"].get("type") != "session":
                return
            done = threading.Event()

            def view() -> None:
                with connect(f"ws://{base}{r['reply']['stream']}", max_size=None, open_timeout=60) as v:
                    try:
                        while not (done.is_set() and r["stats"] is not None and r["stats_after_end"]):
                            msg = json.loads(v.recv(5))
                            if msg.get("type") == "window":
                                r["windows"].append(msg)
                            elif msg.get("type") == "stats":
                                r["stats"] = msg
                                r["stats_after_end"] = done.is_set()
                    except (ConnectionClosed, TimeoutError):
                        pass

            r["stats_after_end"] = False
            viewer = threading.Thread(target=view, daemon=True)
            viewer.start()
            threading.Thread(target=send_paced, args=(ws.send, events[1:]), daemon=True).start()
            try:
                while True:
                    ws.recv()
            except ConnectionClosed:
                pass
            r["close"] = (ws.close_code, ws.close_reason)
            done.set()
            viewer.join(15)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
        time.sleep(0.3)
    for t in threads:
        t.join(len(audio) / 16000 + 180)
    wall = time.perf_counter() - t0
    rows = []
    for r in results:
        if r["reply"] is None or r["reply"].get("type") != "session":
            rows.append({"refused": (r["reply"] or {}).get("reason", "no reply")})
            continue
        finals = {}
        for w in r["windows"]:
            finals[w["seq"]] = w  # the last revision of each window
        scoring = [w["latency_ms"].get("scoring") for w in finals.values() if isinstance(w.get("latency_ms"), dict)]
        total = [sum(v for v in w["latency_ms"].values() if isinstance(v, (int, float)))
                 for w in finals.values() if isinstance(w.get("latency_ms"), dict)]
        pipeline = ((r["stats"] or {}).get("body") or (r["stats"] or {})).get("pipeline") or {}
        lag = ((pipeline.get("transcript") or {}).get("lag_s") or {}).get("p95")
        dropped = max([int(w.get("dropped", 0) or 0) for w in finals.values()] + [int(pipeline.get("dropped_windows", 0) or 0)])
        rows.append({
            "session": r["reply"]["session"], "replica": r["reply"].get("replica"), "windows": len(finals),
            "dropped_windows": dropped, "score_ms_p95": pct([x for x in scoring if x is not None], 95),
            "window_ms_p95": pct(total, 95), "transcript_lag_s_p95": lag,
            "words": (pipeline.get("transcript") or {}).get("words"), "close": r["close"],
            "held": dropped == 0 and lag is not None and lag < REAL_TIME_LAG_S,
        })
    live = [x for x in rows if "session" in x]
    return {
        "sessions": n, "clip_s": round(len(audio) / 16000, 1), "wall_s": round(wall, 1),
        "held_in_real_time": sum(1 for x in live if x["held"]), "refused": n - len(live),
        "windows": sum(x["windows"] for x in live), "dropped_windows": sum(x["dropped_windows"] for x in live),
        "score_ms_p95": max([x["score_ms_p95"] for x in live if x["score_ms_p95"] is not None], default=None),
        "window_ms_p95": max([x["window_ms_p95"] for x in live if x["window_ms_p95"] is not None], default=None),
        "transcript_lag_s_p95": max([x["transcript_lag_s_p95"] for x in live if x["transcript_lag_s_p95"] is not None],
                                    default=None),
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
        "per_session": rows,
    }


def single_server(checkpoint, max_sessions: int):
    """What `hcl-live --browser` runs, in this process: (server, hub, startup s)."""
    from realtime.pipeline.build import load_scorer as _load_scorer
    from realtime.pipeline.live import session_hello
    from realtime.sessions.hub import HubConfig, SessionHub
    from realtime.web.server import DashboardServer

    t0 = time.perf_counter()
    scorer = _load_scorer(checkpoint, "cpu", max_streams=max_sessions)
    hub = SessionHub(scorer=scorer, config=HubConfig(max_sessions=max_sessions))
    server = DashboardServer(port=0, hello=session_hello(session_id="bench", scorer=scorer, mode="live"),
                             sessions=hub).start()
    hub.warm_up()
    hub.start()
    return server, hub, round(time.perf_counter() - t0, 1)


def serve_app(checkpoint, max_sessions: int, cpus: int, ingress: int):
    """The Ray Serve application on a local Ray: (base host:port, startup s)."""
    import socket

    import ray
    from ray import serve

    from realtime.scale.serve import APP_NAME, ServeSettings, build_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    share = max(0.1, (cpus - 1.0) / ingress)  # the scorer and Whisper replicas take half a CPU each
    settings = ServeSettings(checkpoint=checkpoint, ingress_replicas=ingress, ingress_cpus=share, scorer_cpus=0.5,
                             speech_cpus=0.5, max_sessions=max_sessions, batch_size=max(2, max_sessions))
    serve.run(build_app(settings), name=APP_NAME, route_prefix="/")
    return f"127.0.0.1:{port}", round(time.perf_counter() - t0, 1), settings


def serve_main(args) -> int:
    out_path = pathlib.Path(args.out if args.out != str(ROOT / "bench" / "results" / "ray.json")
                            else ROOT / "bench" / "results" / "ray_serve.json")
    if args.report:
        print_serve_table(json.loads(out_path.read_text()))
        return 0
    counts = [int(x) for x in args.sessions.split(",") if x]
    clip = live_clip(args.seconds)
    modes = []
    server, hub, startup = single_server(args.checkpoint, max(counts))
    try:
        for n in counts:
            base = f"127.0.0.1:{server.port}"
            modes.append({"mode": "single-process", "startup_s": startup, **run_clients(base, n, clip)})
            print_serve_table({"modes": modes[-1:]}, header=n == counts[0])
            time.sleep(3)
    finally:
        hub.stop()
        server.stop()
        server.join(10)
    import ray
    from ray import serve

    try:
        base, startup, settings = serve_app(args.checkpoint, max(counts), args.cpus, args.ingress)
        for n in counts:
            modes.append({"mode": f"serve-{args.ingress}x", "startup_s": startup, **run_clients(base, n, clip)})
            print_serve_table({"modes": modes[-1:]}, header=False)
            time.sleep(3)
    finally:
        serve.shutdown()
        ray.shutdown()
    result = {"cpus": args.cpus, "ingress_replicas": args.ingress, "clip_s": round(args.seconds, 1),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "serve_settings": {k: v for k, v in vars(settings).items() if "token" not in k}, "modes": modes}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1, default=str))
    print(f"written to {out_path}")
    return 0


def print_serve_table(result: dict, header: bool = True) -> None:
    cols = ("mode", "sessions", "held_in_real_time", "refused", "windows", "dropped_windows", "score_ms_p95",
            "window_ms_p95", "transcript_lag_s_p95", "startup_s", "load_before")
    if header:
        print(" | ".join(cols))
    for r in result["modes"]:
        print(" | ".join(str(r.get(c) if c != "load_before" else (r.get(c) or [None])[0]) for c in cols), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", action="store_true", help="live sessions: the single-process server vs Ray Serve")
    ap.add_argument("--sessions", default="1,2", help="--serve: simulated browsers at once, per run")
    ap.add_argument("--seconds", type=float, default=20.0, help="--serve: length of each browser's clip")
    ap.add_argument("--ingress", type=int, default=1, help="--serve: ingress replicas")
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--workers", default="1,2", help="Ray actor pool sizes to run")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ray.json"))
    ap.add_argument("--report", action="store_true", help="re-print the saved --out")
    args = ap.parse_args(argv)
    if args.serve:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from realtime.core.logs import setup_logging as _setup_logging

        _setup_logging(False)
        return serve_main(args)
    out_path = pathlib.Path(args.out)
    if args.report:
        print_table(json.loads(out_path.read_text()))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from realtime.core.logs import setup_logging as _setup_logging

    _setup_logging(False)
    with tempfile.TemporaryDirectory(prefix="ray_bench_") as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "clips").mkdir()
        files = make_clips(tmp / "clips", args.clips)
        audio_s = sum(_duration(f) for f in files)
        modes = []
        runs = {}
        load = os.getloadavg
        before = load()[0]
        runs["single"] = run_single(files, tmp / "single", args.checkpoint)
        runs["single"].update(load_before=round(before, 2), load_after=round(load()[0], 2))
        single_scores = {f.stem: scores_of(tmp / "single" / f.stem) for f in files}
        modes.append(summarise("single", runs["single"], len(files), audio_s, 0.0))
        for k in [int(x) for x in args.workers.split(",") if x]:
            before = load()[0]
            run = run_ray(files, tmp / f"ray{k}", args.checkpoint, k, args.cpus)
            run.update(load_before=round(before, 2), load_after=round(load()[0], 2))
            diff = max(abs(a - b) for f in files for a, b in zip(scores_of(tmp / f"ray{k}" / f.stem), single_scores[f.stem]))
            runs[f"ray-{k}"] = run
            modes.append(summarise(f"ray-{k}", run, len(files), audio_s, round(diff, 6)))
    by = {m["mode"]: m for m in modes}
    ratios = {}
    if "ray-1" in by:
        ratios["ray-1 / single wall"] = round(by["ray-1"]["wall_s"] / by["single"]["wall_s"], 2)
        ratios["ray-1 / single per-file p50"] = round(by["ray-1"]["per_file_s_p50"] / by["single"]["per_file_s_p50"], 2)
    if "ray-1" in by and "ray-2" in by:
        ratios["ray-2 / ray-1 files per hour"] = round(by["ray-2"]["files_per_hour"] / by["ray-1"]["files_per_hour"], 2)
    result = {
        "clips": len(files),
        "audio_seconds": round(audio_s, 1),
        "cpus": args.cpus,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "modes": modes,
        "ratios": ratios,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1))
    print_table(result)
    print(f"written to {out_path}")
    return 0


def _duration(path: pathlib.Path) -> float:
    import av

    with av.open(str(path)) as c:
        return float(c.duration / 1e6) if c.duration else 0.0


if __name__ == "__main__":
    raise SystemExit(main())
