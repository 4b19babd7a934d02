"""Readouts cost: per-face readouts per frame for 1, 2 and 4 faces, and voice readouts per window.

    .venv/bin/python bench/readouts_bench.py [--frames 40] [--pause-pids /work/notes/training.pids]
                                             [--out bench/results/readouts.json]

On one thread (torch and OpenMP set to 1 before anything loads; mediapipe's own
threads are what they are: process CPU time is reported beside wall time so that any
parallelism shows) it measures, per analysed frame of 640x480 holding N real faces
(crops of the astronaut photograph, N = 1, 2, 4):

  landmarker   FaceFeatureExtractor.faces (mediapipe FaceLandmarker, IMAGE mode, num_faces=4):
               the call the live face path already makes (frame() = faces() + the speaker's features)
  readouts     FaceReadouts.step: tracker + blendshape readouts + head movement (numpy)
  fer          FerClassifier.classify: FER2013 crops + the torch mini-Xception, all faces of the frame
  total        the three together; at the 10 fps analysis rate, ms per frame x 10 = ms of CPU per second

and voice_readouts on 4 s windows (the live window: 8 steps of 0.5 s) and 1 s windows of
espeak-ng speech, with words every 0.3 s. Medians and p95 over the frames/windows.

--pause-pids FILE: SIGSTOP the running processes listed in FILE (one PID a line: the background
trainings) for the run and SIGCONT them afterwards, also on errors; ones already stopped are
left alone (not resumed); the JSON says which were paused.
Prints a table and writes JSON.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / torch load their thread pools

import argparse
import json
import platform
import signal
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)), "n": int(len(a))}


def timed(fn):
    """(result, wall ms, process CPU ms) of fn()."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, 1000 * (time.perf_counter() - w), 1000 * (time.process_time() - c)


def faces_frame(n: int) -> np.ndarray:
    """640x480 with n astronaut faces (1: centred; 2: side by side; 4: a 2x2 grid), some mirrored."""
    from multiface_fixtures import astronaut_face

    canvas = np.full((480, 640, 3), 40, np.uint8)
    if n == 1:
        canvas[60:420, 170:470] = astronaut_face(360, 300)
    elif n == 2:
        canvas[80:380, 30:280] = astronaut_face(300, 250)
        canvas[80:380, 360:610] = astronaut_face(300, 250, mirror=True)
    elif n == 4:
        for k, (y, x) in enumerate([(10, 40), (10, 360), (250, 40), (250, 360)]):
            canvas[y : y + 220, x : x + 190] = astronaut_face(220, 190, mirror=bool(k % 2))
    else:
        raise ValueError(n)
    return canvas


def bench_faces(n_faces: int, frames: int, extractor, fer) -> dict:
    from hcl.features.readouts import FaceReadouts

    rgb = faces_frame(n_faces)
    readouts = FaceReadouts()
    for k in range(5):  # warm-up
        faces = extractor.faces(rgb, k * 100)
        readouts.step(faces, k / 10)
        fer.classify(rgb, [f.box for f in faces])
    rows = {k: {"wall": [], "cpu": []} for k in ("landmarker", "readouts", "fer", "total")}
    found = []
    for k in range(frames):
        t = 1.0 + k / 10
        faces, w1, c1 = timed(lambda: extractor.faces(rgb, int(t * 1000)))
        frame, w2, c2 = timed(lambda: readouts.step(faces, t))
        _, w3, c3 = timed(lambda: fer.classify(rgb, [f.box for f in faces]))
        found.append(len(faces))
        for key, w, c in (("landmarker", w1, c1), ("readouts", w2, c2), ("fer", w3, c3), ("total", w1 + w2 + w3, c1 + c2 + c3)):
            rows[key]["wall"].append(w)
            rows[key]["cpu"].append(c)
    ids = sorted(f.face_id for f in frame.faces)
    return {
        "faces_planted": n_faces,
        "faces_found_median": float(np.median(found)),
        "ids_last_frame": ids,
        **{key: {"wall_ms": stats(v["wall"]), "cpu_ms": stats(v["cpu"])} for key, v in rows.items()},
        "fer_ms_per_face": float(np.median(rows["fer"]["wall"])) / max(1.0, float(np.median(found))),
        "fer_cpu_ms_per_face": float(np.median(rows["fer"]["cpu"])) / max(1.0, float(np.median(found))),
    }


