"""The session recorder over a simulated 8-hour session: memory and cost per window stay flat.

    .venv/bin/python bench/recording_bench.py [--hours 8] [--step 0.5] [--fsync] [--video-fps 0]
                                              [--old-ref REV] [--out bench/results/recording.json]

Feeds a SessionRecorder as the live monitor does, from one thread, as fast as it takes:
per 0.5 s window a protocol window message, 0.5 s of 16 kHz audio (a tone with noise)
and the words committed since the last window (2.5 words a second, 150 a minute), through
`write_window(msg, audio=, words=)`; with --video-fps N also N small frames a second through
`write_frame` (encoded in the feeding thread, video_queue=0, so that nothing is dropped; off by
default: 8 hours of H.264 + AAC take long on a shared CPU). At minute 10 and at every hour it
records the process RSS (/proc/self/statm), the median and p95 cost of the last 1000
write_window calls, and the bytes the last words batch added.

For comparison, the recorder before the words.jsonl change (git `--old-ref`, default the
commit before it) is timed at the same hours: it is given the words list such a session
holds at that hour and fed 200 windows with its 2 s words.json rewrite driven by session
time (as in a live session); the table gives its median/p95 cost per window, the size of
one words.json rewrite and the memory of that words list (tracemalloc).
fsync is off unless --fsync (its cost is the disk's and does not grow with the session).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SR = 16000
WORDS_PER_SECOND = 2.5
OLD_REF = "950a7d6"  # realtime/recording.py before the package split (words.json rewritten whole)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def pct(values: list[float], q: float) -> float:
    from realtime.core.component import percentile

    p = percentile(values, q)
    return float("nan") if p is None else p


class Session:
    """The messages, audio and words of a simulated session, window by window."""

    def __init__(self, step: float) -> None:
        from realtime.core import protocol

        self.protocol = protocol
        self.step = step
        self.rng = np.random.default_rng(0)
        t = np.arange(int(step * SR)) / SR
        self.tone = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        self.words_done = 0

    def words_until(self, t: float) -> list[dict]:
        n = int(t * WORDS_PER_SECOND)
        out = []
        for i in range(self.words_done, n):
            start = round(i / WORDS_PER_SECOND, 3)
            out.append({"w": f"word{i % 997}", "start": start, "end": round(start + 0.3, 3), "p": 0.87})
        self.words_done = n
        return out

    def window(self, seq: int, words: list[dict]) -> tuple[dict, np.ndarray]:
        end = (seq + 1) * self.step
        msg = self.protocol.window_message(
            session="bench", seq=seq, start=max(0.0, end - 4.0), end=end, score=float(np.sin(seq / 7) * 2),
            presence={"text": True, "audio": True, "video": True}, words=words[-10:],
            latency_ms={"capture": 1.0, "features": 20.0, "scoring": 5.0, "send": 0.1},
        )
        audio = self.tone + self.rng.normal(0, 0.01, len(self.tone)).astype(np.float32)
        return msg, audio


def run_new(hours: float, step: float, fsync: bool, video_fps: float, folder: Path) -> list[dict]:
    from realtime.recording import SessionRecorder

    sim = Session(step)
    n = int(hours * 3600 / step)
    marks = {int(600 / step)} | {int(h * 3600 / step) for h in range(1, int(hours) + 1)}
    frame = np.random.default_rng(1).integers(0, 255, size=(90, 160, 3), dtype=np.uint8)
    frames_per_window = video_fps * step
    costs: list[float] = []
    rows = []
    words_file = folder / "words.jsonl"
    frame_debt = 0.0
    t_start = time.perf_counter()
    # with video, frames are encoded in this thread (video_queue=0): fed as fast as possible the
    # encoder thread would be outrun and drop frames, which a live session at capture rate does not
    with SessionRecorder(folder, session_info={"session": "bench"}, fsync=fsync, audio=video_fps > 0,
                         video_queue=0 if video_fps > 0 else 32) as rec:
        for seq in range(n):
            end = (seq + 1) * step
            words = sim.words_until(end)
            msg, audio = sim.window(seq, words)
            before = words_file.stat().st_size if seq + 1 in marks else 0
            t0 = time.perf_counter()
            rec.write_window(msg, audio=audio, words=words)
            costs.append((time.perf_counter() - t0) * 1000)
            frame_debt += frames_per_window
            while frame_debt >= 1:
                frame_debt -= 1
                rec.write_frame(frame, end - frame_debt / max(video_fps, 1e-9))
            if len(costs) > 1000:
                del costs[:-1000]
            if seq + 1 in marks:
                rows.append({
                    "session_hours": round(end / 3600, 3),
                    "rss_mb": round(rss_mb(), 1),
                    "write_window_ms_median": round(pct(costs, 50), 3),
                    "write_window_ms_p95": round(pct(costs, 95), 3),
                    "write_window_ms_mean": round(float(np.mean(costs)), 3),
                    "words_batch_bytes": words_file.stat().st_size - before,
                    "words_on_file": rec.stats()["words"],
                    "video_frames": rec.stats()["video_frames"],
                    "video_frames_dropped": rec.stats()["video_frames_dropped"],
                    "wall_s": round(time.perf_counter() - t_start, 1),
                })
                print(f"  new  {rows[-1]}", flush=True)
        stats = rec.stats()
    rows[-1]["final_stats"] = stats
    return rows


def load_old(ref: str) -> types.ModuleType:
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:realtime/recording.py"], capture_output=True,
                         text=True, check=True).stdout
    path = Path(tempfile.mkdtemp(prefix="old-recording-")) / "old_recording.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_recording", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_recording"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def run_old(ref: str, hours_list: list[float], step: float, fsync: bool, root: Path) -> list[dict]:
    old = load_old(ref)
    clock = {"t": 0.0}
    old.time = types.SimpleNamespace(monotonic=lambda: clock["t"])  # words.json rewritten every 2 s of session time
    rows = []
    for hours in hours_list:
        sim = Session(step)
        t0_session = hours * 3600
        tracemalloc.start()
        held = sim.words_until(t0_session)
        words_mb = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.stop()
        folder = root / f"old-{hours}"
        costs, rewrite_bytes = [], 0
        with old.SessionRecorder(folder, session_info={"session": "bench"}, fsync=fsync) as rec:
            rec.words = held
            rec._vtt_cued = len(held)
            base = int(t0_session / step)
            for seq in range(base, base + 200):
                end = (seq + 1) * step
                clock["t"] = end
                words = sim.words_until(end)
                msg, audio = sim.window(seq, words)
                t0 = time.perf_counter()
                rec.write_window(msg)
                rec.write_audio(audio)
                rec.add_words(words)
                costs.append((time.perf_counter() - t0) * 1000)
            rewrite_bytes = (folder / "words.json").stat().st_size
            rec.words = rec.words[-10:]  # close() would write the whole list once more
        shutil.rmtree(folder, ignore_errors=True)
        rows.append({
            "session_hours": round(hours, 3),
            "write_window_ms_median": round(pct(costs, 50), 3),
            "write_window_ms_p95": round(pct(costs, 95), 3),
            "write_window_ms_mean": round(float(np.mean(costs)), 3),
            "words_json_rewrite_bytes": rewrite_bytes,
            "words_list_mb": round(words_mb, 2),
        })
        print(f"  old  {rows[-1]}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hours", type=float, default=8.0)
    p.add_argument("--step", type=float, default=0.5)
    p.add_argument("--fsync", action="store_true")
    p.add_argument("--video-fps", type=float, default=0.0)
    p.add_argument("--old-ref", default=OLD_REF, help="git revision of the recorder to compare with ('' to skip)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "recording.json"))
    args = p.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="recording-bench-"))
    try:
        print(f"new recorder: {args.hours} h at {args.step} s per window (folder {root})", flush=True)
        new = run_new(args.hours, args.step, args.fsync, args.video_fps, root / "new")
        old = []
        if args.old_ref:
            print(f"old recorder ({args.old_ref}) at the same hours", flush=True)
            old = run_old(args.old_ref, [r["session_hours"] for r in new], args.step, args.fsync, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    first = new[0]
    print()
    print(f"{'hour':>6} | {'RSS MB':>7} {'dRSS':>6} | {'new ms med':>10} {'p95':>6} {'mean':>6} {'words B':>8} | "
          f"{'old ms med':>10} {'p95':>7} {'mean':>6} {'words.json B':>12} {'list MB':>7}")
    for i, r in enumerate(new):
        o = old[i] if i < len(old) else {}
        print(f"{r['session_hours']:>6.2f} | {r['rss_mb']:>7.1f} {r['rss_mb'] - first['rss_mb']:>+6.1f} | "
              f"{r['write_window_ms_median']:>10.3f} {r['write_window_ms_p95']:>6.3f} {r['write_window_ms_mean']:>6.3f} "
              f"{r['words_batch_bytes']:>8d} | "
              f"{o.get('write_window_ms_median', float('nan')):>10.3f} {o.get('write_window_ms_p95', float('nan')):>7.3f} "
              f"{o.get('write_window_ms_mean', float('nan')):>6.3f} "
              f"{o.get('words_json_rewrite_bytes', 0):>12d} {o.get('words_list_mb', float('nan')):>7.2f}")
    last = new[-1]
    summary = {
        "rss_growth_mb_after_minute_10": round(last["rss_mb"] - first["rss_mb"], 1),
        "new_median_ratio_last_over_minute_10": round(last["write_window_ms_median"] / first["write_window_ms_median"], 2),
        "new_p95_ratio_last_over_minute_10": round(last["write_window_ms_p95"] / first["write_window_ms_p95"], 2),
        "new_mean_ratio_last_over_minute_10": round(last["write_window_ms_mean"] / first["write_window_ms_mean"], 2),
    }
    if old:
        summary["old_median_ratio_last_over_minute_10"] = round(
            old[-1]["write_window_ms_median"] / old[0]["write_window_ms_median"], 2)
        summary["old_p95_ratio_last_over_minute_10"] = round(old[-1]["write_window_ms_p95"] / old[0]["write_window_ms_p95"], 2)
        summary["old_mean_ratio_last_over_minute_10"] = round(old[-1]["write_window_ms_mean"] / old[0]["write_window_ms_mean"], 2)
    print("\n" + json.dumps(summary))
    result = {
        "args": vars(args), "new": new, "old": old, "summary": summary,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
