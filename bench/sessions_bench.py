"""Many sessions at once on one process: N simulated browser captures arriving at one
`SessionHub` (realtime/sessions/hub.py: admission, one `ScorerService` and one
`SpeechService` shared by all, the load governor of realtime/sessions/governor.py).

    python bench/sessions_bench.py [--sessions 1,2,4,8] [--sentences 6] [--reaction] [--arrival S]
                                   [--max-sessions M] [--governor on|off] [--levels FPS:PERIOD,...]
                                   [--face-fps F] [--speech-period P]
                                   [--speech-batch B] [--no-admission] [--asr whisper,moonshine] [--out PATH]
    python bench/sessions_bench.py --whisper-batch      # can faster-whisper batch passes? (see below)
    python bench/sessions_bench.py --costs              # CPU ms of each model's unit of work

Each session is the hub's real `LivePipeline(Policy.LIVE)` over a `BrowserSource`, fed
the capture messages of a generated clip (espeak-ng sentences over the astronaut's
face, JPEG frames at 10 fps, 100 ms PCM chunks; tests/capture_clients.py) by its own
paced sender at real-time pace, the way the server feeds a browser's socket. Every
session speaks the same sentences in its own order (so the shared text-encoding
cache does not make N sessions look cheaper than N people). Sessions arrive
`--arrival` s apart and go through the hub's admission (`--max-sessions`, default the
largest N, so that only measured health and capacity refuse; `--no-admission` takes
everyone); a refused arrival is counted with its reason. All share one WindowScorer
behind one ScorerService, one Whisper behind one SpeechService (`--speech-batch B`: up
to B sessions' passes decoded as one batch, default 4), each has its own face model.
`--governor on` (default) thins every session alike when the shared speech thread is
busy; `--governor off --face-fps F --speech-period P` runs fixed settings instead.
`--asr whisper,moonshine`: every N once per speech engine (a hub of its own on the
same scorer; Moonshine's passes one at a time, Whisper's batched), side by side in
one table with WER of each session's transcript against its sentences.

Per N: sessions admitted, windows scored and dropped, scoring latency (queue wait +
model) and total window latency p95, transcript lag p50/p95 (word committed, after its
pass, minus word end; also from the start of its pass, the definition before the
pass's own time counted), a speech pass's wall time (its wait for the shared Whisper
included), speech passes skipped to catch up, the speech and scorer threads' busy
fraction, the governor's highest and last level, the scorer's batch size, CPU of the
whole process per session, and (`--reaction`) the reaction time: end of a signed
sentence's last word -> first window in its polarity band (bench/live_bench.py's
definition), p50/p95 over all sessions. The load average of the machine (shared
with other work) is recorded before and after each N. Writes
bench/results/sessions.json.

`--whisper-batch`: CTranslate2's encoder and greedy decoder on B independent 4 s
passes as one batch vs one by one (B = 1, 2, 4): the speed-up a batched speech
service could get at most (faster-whisper's BatchedInferencePipeline cannot batch
independent passes with their own VAD and word timing; see realtime/sessions/services.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from asr_bench import rss_mb  # noqa: E402  VmRSS and VmHWM of this process

FPS = 10.0


def pct(values, q):
    from realtime.core.component import percentile

    v = percentile(list(values), q)
    return None if v is None else round(v, 3)


# ---------------------------------------------------------------- the clips
def make_speech(n_sentences: int):
    """espeak-ng speech of the first `n_sentences` of live_bench's REACTION_SENTENCES:
    [(sign, text, wave, (first, last) loud second)]."""
    from live_bench import REACTION_SENTENCES, speech_span

    from realtime.sources.demo import SAMPLE_RATE, speak

    out = []
    for sign, text in REACTION_SENTENCES[:n_sentences]:
        wave = speak(text)
        out.append((sign, text, wave, speech_span(wave, SAMPLE_RATE)))
    return out


def session_clip(speech, index: int, *, lead: float = 0.5, gap: float = 1.5, tail: float = 3.0):
    """Session `index`'s audio: the sentences rotated by `index`, `gap` s apart; and the
    sentences' sign, text, start of the first / end of the last word in clip seconds."""
    import numpy as np

    from realtime.sources.demo import SAMPLE_RATE

    k = index % len(speech)
    order = speech[k:] + speech[:k]
    parts = [np.zeros(int(lead * SAMPLE_RATE), np.float32)]
    t = lead
    sentences = []
    for sign, text, wave, (a, b) in order:
        sentences.append({"sign": sign, "text": text, "start": round(t + a, 3), "end": round(t + b, 3)})
        parts += [wave, np.zeros(int(gap * SAMPLE_RATE), np.float32)]
        t += len(wave) / SAMPLE_RATE + gap
    parts[-1] = np.zeros(int(tail * SAMPLE_RATE), np.float32)
    return np.concatenate(parts), sentences


