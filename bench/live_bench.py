"""Live benchmark: a file source at real-time pace through the whole live path and the
real server on 127.0.0.1, measured from a websocket client.

    python bench/live_bench.py [--file PATH] [--checkpoint PATH] [--strict] [--repeat N]
    python bench/live_bench.py --reaction [--beam N] [--set KEY=VALUE ...] [--out PATH]
    python bench/live_bench.py --reaction --levers [--out PATH]
    python bench/live_bench.py --reaction --asr whisper,moonshine [--out PATH]

Default table: end-to-end latency (window end on the session clock -> message
received by the client) p50/p95, per-stage latencies, CPU use, dropped windows,
transcript lag, and the scorer's step time (on CUDA also with CUDA-graph replay);
writes bench/results/live.json.

`--reaction` table (bench/results/reaction.json): a generated clip of signed and
neutral espeak-ng sentences over a real face (sentence times known from how the
clip was made) played at real-time pace through the whole live path, faces on:
reaction time (end of a signed sentence's last word -> first window message in its
polarity band, i.e. |score| >= 0.5 with its sign), release time (start of a
neutral sentence after a signed one -> score back in the neutral band |score| <
0.5), transcript lag, word error rate of the live transcript on the generated
speech and on the two real MOSI clips in ../shared/data/mosi/raw, the in-pipeline
scoring step and the HCL forward at batch 1 on CPU. It also counts window revisions
(a window sent again when its words commit) and provisional messages, and gives the
word lag as shown (a word's end -> the first message showing it, provisional or not)
beside the transcript lag (-> its commit).

`--levers` runs the reaction clip back to back with the revision levers off
(`rescore_on_commit=false`), with re-scoring on commit (the live default), and with
re-scoring plus provisional words, and writes the three results and a comparison
table to bench/results/reaction_levers.json.

`--asr whisper,moonshine` runs the reaction clip (and the MOSI clips) once per speech
engine, back to back on the same scorer, and prints them side by side (WER, lag,
reaction, pass time); bench/results/reaction_asr.json.
"""

from __future__ import annotations

import argparse
import dataclasses
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
sys.path.insert(0, str(ROOT / "tests"))

from transcript_scoring import normalise_words, wer  # noqa: E402


def pct(values, q):
    from realtime.core.component import percentile

    v = percentile(values, q)
    return None if v is None else round(v, 3)


def make_clip(directory: pathlib.Path, repeat: int) -> pathlib.Path:
    from realtime.sources.demo import NEGATIVE, POSITIVE
    from realtime.sources.demo import make_clip as make

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


def scorer_step_times(checkpoint, device: str, graphs: bool, n: int = 200) -> dict:
    import numpy as np
    import torch

    from realtime.pipeline.scorer import WindowScorer
    from realtime.pipeline.windowing import Window

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


# ---------------------------------------------------------------- reaction table
# (sign, sentence): every signed sentence follows a neutral one or one of the other
# sign, so its flip is its own; five neutral sentences follow a signed one (release).
REACTION_SENTENCES = (
    (1, "I absolutely love this, it is wonderful and makes me so happy."),
    (-1, "This is terrible, I hate it, it is the worst thing ever."),
    (0, "The train leaves the station early in the morning."),
    (1, "What a fantastic film, I enjoyed every single minute of it."),
    (0, "The report has a few pages and a table at the end."),
    (-1, "The food was awful and the service was rude and disappointing."),
    (1, "She did a brilliant job and I am really proud of her."),
    (0, "We moved the chairs into the other room on Monday."),
    (-1, "I am so angry and sad, this was a horrible waste of time."),
    (0, "The box is on the shelf next to the window."),
    (1, "This is the best day, everything went perfectly and I feel great."),
    (-1, "It was boring and stupid, I really regret buying it."),
    (0, "The bus stops at the corner of the street."),
    (1, "Thank you so much, this is amazing and beautiful."),
)
# pause after each sentence (0.5 to 2.5 s), the last one is the tail
REACTION_GAPS = (1.5, 0.5, 2.0, 1.0, 2.5, 0.5, 1.5, 2.0, 1.0, 0.5, 2.5, 1.0, 1.5, 4.0)
MOSI_CLIPS = (("03bSnISJMiM", 1, "03bSnISJMiM_1.wav"), ("Oz06ZWiO20M", 6, "Oz06ZWiO20M_6.mp4"))
SHARED_DATA = ROOT.parent / "shared" / "data"


