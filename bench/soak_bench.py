"""Soak: a simulated 8-hour live session through the real pipeline; memory and /metrics stay flat.

    nice .venv/bin/python bench/soak_bench.py [--hours 8 | --quick] [--fps 2] [--frame-size 160]
                                              [--real-faces] [--fresh-every 8] [--no-video-audio]
                                              [--fsync] [--keep DIR] [--out bench/results/soak.json]

Runs `LivePipeline` under `Policy.FAST` (as fast as possible) over `--hours` of session time
from a `GeneratedSource` (realtime/sources/generated.py): real espeak-ng speech (the demo's
positive and negative sentences, 2 s pauses) looped, over the real face image of the demo
(scikit-image's astronaut, `--frame-size` px) at `--fps` frames a second. Real parts: the
shipped model (`WindowScorer`, traced on CPU), the real audio features and text encoder
(MiniLM) per window, the real `SpeechWorker` / `Transcript` commit logic, a real
`SessionRecorder` (scores.jsonl, words.jsonl, transcript.vtt, audio.wav and video.mp4 with
H.264 at `--fps` and, unless --no-video-audio, AAC sound) fed through the pipeline's sink and
frame tap, and a real `DashboardServer` on 127.0.0.1 whose /metrics is requested over HTTP and
whose window stream a websocket client reads the whole time (so the fan-out, the history and
the 1 s stats messages all run).

Stand-ins, because the real thing would take hours of CPU here:
  * speech recognition: `ScriptedTranscriber` returns the script's words (the sentences'
    words spread over their spoken span) instead of Whisper; every `--fresh-every`-th
    utterance has new words, so the text encoder keeps meeting text its cache has not seen;
  * face analysis: the mediapipe features of the face image are computed once (by the real
    extractor) and returned for every frame (`--real-faces`: mediapipe on every frame).

Every `--sample-minutes` (10) of session time the scoring thread pauses (so each sample
is taken in the same conditions) and the bench records: the process RSS (/proc/self/statm),
the Python object count, /metrics over HTTP (median and max of 5 requests, its size),
`pipeline.metrics()` (median of 5 calls), the recording's file sizes, and len() of every
bounded store it can reach (window messages, latency figures, transcript, face track,
queues, the server's history, the text cache, the recorder's pending audio). It prints a
table and writes JSON (after every sample, so a run cut short keeps its data), and a
verdict: RSS within +50 MB of its minute-10 value, and /metrics' cost at the end over
its cost at minute 10.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import platform
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.recording_bench import rss_mb

RSS_LIMIT_MB = 50.0  # the aim: RSS within +50 MB of its minute-10 value
STAND_INS = {
    "speech recognition": "ScriptedTranscriber (the script's words; Whisper not run)",
    "face analysis": "mediapipe features of the face image computed once, returned per frame",
}


class FixedFace:
    """The face extractor's stand-in: the features the real extractor gave for the one
    image the source shows, returned for every frame (a copy, as the real one returns
    a new array)."""

    def __init__(self, features) -> None:
        self.features = features
        self.calls = 0

    def frame(self, rgb, t_ms: int = 0):
        self.calls += 1
        return None if self.features is None else self.features.copy()

    def close(self) -> None:
        pass


class StandInFaceFeaturizer:
    """A `SegmentFeaturizer` (real audio features) whose face extractor is `FixedFace`."""

    def __init__(self, real, face: FixedFace) -> None:
        self._real = real
        self.face = face
        self.settings = real.settings

    def featurize_arrays(self, *args, **kwargs):
        return self._real.featurize_arrays(*args, **kwargs)

    def close(self) -> None:
        self._real.close()


class WindowReader:
    """A dashboard client: reads the websocket for the whole session and counts what comes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.counts: dict[str, int] = {}
        self.last_seq = -1
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-ws-client", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from websockets.sync.client import connect

        try:
            with connect(self.url, max_size=None, open_timeout=30) as ws:
                while not self._stop.is_set():
                    try:
                        raw = ws.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    kind = raw[:40].replace(" ", "")[9:].split('"')[0] if raw.startswith('{"type":') else "?"
                    self.counts[kind] = self.counts.get(kind, 0) + 1
                    if kind == "window":
                        self.last_seq = int(json.loads(raw)["seq"])
        except Exception as exc:  # the server closing at the end is fine; anything else is reported
            if not self._stop.is_set():
                self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def timed(fn, n: int = 7) -> tuple[float, float, float, Any]:
    """(median ms, max ms, min ms, last result) of n calls. The minimum is the cost least
    disturbed by other processes on a shared machine."""
    ms, out = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        ms.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ms), max(ms), min(ms), out


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def recent_len(stats) -> int:
    return len(stats.recent())