# ---------------------------------------------------------------- CPU by thread
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu() -> dict[int, tuple[str, float]]:
    """{native thread id: (stage, CPU seconds)} of every thread of this process (Linux
    /proc). Python threads are named by their stage (a live component's name, the
    services); threads Python does not know (CTranslate2's and torch's pools, mediapipe's)
    are "native pools"."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out = {}
    for entry in os.scandir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tid = int(entry.name)
        out[tid] = (stage_of(names.get(tid)), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def stage_of(name: str | None) -> str:
    if name is None:
        return "native pools (Whisper, torch, mediapipe)"
    if name.startswith("simulated"):
        return "source (JPEG decode)"
    if name.startswith("Thread-") and "send" in name:
        return "senders"
    if name.startswith("ThreadPoolExecutor"):
        return "thread pools"
    return name


class ThreadCpuSampler:
    """Samples `thread_cpu()` every `period` s, so threads that end before the run does
    (a session's face, speech and windowing threads) keep their last figure."""

    def __init__(self, period: float = 0.5) -> None:
        self.period = period
        self.seen: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _sample(self) -> None:
        self.seen.update(thread_cpu())

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def start(self) -> "ThreadCpuSampler":
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> dict[int, tuple[str, float]]:
        self._stop.set()
        self._thread.join()
        self._sample()
        return dict(self.seen)


def cpu_by_stage(before: dict, after: dict, wall: float) -> dict[str, float]:
    """Share of one core per stage over `wall` s (threads started meanwhile count from 0)."""
    out: dict[str, float] = {}
    for tid, (stage, cpu) in after.items():
        out[stage] = out.get(stage, 0.0) + cpu - (before[tid][1] if tid in before else 0.0)
    return {k: round(100 * v / wall, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def whisper_for(settings, options):
    """The transcriber the live pipeline would build for the live policy (greedy)."""
    from hcl.features.speech import SpeechTranscriber

    o = options.speech
    config = dataclasses.replace(settings.speech, beam_size=o.beam_size if o.beam_size is not None else 1)
    return SpeechTranscriber(config=config, cpu_threads=o.threads, fit_encoder=o.fit_encoder,
                             temperature_fallback=o.temperature_fallback)


# ---------------------------------------------------------------- one run of N sessions
class Collector:
    """The hub's channels: each session's window messages with the session clock at
    arrival (what a viewer of its stream would get)."""

    def __init__(self) -> None:
        self.by_secret: dict[str, object] = {}  # secret -> LiveSession, filled after open
        self.received: dict[str, list] = {}

    def open_channel(self, key: str, hello: dict):
        received = self.received.setdefault(key, [])
        owner = self

        class Channel:
            def publish(self, msg: dict) -> None:
                session = owner.by_secret.get(key)
                if msg.get("type") == "window" and session is not None and session.pipeline.clock is not None:
                    received.append((session.pipeline.clock.now(), msg))

            def set_status(self, state: str, detail: str = "") -> None:
                pass

            def attach_recording(self, directory) -> None:
                pass

        return Channel()

    def close_channel(self, key: str) -> None:
        pass


def run_sessions(n: int, hub, collector, speech, jpeg: bytes, *, reaction: bool, arrival: float) -> dict:
    """N simulated browsers arriving `arrival` s apart at one `SessionHub` (the server's
    own path: admission, the shared services, the load governor). Refused arrivals are
    counted with their reason; the admitted ones run their clip at real-time pace."""
    from capture_clients import clip_messages, send_paced
    from live_bench import reaction_times
    from transcript_scoring import normalise_words, word_errors

    from realtime.sessions.hub import AdmissionRefused
    from realtime.sources.browser import BrowserSource
    from realtime.sources.capture_wire import unpack

    hub.governor.reset()
    scoring, speech_service = hub.models.services()
    sessions, refused = [], []
    load_before = os.getloadavg()
    busy0 = {k: (svc._busy_s, svc.passes) for k, svc in (("scorer", scoring), ("speech", speech_service))}
    turns0 = speech_service.turns
    cpu0, wall0, mono0 = time.process_time(), time.perf_counter(), time.monotonic()
    threads0 = thread_cpu()
    sampler = ThreadCpuSampler().start()
    levels: list[tuple[float, int]] = []
    stop_trace = threading.Event()

    def trace():  # the governor's level and the sessions' speech lateness (s) over the run
        while not stop_trace.wait(0.5):
            st = hub.governor.state()
            levels.append((round(time.perf_counter() - wall0, 1), st["level"], st["speech_late_s"]))

    tracer = threading.Thread(target=trace, daemon=True)
    tracer.start()
    senders = []
    for i in range(n):
        time.sleep(max(0.0, wall0 + i * arrival - time.perf_counter()))
        audio, sentences = session_clip(speech, i)
        source = BrowserSource(audio=True, video=True, name=f"simulated {i}")
        try:
            session = hub.open(source, kind="browser", session_id=f"bench-{n}-{i}", channels=collector)
        except AdmissionRefused as exc:
            refused.append({"index": i, "at_s": round(time.perf_counter() - wall0, 1), "reason": exc.reason})
            print(f"   session {i} refused: {exc.reason}", flush=True)
            continue
        collector.by_secret[session.secret] = session
        hub.start_session(session)  # its face model loads here; its clock starts after
        s = {"session": session, "sentences": sentences, "received": collector.received[session.secret],
             "events": clip_messages(audio, [jpeg], fps=FPS), "duration": len(audio) / 16000}
        sessions.append(s)

        def send(s=s):
            send_paced(lambda d: s["session"].source.feed(unpack(d)), s["events"])

        t = threading.Thread(target=send, daemon=True, name=f"send {i}")
        t.start()
        senders.append(t)
    for t in senders:
        t.join()
    for s in sessions:
        s["session"].pipeline.wait(60)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    stop_trace.set()
    tracer.join()
    stages = cpu_by_stage(threads0, sampler.stop(), wall)
    load_after = os.getloadavg()
    memory = rss_mb()  # the sessions still open: what the server holds with N of them, and the peak so far
    governor = hub.governor.state()
    rows = []
    for s in sessions:
        session = s["session"]
        pipe = session.pipeline
        m = pipe.metrics()
        scorer_stats = session.scorer_client.stats()["session"]
        speech_stats = session.speech_client.stats()
        ring_start = pipe.source.audio.start_time or 0.0
        row = {
            "session": session.id,
            "windows": m["windows"],
            "dropped_windows": m["dropped_windows"],
            "scoring_ms": m["latency_ms"]["scoring"],
            "total_ms": m["latency_ms"]["total"],
            "scorer_wait_ms": scorer_stats["wait_ms"],
            "transcript_lag_s": m["transcript"]["lag_s"],
            "lags_s": [round(x, 3) for x in pipe.speech.transcript.lags.recent()],
            # the same words' lag from the start of their pass (the definition before the
            # pass's own time counted): what the commit rule alone makes
            "start_lags_s": [round(x, 3) for x in pipe.speech.transcript.start_lags.recent()],
            "words": m["transcript"]["words"],
            "skipped_passes": m["transcript"]["skipped_passes"],
            "speech_passes": speech_stats["served"],
            "speech_wait_ms": speech_stats["wait_ms"],
            "speech_pass_ms": pipe.speech.transcript.pass_ms.summary(),  # a pass's wall time, its wait included
            "speech_period_s": pipe.speech.period,
            "face_frames": m["video"]["frames"], "faces": m["video"]["faces"],
            "dropped_frames": m["video"]["dropped_frames"],
            "source": {k: m["components"]["source"].get(k) for k in ("resyncs", "clamped", "delay_ms")},
            "problems": m["problems"],
        }
        # WER of the session's committed words against its sentences (tests/transcript_scoring.py)
        reference = normalise_words(" ".join(x["text"] for x in s["sentences"]))
        heard = normalise_words(" ".join(w.text for w in pipe.speech.transcript.all_words()))
        row["word_errors"], row["reference_words"] = word_errors(reference, heard), len(reference)
        if reaction:
            shifted = [{**x, "start": x["start"] + ring_start, "end": x["end"] + ring_start} for x in s["sentences"]]
            reactions, _ = reaction_times(shifted, s["received"])
            row["reactions_s"] = [r["reaction_s"] for r in reactions]
        rows.append(row)
    # read before the sessions end: an ended session keeps its figures, not its pipeline
    all_scoring = [x for s in sessions for x in s["session"].pipeline.latencies["scoring"].recent()]
    all_total = [x for s in sessions for x in s["session"].pipeline.latencies["total"].recent()]
    pass_ms = [x for s in sessions for x in s["session"].pipeline.speech.transcript.pass_ms.recent()]
    for s in sessions:
        hub.end(s["session"].id, reason="bench done", wait=False)
    busy = {k: {"busy_fraction": round((svc._busy_s - busy0[k][0]) / wall, 3), "passes": svc.passes - busy0[k][1]}
            for k, svc in (("scorer", scoring), ("speech", speech_service))}
    turns = speech_service.turns - turns0
    busy["speech"]["turns"] = turns
    busy["speech"]["passes_per_turn"] = round(busy["speech"]["passes"] / turns, 2) if turns else None
    all_lags = [x for r in rows for x in r["lags_s"]]
    start_lags = [x for r in rows for x in r["start_lags_s"]]
    reactions = [x for r in rows for x in r.get("reactions_s", [])]
    admitted = len(sessions)
    reference_words = sum(r["reference_words"] for r in rows)
    return {
        "sessions": n,
        "admitted": admitted,
        "refused": refused,
        "arrival_s": arrival,
        "clip_s": round(max((s["duration"] for s in sessions), default=0.0), 2),
        "wall_s": round(wall, 2),
        "windows": sum(r["windows"] for r in rows),
        "dropped_windows": sum(r["dropped_windows"] for r in rows),
        "dropped_frames": sum(r["dropped_frames"] for r in rows),
        "scoring_ms": {"p50": pct(all_scoring, 50), "p95": pct(all_scoring, 95)},
        "total_ms": {"p50": pct(all_total, 50), "p95": pct(all_total, 95)},
        "transcript_lag_s": {"p50": pct(all_lags, 50), "p95": pct(all_lags, 95), "max": round(max(all_lags), 3) if all_lags else None},
        "lag_from_pass_start_s": {"p50": pct(start_lags, 50), "p95": pct(start_lags, 95)},
        "speech_pass_ms": {"p50": pct(pass_ms, 50), "p95": pct(pass_ms, 95)},
        "words": sum(r["words"] for r in rows),
        "wer_percent": round(100 * sum(r["word_errors"] for r in rows) / reference_words, 1) if reference_words else None,
        "skipped_passes": sum(r["skipped_passes"] for r in rows),
        "reaction_s": {"p50": pct([x for x in reactions if x is not None], 50), "p95": pct([x for x in reactions if x is not None], 95),
                       "never": sum(x is None for x in reactions), "n": len(reactions)} if reaction else None,
        "cpu_percent_total": round(100 * cpu / wall, 1),
        "cpu_percent_per_session": round(100 * cpu / wall / max(1, admitted), 1),
        "cpu_percent_by_stage": stages,  # % of one core, all sessions together
        **memory,  # rss_mb, peak_rss_mb
        "services": busy,
        "governor": {**governor, "max_level": max((lv for _, lv, _ in levels), default=0), "trace": levels,
                     "changes_log": [(round(t - mono0, 1), lv, b) for t, lv, b in hub.governor.history]},
        "scorer_batch": scoring.batch_sizes.summary(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after],
        "per_session": rows,
    }


def table(results: list[dict]) -> str:
    def f(x, nd=2):
        return "-" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))

    head = ("engine", "N", "admitted", "windows", "dropped", "scoring p95 ms", "total p95 ms", "lag p50/p95 s",
            "from pass start p50/p95 s", "pass wall p50/p95 ms", "skipped",
            "reaction p50/p95 s", "CPU/session %", "speech busy", "scorer busy", "level max/end", "load 1m", "WER %",
            "RSS MB (peak)")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in results:
        rx = r["reaction_s"]
        g = r.get("governor") or {}
        lines.append(" | ".join([
            str(r.get("engine") or "-"), str(r["sessions"]), str(r.get("admitted", r["sessions"])), str(r["windows"]), str(r["dropped_windows"]), f(r["scoring_ms"]["p95"], 1), f(r["total_ms"]["p95"], 1),
            f"{f(r['transcript_lag_s']['p50'])} / {f(r['transcript_lag_s']['p95'])}",
            f"{f((r.get('lag_from_pass_start_s') or {}).get('p50'))} / {f((r.get('lag_from_pass_start_s') or {}).get('p95'))}",
            f"{f((r.get('speech_pass_ms') or {}).get('p50'), 0)} / {f((r.get('speech_pass_ms') or {}).get('p95'), 0)}",
            str(r["skipped_passes"]),
            "-" if rx is None else f"{f(rx['p50'])} / {f(rx['p95'])} ({rx['never']} never)",
            f(r["cpu_percent_per_session"], 1), f(r["services"]["speech"]["busy_fraction"]), f(r["services"]["scorer"]["busy_fraction"]),
            f"{g.get('max_level', '-')}/{g.get('level', '-')}",
            f"{r['load_avg_before'][0]:.1f}-{r['load_avg_after'][0]:.1f}",
            f(r.get("wer_percent"), 1),
            f"{f(r.get('rss_mb'), 0)} ({f(r.get('peak_rss_mb'), 0)})",
        ]))
    return "\n".join(lines)


# ---------------------------------------------------------------- whisper batching
def whisper_batch(seconds: float = 4.0, repeat: int = 7) -> dict:
    """Encoder + greedy decoder of B independent passes, batched vs one by one (the two
    alternate; the fastest of `repeat` runs counts: the machine is shared, the least
    disturbed run is the closest to the cost)."""
    import numpy as np
    from live_bench import REACTION_SENTENCES

    from hcl.features.config import FeatureSettings
    from hcl.features.speech import fit_features
    from realtime.pipeline.live import PipelineOptions
    from realtime.sources.demo import speak

    whisper = whisper_for(FeatureSettings(), PipelineOptions())
    model = whisper.model
    waves = []
    for _, text in REACTION_SENTENCES[:4]:
        w = speak(text)[: int(seconds * 16000)]
        waves.append(np.pad(w, (0, int(seconds * 16000) - len(w))))
    feats = [fit_features(model.feature_extractor(w)[..., :-1]) for w in waves]
    from faster_whisper.tokenizer import Tokenizer

    tok = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
    prompt = model.get_prompt(tok, [], without_timestamps=False)

    def run(batch):
        import ctranslate2

        x = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(batch)))
        enc = model.model.encode(x, to_cpu=False)
        model.model.generate(enc, [prompt] * len(batch), beam_size=1, max_length=len(prompt) + 40)

    out = {}
    run(feats[:1])
    for b in (1, 2, 4):
        t_batch, t_single = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            run(feats[:b])
            t_batch.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for f in feats[:b]:
                run([f])
            t_single.append(time.perf_counter() - t0)
        mb, ms = float(np.min(t_batch)), float(np.min(t_single))
        out[str(b)] = {"batched_ms": round(1000 * mb, 1), "one_by_one_ms": round(1000 * ms, 1), "speedup": round(ms / mb, 2)}
        print(f"B={b}: batched {1000 * mb:.0f} ms, one by one {1000 * ms:.0f} ms, speed-up x{ms / mb:.2f}", flush=True)
    return {"pass_seconds": seconds, "cpu_threads": whisper.cpu_threads, "statistic": f"fastest of {repeat}", "batches": out,
            "load_avg": os.getloadavg()}


