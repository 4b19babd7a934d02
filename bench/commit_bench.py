"""Commit rules side by side on the same audio: LocalAgreement-2 vs `settle` (a word
followed by `settle` s of audio in its pass commits on that one pass), per engine.

    python bench/commit_bench.py [--engines whisper,moonshine] [--settles none,1.0,0.6]
                                 [--period 1.0] [--clips generated,real_two_cities,...] [--pause PIDFILE] [--out PATH]

Each run is the live `SpeechStream` (realtime/pipeline/speech.py, the live policy:
periodic passes every `--period` s, pause passes, 8 s context) stepped over a clip in
50 ms steps of audio with the session clock faked: a pass that starts at horizon H
commits its words at H + the pass's own wall time (no queueing, no other sessions:
the lag the rule makes plus one pass). Every rule sees the same audio with the same
engine (Whisper tiny.en greedy as live passes run it, or Moonshine base-en), one
engine per process, one CPU thread.

Per engine, rule and clip: transcript lag (committed_at - word end) p50 / p95 / max,
WER of the committed words against the reference (tests/transcript_scoring.py),
insertions, words committed over audio already committed (a committed word whose
midpoint lies inside an earlier committed word's span, or before the end of the
committed words: the `hcl-annotate` duplication of issue 22), and pass counts.
Clips are bench/asr_bench.py's: the generated clip (14 espeak-ng sentences), real read
speech (two_cities.wav, beckett.wav) and the two MOSI clips.

`--pause PIDFILE`: SIGSTOP the processes listed (one PID a line) during the runs,
SIGCONT after. Writes bench/results/commit.json (`--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from asr_bench import SR, clips, signal_all  # noqa: E402  the same clips as the engine bench
from transcript_scoring import normalise_words, word_errors  # noqa: E402

STEP = 0.05  # s of audio between steps of the stream


def pct(values, q):
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def run_stream(engine, wave: np.ndarray, *, settle: float | None, period: float) -> dict:
    """The live SpeechStream over `wave` with a faked clock; its committed words and counts."""
    from realtime.core.component import Policy
    from realtime.pipeline.speech import SpeechOptions, SpeechStream

    state = {"h": 0.0, "t": 0.0}

    def clock() -> float:  # the pass's start horizon + the wall time since it started
        return state["h"] + time.perf_counter() - state["t"]

    stream = SpeechStream(read=lambda a, b: wave[max(0, int(round(a * SR))):max(0, int(round(b * SR)))], sample_rate=SR,
                          transcribe=engine.transcribe, options=SpeechOptions(period=period, settle=settle),
                          policy=Policy.LIVE, clock=clock)
    end = len(wave) / SR
    h, cpu0 = 0.0, time.process_time()
    while h < end - 1e-9:
        h = min(end, h + STEP)
        while True:
            state["h"], state["t"] = h, time.perf_counter()
            if stream.step(h, h) is None:
                break
    state["h"], state["t"] = end, time.perf_counter()
    stream.finish(end, end)
    words = stream.transcript.all_words()
    return {"words": [[w.text, round(w.start, 3), round(w.end, 3), round(w.committed_at, 3)] for w in words],
            "pause_passes": stream.pause_pass_count, "cpu_s": round(time.process_time() - cpu0, 2)}


def repeated_audio(words: list) -> int:
    """Committed words that lie over audio already committed: midpoint before the end of
    the words committed before them (less 0.1 s of timing wobble)."""
    n, last_end = 0, -1.0
    for _text, start, end, _at in words:
        if 0.5 * (start + end) < last_end - 0.1:
            n += 1
        last_end = max(last_end, end)
    return n


def score(run: dict, reference: str, clip_s: float) -> dict:
    words = run["words"]
    # the final pass commits what is left at the end of the clip: those words' lag says
    # nothing about the rule, so lags count words committed before the clip ended
    lags = [at - end for _t, _s, end, at in words if at < clip_s - 1e-6]
    ref, hyp = normalise_words(reference), normalise_words(" ".join(w[0] for w in words))
    errors = word_errors(ref, hyp)
    return {"lag_s": {"p50": pct(lags, 50), "p95": pct(lags, 95), "max": round(max(lags), 3) if lags else None, "n": len(lags)},
            "wer_percent": round(100 * errors / max(1, len(ref)), 1), "errors": errors, "reference_words": len(ref),
            "extra_words": max(0, len(hyp) - len(ref)), "repeated_audio_words": repeated_audio(words),
            "pause_passes": run["pause_passes"], "cpu_s": run["cpu_s"], "hypothesis": " ".join(hyp)}


def child(engine_name: str, data: pathlib.Path, settles: list, period: float) -> dict:
    from hcl.features.config import FeatureSettings
    from realtime.core.component import Policy
    from realtime.pipeline.speech import SpeechOptions, transcriber_for

    import torch

    torch.set_num_threads(1)
    engine = transcriber_for(FeatureSettings(), SpeechOptions(threads=1, engine=engine_name), Policy.LIVE)
    engine.load()
    loaded = np.load(data, allow_pickle=False)
    refs = json.loads(str(loaded["__refs__"]))
    out = {}
    for name, reference in refs.items():
        wave = loaded[name]
        engine.transcribe(wave[: 2 * SR])  # warm-up
        for settle in settles:
            run = run_stream(engine, wave, settle=settle, period=period)
            out[f"{name}|{settle}"] = {**score(run, reference, len(wave) / SR), "words": run["words"]}
            print(engine_name, name, settle, {k: out[f"{name}|{settle}"][k] for k in ("lag_s", "wer_percent", "repeated_audio_words")},
                  file=sys.stderr, flush=True)
    return out


def table(results: dict, engines: list, settles: list, names: list) -> str:
    head = ["clip", "engine", "rule", "lag p50 / p95 / max s", "WER %", "extra words", "words over committed audio"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for name in names:
        for e in engines:
            for s in settles:
                r = results[e].get(f"{name}|{s}")
                if r is None:
                    continue
                lag = r["lag_s"]
                rule = "LocalAgreement-2" if s is None else f"settle {s:g} s"
                lines.append(" | ".join([name, e, rule, f"{lag['p50']} / {lag['p95']} / {lag['max']}",
                                         f"{r['wer_percent']} ({r['errors']}/{r['reference_words']})",
                                         str(r["extra_words"]), str(r["repeated_audio_words"])]))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="whisper,moonshine")
    ap.add_argument("--settles", default="none,1.0,0.6", help="settle values; none = LocalAgreement-2 only")
    ap.add_argument("--period", type=float, default=1.0, help="s between periodic passes (default 1.0, SpeechOptions')")
    ap.add_argument("--clips", default="", help="clip names (default: all of bench/asr_bench.py's)")
    ap.add_argument("--tolerance", type=float, help="realtime.pipeline.speech.REHEARD_TOLERANCE for these runs (default: its value)")
    ap.add_argument("--pause", help="file of PIDs to SIGSTOP during the runs")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "commit.json"))
    ap.add_argument("--child", nargs=2, metavar=("ENGINE", "NPZ"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    settles = [None if s.strip().lower() == "none" else float(s) for s in args.settles.split(",")]
    if args.tolerance is not None:
        import realtime.pipeline.speech

        realtime.pipeline.speech.REHEARD_TOLERANCE = args.tolerance
    if args.child:
        print(json.dumps(child(args.child[0], pathlib.Path(args.child[1]), settles, args.period)))
        return 0
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    data, _sentences, notes = clips()
    if args.clips:
        data = {k: v for k, v in data.items() if k in args.clips.split(",")}
    pids = [int(x) for x in pathlib.Path(args.pause).read_text().split()] if args.pause else []
    load_before = os.getloadavg()
    stopped = signal_all(pids, signal.SIGSTOP)
    results = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            npz = pathlib.Path(tmp) / "clips.npz"
            np.savez(npz, __refs__=json.dumps({k: v[1] for k, v in data.items()}), **{k: v[0] for k, v in data.items()})
            for e in engines:  # one process per engine: its own threads and memory
                cmd = [sys.executable, __file__, "--child", e, str(npz), "--settles", args.settles, "--period", str(args.period)]
                if args.tolerance is not None:
                    cmd += ["--tolerance", str(args.tolerance)]
                done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
                results[e] = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        signal_all(stopped, signal.SIGCONT)
    load_after = os.getloadavg()
    names = list(data)
    doc = {"command": " ".join(["python", "bench/commit_bench.py", *(argv if argv is not None else sys.argv[1:])]),
           "period_s": args.period, "step_s": STEP, "reheard_tolerance_s": args.tolerance, "paused_pids": stopped, "notes": notes,
           "load_avg_before": [round(x, 2) for x in load_before], "load_avg_after": [round(x, 2) for x in load_after],
           "clip_seconds": {k: round(len(v[0]) / SR, 1) for k, v in data.items()}, "results": results}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(table(results, engines, settles, names))
    print(f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}; paused {stopped}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
