"""Live benchmark: a file source at real-time pace through the whole live path and the
real server on 127.0.0.1, measured from a websocket client.

    python bench/live_bench.py [--file PATH] [--checkpoint PATH] [--strict] [--repeat N]

Reports end-to-end latency (window end on the session clock -> message received by
the client) p50/p95, per-stage latencies, CPU use, dropped windows, transcript lag,
and the scorer's step time (on CUDA also with CUDA-graph replay). Prints a table and
writes bench/results/live.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pct(values, q):
    from realtime.windowing import percentile

    v = percentile(list(values), q)
    return None if v is None else round(v, 3)


def make_clip(directory: pathlib.Path, repeat: int) -> pathlib.Path:
    from realtime.demo import NEGATIVE, POSITIVE, make_clip as make

    path = directory / f"bench-{repeat}.mp4"
    make(path, sentences=(POSITIVE, NEGATIVE) * repeat, lead=0.5, gap=1.5)
    return path


def random_checkpoint(directory: pathlib.Path) -> pathlib.Path:
    import torch

    from hcl.checkpoint import save_checkpoint
    from hcl.config import ModelConfig
    from hcl.features.config import FeatureSettings
    from hcl.model import HCL

    torch.manual_seed(0)
    s = FeatureSettings()
    return save_checkpoint(directory / "random.pt", HCL(config=ModelConfig(**s.model_dims())).eval(), features=s, meta={"name": "random-init"})


def fit_whisper_encoder() -> None:
    """Experiment: faster-whisper pads every pass to 30 s of mel frames, so a 2-8 s pass
    costs the encoder a full 30 s; pad to the audio's length + 1 s instead."""
    import math

    import faster_whisper.transcribe as fwt
    from faster_whisper.audio import pad_or_trim

    def fitted(array, length: int = 3000, *, axis: int = -1):
        frames = array.shape[axis]
        return pad_or_trim(array, min(length, max(300, 100 * math.ceil((frames + 100) / 100))), axis=axis)

    fwt.pad_or_trim = fitted
    # and no temperature fallback: a pass cut mid-word would otherwise decode up to 6 times
    original = fwt.WhisperModel.transcribe

    def transcribe(self, audio, *args, **kwargs):
        kwargs.setdefault("temperature", 0.0)
        return original(self, audio, *args, **kwargs)

    fwt.WhisperModel.transcribe = transcribe


def scorer_step_times(checkpoint, device: str, graphs: bool, n: int = 200) -> dict:
    import numpy as np
    import torch

    from realtime.scorer import WindowScorer
    from realtime.windowing import Window

    scorer = WindowScorer(checkpoint=checkpoint, device=device, cuda_graphs=graphs)
    rng = np.random.default_rng(0)
    w = Window(0, 0, 4, rng.normal(size=(8, 48)).astype(np.float32), np.ones(8, bool),
               rng.uniform(size=(8, 58)).astype(np.float32), np.ones(8, bool), [], "i really love this it is great", {})
    scorer.warm_up()
    for _ in range(10):
        scorer.score(w)
    scorer.step_ms.clear()
    for _ in range(n):
        scorer.score(w)
    return {"device": device, "cuda_graphs": bool(scorer.use_graphs), "p50_ms": pct(scorer.step_ms, 50), "p95_ms": pct(scorer.step_ms, 95),
            "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", help="media file (default: the demo sentences, --repeat times)")
    ap.add_argument("--repeat", type=int, default=3, help="positive+negative sentence pairs in the generated clip")
    ap.add_argument("--checkpoint", help="default: the shipped live model (random-init if it is missing)")
    ap.add_argument("--strict", action="store_true", help="file policy (windows wait for the transcript) instead of the live-device policy")
    ap.add_argument("--beam", type=int, help="Whisper beam size for the live passes (default: the checkpoint's)")
    ap.add_argument(
        "--fit-encoder",
        action="store_true",
        help="experiment: pad Whisper's encoder input to the pass's audio + 1 s instead of 30 s "
        "(a proposal for hcl.features.speech; patches faster-whisper in this process only)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "live.json"))
    args = ap.parse_args(argv)

    import torch
    from websockets.sync.client import connect

    from realtime.pipeline import LivePipeline, PipelineOptions
    from realtime.scorer import WindowScorer
    from realtime.server import DashboardServer
    from realtime.sources.file import FileSource

    if args.fit_encoder:
        fit_whisper_encoder()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="live-bench-"))
    model_note = None
    checkpoint = args.checkpoint
    if checkpoint is None:
        try:
            from hcl.checkpoint import default_live_checkpoint

            checkpoint = default_live_checkpoint()
        except FileNotFoundError:
            checkpoint = random_checkpoint(tmp)
            model_note = "random-init (the shipped live model was missing; timings are the same)"
    path = pathlib.Path(args.file) if args.file else make_clip(tmp, args.repeat)

    scorer = WindowScorer(checkpoint=checkpoint, device="cpu")
    scorer.warm_up()
    source = FileSource(path=path, realtime=True, fps=scorer.features.face.frames_per_second)
    options = PipelineOptions(strict=args.strict, realtime=True, speech_beam_size=args.beam)
    pipeline = LivePipeline(source=source, scorer=scorer, options=options)
    server = DashboardServer(host="127.0.0.1", port=0, hello=pipeline.hello(), metrics=pipeline.metrics)
    server.start()
    pipeline.publish = server.publish
    received: list[tuple[float, dict]] = []

    ws = connect(server.ws_url, open_timeout=10)

    def read() -> None:
        try:
            for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "window" and pipeline.clock is not None:
                    received.append((pipeline.clock.now(), msg))
        except Exception:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    pipeline.start()
    pipeline.wait()
    time.sleep(0.5)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    metrics = pipeline.metrics()
    ws.close()
    pipeline.stop()
    server.stop()

    e2e = [(t - m["end"]) * 1000 for t, m in received]
    stages = {k: [m["latency_ms"][k] for _, m in received] for k in ("capture", "features", "scoring", "send")}
    lags = pipeline.speech.transcript.lags if pipeline.speech else []
    duration = source.duration or 0.0
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(terse=True), "python": platform.python_version(),
                    "torch": torch.__version__, "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "input": {"file": str(path) if args.file else f"generated demo ({args.repeat} x positive+negative)", "seconds": round(duration, 2)},
        "model": model_note or str(checkpoint),
        "speech_beam_size": args.beam or scorer.features.speech.beam_size,
        "whisper_encoder": "fitted to the audio, no temperature fallback (experiment)" if args.fit_encoder else "30 s (faster-whisper default)",
        "policy": "strict (file: windows wait for transcript passes)" if args.strict else "live (devices: windows never wait for the transcript)",
        "windows": len(pipeline.messages),
        "windows_received": len(received),
        "dropped_windows": pipeline.queue.dropped,
        "dropped_frames": source.frames.dropped if source.frames is not None else 0,
        "realtime_factor": round(wall / duration, 3) if duration else None,
        "cpu_percent_of_one_core": round(100 * cpu / wall, 1),
        "end_to_end_ms": {"p50": pct(e2e, 50), "p95": pct(e2e, 95), "max": round(max(e2e), 1) if e2e else None},
        "stages_ms": {k: {"p50": pct(v, 50), "p95": pct(v, 95)} for k, v in stages.items()},
        "score_latency_after_close_ms": {"p50": pct([sum(m["latency_ms"].values()) for _, m in received], 50),
                                         "p95": pct([sum(m["latency_ms"].values()) for _, m in received], 95)},
        "transcript_lag_s": {"p50": pct(lags, 50), "p95": pct(lags, 95), "words": len(lags)},
        "speech_pass_ms": metrics.get("transcript", {}).get("pass_ms"),
        "skipped_speech_passes": metrics.get("transcript", {}).get("skipped_passes"),
        "face_ms": metrics.get("video", {}).get("face_ms"),
        "scorer_step_cpu": scorer_step_times(checkpoint, "cpu", False),
        "scorer_step_cuda": None,
    }
    if torch.cuda.is_available():
        result["scorer_step_cuda"] = {"eager": scorer_step_times(checkpoint, "cuda", False), "graph": scorer_step_times(checkpoint, "cuda", True)}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"\nwritten to {out}")
    return 0