def speech_span(wave, rate: int, *, threshold: float = 0.02) -> tuple[float, float]:
    """(first, last) second where |wave| exceeds `threshold` (espeak-ng pads a little silence)."""
    import numpy as np

    loud = np.flatnonzero(np.abs(wave) > threshold)
    if not len(loud):
        return 0.0, 0.0
    return loud[0] / rate, (loud[-1] + 1) / rate


def make_reaction_clip(directory: pathlib.Path) -> tuple[pathlib.Path, list[dict]]:
    """The reaction clip: REACTION_SENTENCES (espeak-ng) over the astronaut's face, with
    REACTION_GAPS between them; returns the path and each sentence's sign, text and the
    start of its first / end of its last word (from the samples written)."""
    import numpy as np

    from hcl.features.media import write_media
    from realtime.sources.demo import SAMPLE_RATE, face_image, speak

    lead, fps = 0.5, 15
    parts = [np.zeros(int(lead * SAMPLE_RATE), np.float32)]
    t = lead
    sentences = []
    for (sign, text), gap in zip(REACTION_SENTENCES, REACTION_GAPS):
        speech = speak(text)
        a, b = speech_span(speech, SAMPLE_RATE)
        sentences.append({"sign": sign, "text": text, "start": round(t + a, 3), "end": round(t + b, 3)})
        parts += [speech, np.zeros(int(gap * SAMPLE_RATE), np.float32)]
        t += len(speech) / SAMPLE_RATE + gap
    audio = np.concatenate(parts)
    path = directory / "reaction.mp4"
    write_media(path, [face_image(320)] * int(np.ceil(len(audio) / SAMPLE_RATE * fps)), audio, fps=fps, crf=30)
    return path, sentences


