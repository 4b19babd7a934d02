"""The command-line options of hcl-live, hcl-annotate and hcl-replay (argparse only).

Values are checked as they are parsed (the `type=` helpers, shared with hcl-train in hcl/arg_types.py): a bad one ends the
command with argparse's usage line, the option's name and what to give instead (exit
status 2), before any model loads.
"""

from __future__ import annotations

import argparse

from hcl.arg_types import device_name, integer, non_empty, positive_int
from hcl.config import ModelConfig
from hcl.features.config import SPEECH_ENGINES, FeatureSettings
from realtime.pipeline.speech import LIVE_ENGINE
from realtime.scale.settings import MAX_SESSIONS


def port_number(text: str) -> int:
    """A TCP port: 0 (any free one) to 65535."""
    port = integer(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: give 1 to 65535, or 0 for any free port")
    return port


def scorer_bytes_per_session() -> int:
    """The shared scorer's input rows one session place reserves (float32 features and
    their masks for the text, audio and video of one window), at the default model sizes."""
    features, model = FeatureSettings(), ModelConfig()
    lengths = {"text": features.text.max_tokens, "audio": features.window_steps, "video": features.window_steps}
    return sum(lengths[m] * (4 * model.input_dim(m) + 1) for m in lengths)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def session_count(text: str) -> int:
    """--max-sessions: 1 to MAX_SESSIONS."""
    n = integer(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: give 1 or more (the live sessions served at once)")
    if n > MAX_SESSIONS:
        raise argparse.ArgumentTypeError(
            f"{n} is more than one server takes (at most {MAX_SESSIONS}): it would reserve "
            f"{_size(n * scorer_bytes_per_session())} of scorer buffers up front "
            f"({_size(scorer_bytes_per_session())} a session) and trace a batch of every size up to {n} before "
            f"serving; for more sessions run hcl-live --ray with more ingress replicas (--ray-setting ingress_replicas=N)")
    return n


def asr_option(parser: argparse.ArgumentParser) -> None:
    """--asr: the speech engine (SpeechConfig.engine), the same choice in every command."""
    parser.add_argument("--asr", choices=SPEECH_ENGINES, default=LIVE_ENGINE,
                        help="speech recogniser: whisper (Whisper tiny.en) or moonshine (Moonshine base-en); "
                        f"default {LIVE_ENGINE} (the README's Speech engine section says why)")


def serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; others need a token)")
    parser.add_argument("--port", type=port_number, default=8765, help="port (default 8765; 0 = any free port)")
    parser.add_argument("--token", help="access token (generated when --host is not a loopback address)")
    parser.add_argument("--no-browser", action="store_true", help="do not open the dashboard in a browser")
    parser.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS/WSS with this certificate (with --tls-key): "
                        "browsers allow camera and microphone only on https or on 127.0.0.1/localhost")
    parser.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")


def live_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hcl-live", description="Real-time multimodal sentiment monitor with a browser dashboard.")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--camera",
        metavar="N|PATH|URL",
        help="camera index, device path (/dev/video2) or stream URL (rtsp://..., http://...); default 0 "
        "when no --file / --demo / --no-camera",
    )
    src.add_argument("--file", metavar="PATH", help="play an audio/video file as if it were live")
    src.add_argument("--demo", action="store_true", help="play the built-in demo clip (made with espeak-ng on first use)")
    src.add_argument("--no-camera", action="store_true", help="microphone only: speech and text, no video")
    src.add_argument("--browser", action="store_true",
                     help="no local capture: people start their own sessions from the dashboard "
                     "(\"Start my camera and microphone\")")
    p.add_argument("--max-sessions", type=session_count, default=4, metavar="N",
                   help=f"most live sessions at once, this one and the browsers' (default 4, at most {MAX_SESSIONS}); a new one is also "
                   "refused while the running ones drop windows or their transcript lags")
    p.add_argument("--mic", metavar="N|NAME", help="microphone index or name (default: the default input)")
    ray = p.add_argument_group("Ray Serve (pip install hcl-live[ray])")
    ray.add_argument("--ray", action="store_true", help="browser sessions (as --browser) spread over the replicas of "
                     "a Ray Serve application (realtime.scale.serve); --host/--port are Serve's HTTP proxy")
    ray.add_argument("--ray-address", type=non_empty, metavar="ADDRESS", help="join this Ray cluster (e.g. auto); default: start a local Ray")
    ray.add_argument("--ray-setting", action="append", metavar="KEY=VALUE",
                     help="a realtime.scale.serve.ServeSettings field, e.g. ingress_replicas=4 scorer_gpus=1 (repeatable)")
    p.add_argument("--list-devices", action="store_true", help="list cameras and microphones and exit")
    serve_options(p)
    p.add_argument("--record", metavar="DIR", help="record the session (scores, transcript, audio, video) into DIR; "
                   "each browser session in DIR/<session id>/")
    p.add_argument("--checkpoint", metavar="PATH", help="model checkpoint (default: the shipped live model)")
    p.add_argument("--fast", action="store_true", help="--file/--demo: as fast as possible instead of real time")
    p.add_argument(
        "--reproducible",
        action="store_true",
        help="--file/--demo in real time: windows wait for their transcript, so the scores equal hcl-annotate's "
        "(default: like a live device, windows never wait; needs a machine fast enough for Whisper)",
    )
    p.add_argument("--provisional-words", action="store_true",
                   help="live policy: score windows also on the words Whisper has heard but not yet confirmed "
                   "(shown greyed), and again when they commit (PipelineOptions.provisional_words)")
    p.add_argument("--exit-when-done", action="store_true", help="--file/--demo: exit when the file ends (default: keep serving)")
    p.add_argument("--device", default="auto", type=device_name, help="scoring device: auto, cpu, cuda or cuda:N")
    asr_option(p)
    p.add_argument("--verbose", "-v", action="store_true")
    return p


def annotate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hcl-annotate",
        description="Score a media file as fast as possible through the live path; writes a session folder like hcl-live --record. "
        "With --ray: many files (files, folders, globs) on Ray Data, one session folder each under -o plus summary.csv.",
    )
    p.add_argument("inputs", nargs="+", metavar="FILE", help="audio/video file (with --ray: files, folders or glob patterns)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="session folder to write (with --ray: the parent folder)")
    p.add_argument("--checkpoint", metavar="PATH", help="model checkpoint (default: the shipped live model)")
    p.add_argument("--device", default="auto", type=device_name, help="scoring device: auto, cpu, cuda or cuda:N")
    asr_option(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--verbose", "-v", action="store_true")
    ray = p.add_argument_group("Ray (pip install hcl-live[ray])")
    ray.add_argument("--ray", action="store_true", help="annotate the inputs in parallel on Ray Data (resumable: finished files are skipped)")
    ray.add_argument("--ray-address", type=non_empty, metavar="ADDRESS", help="join this Ray cluster (e.g. auto); default: start a local Ray on this machine's CPUs")
    ray.add_argument("--ray-workers", type=positive_int, metavar="N", help="actors, each holding the models (default: one per CPU of the cluster)")
    return p


def replay_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hcl-replay", description="Serve a recorded session folder to the dashboard.")
    p.add_argument("directory", help="session folder written by hcl-live --record or hcl-annotate")
    serve_options(p)
    p.add_argument("--verbose", "-v", action="store_true")
    return p