def server_history(server) -> int:
    """Windows the server keeps for late pages (its own session's history)."""
    return len(server.channel_for(None).history)


def stores(pipeline, server, scorer, recorder) -> dict[str, int | None]:
    """len() of every bounded store reachable from the outside (None: not found in this
    version of the code; the bench reads private fields and must not break on a rename)."""
    s = pipeline.scoring
    probes = {
        "pipeline.messages": lambda: len(s.messages),
        "pipeline.latencies(max recent)": lambda: max(recent_len(v) for v in s.latencies.values()),
        "window_queue": lambda: len(pipeline.queue),
        "assembler.assemble_ms": lambda: recent_len(pipeline.assembler.assemble_ms),
        "scorer.text_cache": lambda: len(scorer._text_cache),
        "scorer.step_ms": lambda: recent_len(scorer.step_ms),
        "server.history": lambda: server_history(server),
        "server.channels": lambda: server.stats()["channels"],
        "server.latencies(max)": lambda: max((len(v) for v in server._figures._counters.latencies.values()), default=0),
        "server.clients": lambda: server.stats()["clients"],
        "server.client_queue(max)": lambda: max((c.queue.qsize() for c in list(server._streams.clients.values())), default=0),
        "recorder.pending_audio": lambda: len(recorder._pending_audio),
        "recorder.frame_queue": lambda: recorder.stats()["video_queued"],
        "recorder.vtt_growing": lambda: len(recorder._vtt._growing),
        "threads": threading.active_count,
    }
    if pipeline.speech is not None:
        t = pipeline.speech.transcript
        probes.update({
            "transcript.words_kept": lambda: len(t),
            "transcript.lags": lambda: recent_len(t.lags),
            "transcript.pass_ms": lambda: recent_len(t.pass_ms),
            "speech.hypothesis": lambda: len(pipeline.speech.stream._hypothesis),
        })
    if pipeline.faces is not None:
        f = pipeline.faces
        probes.update({
            "faces.track": lambda: len(f.track),
            "faces.busy_ms": lambda: recent_len(f.busy_ms),
            "frame_feed": lambda: len(f.feed._q),
        })
    out: dict[str, int | None] = {}
    for name, probe in probes.items():
        try:
            out[name] = int(probe())
        except Exception:
            out[name] = None
    return out