def mosi_text(video_id: str, clip_id: int) -> str:
    import csv

    with open(SHARED_DATA / "mosi" / "label.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["video_id"] == video_id and int(row["clip_id"]) == clip_id:
                return row["text"]
    raise KeyError(f"{video_id}_{clip_id} is not in {SHARED_DATA / 'mosi' / 'label.csv'}")


def parse_settings(pairs) -> dict:
    """--set key=value pairs for PipelineOptions, `speech.key=value` for its SpeechOptions
    (values parsed as JSON when they parse)."""
    out: dict = {}
    for pair in pairs or []:
        key, _, value = pair.partition("=")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        group, _, name = key.rpartition(".")
        (out.setdefault(group, {}) if group else out)[name] = parsed
    return out


def with_settings(options, changes: dict):
    """`options` with the parsed --set changes (nested dataclasses replaced field by field)."""
    nested = {k: dataclasses.replace(getattr(options, k), **v) for k, v in changes.items() if isinstance(v, dict)}
    return dataclasses.replace(options, **{k: v for k, v in changes.items() if not isinstance(v, dict)}, **nested)


def run_live(path: pathlib.Path, scorer, options) -> dict:
    """Play `path` at real-time pace through the live pipeline and the real server; a
    websocket client timestamps every window message on the session clock."""
    from websockets.sync.client import connect

    from realtime.pipeline.live import LivePipeline, new_session_id, session_hello
    from realtime.sources.file import FileSource
    from realtime.web.server import DashboardServer

    source = FileSource(path=path, policy=options.policy, fps=scorer.features.face.frames_per_second)
    session_id = new_session_id()
    pipeline = None  # made after the server it publishes to
    server = DashboardServer(host="127.0.0.1", port=0, hello=session_hello(session_id=session_id, scorer=scorer),
                             metrics=lambda: pipeline.metrics() if pipeline is not None else {})
    server.start()
    words: list = []  # every committed word (the transcript itself keeps only recent ones)
    pipeline = LivePipeline(source=source, scorer=scorer, options=options, session_id=session_id,
                            publish=server.publish, on_words=words.extend)
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
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    metrics = pipeline.metrics()
    ws.close()
    pipeline.stop()
    pipeline.join()
    server.stop()
    server.join(10)
    return {"received": received, "words": sorted(words, key=lambda w: w.start), "pipeline": pipeline, "metrics": metrics,
            "cpu": cpu, "wall": wall, "duration": source.duration or 0.0,
            "dropped_frames": source.frames.dropped if source.frames is not None else 0}


def reaction_times(sentences: list[dict], received: list[tuple[float, dict]]) -> tuple[list[dict], list[dict]]:
    """Per signed sentence: first message (after its start, before the next sentence ends)
    in its polarity band, minus the end of its last word. Per neutral sentence after a
    signed one: when the score is back in the neutral band, minus its start (0 when the
    last message before its start was neutral already)."""
    reactions, releases = [], []
    for i, s in enumerate(sentences):
        deadline = sentences[i + 1]["end"] if i + 1 < len(sentences) else float("inf")
        after = [(t, m) for t, m in received if s["start"] <= t <= deadline]
        if s["sign"]:
            band = "positive" if s["sign"] > 0 else "negative"
            hit = next(((t, m) for t, m in after if m["polarity"] == band), None)
            reactions.append({"text": s["text"], "sign": s["sign"], "end": s["end"],
                              "reaction_s": None if hit is None else round(hit[0] - s["end"], 3),
                              "by_provisional": None if hit is None else bool(hit[1].get("provisional"))})
        elif i and sentences[i - 1]["sign"]:
            before = [m for t, m in received if t < s["start"]]
            if before and before[-1]["polarity"] == "neutral":
                release = 0.0
            else:
                hit = next((t for t, m in after if m["polarity"] == "neutral"), None)
                release = None if hit is None else round(hit - s["start"], 3)
            releases.append({"text": s["text"], "after_sign": sentences[i - 1]["sign"], "start": s["start"], "release_s": release})
    return reactions, releases


def shown_word_lags(words, received: list[tuple[float, dict]], *, tolerance: float = 0.25) -> list[float]:
    """Per committed word: the first received message showing it (same normalised text,
    start within `tolerance` s; provisional or committed) minus the word's end."""
    import re

    def norm(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    seen: dict[str, list[tuple[float, float]]] = {}  # text -> [(start, first shown)]
    for t, m in received:
        for w in m["words"]:
            spots = seen.setdefault(norm(w["w"]), [])
            if not any(abs(a - w["start"]) <= tolerance for a, _ in spots):
                spots.append((w["start"], t))
    out = []
    for w in words:
        hits = [t for a, t in seen.get(norm(w.text), ()) if abs(a - w.start) <= tolerance]
        if hits:
            out.append(min(hits) - w.end)
    return out


def revision_leads(received: list[tuple[float, dict]]) -> dict:
    """What the revisions bought: for each revision that changed the polarity band shown,
    how long before the next window's first message it came (the time the page showed
    the new band earlier than it would have without revisions)."""
    leads = []
    shown = None
    for i, (t, m) in enumerate(received):
        if m.get("revision") and shown is not None and m["polarity"] != shown:
            nxt = next((u for u, n in received[i + 1:] if n["seq"] > m["seq"]), None)
            if nxt is not None:
                leads.append(nxt - t)
        shown = m["polarity"]
    return {**summary(leads), "band_changes_by_revision": len(leads)}


def forward_times(scorer, n: int = 300) -> dict:
    """The scorer's forward pass at batch 1 on its input buffers (the path `score` takes)."""
    import numpy as np

    from realtime.pipeline.windowing import Window

    rng = np.random.default_rng(0)
    w = Window(0, 0, 4, rng.normal(size=(8, scorer.config.audio_dim)).astype(np.float32), np.ones(8, bool),
               rng.uniform(size=(8, scorer.config.video_dim)).astype(np.float32), np.ones(8, bool), [],
               "i really love this it is great", {})
    scorer.score(w)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        scorer._forward(1)
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95), "n": n}


def summary(values) -> dict:
    vals = [v for v in values if v is not None]
    return {"p50": pct(vals, 50), "p95": pct(vals, 95), "max": round(max(vals), 3) if vals else None, "n": len(vals)}


def reaction_main(args, checkpoint, model_note) -> int:
    from realtime.core.component import Policy
    from realtime.pipeline.live import PipelineOptions
    from realtime.pipeline.scorer import WindowScorer

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="reaction-bench-"))
    clip, sentences = make_reaction_clip(tmp)
    scorer = WindowScorer(checkpoint=checkpoint, device="cpu")
    scorer.warm_up()
    changes = parse_settings(args.set)
    if args.beam:
        changes.setdefault("speech", {})["beam_size"] = args.beam
    options = with_settings(PipelineOptions(policy=Policy.LIVE), changes)
    # the model's own judgement of the clean sentences (an upper bound for the live run)
    clean = [scorer.score(_text_window(scorer, s["text"])).score for s in sentences]
    if args.levers:
        return levers_main(args, scorer, checkpoint, model_note, clip, sentences, clean, options)
    if args.asr:
        return engines_main(args, scorer, checkpoint, model_note, clip, sentences, clean, options)
    result = measure_reaction(scorer, checkpoint, model_note, clip, sentences, clean, options)
    out = write_result(result, args.out, "reaction.json")
    print(reaction_table(result))
    print(f"\nwritten to {out}")
    return 0


