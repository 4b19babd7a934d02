"""Feature-extractor speed: can audio + face + speech keep up with a live 30 fps camera and 16 kHz mic?

    .venv/bin/python bench/features_bench.py [--repeats 3] [--out bench/results/features.json]

Measures, on the real MOSI clip (480x360, 30 fps, 7.5 s of speech):
  media    decoding: read_media (audio) and frames at 10 fps, per second of video
  audio    AudioFeatureExtractor per 0.5 s step: offline (one call for a 60 s signal) and live
           (one call per step), 1 torch thread, CPU and CUDA when present
  face     FaceFeatureExtractor frames/s, IMAGE mode (offline, deterministic) and VIDEO mode (tracking)
  speech   faster-whisper tiny.en real-time factor (compute seconds / audio seconds), beam 5 and 1
and then the CPU-seconds needed per second of live signal (the larger of wall and process CPU
time per stage), against the cores of this machine. Other jobs on the machine inflate wall
times; the JSON records the load average.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MOSI_CLIP = ROOT.parent / "shared" / "data" / "mosi" / "raw" / "Oz06ZWiO20M_6.mp4"
ANCHORS = {
    "py-feat MediaPipe (1 CPU thread)": "~5 fps",
    "OpenFace 2.0 (laptop)": "~20 fps",
}


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_media(path: Path, repeats: int) -> dict:
    from hcl.features.media import read_media

    clip = read_media(path)
    t_audio = best_of(lambda: read_media(path), repeats)
    t_frames = best_of(lambda: sum(1 for _ in clip.frames(10.0)), repeats)
    return {
        "clip_seconds": clip.duration,
        "read_audio_ms_per_s": 1000 * t_audio / clip.duration,
        "frames_10fps_ms_per_s": 1000 * t_frames / clip.duration,
    }


def bench_audio(device: str, repeats: int, clip_audio: np.ndarray) -> dict:
    import torch

    from hcl.features.audio import AudioFeatureExtractor

    ex = AudioFeatureExtractor(device=device)
    long = np.tile(clip_audio, int(np.ceil(60 * 16000 / len(clip_audio))))[: 60 * 16000]
    ex.steps(long, 0.5)  # warm-up (CUDA kernels, caches)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def offline():
        ex.steps(long, 0.5)
        sync()

    steps = [clip_audio[i : i + 8000] for i in range(0, len(clip_audio) - 8000, 8000)]

    def live():
        for s in steps:
            ex.steps(s, 0.5)
        sync()

    t_off = best_of(offline, repeats)
    t_live = best_of(live, repeats)
    return {
        "device": device,
        "offline_ms_per_step": 1000 * t_off / 120,
        "live_ms_per_step": 1000 * t_live / len(steps),
    }


def bench_pitch(repeats: int) -> dict:
    """Our vectorised YIN against torchaudio.functional.detect_pitch_frequency: error on tones, speed."""
    import torch
    import torchaudio.functional as AF

    from hcl.features.audio import AudioFeatureExtractor

    ex = AudioFeatureExtractor()
    sr = 16000
    out: dict = {"yin": {"error_pct": {}}, "torchaudio": {"error_pct": {}}}
    for f in (110.0, 220.0, 330.0):
        wave = torch.tensor(0.3 * np.sin(2 * np.pi * f * np.arange(2 * sr) / sr), dtype=torch.float32)
        ta = AF.detect_pitch_frequency(wave, sr, frame_time=0.01, freq_low=60, freq_high=500).median().item()
        f0, voiced = ex.frame_pitch(wave.numpy())
        out["torchaudio"]["error_pct"][str(int(f))] = 100 * abs(ta / f - 1)
        out["yin"]["error_pct"][str(int(f))] = 100 * abs(float(np.median(f0[voiced])) / f - 1)
    noise = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, 60 * sr).astype(np.float32))
    out["torchaudio"]["ms_per_s"] = 1000 * best_of(
        lambda: AF.detect_pitch_frequency(noise, sr, frame_time=0.01, freq_low=60, freq_high=500), repeats) / 60
    out["yin"]["ms_per_s"] = 1000 * best_of(lambda: ex._pitch(noise, 6000), repeats) / 60
    return out


def bench_face(frames: list[np.ndarray], repeats: int) -> dict:
    from hcl.features.face import FaceFeatureExtractor

    out = {}
    for mode in ("image", "video"):
        with FaceFeatureExtractor(running_mode=mode) as ex:
            ex.frame(frames[0], 0)
            clock = [1000]

            def run():
                for f in frames:
                    clock[0] += 33
                    ex.frame(f, clock[0])

            c0 = time.process_time()
            t = best_of(run, repeats)
            cpu = (time.process_time() - c0) / repeats  # all threads of this process
            found = sum(ex.frame(f, clock[0] + 33 * (i + 1)) is not None for i, f in enumerate(frames[:10]))
        out[mode] = {
            "ms_per_frame": 1000 * t / len(frames),
            "cpu_ms_per_frame": 1000 * cpu / len(frames),
            "fps": len(frames) / t,
            "faces_in_first_10": found,
        }
    return out


def bench_speech(audio: np.ndarray, threads: int) -> dict:
    from dataclasses import replace

    from hcl.features.config import SpeechConfig
    from hcl.features.speech import SpeechTranscriber

    out = {}
    for beam in (5, 1):
        tr = SpeechTranscriber(config=replace(SpeechConfig(), beam_size=beam), cpu_threads=threads)
        t0 = time.perf_counter()
        tr.model
        load = time.perf_counter() - t0
        tr.transcribe(audio[:16000 * 2])  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        words = tr.transcribe(audio)
        t, cpu = time.perf_counter() - t0, time.process_time() - c0
        seconds = len(audio) / 16000
        out[f"beam{beam}"] = {"rtf": t / seconds, "cpu_rtf": cpu / seconds, "load_s": load, "words": len(words)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", default=str(MOSI_CLIP), help="video with a face and speech")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--whisper-threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "features.json"))
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from hcl.features.config import FeatureSettings
    from hcl.features.media import read_media

    settings = FeatureSettings()
    clip = read_media(args.clip)
    frames = [f for _, f in clip.frames(30.0)][:90]

    res: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_avg_1min": os.getloadavg()[0],
        },
        "clip": str(args.clip),
        "frame_size": list(frames[0].shape),
    }
    res["media"] = bench_media(Path(args.clip), args.repeats)
    res["audio"] = [bench_audio("cpu", args.repeats, clip.audio)]
    if torch.cuda.is_available():
        res["audio"].append(bench_audio("cuda", args.repeats, clip.audio))
    res["pitch"] = bench_pitch(args.repeats)
    res["face"] = bench_face(frames, max(1, args.repeats - 1))
    res["speech"] = bench_speech(clip.audio, args.whisper_threads)

    # CPU-seconds per second of live signal
    steps_per_s = 1 / settings.step_seconds
    audio_s = res["audio"][0]["live_ms_per_step"] * steps_per_s / 1000
    face_ms = max(res["face"]["video"]["ms_per_frame"], res["face"]["video"]["cpu_ms_per_frame"])
    speech_s = max(res["speech"]["beam5"]["rtf"], res["speech"]["beam5"]["cpu_rtf"])
    decode_s = res["media"]["frames_10fps_ms_per_s"] / 1000 * 3  # file replay: 30 fps to RGB (an upper bound)
    cores = os.cpu_count() or 1
    budget = {}
    for name, fps in (("face at 10 fps (configured)", settings.face.frames_per_second), ("face at all 30 fps", 30.0)):
        face_s = face_ms * fps / 1000
        total = audio_s + face_s + speech_s + decode_s
        budget[name] = {
            "audio": audio_s, "face": face_s, "speech": speech_s, "frames": decode_s, "total": total,
            "cores": cores, "keeps_up": bool(total < 0.8 * cores and face_s < 1 and speech_s < 1),
        }
    res["live_budget_cpu_s_per_s"] = budget
    res["anchors"] = ANCHORS

    print(f"\nFeature extractors on {cores} CPU cores (load avg {res['machine']['load_avg_1min']:.1f}), "
          f"clip {Path(args.clip).name} {frames[0].shape[1]}x{frames[0].shape[0]}")
    print(f"{'stage':<42}{'measure':>26}")
    print("-" * 68)
    m = res["media"]
    print(f"{'decode audio (read_media)':<42}{m['read_audio_ms_per_s']:>19.1f} ms/s")
    print(f"{'decode frames at 10 fps':<42}{m['frames_10fps_ms_per_s']:>19.1f} ms/s")
    for a in res["audio"]:
        print(f"{'audio features, offline (' + a['device'] + ')':<42}{a['offline_ms_per_step']:>16.2f} ms/step")
        print(f"{'audio features, live per step (' + a['device'] + ')':<42}{a['live_ms_per_step']:>16.2f} ms/step")
    for name, pm in res["pitch"].items():
        errs = ", ".join(f"{k} Hz {v:.1f}%" for k, v in pm["error_pct"].items())
        print(f"{'pitch ' + name + ': ' + errs:<50}{pm['ms_per_s']:>11.1f} ms/s")
    for mode, f in res["face"].items():
        print(f"{'face, ' + mode + ' mode':<42}{f['fps']:>9.1f} fps ({f['ms_per_frame']:.0f} ms, {f['cpu_ms_per_frame']:.0f} CPU-ms)")
    for name, anchor in ANCHORS.items():
        print(f"{'  anchor: ' + name:<42}{anchor:>26}")
    for beam, s in res["speech"].items():
        print(f"{'Whisper tiny.en ' + beam + f' ({args.whisper_threads} threads)':<42}{'RTF ' + format(s['rtf'], '.2f') + ' (CPU ' + format(s['cpu_rtf'], '.2f') + ')':>26}")
    print("-" * 68)
    for name, b in budget.items():
        verdict = "keeps up" if b["keeps_up"] else "falls behind"
        print(f"live, {name:<36}{b['total']:>12.2f} CPU-s per s of signal -> {verdict} on {cores} cores")
        print(f"      audio {b['audio']:.3f} + face {b['face']:.3f} + speech {b['speech']:.3f} + frames {b['frames']:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