def folder_sizes(folder: pathlib.Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hours", type=float, default=8.0, help="session time to simulate (default 8)")
    p.add_argument("--quick", action="store_true", help="a 20-minute smoke run (overrides --hours)")
    p.add_argument("--sample-minutes", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=2.0, help="video frames a second (face analysis and recording)")
    p.add_argument("--frame-size", type=int, default=160, help="side of the square face frames (px)")
    p.add_argument("--real-faces", action="store_true", help="mediapipe on every frame instead of the fixed features")
    p.add_argument("--fresh-every", type=int, default=8, help="every Nth utterance has new words (0: never)")
    p.add_argument("--no-video-audio", action="store_true", help="video.mp4 without its AAC sound track")
    p.add_argument("--fsync", action="store_true", help="fsync every recording write (the CLI's default; off: the disk's cost)")
    p.add_argument("--keep", default=None, help="record into this folder and keep it (default: a temporary one, removed)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak.json"))
    p.add_argument("--report", metavar="JSON", help="print the table and verdict of a saved run (no run)")
    args = p.parse_args(argv)
    if args.report:
        return report_saved(pathlib.Path(args.report))
    hours = 20 / 60 if args.quick else args.hours
    duration = hours * 3600
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from hcl.features.segment import SegmentFeaturizer
    from realtime.core.component import Policy
    from realtime.pipeline.build import session_info
    from realtime.pipeline.live import (
        LivePipeline,
        PipelineOptions,
        new_session_id,
        session_hello,
    )
    from realtime.pipeline.scorer import WindowScorer
    from realtime.recording import SessionRecorder
    from realtime.sources.demo import NEGATIVE, POSITIVE, face_image
    from realtime.sources.generated import (
        GeneratedSource,
        ScriptedTranscriber,
        SpeechLoop,
    )
    from realtime.web.server import DashboardServer

    rss_start = rss_mb()
    t_setup = time.perf_counter()
    scorer = WindowScorer(device="cpu")
    scorer.warm_up()
    loop = SpeechLoop.spoken((POSITIVE, NEGATIVE), gap=2.0)
    frame = face_image(args.frame_size)
    real = SegmentFeaturizer(settings=scorer.features)
    if args.real_faces:
        featurizer, stand_ins = real, {k: v for k, v in STAND_INS.items() if k != "face analysis"}
    else:
        features = real.face.frame(frame, 0)  # the real extractor, once
        real.close()
        featurizer, stand_ins = StandInFaceFeaturizer(real, FixedFace(features)), dict(STAND_INS)
        if features is None:
            print("warning: mediapipe found no face in the image; the stand-in returns 'no face'", file=sys.stderr)
    transcriber = ScriptedTranscriber(loop, fresh_every=args.fresh_every)
    source = GeneratedSource(duration=duration, loop=loop, frame=frame, fps=args.fps, policy=Policy.FAST)
    options = PipelineOptions(policy=Policy.FAST, readouts=False)  # FixedFace gives features, not faces
    session_id = new_session_id()
    folder = pathlib.Path(args.keep) if args.keep else pathlib.Path(tempfile.mkdtemp(prefix="soak-")) / "session"
    recorder = SessionRecorder(
        folder,
        session_info=session_info(session_id=session_id, scorer=scorer, options=options, mode="live", source=source.name),
        video_fps=args.fps,
        fsync=args.fsync,
        audio=not args.no_video_audio,
    )

    marks = [round(m * 60, 3) for m in _frange(args.sample_minutes, duration / 60 + 1e-9, args.sample_minutes)]
    requests: queue.Queue = queue.Queue()
    next_mark = {"i": 0}

    def on_window(msg: dict[str, Any]) -> None:
        """At each sampling mark the scoring thread waits while the main thread samples."""
        i = next_mark["i"]
        if i < len(marks) and msg["end"] >= marks[i] - 1e-6:
            next_mark["i"] = i + 1
            done = threading.Event()
            requests.put((float(msg["end"]), done))
            done.wait(300)

    pipeline: LivePipeline | None = None

    def live_metrics() -> dict[str, Any]:  # what hcl-live's /metrics serves
        out = pipeline.metrics() if pipeline is not None else {}
        out["recording"] = recorder.stats()
        return out

    server = DashboardServer(host="127.0.0.1", port=0, hello=session_hello(session_id=session_id, scorer=scorer, mode="live"),
                             metrics=live_metrics, recording=folder)
    server.start()
    metrics_url = f"http://127.0.0.1:{server.port}/metrics"
    pipeline = LivePipeline(source=source, scorer=scorer, options=options, session_id=session_id, featurizer=featurizer,
                            transcriber=transcriber, publish=server.publish, recorder=recorder, on_window=on_window)
    reader = WindowReader(server.ws_url)
    reader.start()
    setup_s = time.perf_counter() - t_setup

    print(f"soak: {hours:g} h of session time, policy FAST, {args.fps:g} fps {args.frame_size}px frames, "
          f"recording into {folder}, dashboard {server.url}", flush=True)
    print("stand-ins: " + "; ".join(f"{k}: {v}" for k, v in stand_ins.items()), flush=True)
    samples: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "args": {**vars(args), "hours": hours},
        "real_parts": ["LivePipeline (Policy.FAST)", "WindowScorer (shipped model)", "audio features", "text encoder",
                       "SpeechWorker/Transcript", "SessionRecorder (video on)", "DashboardServer /metrics over HTTP",
                       "websocket client", "GeneratedSource (espeak-ng speech, real face image)"],
        "stand_ins": stand_ins,
        "setup_s": round(setup_s, 1),
        "rss_before_start_mb": round(rss_start, 1),
        "samples": samples,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    out_path = pathlib.Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    def sample(t_session: float) -> dict[str, Any]:
        gc.collect()
        http_ms, http_max, http_min, body = timed(lambda: http_get(metrics_url))
        metrics_ms, metrics_max, metrics_min, _ = timed(pipeline.metrics)
        m = json.loads(body)
        pm = m.get("pipeline", {})
        cache = pm.get("text_cache", {})
        row = {
            "session_s": round(t_session, 1),
            "session_h": round(t_session / 3600, 3),
            "wall_s": round(time.perf_counter() - t_run, 1),
            "rss_mb": round(rss_mb(), 1),
            "py_objects": len(gc.get_objects()),
            "metrics_http_ms": round(http_ms, 2),
            "metrics_http_max_ms": round(http_max, 2),
            "metrics_http_min_ms": round(http_min, 2),
            "metrics_bytes": len(body),
            "pipeline_metrics_ms": round(metrics_ms, 3),
            "pipeline_metrics_max_ms": round(metrics_max, 3),
            "pipeline_metrics_min_ms": round(metrics_min, 3),
            "windows": pm.get("windows"),
            "dropped_windows": pm.get("dropped_windows"),
            "words": (pm.get("transcript") or {}).get("words"),
            "text_cache": cache,
            "latency_ms_p50": {k: v.get("p50") for k, v in (pm.get("latency_ms") or {}).items()},
            "client": {"received": dict(reader.counts), "last_seq": reader.last_seq, "error": reader.error,
                       "server_client_drops": m.get("client_drops")},
            "recording": folder_sizes(folder),
            "video_frames": recorder.stats()["video_frames"],
            "video_frames_dropped": recorder.stats()["video_frames_dropped"],
            "stores": stores(pipeline, server, scorer, recorder),
            "load": [round(x, 2) for x in os.getloadavg()],
        }
        return row

    def report(final: bool) -> None:
        result["summary"] = summarize(samples)
        out_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        if final:
            print_table(samples, result["summary"])

    t_run = time.perf_counter()
    cpu0 = time.process_time()
    interrupted = False
    try:
        pipeline.start()
        while True:
            try:
                t_session, done = requests.get(timeout=0.5)
            except queue.Empty:
                if pipeline.wait(0):
                    break
                continue
            try:
                row = sample(t_session)
                samples.append(row)
                print(f"  {_hm(row['session_s'])}  wall {row['wall_s']:>7.1f} s  RSS {row['rss_mb']:>7.1f} MB  "
                      f"objects {row['py_objects']:>8d}  /metrics {row['metrics_http_ms']:>6.1f} ms "
                      f"({row['metrics_bytes']} B)  metrics() {row['pipeline_metrics_ms']:>6.2f} ms  "
                      f"windows {row['windows']}  load {row['load'][0]}", flush=True)
                report(final=False)
            finally:
                done.set()
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: stopping the pipeline", flush=True)
    finally:
        wall = time.perf_counter() - t_run
        result["run_wall_s"] = round(wall, 1)
        result["run_cpu_s"] = round(time.process_time() - cpu0, 1)
        result["problems"] = pipeline.problems()
        result["interrupted"] = interrupted
        pipeline.stop()
        pipeline.join()
        reader.stop()
        server.stop()
        server.join(10)
        featurizer.close()
        result["recording_final"] = {"stats": recorder.stats(), "files": folder_sizes(folder)}
        result["client_final"] = {"received": dict(reader.counts), "last_seq": reader.last_seq, "error": reader.error}
        if not args.keep:
            shutil.rmtree(folder.parent, ignore_errors=True)
    report(final=True)
    print(f"wall {result['run_wall_s']} s for {hours:g} h of session time "
          f"({hours * 3600 / max(1e-9, result['run_wall_s']):.1f}x real time), CPU {result['run_cpu_s']} s; "
          f"problems: {result['problems'] or 'none'}; client: {result['client_final']}")
    print(f"wrote {out_path}")
    return 1 if result["problems"] or interrupted else 0


