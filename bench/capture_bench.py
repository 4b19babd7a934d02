"""What one browser capture client costs the server: bytes on the wire and the CPU of
receiving its messages (unpack + rate guard + BrowserSource.feed on the server's
thread, JPEG decoding on the source's thread).

    python bench/capture_bench.py [--seconds 60] [--fps 10] [--width 320] [--quality 70] [--repeat 5] [--live]

The client is simulated with the format's own packing: 100 ms chunks of generated
speech-like audio (16 kHz int16) and JPEGs of a real face (skimage's astronaut, as
in the tests) at `--width` px and `--fps`, encoded by OpenCV at `--quality` (about
the size a browser's canvas.toBlob gives at 0.7). Times come from a fake session
clock, so the figures are CPU cost, not pacing.

`--live` adds one real-time session: a simulated client (espeak-ng sentences over
the face, 100 ms chunks, 10 fps JPEGs, sent at real-time pace through pack/unpack)
feeding a BrowserSource in LivePipeline (live policy, the shipped scorer, Whisper,
the face model): windows, drops, per-stage latency and transcript lag.

Prints a table and writes bench/results/capture.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def begin(self) -> None:
        pass  # counts from construction


def messages(seconds: float, fps: float, width: int, quality: int) -> tuple[list[tuple[float, bytes]], list[int]]:
    """(arrival time, message bytes) of a client, in sending order; the JPEG sizes."""
    import cv2
    from media_fixtures import face_image

    from realtime.sources.capture_wire import CaptureKind, pack, pack_audio

    img = face_image(512)
    h = int(round(width * 3 / 4 / 2)) * 2
    frames = []
    for k in range(8):  # a few slightly different frames (the face moving by a pixel or two)
        shifted = np.roll(img, k, axis=1)
        small = cv2.resize(shifted, (width, h), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        frames.append(buf.tobytes())
    rng = np.random.default_rng(0)
    t = np.arange(1600) / 16000
    events = []
    for i in range(int(seconds * 10)):
        chunk = 0.2 * np.sin(2 * np.pi * (150 + 50 * (i % 7)) * t) + rng.normal(0, 0.01, 1600)
        events.append((i * 0.1 + 0.1, "audio", i * 0.1, chunk))
    for k in range(int(seconds * fps)):
        events.append((k / fps + 0.001, "video", k / fps, frames[k % len(frames)]))
    events.sort(key=lambda e: e[0])
    out = []
    for seq, (arrival, kind, t_client, payload) in enumerate(events, start=1):
        if kind == "audio":
            out.append((arrival, pack_audio(seq, t_client * 1000, payload)))
        else:
            out.append((arrival, pack(CaptureKind.VIDEO, seq, t_client * 1000, payload)))
    return out, [len(f) for f in frames]


def run_once(msgs: list[tuple[float, bytes]]) -> dict:
    from realtime.sources.browser import BrowserSource
    from realtime.sources.capture_wire import CaptureGuard, unpack

    clock = FakeClock()
    source = BrowserSource(clock=clock)
    source.start()
    guard = CaptureGuard()
    per_kind: dict[int, list[float]] = {2: [], 3: []}
    for arrival, data in msgs:
        clock.t = arrival
        t0 = time.perf_counter()
        if guard.admit(arrival, len(data)) is not None:
            raise SystemExit(f"the guard refused a normal client: {guard.violation}")
        source.feed(unpack(data))
        per_kind[data[5]].append((time.perf_counter() - t0) * 1e6)
        # let the decoder keep up, as it does in real time (one frame per 100 ms)
        if data[5] == 3:
            deadline = time.monotonic() + 1.0
            while source.frames_decoded + source.decode_errors < source.frames_received - source.frames_replaced and time.monotonic() < deadline:
                time.sleep(0.0002)
            source.frames.get(timeout=0)
    source.stop()
    source.join(5)
    st = source.stats()
    return {
        "audio_feed_us_p50": statistics.median(per_kind[2]),
        "audio_feed_us_p95": float(np.percentile(per_kind[2], 95)),
        "video_feed_us_p50": statistics.median(per_kind[3]),
        "video_feed_us_p95": float(np.percentile(per_kind[3], 95)),
        "decode_ms_p50": st["video"]["decode_ms"]["p50"],
        "decode_ms_p95": st["video"]["decode_ms"]["p95"],
        "decoded": st["video"]["decoded"],
        "audio_seconds": st["audio"]["seconds"],
    }


def live_session(fps: float) -> dict:
    """One real-time session through the live pipeline (see the module docstring)."""
    import threading

    import torch
    from capture_clients import clip_messages, jpeg_of, live_options, send_paced
    from media_fixtures import face_image, faint_noise, speak

    from realtime.pipeline.live import LivePipeline
    from realtime.pipeline.scorer import WindowScorer
    from realtime.sources.browser import BrowserSource
    from realtime.sources.capture_wire import parse_hello, unpack

    torch.set_num_threads(1)
    audio = np.concatenate([
        faint_noise(0.5, seed=1),
        speak("I really love this wonderful movie. The music is beautiful."),
        faint_noise(1.0, seed=2),
        speak("But the ending was terrible. I hated it, it was the worst."),
        faint_noise(2.0, seed=3),
    ])
    audio = audio[: len(audio) // 1600 * 1600]
    events = clip_messages(audio, [jpeg_of(face_image(256))], fps=fps)
    scorer = WindowScorer(device="cpu")
    source = BrowserSource.from_hello(parse_hello(unpack(events[0][1])))
    windows: list[dict] = []
    pipeline = LivePipeline(source=source, scorer=scorer, options=live_options(), on_window=windows.append)
    pipeline.start()
    sender = threading.Thread(target=send_paced, args=(lambda d: source.feed(unpack(d)), events[1:]), daemon=True)
    sender.start()
    sender.join(len(audio) / 16000 + 30)
    pipeline.wait(120)
    metrics = pipeline.metrics()
    pipeline.stop()
    pipeline.join()
    return {
        "seconds": len(audio) / 16000,
        "windows": len(windows),
        "dropped_windows": metrics["dropped_windows"],
        "latency_ms": metrics["latency_ms"],
        "transcript": metrics.get("transcript"),
        "source": source.stats(),
        "problems": metrics["problems"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--quality", type=int, default=70)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--live", action="store_true", help="also run one real-time session through the live pipeline")
    args = ap.parse_args()

    msgs, jpeg_sizes = messages(args.seconds, args.fps, args.width, args.quality)
    total = sum(len(d) for _, d in msgs)
    runs = [run_once(msgs) for _ in range(args.repeat)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    server_ms_per_s = (med["audio_feed_us_p50"] * 10 + med["video_feed_us_p50"] * args.fps) / 1000
    decode_ms_per_s = med["decode_ms_p50"] * args.fps
    result = {
        "settings": vars(args),
        "messages_per_s": len(msgs) / args.seconds,
        "bytes_per_s": total / args.seconds,
        "jpeg_bytes_mean": float(np.mean(jpeg_sizes)),
        "audio_bytes_per_s": 10 * (24 + 3200),
        "runs": runs,
        "median": med,
        "server_thread_ms_per_client_second": server_ms_per_s,
        "decode_thread_ms_per_client_second": decode_ms_per_s,
    }
    rows = [
        ("messages / s", f"{result['messages_per_s']:.1f}"),
        ("bytes / s (all)", f"{result['bytes_per_s'] / 1024:.1f} KiB"),
        ("  audio bytes / s", f"{result['audio_bytes_per_s'] / 1024:.1f} KiB"),
        (f"  JPEG {args.width} px q{args.quality}", f"{result['jpeg_bytes_mean'] / 1024:.1f} KiB mean"),
        ("feed audio msg p50 / p95", f"{med['audio_feed_us_p50']:.0f} / {med['audio_feed_us_p95']:.0f} us"),
        ("feed video msg p50 / p95", f"{med['video_feed_us_p50']:.0f} / {med['video_feed_us_p95']:.0f} us"),
        ("JPEG decode p50 / p95", f"{med['decode_ms_p50']:.2f} / {med['decode_ms_p95']:.2f} ms"),
        ("server thread per client", f"{server_ms_per_s:.2f} ms per s ({server_ms_per_s / 10:.3f} % of a core)"),
        ("decode thread per client", f"{decode_ms_per_s:.1f} ms per s ({decode_ms_per_s / 10:.2f} % of a core)"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"capture client cost, {args.seconds:g} s, {args.fps:g} fps, median of {args.repeat} runs")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    if args.live:
        live = result["live"] = live_session(args.fps)
        lat = live["latency_ms"]
        src = live["source"]
        tr = live["transcript"] or {}
        print(f"live session, {live['seconds']:.1f} s of speech over a face, one client at real-time pace")
        rows = [
            ("windows / dropped", f"{live['windows']} / {live['dropped_windows']}"),
            *[(f"latency {k} p50 / p95", f"{lat[k]['p50']} / {lat[k]['p95']} ms") for k in ("capture", "features", "scoring", "total")],
            ("transcript lag p50 / p95", f"{tr.get('lag_s', {}).get('p50')} / {tr.get('lag_s', {}).get('p95')} s"),
            ("message delay p50 / p95", f"{src['delay_ms']['p50']} / {src['delay_ms']['p95']} ms"),
            ("audio gap / late", f"{src['audio']['gap_seconds']} / {src['audio']['late_seconds']} s"),
            ("frames decoded / received", f"{src['video']['decoded']} / {src['video']['frames']}"),
            ("problems", "; ".join(live["problems"]) or "none"),
        ]
        width = max(len(r[0]) for r in rows)
        for name, value in rows:
            print(f"  {name:<{width}}  {value}")
    out = ROOT / "bench" / "results" / "capture.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