def engines_main(args, scorer, checkpoint, model_note, clip, sentences, clean, options) -> int:
    """The reaction clip once per speech engine (--asr), back to back on the same scorer."""
    runs = {}
    for engine in [e.strip() for e in args.asr.split(",") if e.strip()]:
        print(f"--- engine {engine} (load average {os.getloadavg()[0]:.1f})", flush=True)
        runs[engine] = measure_reaction(scorer, checkpoint, model_note, clip, sentences, clean,
                                        dataclasses.replace(options, speech=dataclasses.replace(options.speech, engine=engine)))
        runs[engine]["annotate"] = annotate_wer(scorer, clip, sentences, engine)
        runs[engine]["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
        print(reaction_table(runs[engine]), flush=True)
        print(f"hcl-annotate --asr {engine}: {runs[engine]['annotate']}", flush=True)
    result = {"command": " ".join(["python", "bench/live_bench.py", *sys.argv[1:]]), "engines": runs}
    out = write_result(result, args.out, "reaction_asr.json")
    print()
    print(engines_table(runs))
    print(f"\nwritten to {out}")
    return 0


def annotate_wer(scorer, clip, sentences, engine: str) -> dict:
    """hcl-annotate's path (`annotate(asr=engine)`) over the same clip: WER of the
    recorded transcript, and word trigrams heard more often than the sentences say them
    (a phrase committed twice)."""
    import collections

    from realtime.pipeline.build import annotate
    from realtime.recording import read_session

    out = pathlib.Path(tempfile.mkdtemp(prefix=f"annotate-{engine}-")) / "session"
    t0 = time.perf_counter()
    annotate(str(clip), str(out), scorer=scorer, progress=False, asr=engine)
    wall = time.perf_counter() - t0
    reference = " ".join(s["text"] for s in sentences)
    heard = " ".join(w["w"] for w in read_session(out).words)
    result = wer(reference, heard)

    def trigrams(words):
        return collections.Counter(tuple(words[i:i + 3]) for i in range(len(words) - 2))

    ref3, hyp3 = trigrams(normalise_words(reference)), trigrams(normalise_words(heard))
    result["repeated_trigrams"] = sum(max(0, n - ref3.get(t, 0)) for t, n in hyp3.items() if n > 1)
    result["wall_s"] = round(wall, 1)
    return result


def engines_table(runs: dict) -> str:
    """One row per engine: WER (generated, MOSI), lag, reaction, pass time."""
    head = ["engine", "WER generated %", *[f"WER {name} %" for _, _, name in MOSI_CLIPS], "lag p50 / p95 s",
            "reaction p50 / p95 s (never)", "pass p50 / p95 ms", "dropped windows", "hcl-annotate WER % (repeated trigrams)",
            "load 1m after"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for engine, r in runs.items():
        w = r["wer"]
        mosi = [("-" if w.get(name) is None else f"{w[name]['wer_percent']} ({w[name]['errors']}/{w[name]['reference_words']})")
                for _, _, name in MOSI_CLIPS]
        lag, rx, ps = r["transcript_lag_s"], r["reaction_s"], r["speech_pass_ms"] or {}
        lines.append(" | ".join([engine, f"{w['generated']['wer_percent']} ({w['generated']['errors']}/{w['generated']['reference_words']})",
                                 *mosi, f"{lag['p50']} / {lag['p95']}", f"{rx['p50']} / {rx['p95']} ({r['never_flipped']})",
                                 f"{ps.get('p50')} / {ps.get('p95')}", str(r.get("dropped_windows", "-")),
                                 (f"{r['annotate']['wer_percent']} ({r['annotate']['errors']}/{r['annotate']['reference_words']}; "
                                  f"{r['annotate']['repeated_trigrams']})") if r.get("annotate") else "-",
                                 str(r.get("load_avg_1m_after", "-"))]))
    return "\n".join(lines)


# the revision levers, each run back to back on the same clip: (name, PipelineOptions changes)
LEVERS = (
    ("off", {"rescore_on_commit": False, "provisional_words": False}),
    ("rescore", {"rescore_on_commit": True, "provisional_words": False}),
    ("rescore+provisional", {"rescore_on_commit": True, "provisional_words": True}),
)


def levers_main(args, scorer, checkpoint, model_note, clip, sentences, clean, options) -> int:
    """Each lever setting in turn, `args.rounds` times interleaved (off, rescore, both, off,
    ...), so that a shared machine's load falls on all of them alike; the MOSI clips (whose
    WER the levers cannot change: they change no commit) only in the first round."""
    rounds: list[dict] = []
    for k in range(max(1, args.rounds)):
        runs = {}
        for name, change in LEVERS:
            print(f"--- round {k + 1}: {name}", flush=True)
            runs[name] = measure_reaction(scorer, checkpoint, model_note, clip, sentences, clean,
                                          dataclasses.replace(options, **change), with_mosi=k == 0)
            print(reaction_table(runs[name]), flush=True)
        rounds.append(runs)
    result = {"levers": {k: v for k, v in LEVERS}, "rounds": rounds, "median": levers_median(rounds)}
    out = write_result(result, args.out, "reaction_levers.json")
    for k, runs in enumerate(rounds):
        print(f"\nround {k + 1}")
        print(levers_table(runs))
    print("\nmedian over rounds (per lever setting: the median of each run's figure)")
    print(json.dumps(result["median"], indent=1))
    print(f"\nwritten to {out}")
    return 0


def levers_median(rounds: list[dict]) -> dict:
    import statistics

    def med(values):
        vals = [v for v in values if v is not None]
        return round(statistics.median(vals), 3) if vals else None

    out = {}
    for name, _ in LEVERS:
        runs = [r[name] for r in rounds]
        out[name] = {
            "reaction_p50_s": med(r["reaction_s"]["p50"] for r in runs),
            "reaction_p95_s": med(r["reaction_s"]["p95"] for r in runs),
            "never_flipped": med(r["never_flipped"] for r in runs),
            "release_p95_s": med(r["release_s"]["p95"] for r in runs),
            "transcript_lag_p50_s": med(r["transcript_lag_s"]["p50"] for r in runs),
            "transcript_lag_p95_s": med(r["transcript_lag_s"]["p95"] for r in runs),
            "word_shown_lag_p50_s": med(r["shown_word_lag_s"]["p50"] for r in runs),
            "wer_generated_percent": med(r["wer"]["generated"]["wer_percent"] for r in runs),
            "messages_per_window": med(r["messages_received"] / max(1, r["windows"]) for r in runs),
            "cores_used": med(r["cores_used"] for r in runs),
            "skipped_passes": med(r["skipped_speech_passes"] for r in runs),
            "load_1m_start": [r["machine"]["load_avg_1m_at_start"] for r in runs],
        }
    return out


def levers_table(runs: dict) -> str:
    def t(d):
        return f"{d['p50']} / {d['p95']} / {d['max']}"

    cols = [
        ("reaction p50/p95/max s", lambda r: t(r["reaction_s"])),
        ("never flipped", lambda r: r["never_flipped"]),
        ("reaction, committed msgs only p50/p95 s", lambda r: t(r["reaction_committed_s"])),
        ("release p50/p95 s", lambda r: f"{r['release_s']['p50']} / {r['release_s']['p95']}"),
        ("transcript lag p50/p95 s", lambda r: f"{r['transcript_lag_s']['p50']} / {r['transcript_lag_s']['p95']}"),
        ("word shown lag p50/p95 s", lambda r: f"{r['shown_word_lag_s']['p50']} / {r['shown_word_lag_s']['p95']}"),
        ("WER gen / wav / mp4 %", lambda r: " / ".join(
            str((v or {}).get("wer_percent", "-")) for v in (r["wer"]["generated"], *(r["wer"].get(n) for _, _, n in MOSI_CLIPS)))),
        ("band changes by revision, lead p50 s", lambda r: f"{r['revision_lead_s']['band_changes_by_revision']}, "
                                                          f"{r['revision_lead_s']['p50']}"),
        ("messages / windows / revisions / provisional", lambda r: f"{r['messages_received']} / {r['windows']} / "
                                                                  f"{r['revisions']} / {r['provisional_messages']}"),
        ("scoring p50/p95 ms", lambda r: f"{r['scoring_in_pipeline_ms']['p50']} / {r['scoring_in_pipeline_ms']['p95']}"),
        ("cores used", lambda r: r["cores_used"]),
        ("dropped win / frames / skipped passes", lambda r: f"{r['dropped_windows']} / {r['dropped_frames']} / {r['skipped_speech_passes']}"),
        ("load 1m start / end", lambda r: f"{r['machine']['load_avg_1m_at_start']} / {r['machine']['load_avg_1m_at_end']}"),
    ]
    names = list(runs)
    width = max(len(c) for c, _ in cols)
    lines = [f"{'':<{width}}  " + " | ".join(f"{n:<22}" for n in names)]
    for c, get in cols:
        lines.append(f"{c:<{width}}  " + " | ".join(f"{get(runs[n])!s:<22}" for n in names))
    return "\n".join(lines)


def measure_reaction(scorer, checkpoint, model_note, clip, sentences, clean, options, *, with_mosi: bool = True) -> dict:
    import torch

    load0 = os.getloadavg()[0]
    run = run_live(clip, scorer, options)
    reactions, releases = reaction_times(sentences, run["received"])
    received = run["received"]
    lags = [w.committed_at - w.end for w in run["words"]]
    scoring = [m["latency_ms"]["scoring"] for _, m in received if not m.get("revision")]  # a window's first message
    generated_wer = wer(" ".join(s["text"] for s in sentences), " ".join(w.text for w in run["words"]))
    mosi = {}
    for video_id, clip_id, name in MOSI_CLIPS:
        path = SHARED_DATA / "mosi" / "raw" / name
        if not path.exists() or not with_mosi:
            mosi[name] = None
            continue
        r = run_live(path, scorer, options)
        mosi[name] = {**wer(mosi_text(video_id, clip_id), " ".join(w.text for w in r["words"])),
                      "lag_s": summary([w.committed_at - w.end for w in r["words"]])}
    flips = [r for r in reactions if r["reaction_s"] is not None]
    committed_reactions, _ = reaction_times(sentences, [(t, m) for t, m in received if not m.get("provisional")])
    scoring_stats = run["pipeline"].scoring.stats()
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(terse=True), "torch": torch.__version__,
                    "load_avg_1m_at_start": round(load0, 2), "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "model": model_note or str(checkpoint),
        "options": dataclasses.asdict(options),
        "whisper": _whisper_settings(run["pipeline"]),
        "clip": {"seconds": round(run["duration"], 2), "sentences": len(sentences),
                 "signed": sum(1 for s in sentences if s["sign"]), "gaps_s": list(REACTION_GAPS)},
        "reaction_s": summary(r["reaction_s"] for r in reactions),
        "never_flipped": len(reactions) - len(flips),
        # the same, counting only messages on committed words (what a recording keeps)
        "reaction_committed_s": summary(r["reaction_s"] for r in committed_reactions),
        "flipped_by_provisional": sum(1 for r in reactions if r["by_provisional"]),
        "release_s": summary(r["release_s"] for r in releases),
        "never_released": sum(1 for r in releases if r["release_s"] is None),
        "transcript_lag_s": summary(lags),
        "shown_word_lag_s": summary(shown_word_lags(run["words"], received)),
        "wer": {"generated": generated_wer, **mosi},
        "scoring_in_pipeline_ms": summary(scoring),
        "windows": run["pipeline"].scores.count,
        "messages_received": len(received),
        "revisions": scoring_stats.get("revisions", 0),
        "revision_lead_s": revision_leads(received),
        "provisional_messages": scoring_stats.get("provisional_messages", 0),
        "dropped_windows": run["pipeline"].queue.dropped,
        "dropped_frames": run["dropped_frames"],
        "skipped_speech_passes": run["metrics"].get("transcript", {}).get("skipped_passes"),
        "speech_pass_ms": run["metrics"].get("transcript", {}).get("pass_ms"),
        "cores_used": round(run["cpu"] / run["wall"], 2),
        "realtime_factor": round(run["wall"] / run["duration"], 3) if run["duration"] else None,
        "hcl_forward_b1_cpu_ms": forward_times(scorer),
        "sentences": [{**s, "clean_text_score": round(c, 3)} for s, c in zip(sentences, clean)],
        "reactions": reactions,
        "releases": releases,
        # every window message as the client saw it: [received (session s), seq, revision,
        # provisional, end, score, text (provisional words in brackets)]
        "timeline": [[round(t, 3), m["seq"], m.get("revision", 0), m.get("provisional", False), m["end"], m["score"],
                      " ".join(f"[{w['w']}]" if w.get("provisional") else w["w"] for w in m["words"])] for t, m in received],
    }
    return result


def _whisper_settings(pipeline) -> dict | None:
    t = pipeline.transcriber
    if t is None:
        return None
    return {"engine": getattr(t, "name", "whisper"), "beam_size": t.config.beam_size, "fit_encoder": getattr(t, "fit_encoder", False),
            "temperature_fallback": getattr(t, "temperature_fallback", True)}


def _text_window(scorer, text: str):
    import numpy as np

    from realtime.pipeline.windowing import Window

    s = scorer.features
    return Window(0, 0.0, 4.0, np.zeros((s.window_steps, scorer.config.audio_dim), np.float32), np.zeros(s.window_steps, bool),
                  np.zeros((s.window_steps, scorer.config.video_dim), np.float32), np.zeros(s.window_steps, bool), [],
                  " ".join(normalise_words(text)), {})


def reaction_table(r: dict) -> str:
    def f(d, unit=" s"):
        return f"{d['p50']} / {d['p95']} / {d['max']}{unit} (n={d['n']})"

    w = r["wer"]
    rows = [
        ("clip", f"{r['clip']['seconds']} s, {r['clip']['sentences']} sentences ({r['clip']['signed']} signed), pauses 0.5-2.5 s"),
        ("Whisper (live passes)", r["whisper"]),
        ("reaction p50 / p95 / max", f(r["reaction_s"])),
        ("signed sentences never flipped", r["never_flipped"]),
        ("release p50 / p95 / max", f(r["release_s"])),
        ("neutral sentences never released", r["never_released"]),
        ("transcript lag p50 / p95 / max", f(r["transcript_lag_s"])),
        ("word shown lag p50 / p95 / max", f(r["shown_word_lag_s"])),
        ("messages / revisions / provisional", f"{r['messages_received']} / {r['revisions']} / {r['provisional_messages']}"),
        ("band changes by a revision, lead p50 / p95", (f"{r['revision_lead_s']['band_changes_by_revision']}, "
                                                        f"{r['revision_lead_s']['p50']} / {r['revision_lead_s']['p95']} s")),
        ("WER generated speech", f"{w['generated']['wer_percent']} % ({w['generated']['errors']} / {w['generated']['reference_words']})"),
    ]
    for _, _, name in MOSI_CLIPS:
        v = w.get(name)
        rows.append((f"WER {name}", "-" if v is None else f"{v['wer_percent']} % ({v['errors']} / {v['reference_words']})"))
    rows += [
        ("in-pipeline scoring p50 / p95", f(r["scoring_in_pipeline_ms"], " ms")),
        ("HCL forward batch 1 CPU p50 / p95", f"{r['hcl_forward_b1_cpu_ms']['p50_ms']} / {r['hcl_forward_b1_cpu_ms']['p95_ms']} ms"),
        ("speech pass p50 / p95", f"{(r['speech_pass_ms'] or {}).get('p50')} / {(r['speech_pass_ms'] or {}).get('p95')} ms"),
        ("cores used (CPU s / wall s)", r["cores_used"]),
        ("windows / dropped / frames dropped", f"{r['windows']} / {r['dropped_windows']} / {r['dropped_frames']}"),
        ("skipped speech passes", r["skipped_speech_passes"]),
        ("load average (1 min) start / end", f"{r['machine']['load_avg_1m_at_start']} / {r['machine']['load_avg_1m_at_end']} on {r['machine']['cpus']} cores"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", help="media file (default: the demo sentences, --repeat times)")
    ap.add_argument("--repeat", type=int, default=3, help="positive+negative sentence pairs in the generated clip")
    ap.add_argument("--checkpoint", help="default: the shipped live model (random-init if it is missing)")
    ap.add_argument("--strict", action="store_true", help="file policy (windows wait for the transcript) instead of the live-device policy")
    ap.add_argument("--beam", type=int, help="Whisper beam size for the live passes (default: greedy in the live policy, the checkpoint's with --strict)")
    ap.add_argument("--reaction", action="store_true", help="the reaction-time table (see the module docstring)")
    ap.add_argument("--levers", action="store_true",
                    help="--reaction: run the revision levers (off, rescore, rescore+provisional) back to back")
    ap.add_argument("--rounds", type=int, default=1, help="--levers: interleaved rounds of the three settings")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="--reaction: a PipelineOptions field, or speech.FIELD for its SpeechOptions (repeatable)")
    ap.add_argument("--asr", help="--reaction: speech engines to run side by side, e.g. whisper,moonshine "
                    "(default: the options' engine)")
    ap.add_argument("--out", help="JSON output (default bench/results/live.json, or reaction.json with --reaction)")
    args = ap.parse_args(argv)

    import torch

    from realtime.core.component import Policy
    from realtime.pipeline.live import PipelineOptions
    from realtime.pipeline.scorer import WindowScorer
    from realtime.pipeline.speech import SpeechOptions

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
    if args.reaction:
        return reaction_main(args, checkpoint, model_note)
    path = pathlib.Path(args.file) if args.file else make_clip(tmp, args.repeat)

    scorer = WindowScorer(checkpoint=checkpoint, device="cpu")
    scorer.warm_up()
    policy = Policy.REPRODUCIBLE if args.strict else Policy.LIVE
    options = PipelineOptions(policy=policy, speech=SpeechOptions(beam_size=args.beam))
    run = run_live(path, scorer, options)
    received, pipeline, metrics = run["received"], run["pipeline"], run["metrics"]
    cpu, wall, duration = run["cpu"], run["wall"], run["duration"]

    e2e = [(t - m["end"]) * 1000 for t, m in received]
    # a window's first message measures the live path; a revision is sent when words commit,
    # so its delay after the window's end follows the speech passes, not the scoring
    first = [(t - m["end"]) * 1000 for t, m in received if not m.get("revision")]
    revised = [(t - m["end"]) * 1000 for t, m in received if m.get("revision")]
    stages = {k: [m["latency_ms"][k] for _, m in received] for k in ("capture", "features", "scoring", "send")}
    lags = [w.committed_at - w.end for w in run["words"]]
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(terse=True), "python": platform.python_version(),
                    "torch": torch.__version__, "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "input": {"file": str(path) if args.file else f"generated demo ({args.repeat} x positive+negative)", "seconds": round(duration, 2)},
        "model": model_note or str(checkpoint),
        "whisper": _whisper_settings(pipeline),
        "policy": "strict (file: windows wait for transcript passes)" if args.strict else "live (devices: windows never wait for the transcript)",
        "windows": pipeline.scores.count,
        "windows_received": len(received),
        "dropped_windows": pipeline.queue.dropped,
        "dropped_frames": run["dropped_frames"],
        "realtime_factor": round(wall / duration, 3) if duration else None,
        "cpu_percent_of_one_core": round(100 * cpu / wall, 1),
        "end_to_end_ms": {"p50": pct(e2e, 50), "p95": pct(e2e, 95), "max": round(max(e2e), 1) if e2e else None},
        "end_to_end_first_ms": {"p50": pct(first, 50), "p95": pct(first, 95), "n": len(first)},
        "end_to_end_revision_ms": {"p50": pct(revised, 50), "p95": pct(revised, 95), "n": len(revised)},
        "text_encoding": metrics.get("components", {}).get("text"),
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
    out = write_result(result, args.out, "live.json")
    print(table(result))
    print(f"\nwritten to {out}")
    return 0


def write_result(result: dict, out: str | None, name: str) -> pathlib.Path:
    """The result as JSON at `out` (default bench/results/<name>); the path written."""
    path = pathlib.Path(out or ROOT / "bench" / "results" / name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def table(r: dict) -> str:
    def f(x, unit=""):
        return "-" if x is None else f"{x}{unit}"

    rows = [
        ("input", f"{r['input']['file']}, {r['input']['seconds']} s"),
        ("policy", r["policy"]),
        ("Whisper (live passes)", r.get("whisper", "-")),
        ("windows (received / dropped)", f"{r['windows']} ({r['windows_received']} / {r['dropped_windows']})"),
        ("dropped video frames", r["dropped_frames"]),
        ("wall / media time", f(r["realtime_factor"])),
        ("CPU (% of one core)", f(r["cpu_percent_of_one_core"], " %")),
        ("end-to-end p50 / p95", f"{f(r['end_to_end_ms']['p50'])} / {f(r['end_to_end_ms']['p95'])} ms"),
    ]
    for key, name in (("end_to_end_first_ms", "first messages"), ("end_to_end_revision_ms", "revisions")):
        if key in r:
            v = r[key]
            rows.append((f"  {name} p50 / p95", f"{f(v['p50'])} / {f(v['p95'])} ms (n={v['n']})"))
    text = r.get("text_encoding") or {}
    if text.get("wait_ms"):
        w = text["wait_ms"]
        rows.append(("text waited for p50 / p95", f"{f(w.get('p50'))} / {f(w.get('p95'))} ms (encoded {text.get('encoded')}, "
                                                  f"kept hits {text.get('hits')}, dropped guesses {text.get('dropped_guesses')})"))
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