def _frange(start: float, stop: float, step: float) -> list[float]:
    out, x = [], start
    while x <= stop:
        out.append(x)
        x += step
    return out


def _n(x) -> str:
    return "-" if x is None else str(x)


def _hm(seconds: float) -> str:
    m = int(round(seconds / 60))
    return f"{m // 60}:{m % 60:02d}"


def report_saved(path: pathlib.Path) -> int:
    result = json.loads(path.read_text())
    result["summary"] = summarize(result["samples"])
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(result["samples"], result["summary"])
    return 0


def _hour_ratio(samples: list[dict[str, Any]], key: str) -> float | None:
    """Median of `key` over the last hour's samples / over the first hour's (from minute
    10): the cost ratio with the noise of single samples on a shared machine averaged out."""
    rows = [s for s in samples if s.get(key) is not None]
    if not rows:
        return None
    end = rows[-1]["session_h"]
    first = [s[key] for s in rows if s["session_h"] <= 1.0 + 1e-9]
    last = [s[key] for s in rows if s["session_h"] > end - 1.0 + 1e-9]
    if not first or not last or end < 2.0:
        return None
    return round(statistics.median(last) / statistics.median(first), 2)


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """RSS growth and /metrics cost ratio from the minute-10 sample (the first) to the last,
    the RSS slope (least squares, MB per session hour) over the samples after hour 1, and
    the cost ratios last hour / first hour (medians over their samples)."""
    if not samples:
        return {}
    first, last = samples[0], samples[-1]
    growth = last["rss_mb"] - first["rss_mb"]
    late = [s for s in samples if s["session_h"] >= 1.0] or samples
    slope = None
    if len(late) >= 3:
        xs, ys = [s["session_h"] for s in late], [s["rss_mb"] for s in late]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        den = sum((x - mx) ** 2 for x in xs)
        slope = round(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den, 2) if den else None
    return {
        "first_sample_h": first["session_h"],
        "last_sample_h": last["session_h"],
        "rss_first_mb": first["rss_mb"],
        "rss_last_mb": last["rss_mb"],
        "rss_max_mb": max(s["rss_mb"] for s in samples),
        "rss_growth_mb": round(growth, 1),
        "rss_max_growth_mb": round(max(s["rss_mb"] for s in samples) - first["rss_mb"], 1),
        "rss_slope_mb_per_h_after_1h": slope,
        "rss_within_limit": max(s["rss_mb"] for s in samples) - first["rss_mb"] <= RSS_LIMIT_MB,
        "metrics_http_ratio_last_over_first": round(last["metrics_http_ms"] / first["metrics_http_ms"], 2),
        "pipeline_metrics_ratio_last_over_first": round(last["pipeline_metrics_ms"] / first["pipeline_metrics_ms"], 2),
        "metrics_http_ratio_last_hour_over_first_hour": _hour_ratio(samples, "metrics_http_ms"),
        "metrics_http_min_ratio_last_hour_over_first_hour": _hour_ratio(samples, "metrics_http_min_ms"),
        "pipeline_metrics_ratio_last_hour_over_first_hour": _hour_ratio(samples, "pipeline_metrics_ms"),
        "metrics_bytes_first_last": [first["metrics_bytes"], last["metrics_bytes"]],
        "py_objects_first_last": [first["py_objects"], last["py_objects"]],
    }


