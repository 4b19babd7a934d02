"""HCL model benchmark: parameters, FLOPs per sample, latency per window at batch 1,
throughput at batch 64 and 512; CPU always (eager, and traced into a frozen TorchScript
graph as the live scorer runs it), CUDA (plain and CUDA-graph replay) when present.

    python bench/model_bench.py [--repeats 30] [--threads 2] [--out bench/results/model.json]

Prints a table and writes JSON. Medians over repeats; the live setting is used
(text 50 tokens, audio and video 8 steps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from hcl.config import ModelConfig
from hcl.model import HCL
from hcl.profile import dummy_inputs, model_profile

PAPER = {"parameters": 5.51e6, "gflops": 0.98, "almt_parameters": 6.42e6, "almt_gflops": 1.08}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_calls(fn, device, repeats: int, warmup: int = 3, cpu: list | None = None) -> list[float]:
    """Wall seconds per call; with `cpu`, also this thread's CPU seconds per call (on a
    shared machine the CPU time is what the call costs, the wall time adds waiting for a core)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        c0, t0 = time.thread_time(), time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.thread_time() - c0)
    return out


def traced(model: HCL, x: dict) -> torch.jit.ScriptModule:
    """The model traced on inputs x, frozen and optimised for inference (what
    realtime.pipeline.scorer does on CPU)."""
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.optimize_for_inference(torch.jit.trace(model, tuple(x.values()), check_trace=False).eval())


def bench_device(model: HCL, device: torch.device, lengths, batches, repeats: int, graph: bool, trace: bool = False) -> list[dict]:
    rows = []
    model = model.to(device).eval()
    for b in batches:
        x = dummy_inputs(model, lengths, batch=b, device=device)
        if trace:
            script = traced(model, x)
        with torch.inference_mode():
            if trace:
                fn = lambda: script(*x.values())  # noqa: E731
            elif graph:
                # static inputs, warm-up on a side stream, capture once, replay
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(3):
                        model(**x)
                torch.cuda.current_stream().wait_stream(s)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    model(**x)
                fn = g.replay
            else:
                fn = lambda: model(**x)  # noqa: E731
            cpu: list[float] = []
            times = time_calls(fn, device, repeats if b < 512 else max(5, repeats // 3), cpu=cpu)
        med = statistics.median(times)
        rows.append(
            {
                "device": device.type + (" +graph" if graph else "") + (" +trace" if trace else ""),
                "batch": b,
                "median_ms": med * 1e3,
                "p95_ms": sorted(times)[int(0.95 * (len(times) - 1))] * 1e3,
                "samples_per_s": b / med,
                "cpu_median_ms": statistics.median(cpu) * 1e3 if device.type == "cpu" else None,
            }
        )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64, 512])
    p.add_argument("--out", default="bench/results/model.json")
    p.add_argument("--checkpoint", default="models/hcl-text-minilm/model.pt", help="also time this checkpoint's model")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lengths = {"text": 50, "audio": 8, "video": 8}
    torch.manual_seed(0)
    configs = {
        "live (MiniLM 384 / audio 48 / face 58)": (ModelConfig(), lengths),
        "MOSI dims 768/5/20, aligned 50/50/50": (
            ModelConfig(text_dim=768, audio_dim=5, video_dim=20),
            {"text": 50, "audio": 50, "video": 50},
        ),
        "MOSI dims, unaligned 50/375/500": (
            ModelConfig(text_dim=768, audio_dim=5, video_dim=20, max_len=500),
            {"text": 50, "audio": 375, "video": 500},
        ),
    }
    profiles = {name: model_profile(HCL(config=cfg), lens) for name, (cfg, lens) in configs.items()}
    models = {"trimodal (random)": HCL(config=configs["live (MiniLM 384 / audio 48 / face 58)"][0])}
    if Path(args.checkpoint).is_file():
        # the live default: text-only, so audio and video are constant embeddings (HCL._embedded)
        from hcl.checkpoint import load_checkpoint

        models["shipped text-only"] = load_checkpoint(args.checkpoint).model
    rows = []
    for label, model in models.items():
        found = bench_device(model, torch.device("cpu"), lengths, args.batches, args.repeats, graph=False)
        found += bench_device(model, torch.device("cpu"), lengths, args.batches, args.repeats, graph=False, trace=True)
        if torch.cuda.is_available():
            found += bench_device(model, torch.device("cuda"), lengths, args.batches, args.repeats, graph=False)
            found += bench_device(model, torch.device("cuda"), lengths, args.batches, args.repeats, graph=True)
        rows += [dict(r, model=label) for r in found]

    print(f"{'model (input lengths text/audio/video)':42s} {'params':>10s} {'GFLOPs/sample':>14s}")
    for name, prof in profiles.items():
        print(f"{name:42s} {prof['parameters'] / 1e6:9.2f}M {prof['flops_per_sample'] / 1e9:14.3f}")
    print(f"{'paper HCL (reported)':42s} {PAPER['parameters'] / 1e6:9.2f}M {PAPER['gflops']:14.3f}")
    print(f"{'paper ALMT (reported)':42s} {PAPER['almt_parameters'] / 1e6:9.2f}M {PAPER['almt_gflops']:14.3f}")
    print()
    print(f"{'model':18s} {'device':12s} {'batch':>6s} {'median ms':>10s} {'p95 ms':>9s} {'CPU ms':>8s} {'samples/s':>11s}")
    for r in rows:
        cpu = "-" if r["cpu_median_ms"] is None else f"{r['cpu_median_ms']:.2f}"
        print(f"{r['model']:18s} {r['device']:12s} {r['batch']:6d} {r['median_ms']:10.2f} {r['p95_ms']:9.2f} {cpu:>8s} "
              f"{r['samples_per_s']:11.0f}")
    print(f"load average (1 min) {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    result = {
        "lengths": lengths,
        "profiles": profiles,
        "paper": PAPER,
        "rows": rows,
        "threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