def costs(repeat: int = 5) -> dict:
    """CPU seconds (process time: every thread, native pools included; not inflated by
    waiting for a core the way wall time is) of each model's unit of work, the fastest
    of `repeat`: a Whisper pass (3 s and 7 s of speech, alone and 4 at once), a face
    frame, a scoring pass (batch 1 and 4)."""
    import numpy as np
    import torch
    from live_bench import REACTION_SENTENCES

    from hcl.features.config import FeatureSettings
    from hcl.features.face import FaceFeatureExtractor
    from realtime.pipeline.live import PipelineOptions
    from realtime.pipeline.scorer import WindowScorer
    from realtime.sessions.batched_whisper import BatchedWhisper
    from realtime.sessions.services import _blank_window
    from realtime.sources.demo import face_image, speak

    def cpu_of(fn):
        best = float("inf")
        for _ in range(repeat):
            t0 = time.process_time()
            fn()
            best = min(best, time.process_time() - t0)
        return round(best * 1000, 1)

    torch.set_num_threads(1)
    out: dict = {"statistic": f"fastest of {repeat}, CPU ms (all threads)"}
    whisper = BatchedWhisper(whisper_for(FeatureSettings(), PipelineOptions()))
    speech = np.concatenate([speak(t) for _, t in REACTION_SENTENCES[:3]])
    for secs in (3.0, 7.0):
        wave = np.concatenate([np.zeros(4000, np.float32), speech[: int(secs * 16000)]])
        whisper.transcribe(wave)
        out[f"whisper_pass_{secs:g}s"] = cpu_of(lambda w=wave: whisper.transcribe(w))
        out[f"whisper_4_passes_{secs:g}s_batched"] = cpu_of(lambda w=wave: whisper.transcribe_many([(w, 0.0)] * 4))
    face = FaceFeatureExtractor()
    img = face_image(320)
    face.frame(img)
    out["face_frame"] = cpu_of(lambda: [face.frame(img) for _ in range(10)]) / 10
    face.close()
    scorer = WindowScorer(device="cpu", max_streams=4)
    scorer.warm_up()
    w = _blank_window(scorer)
    for n in (1, 4):
        scorer.score_many([w] * n)
        out[f"scorer_pass_batch{n}"] = cpu_of(lambda n=n: scorer.score_many([w] * n))
    out["text_encoding"] = cpu_of(lambda: (scorer._text_cache.clear(), scorer.encode_text("i really love this it is wonderful")))
    out["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", default="1,2,4,8", help="comma-separated session counts (default 1,2,4,8)")
    ap.add_argument("--sentences", type=int, default=6, help="sentences per clip (default 6: about 25 s)")
    ap.add_argument("--reaction", action="store_true", help="also the reaction time (live_bench's definition)")
    ap.add_argument("--speech-batch", type=int, default=4,
                    help="most sessions' Whisper passes decoded as one batch (1: one pass at a time, interleaved)")
    ap.add_argument("--gather", type=float, default=0.0,
                    help="s a speech batch that is not full waits for the last batch's sessions (0: none)")
    ap.add_argument("--arrival", type=float, default=1.5, help="s between the sessions' arrivals (default 1.5)")
    ap.add_argument("--max-sessions", type=int, default=0,
                    help="the hub's --max-sessions (default: the largest N, so only measured health refuses)")
    ap.add_argument("--governor", choices=("on", "off"), default="on",
                    help="thin every session alike under load (realtime/sessions/governor.py); off: fixed settings")
    ap.add_argument("--levels", help="with --governor on: the levels as FPS:PERIOD,... (default realtime.sessions.governor's)")
    ap.add_argument("--face-fps", type=float, default=10.0, help="with --governor off: the face analysis rate")
    ap.add_argument("--speech-period", type=float, default=1.0, help="with --governor off: s between speech passes")
    ap.add_argument("--no-admission", action="store_true",
                    help="admit every arrival (no health or capacity refusals; --max-sessions still counts)")
    ap.add_argument("--checkpoint", help="the live checkpoint (default: the shipped one)")
    ap.add_argument("--whisper-batch", action="store_true", help="measure batched vs one-by-one Whisper passes only")
    ap.add_argument("--costs", action="store_true", help="measure the CPU cost of each model's unit of work only")
    ap.add_argument("--asr", default="", help="speech engines side by side, e.g. whisper,moonshine (default: the options' engine)")
    ap.add_argument("--out", help="JSON output (default bench/results/sessions.json)")
    ap.add_argument("--no-readouts", action="store_true",
                    help="sessions without the per-face and voice readouts (PipelineOptions.readouts=False)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    out = pathlib.Path(args.out or ROOT / "bench" / "results" / "sessions.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.costs:
        result = costs()
        path = out.with_name("sessions_costs.json") if not args.out else out
        path.write_text(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
        print(f"wrote {path}")
        return 0
    if args.whisper_batch:
        result = whisper_batch()
        path = out.with_name("sessions_whisper_batch.json") if not args.out else out
        path.write_text(json.dumps(result, indent=1))
        print(f"wrote {path}")
        return 0

    from capture_clients import jpeg_of

    from realtime.pipeline.scorer import WindowScorer
    from realtime.sessions.governor import GovernorConfig, Level
    from realtime.sessions.hub import HubConfig, SessionHub
    from realtime.sources.demo import face_image

    counts = [int(x) for x in args.sessions.split(",") if x.strip()]
    max_sessions = args.max_sessions or max(counts)
    if args.governor == "on":
        levels = tuple(Level(*map(float, x.split(":"))) for x in args.levels.split(",")) if args.levels else None
        governor = GovernorConfig(admission=not args.no_admission, **({"levels": levels} if levels else {}))
    else:
        governor = GovernorConfig(levels=(Level(args.face_fps, args.speech_period),), enabled=False)
    config = HubConfig(max_sessions=max_sessions, speech_batch=args.speech_batch, speech_gather=args.gather,
                       governor=governor,
                       max_lag_p95=None if args.no_admission else 2.5, refuse_on_drops=not args.no_admission,
                       keep_ended=max(16, 2 * sum(counts)))
    from realtime.core.component import Policy
    from realtime.pipeline.live import PipelineOptions
    from realtime.pipeline.speech import SpeechOptions

    t0 = time.perf_counter()
    scorer = WindowScorer(checkpoint=args.checkpoint, device="cpu", max_streams=max_sessions)
    speech = make_speech(args.sentences)
    jpeg = jpeg_of(face_image(320))
    results = []
    warm_s = None
    for engine in [e.strip() for e in args.asr.split(",") if e.strip()] or [None]:
        hub = SessionHub(scorer=scorer, config=config,
                         options=PipelineOptions(policy=Policy.LIVE, speech=SpeechOptions(max_backlog=4.0, **({"engine": engine} if engine else {})),
                                                 readouts=not args.no_readouts))
        collector = Collector()
        hub.warm_up()  # the scorer's graphs for every batch size, the speech engine loaded
        hub.start()
        warm_s = warm_s or time.perf_counter() - t0
        options = hub.options
        try:
            for n in counts:
                print(f"-- {engine or 'default engine'}: {n} session(s)", flush=True)
                r = run_sessions(n, hub, collector, speech, jpeg, reaction=args.reaction, arrival=args.arrival)
                r["engine"] = hub.models.whisper().name
                results.append(r)
                print(table([r]).splitlines()[-1], flush=True)
                time.sleep(3)  # let the last passes of this N drain before the next
        finally:
            hub.stop()
            hub.join(30)
    doc = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch_threads": torch.get_num_threads(), "whisper_threads": options.speech.threads},
        "model": scorer.model_info,
        "speech_batch": args.speech_batch,
        "speech_gather_s": args.gather,
        "governor": dataclasses.asdict(governor),
        "max_sessions": max_sessions,
        "sentences": args.sentences,
        "readouts": not args.no_readouts,
        "warm_up_s": round(warm_s, 1),
        "command": " ".join(["python", "bench/sessions_bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "results": results,
    }
    out.write_text(json.dumps(doc, indent=1))
    print()
    print(table(results))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