def print_table(samples: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    if not samples:
        print("no samples")
        return
    base = samples[0]["rss_mb"]
    print()
    print(f"{'session':>7} | {'wall s':>7} | {'RSS MB':>7} {'dRSS':>6} | {'objects':>8} | {'/metrics ms':>11} "
          f"{'bytes':>6} | {'metrics() ms':>12} | {'hist':>5} {'msgs':>4} {'words':>5} {'cache':>5} | {'rec MB':>7} | {'load':>5}")
    for s in samples:
        st = s["stores"]
        rec = sum(s["recording"].values()) / 2**20
        print(f"{_hm(s['session_s']):>7} | {s['wall_s']:>7.1f} | {s['rss_mb']:>7.1f} {s['rss_mb'] - base:>+6.1f} | "
              f"{s['py_objects']:>8d} | {s['metrics_http_ms']:>11.2f} {s['metrics_bytes']:>6d} | "
              f"{s['pipeline_metrics_ms']:>12.3f} | {_n(st.get('server.history')):>5} {_n(st.get('pipeline.messages')):>4} "
              f"{_n(st.get('transcript.words_kept')):>5} {_n(st.get('scorer.text_cache')):>5} | {rec:>7.1f} | {s['load'][0]:>5.1f}")
    ok = "MET" if summary["rss_within_limit"] else "NOT MET"
    print(f"\nverdict: RSS {summary['rss_first_mb']} MB at {_hm(samples[0]['session_s'])} -> {summary['rss_last_mb']} MB "
          f"at {_hm(samples[-1]['session_s'])} ({summary['rss_growth_mb']:+.1f} MB; max {summary['rss_max_growth_mb']:+.1f} MB; "
          f"slope after 1 h {summary['rss_slope_mb_per_h_after_1h']} MB/h): aim +{RSS_LIMIT_MB:g} MB {ok}; "
          f"/metrics cost last/first {summary['metrics_http_ratio_last_over_first']}x over HTTP, "
          f"pipeline.metrics() {summary['pipeline_metrics_ratio_last_over_first']}x; last hour / first hour (medians): "
          f"/metrics {summary.get('metrics_http_ratio_last_hour_over_first_hour')}x, "
          f"pipeline.metrics() {summary.get('pipeline_metrics_ratio_last_hour_over_first_hour')}x")
    print(json.dumps(summary))


if __name__ == "__main__":
    raise SystemExit(main())