def table(r: dict) -> str:
    def f(x, unit=""):
        return "-" if x is None else f"{x}{unit}"

    rows = [
        ("input", f"{r['input']['file']}, {r['input']['seconds']} s"),
        ("policy", r["policy"]),
        ("Whisper encoder input", r.get("whisper_encoder", "-")),
        ("windows (received / dropped)", f"{r['windows']} ({r['windows_received']} / {r['dropped_windows']})"),
        ("dropped video frames", r["dropped_frames"]),
        ("wall / media time", f(r["realtime_factor"])),
        ("CPU (% of one core)", f(r["cpu_percent_of_one_core"], " %")),
        ("end-to-end p50 / p95", f"{f(r['end_to_end_ms']['p50'])} / {f(r['end_to_end_ms']['p95'])} ms"),
    ]
    for k, v in r["stages_ms"].items():
        rows.append((f"  {k} p50 / p95", f"{f(v['p50'])} / {f(v['p95'])} ms"))
    rows += [
        ("score latency after close p50 / p95", f"{f(r['score_latency_after_close_ms']['p50'])} / {f(r['score_latency_after_close_ms']['p95'])} ms"),
        ("transcript lag p50 / p95", f"{f(r['transcript_lag_s']['p50'])} / {f(r['transcript_lag_s']['p95'])} s ({r['transcript_lag_s']['words']} words)"),
        ("speech pass p50 / p95", f"{f((r['speech_pass_ms'] or {}).get('p50'))} / {f((r['speech_pass_ms'] or {}).get('p95'))} ms"),
        ("face per frame p50 / p95", f"{f((r['face_ms'] or {}).get('p50'))} / {f((r['face_ms'] or {}).get('p95'))} ms"),
        ("scorer step CPU p50 / p95", f"{f(r['scorer_step_cpu']['p50_ms'])} / {f(r['scorer_step_cpu']['p95_ms'])} ms"),
    ]
    cuda = r["scorer_step_cuda"]
    if cuda:
        rows.append(("scorer step CUDA eager p50", f"{cuda['eager']['p50_ms']} ms"))
        rows.append(("scorer step CUDA graph p50", f"{cuda['graph']['p50_ms']} ms (graphs: {cuda['graph']['cuda_graphs']})"))
    else:
        rows.append(("scorer step CUDA", "no GPU here"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


if __name__ == "__main__":
    sys.exit(main())
