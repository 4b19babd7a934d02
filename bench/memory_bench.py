"""Peak memory of hcl-extract and hcl-annotate against the input's length (issue 10.2).

    .venv/bin/python bench/memory_bench.py [--lengths 600,3600] [--4k-seconds 15] [--tools extract,annotate]
                                          [--media-dir DIR] [--out bench/results/memory.json]

Generates the inputs (once, cached in --media-dir, default bench/results/media):
  long-<N>s.wav  16 kHz mono: silence with a 220 Hz tone burst every 10 s and an espeak-ng
                 sentence every 2 minutes (so Whisper, the text encoder and the speech mask
                 all have work), written in pieces (the generator holds 10 s at a time)
  uhd-<N>s.mp4   3840x2160 H.264 + AAC at 10 fps: a real face (scikit-image's astronaut)
                 scaled to 4K with espeak-ng speech
then runs each command in a child process and reads the child's peak resident set size
(ru_maxrss from wait4, the kernel's own high-water mark). Prints a table (peak MB, wall
seconds, MB per minute of input against the shortest file) and writes JSON.
Other jobs on the machine slow the runs down but do not change the peaks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SR = 16000
SENTENCES = (
    "I really enjoyed this film, the acting was wonderful.",
    "This was a boring and disappointing story.",
)


def make_long_wav(path: Path, seconds: int) -> Path:
    """Silence, a tone burst every 10 s, a spoken sentence every 120 s; written 10 s at a time."""
    from realtime.sources.demo import speak

    if path.exists():
        return path
    speech = [speak(s) for s in SENTENCES]
    t = np.arange(SR // 2) / SR
    burst = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    tmp = path.with_suffix(".part.wav")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        for block in range(0, seconds, 10):
            piece = np.zeros(10 * SR, np.float32)
            piece[SR : SR + len(burst)] = burst
            if block % 120 == 0:
                s = speech[(block // 120) % len(speech)]
                piece[3 * SR : 3 * SR + min(len(s), 7 * SR)] = s[: 7 * SR]
            piece = piece[: (min(seconds, block + 10) - block) * SR]
            w.writeframes((np.clip(piece, -1, 1) * 32767).astype("<i2").tobytes())
    tmp.replace(path)
    return path


def make_4k_clip(path: Path, seconds: int) -> Path:
    """A 4K H.264 + AAC clip of a real face with speech (frames made one at a time)."""
    import av

    from realtime.sources.demo import face_image, speak

    if path.exists():
        return path
    from skimage.transform import resize

    face = (resize(face_image(720), (2160, 3840), anti_aliasing=False) * 255).astype(np.uint8)
    audio = np.zeros(seconds * SR, np.float32)
    s = speak(SENTENCES[0])[: (seconds - 1) * SR]
    audio[SR // 2 : SR // 2 + len(s)] = s
    fps = 10
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 3840, 2160, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "28"}
        a = c.add_stream("aac", rate=SR, layout="mono")
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(face, format="rgb24")
            frame.pts = i
            for p in vs.encode(frame):
                c.mux(p)
            lo, hi = i * SR // fps, (i + 1) * SR // fps
            af = av.AudioFrame.from_ndarray(audio[None, lo:hi], format="fltp", layout="mono")
            af.sample_rate, af.pts = SR, lo
            for p in a.encode(af):
                c.mux(p)
        for st in (vs, a):
            for p in st.encode():
                c.mux(p)
    tmp.replace(path)
    return path


def peak_rss(cmd: list[str], *, log: Path) -> dict:
    """Run `cmd`; its exit status, wall seconds and peak RSS in MB (the child's own maxrss)."""
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    return {"rc": rc, "wall_s": round(wall, 1), "peak_mb": round(usage.ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", default="600,3600", help="generated wav lengths in seconds (comma-separated)")
    p.add_argument("--4k-seconds", dest="uhd_seconds", type=int, default=15, help="length of the 4K clip (0 = none)")
    p.add_argument("--tools", default="extract,annotate")
    p.add_argument("--media-dir", default=str(ROOT / "bench" / "results" / "media"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "memory.json"))
    p.add_argument("--limit-mb", type=float, default=1536.0, help="the aim: peak below this for every input")
    args = p.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is needed to make the inputs (apt-get install espeak-ng)", file=sys.stderr)
        return 2
    media = Path(args.media_dir)
    media.mkdir(parents=True, exist_ok=True)
    inputs: list[tuple[str, Path, float]] = []
    for n in (int(x) for x in args.lengths.split(",") if x.strip()):
        print(f"making {n} s wav ...", flush=True)
        inputs.append((f"wav {n // 60} min", make_long_wav(media / f"long-{n}s.wav", n), float(n)))
    if args.uhd_seconds:
        print(f"making {args.uhd_seconds} s 4K clip ...", flush=True)
        inputs.append((f"4K {args.uhd_seconds} s", make_4k_clip(media / f"uhd-{args.uhd_seconds}s.mp4", args.uhd_seconds),
                       float(args.uhd_seconds)))
    bin_dir = Path(sys.executable).parent
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp:
        for tool in tools:
            for name, path, seconds in inputs:
                out = Path(tmp) / f"{tool}-{path.stem}"
                if tool == "extract":
                    cmd = [str(bin_dir / "hcl-extract"), str(path), "-o", str(out), "--no-progress"]
                else:
                    cmd = [str(bin_dir / "hcl-annotate"), str(path), "-o", str(out), "-q", "--device", "cpu"]
                print(f"{tool:9s} {name:10s} ...", end=" ", flush=True)
                r = peak_rss(cmd, log=Path(tmp) / f"{tool}-{path.stem}.log")
                if r["rc"] != 0:
                    r["log_tail"] = (Path(tmp) / f"{tool}-{path.stem}.log").read_text()[-2000:]
                print(f"rc {r['rc']}, peak {r['peak_mb']:.0f} MB, {r['wall_s']:.0f} s", flush=True)
                rows.append({"tool": f"hcl-{tool}", "input": name, "file": path.name, "seconds": seconds,
                             "bytes": path.stat().st_size, **r})
    # growth against length: (peak(long) - peak(short)) per minute of input, per tool, wav inputs
    growth = {}
    for tool in tools:
        wavs = sorted((r for r in rows if r["tool"] == f"hcl-{tool}" and r["input"].startswith("wav") and r["rc"] == 0),
                      key=lambda r: r["seconds"])
        if len(wavs) >= 2:
            a, b = wavs[0], wavs[-1]
            growth[f"hcl-{tool}"] = {
                "mb_per_minute": round((b["peak_mb"] - a["peak_mb"]) / ((b["seconds"] - a["seconds"]) / 60), 3),
                "ratio_long_to_short": round(b["peak_mb"] / a["peak_mb"], 3),
            }
    print()
    print(f"{'command':14s} {'input':11s} {'peak MB':>8s} {'wall s':>7s} {'rc':>3s}  under {args.limit_mb:.0f} MB")
    for r in rows:
        ok = "yes" if r["rc"] == 0 and r["peak_mb"] < args.limit_mb else "NO"
        print(f"{r['tool']:14s} {r['input']:11s} {r['peak_mb']:8.0f} {r['wall_s']:7.0f} {r['rc']:3d}  {ok}")
    for tool, g in growth.items():
        print(f"{tool}: {g['mb_per_minute']:+.2f} MB per minute of input; peak ratio 1 h / 10 min = {g['ratio_long_to_short']:.2f}")
    result = {
        "bench": "memory",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "limit_mb": args.limit_mb,
        "rows": rows,
        "growth": growth,
        "command": " ".join([Path(sys.executable).name, "bench/memory_bench.py"] + (argv if argv is not None else sys.argv[1:])),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["rc"] == 0 and r["peak_mb"] < args.limit_mb for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
