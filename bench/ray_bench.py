"""Archive throughput: single process vs `hcl-annotate --ray` with 1 and 2 workers.

    python bench/ray_bench.py [--clips 6] [--workers 1,2] [--cpus 2] [--out bench/results/ray.json]
    python bench/ray_bench.py --report       # re-print a saved run

N generated clips (two espeak-ng sentences over the astronaut's face, about 9 s
each, H.264 + AAC) are annotated three ways into fresh folders:

- single: one Python process, the scorer, face model and Whisper loaded once, the files
  one after another through `realtime.cli.annotate` (the hcl-annotate path with its
  default threads: torch 1, Whisper 2);
- ray-K: `realtime.archive.annotate_archive` on a local Ray started here with
  `--cpus` CPUs and K actors (one torch / Whisper thread each), Ray Data streaming
  the files to the pool.

Per mode: wall time from the start (model loading, and for Ray the `ray.init` and
the actors' start, included), files per hour and windows per second over that wall
time, per-file seconds (median, p95: the annotate step alone, inside the actor), and
the start-up share = wall - (sum of per-file seconds / workers). The scores of every
mode are checked against the single process (max |difference|). The machine's load
average (shared with other work) is recorded before and after each mode.
Writes bench/results/ray.json.
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
    from realtime.component import percentile

    v = percentile(list(values), q)
    return None if v is None else round(v, 3)


def make_clips(folder: pathlib.Path, n: int) -> list[pathlib.Path]:
    from realtime.demo import make_clip

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

    from realtime.cli import _load_scorer, annotate

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
        transcriber = pipeline._transcriber  # keep the loaded Whisper for the next file, as an actor does
        per_file.append(time.perf_counter() - t)
        windows += pipeline.scores.count
    featurizer.close()
    return {"wall_s": time.perf_counter() - t0, "per_file": per_file, "windows": windows, "workers": 1, "ray_init_s": 0.0}


def run_ray(files, out: pathlib.Path, checkpoint, workers: int, cpus: int) -> dict:
    import ray

    from realtime.archive import THREAD_ENV, ArchiveOptions, annotate_archive

    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": dict(THREAD_ENV)})
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--workers", default="1,2", help="Ray actor pool sizes to run")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ray.json"))
    ap.add_argument("--report", action="store_true", help="re-print the saved --out")
    args = ap.parse_args(argv)
    out_path = pathlib.Path(args.out)
    if args.report:
        print_table(json.loads(out_path.read_text()))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from realtime.cli import _setup_logging

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