def bench_voice(window_s: float, windows: int) -> dict:
    from hcl.features.readouts import voice_readouts
    from media_fixtures import espeak_available, speak

    if espeak_available():
        wave = speak("I really love this wonderful movie. The music is beautiful, and the story kept me going.")
        source = "espeak-ng speech"
    else:  # pragma: no cover - a machine without espeak-ng
        from media_fixtures import tone

        wave, source = tone(180, 6.0), "a 180 Hz tone (espeak-ng missing)"
    sr = 16000
    reps = int(np.ceil((windows * 0.5 + window_s) * sr / len(wave))) + 1
    long = np.tile(wave, reps)
    words = [{"start": s, "end": s + 0.22} for s in np.arange(0, len(long) / sr, 0.3)]
    for k in range(3):
        voice_readouts(long, words, k * 0.5, k * 0.5 + window_s, wave_start=0.0)
    wall, cpu = [], []
    for k in range(windows):
        t0 = 0.5 * k  # windows slide by one 0.5 s step, as the live windows do
        _, w, c = timed(lambda: voice_readouts(long, words, t0, t0 + window_s, wave_start=0.0))
        wall.append(w)
        cpu.append(c)
    return {"window_s": window_s, "audio": source, "wall_ms": stats(wall), "cpu_ms": stats(cpu),
            "cpu_share_at_one_window_per_0.5s": float(np.median(cpu)) / 500.0}


def running_pids(path: Path) -> list[int]:
    """The PIDs listed in `path` that are running now. One already stopped (someone else paused
    it) is left alone: this run must not resume what it did not stop."""
    pids = []
    for line in path.read_text().split():
        try:
            pid = int(line)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ValueError, OSError, IndexError):
            continue  # not a number, or gone already
        if state not in ("T", "t"):
            pids.append(pid)
    return pids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=40, help="frames timed per face count")
    p.add_argument("--windows", type=int, default=40, help="voice windows timed per window length")
    p.add_argument("--pause-pids", type=Path, help="file of PIDs to SIGSTOP during the run (SIGCONT after)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "readouts.json"))
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from hcl.features.face import FaceFeatureExtractor
    from hcl.features.fer import FerClassifier

    paused = running_pids(args.pause_pids) if args.pause_pids and args.pause_pids.exists() else []
    for pid in paused:
        os.kill(pid, signal.SIGSTOP)
    try:
        load_before = os.getloadavg()
        extractor = FaceFeatureExtractor()
        fer = FerClassifier()
        faces = {n: bench_faces(n, args.frames, extractor, fer) for n in (1, 2, 4)}
        voice = {f"{w:g}s": bench_voice(w, args.windows) for w in (4.0, 1.0)}
        extractor.close()
        load_after = os.getloadavg()
    finally:
        for pid in paused:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass

    print(f"Per-face readouts per analysed frame (640x480, mediapipe IMAGE mode, torch 1 thread); wall ms median / p95 [CPU ms median]")
    print(f"{'faces':>5} {'found':>5} {'landmarker':>18} {'readouts':>16} {'fer (all faces)':>18} {'total':>18} {'fer/face wall [CPU]':>20}")
    for n, r in faces.items():
        def cell(key):
            x = r[key]
            return f"{x['wall_ms']['median']:6.2f}/{x['wall_ms']['p95']:6.2f} [{x['cpu_ms']['median']:5.1f}]"
        print(f"{n:>5} {r['faces_found_median']:>5.0f} {cell('landmarker'):>18} {cell('readouts'):>16} {cell('fer'):>18} {cell('total'):>18} {r['fer_ms_per_face']:12.2f} [{r['fer_cpu_ms_per_face']:4.1f}]")
    print("\nVoice readouts per window (numpy, one thread); windows slide by 0.5 s")
    print(f"{'window':>6} {'wall ms med':>11} {'p95':>7} {'CPU ms':>7} {'CPU share at 2 windows/s':>25}")
    for key, r in voice.items():
        print(f"{key:>6} {r['wall_ms']['median']:11.2f} {r['wall_ms']['p95']:7.2f} {r['cpu_ms']['median']:7.2f} {100 * r['cpu_share_at_one_window_per_0.5s']:24.1f}%")
    print(f"\nload average before/after: {load_before[0]:.2f} / {load_after[0]:.2f}; paused PIDs: {paused or 'none'}")

    result = {
        "faces": faces,
        "voice": voice,
        "paused_pids": paused,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch_threads": torch.get_num_threads()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
