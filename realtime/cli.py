"""Console commands: hcl-live, hcl-annotate, hcl-replay."""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import logging
import os
import pathlib
import secrets
import signal
import sys
import threading
import time
from typing import Any, Sequence

log = logging.getLogger("realtime")

# seconds Ctrl-C waits for the sessions' last passes and the shared services to finish
SHUTDOWN_WAIT = 30.0


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _setup_logging(verbose: bool) -> None:
    """Python logging at INFO (verbose) or WARNING; without --verbose the start-up chatter of
    the libraries (mediapipe / TFLite native lines, the "Loading weights" bars of the model
    loaders) is silenced too. Set before those libraries are imported."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("faster_whisper", "httpx", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if verbose:
        os.environ["HCL_NATIVE_LOGS"] = "1"  # read by hcl.features.face
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers / huggingface_hub bars
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("transformers", "huggingface_hub", "sentence_transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "transformers" in sys.modules:  # imported already: its bar switch was read at import
        try:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
        except AttributeError:
            pass


def _stop_signals_as_interrupt() -> None:
    """Ctrl-C (SIGINT) and SIGTERM both stop the session cleanly (KeyboardInterrupt in the
    main thread). SIGINT is set explicitly: a process started in the background of a
    non-interactive shell inherits SIGINT ignored, and Python then installs no handler,
    so without this `kill -INT` would not stop it."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread (tests calling live_main in a thread)
        pass


def _run(main, argv) -> int:
    try:
        return main(argv)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


# --------------------------------------------------------------------- helpers
def _load_scorer(checkpoint: str | None, device: str = "auto", max_streams: int = 1):
    from hcl.checkpoint import CheckpointError

    from realtime.scorer import WindowScorer

    try:
        return WindowScorer(checkpoint=checkpoint, device=device, max_streams=max_streams)
    except (FileNotFoundError, CheckpointError) as exc:
        raise CliError(str(exc)) from None


def _file_source(path: str, *, policy, fps: float):
    from realtime.component import Policy
    from realtime.sources import SourceError
    from realtime.sources.file import FileSource

    # two minutes of audio cover every consumer when nothing waits far behind the reader:
    # as fast as possible the reader stays within its read_ahead (30 s) of the windows, and
    # live windows never wait; --reproducible windows wait for speech however far it lags,
    # so that policy keeps the file (memory bounded by the file's length)
    keep_file = policy is Policy.REPRODUCIBLE
    source = FileSource(path=path, policy=policy, fps=fps, buffer_seconds=None if keep_file else 120.0)
    try:
        source.open()
    except SourceError as exc:
        raise CliError(str(exc)) from None
    return source


def _device_source(camera: str | None, mic: str | None, *, need_camera: bool):
    from realtime.sources import DeviceSource, SourceError
    from realtime.sources.camera import CameraSource
    from realtime.sources.microphone import MicrophoneSource

    cam = None
    if camera is not None or need_camera:
        cam = CameraSource(index=camera if camera is not None else 0)
        try:
            cam.open()
        except SourceError as exc:
            raise CliError(f"{exc}; --list-devices shows what exists") from None
    microphone = MicrophoneSource(device=mic)
    try:
        microphone.open()
    except SourceError as exc:
        if mic is not None or cam is None:
            raise CliError(f"{exc}; --list-devices shows what exists") from None
        print(f"warning: {exc}; going on without audio (and so without a transcript)", file=sys.stderr)
        microphone = None
    return DeviceSource(camera=cam, microphone=microphone)


def _record_dir(target: str, session_id: str) -> pathlib.Path:
    """--record DIR: DIR itself when new or empty, else a new folder named by the session inside it."""
    path = pathlib.Path(target)
    if path.exists() and not path.is_dir():
        raise CliError(f"--record {path}: is a file; give a folder")
    if path.is_dir() and any(path.iterdir()):
        return path / session_id
    return path


def session_info(*, session_id: str, scorer, options, mode: str, source: str) -> dict[str, Any]:
    """What session.json says about a recorded session (its model, settings and options)."""
    settings = scorer.features
    pipeline = dataclasses.asdict(options)
    pipeline["policy"] = options.policy.value
    return {
        "session": session_id,
        "mode": mode,
        "source": source,
        "model": scorer.model_info,
        "checkpoint": str(scorer.path) if scorer.path else None,
        "settings": {"step_seconds": settings.step_seconds, "window_steps": settings.window_steps},
        "clusters": scorer.config.clusters,
        "features": settings.to_dict(),
        "pipeline": pipeline,
    }


def _open_browser(url: str) -> None:
    import webbrowser

    try:
        webbrowser.open(url)
    except Exception:  # no browser here: the printed URL is enough
        pass


def _serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; others need a token)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    parser.add_argument("--token", help="access token (generated when --host is not a loopback address)")
    parser.add_argument("--no-browser", action="store_true", help="do not open the dashboard in a browser")
    parser.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS/WSS with this certificate (with --tls-key): "
                        "browsers allow camera and microphone only on https or on 127.0.0.1/localhost")
    parser.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")


def _tls_context(args):
    """The server's SSL context for --tls-cert/--tls-key, or None."""
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise CliError("--tls-cert and --tls-key go together (a certificate and its private key, PEM)")
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"--tls-cert {cert} / --tls-key {key}: {exc}; make a pair with openssl (see the README)") from None
    return ctx


def _token_for(host: str, token: str | None) -> str | None:
    from realtime.server import is_loopback

    if token is not None and not token.strip():
        raise CliError("--token must not be empty")
    if not is_loopback(host) and token is None:
        token = secrets.token_urlsafe(16)
    return token


def _start_server(args, *, hello: dict, metrics=None, session: dict | None = None, sessions=None):
    from realtime.server import DashboardServer

    token = _token_for(args.host, args.token)
    server = DashboardServer(host=args.host, port=args.port, token=token, hello=hello, metrics=metrics, session=session,
                             sessions=sessions, ssl_context=_tls_context(args))
    try:
        server.start()
    except OSError as exc:
        raise CliError(f"{exc}; choose another --port (0 = any free one)") from None
    print(f"dashboard: {server.url}", flush=True)
    if token and args.token is None:
        print("  (--host is not a loopback address: the dashboard needs this token; pass --token to choose it)", flush=True)
    if not args.no_browser:
        _open_browser(server.url)
    return server


# --------------------------------------------------------------------- hcl-live
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
    p.add_argument("--max-sessions", type=int, default=4, metavar="N",
                   help="most live sessions at once, this one and the browsers' (default 4); a new one is also "
                   "refused while the running ones drop windows or their transcript lags")
    p.add_argument("--mic", metavar="N|NAME", help="microphone index or name (default: the default input)")
    ray = p.add_argument_group("Ray Serve (pip install hcl-live[ray])")
    ray.add_argument("--ray", action="store_true", help="browser sessions (as --browser) spread over the replicas of "
                     "a Ray Serve application (realtime.ray_serve); --host/--port are Serve's HTTP proxy")
    ray.add_argument("--ray-address", metavar="ADDRESS", help="join this Ray cluster (e.g. auto); default: start a local Ray")
    ray.add_argument("--ray-setting", action="append", metavar="KEY=VALUE",
                     help="a realtime.ray_serve.ServeSettings field, e.g. ingress_replicas=4 scorer_gpus=1 (repeatable)")
    p.add_argument("--list-devices", action="store_true", help="list cameras and microphones and exit")
    _serve_options(p)
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
    p.add_argument("--device", default="auto", help="scoring device: auto, cpu or cuda")
    p.add_argument("--verbose", "-v", action="store_true")
    return p


def list_devices() -> str:
    from realtime.sources import SourceError
    from realtime.sources.camera import list_cameras
    from realtime.sources.microphone import list_microphones

    lines = ["cameras:"]
    cams = list_cameras()
    lines += [f"  --camera {i}" for i in cams] or ["  (none found)"]
    lines.append("microphones:")
    try:
        mics = list_microphones()
        lines += [f"  --mic {m.index}  {m.name} ({m.channels} ch, {m.sample_rate:g} Hz)" for m in mics] or ["  (none found)"]
    except SourceError as exc:
        lines.append(f"  (unavailable: {exc})")
    return "\n".join(lines)


def _live(argv: Sequence[str] | None) -> int:
    args = live_parser().parse_args(argv)
    _setup_logging(args.verbose)
    if args.list_devices:
        print(list_devices())
        return 0
    if args.fast and not (args.file or args.demo):
        raise CliError("--fast goes with --file or --demo (a camera runs in real time)")
    if args.reproducible and not (args.file or args.demo):
        raise CliError("--reproducible goes with --file or --demo")
    if args.mic is not None and (args.file or args.demo):
        raise CliError("--mic goes with --camera or --no-camera (a file brings its own audio)")
    if args.camera is not None and not args.camera.strip():
        raise CliError("--camera needs an index, a device path or a URL")
    if args.max_sessions < 1:
        raise CliError("--max-sessions must be at least 1")
    _token_for(args.host, args.token)
    _tls_context(args)  # a bad certificate fails before the models load
    if args.ray:
        if args.file or args.demo or args.camera is not None or args.no_camera:
            raise CliError("--ray serves browser sessions only: drop --file/--demo/--camera/--no-camera")
        return _ray_sessions(args)
    if args.browser:
        return _browser_sessions(args)
    from realtime.component import Policy
    from realtime.pipeline import LivePipeline, PipelineOptions, new_session_id, session_hello
    from realtime.speech import SpeechOptions

    # --fast and --reproducible name the two policies a file can have besides LIVE
    policy = Policy.FAST if args.fast else Policy.REPRODUCIBLE if args.reproducible else Policy.LIVE
    if args.provisional_words and policy is not Policy.LIVE:
        raise CliError("--provisional-words needs the live policy: leave out --reproducible and --fast "
                       "(their windows read confirmed words only, so that a file gives the same scores every time)")
    from hcl.features.config import FeatureSettings

    fps = FeatureSettings().face.frames_per_second
    if args.demo:
        from realtime.demo import DemoError, demo_clip

        try:
            path = demo_clip()
        except DemoError as exc:
            raise CliError(str(exc)) from None
        source = _file_source(str(path), policy=policy, fps=fps)
    elif args.file:
        source = _file_source(args.file, policy=policy, fps=fps)
    elif args.no_camera:
        source = _device_source(None, args.mic, need_camera=False)
    else:
        source = _device_source(args.camera, args.mic, need_camera=True)
    scorer = _load_scorer(args.checkpoint, args.device, max_streams=args.max_sessions)
    if source.kind == "file" and scorer.features.face.frames_per_second != fps:
        source.fps = scorer.features.face.frames_per_second
    options = PipelineOptions(policy=policy, speech=SpeechOptions(max_backlog=None if args.reproducible else 4.0),
                              provisional_words=args.provisional_words or None)
    session_id = new_session_id()
    recorder = None
    server = None

    def recording_failed(message: str) -> None:
        _recording_failed(server, message)

    if args.record:
        from realtime.recording import SessionRecorder

        folder = _record_dir(args.record, session_id)
        try:
            recorder = SessionRecorder(
                folder,
                session_info=session_info(session_id=session_id, scorer=scorer, options=options, mode="live", source=source.name),
                audio=source.audio is not None,
                on_error=recording_failed,
            )
        except (FileExistsError, OSError) as exc:
            raise CliError(f"--record {folder}: {exc}") from None
        print(f"recording into {folder}", flush=True)
    pipeline = None  # the server starts first (the pipeline publishes to it); /metrics reads the pipeline once made
    hub = _session_hub(args, scorer)
    server = _start_server(args, hello=session_hello(session_id=session_id, scorer=scorer, mode="live"),
                           metrics=lambda: _live_metrics(pipeline, recorder), sessions=hub)
    # this session is one of the hub's: it scores through the shared scorer and is listed,
    # measured and counted for admission like the browsers' (its own link is printed)
    pipeline = LivePipeline(source=source, scorer=hub.scorer_client(session_id), options=options,
                            session_id=session_id, publish=server.publish, recorder=recorder)
    server.attach_recording(recorder.directory if recorder is not None else None)
    own = hub.adopt(pipeline, kind=source.kind, recorder=recorder)
    server.alias_channel(own.secret)
    print(f"this session's own link (needs no token): {server.url.split('?')[0]}s/{own.secret}", flush=True)
    hub.start()
    _stop_signals_as_interrupt()
    status = 0
    try:
        scorer.warm_up()
        pipeline.start()
        print(f"monitoring {source.name}; Ctrl-C to stop", flush=True)
        while not pipeline.wait(0.5):
            pass
        problems = pipeline.problems()
        if problems:
            print("problems: " + "; ".join(problems), file=sys.stderr)
            status = 1
        m = pipeline.metrics()
        print(f"{source.name} finished: {m['windows']} windows, {m['dropped_windows']} dropped", flush=True)
        server.set_status("finished", f"{m['windows']} windows")
        if recorder is not None:
            recorder.close()
            if recorder.error is not None:
                print(f"{recorder.error}; {recorder.windows} windows were recorded before it", file=sys.stderr)
                status = 1
        if not args.exit_when_done:
            print("still serving the dashboard; Ctrl-C to quit", flush=True)
            while True:
                time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        pipeline.stop()
        hub.stop()
        hub.join(SHUTDOWN_WAIT)
        server.stop()
        _report_stragglers()
    return status


def _session_hub(args, scorer):
    """The sessions of this server: --max-sessions, browser sessions recorded under --record."""
    from realtime.sessions import HubConfig, SessionHub

    record = pathlib.Path(args.record) if args.record else None
    if record is not None and record.exists() and not record.is_dir():
        raise CliError(f"--record {record}: is a file; give a folder")
    return SessionHub(scorer=scorer, config=HubConfig(max_sessions=args.max_sessions, record_dir=record))


def _browser_sessions(args) -> int:
    """hcl-live --browser: no local capture; each browser that presses "Start my camera and
    microphone" is a session of its own, until Ctrl-C."""
    from realtime import protocol
    from realtime.pipeline import session_hello

    scorer = _load_scorer(args.checkpoint, args.device, max_streams=args.max_sessions)
    hub = _session_hub(args, scorer)
    server = _start_server(args, hello=session_hello(session_id="browser-sessions", scorer=scorer, mode="live"),
                           sessions=hub)
    server.set_status(protocol.STATUS_LOADING, "no local capture: press \"Start my camera and microphone\" to monitor yourself")
    _stop_signals_as_interrupt()
    try:
        scorer.warm_up()
        hub.start()
        print(f"waiting for browser sessions (at most {args.max_sessions}); operator view: "
              f"{server.url.split('?')[0]}operator; Ctrl-C to stop", flush=True)
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        hub.stop()  # every session ends: its windows are scored, its recording closes
        hub.join(SHUTDOWN_WAIT)
        server.stop()
        _report_stragglers()
    return 0


def _report_stragglers() -> None:
    """Name the threads still running once everything was stopped: a daemon thread still
    in a native call when the interpreter exits is where a hang at exit would come from."""
    main = threading.main_thread()
    # tqdm's monitor only sleeps on an event between progress bars: it cannot hold up exit
    left = [t.name for t in threading.enumerate()
            if t is not main and t is not threading.current_thread() and t.is_alive() and t.name != "tqdm_monitor"]
    if left:
        log.warning("still running after stop (%.0f s): %s", SHUTDOWN_WAIT, ", ".join(sorted(left)))


def _ray_sessions(args) -> int:
    """hcl-live --ray: the browser sessions on Ray Serve (realtime.ray_serve) until Ctrl-C."""
    try:
        import ray
        from ray import serve

        from realtime.ray_serve import APP_NAME, ServeSettings, build_app
    except ImportError as exc:
        raise CliError(f"hcl-live --ray needs Ray Serve ({exc}): pip install 'hcl-live[ray]'") from None
    if args.tls_cert or args.tls_key:
        raise CliError("--tls-cert/--tls-key do not apply to --ray: put a TLS proxy in front of Serve's")
    token = _token_for(args.host, args.token)
    values: dict[str, Any] = {"checkpoint": args.checkpoint, "max_sessions": args.max_sessions, "token": token,
                              "record_dir": str(pathlib.Path(args.record).resolve()) if args.record else None}
    for item in args.ray_setting or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--ray-setting {item!r}: give KEY=VALUE, e.g. ingress_replicas=2")
        values[key.strip()] = value.strip()
    try:
        settings = ServeSettings.from_args(values)
    except (TypeError, ValueError) as exc:
        raise CliError(f"--ray-setting: {exc}") from None
    _stop_signals_as_interrupt()
    ray.init(address=args.ray_address or "local", include_dashboard=False, log_to_driver=args.verbose)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(build_app(settings), name=APP_NAME, route_prefix="/")
        host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
        print(f"dashboard: http://{host}:{args.port}/" + (f"?token={token}" if token else ""), flush=True)
        print(f"Ray Serve: {settings.ingress_replicas} ingress replica(s) x {settings.max_sessions} sessions; Ctrl-C to stop",
              flush=True)
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        try:
            serve.delete(APP_NAME)  # the replicas stop: every session ends, its recording closes
        finally:
            ray.shutdown()
    return 0


def _recording_failed(server, message: str) -> None:
    """The recorder stopped (e.g. the disk is full): tell the terminal and the dashboard;
    the monitoring goes on."""
    from realtime import protocol

    print(f"warning: {message}; monitoring goes on", file=sys.stderr, flush=True)
    if server is not None:
        server.publish(protocol.error_message(message))


def _live_metrics(pipeline, recorder) -> dict[str, Any]:
    """The /metrics body: the pipeline's figures plus the recorder's state (its error, if any)."""
    out = pipeline.metrics() if pipeline is not None else {}
    if recorder is not None:
        out["recording"] = recorder.stats()
    return out


def live_main(argv: Sequence[str] | None = None) -> int:
    return _run(_live, argv)


def live_command() -> int:
    """The hcl-live console script: `live_main`, then an exit that cannot hang. Everything
    is stopped and the recording closed by the time it returns, but the interpreter's own
    exit still runs native finalisers (mediapipe, Whisper, torch thread pools); if that
    has not finished in SHUTDOWN_WAIT seconds, every thread's stack goes to stderr and
    the process exits with status 1, instead of waiting for a second Ctrl-C."""
    status = live_main()
    faulthandler.dump_traceback_later(SHUTDOWN_WAIT, exit=True)
    return status


# --------------------------------------------------------------------- hcl-annotate
def annotate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hcl-annotate",
        description="Score a media file as fast as possible through the live path; writes a session folder like hcl-live --record. "
        "With --ray: many files (files, folders, globs) on Ray Data, one session folder each under -o plus summary.csv.",
    )
    p.add_argument("inputs", nargs="+", metavar="FILE", help="audio/video file (with --ray: files, folders or glob patterns)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="session folder to write (with --ray: the parent folder)")
    p.add_argument("--checkpoint", metavar="PATH", help="model checkpoint (default: the shipped live model)")
    p.add_argument("--device", default="auto", help="scoring device: auto, cpu or cuda")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--verbose", "-v", action="store_true")
    ray = p.add_argument_group("Ray (pip install hcl-live[ray])")
    ray.add_argument("--ray", action="store_true", help="annotate the inputs in parallel on Ray Data (resumable: finished files are skipped)")
    ray.add_argument("--ray-address", metavar="ADDRESS", help="join this Ray cluster (e.g. auto); default: start a local Ray on this machine's CPUs")
    ray.add_argument("--ray-workers", type=int, metavar="N", help="actors, each holding the models (default: one per CPU of the cluster)")
    return p


def annotate(path: str, output: str, *, checkpoint: str | None = None, device: str = "auto", progress: bool = True, scorer=None,
             featurizer=None, transcriber=None):
    """Run the live path on `path` as fast as possible into session folder `output`; returns the pipeline.

    `scorer`, `featurizer` (a SegmentFeaturizer, image mode: no state between frames) and
    `transcriber` (a SpeechTranscriber) may be given to keep loaded models across files
    (the --ray actors do); by default each is made for this file."""
    from tqdm import tqdm

    from realtime.component import Policy
    from realtime.pipeline import LivePipeline, PipelineOptions, new_session_id
    from realtime.recording import SessionRecorder
    from realtime.windowing import last_step

    from hcl.features.config import FeatureSettings

    source = _file_source(path, policy=Policy.FAST, fps=FeatureSettings().face.frames_per_second)  # fail fast on the file
    scorer = scorer or _load_scorer(checkpoint, device)
    source.fps = scorer.features.face.frames_per_second
    session_id = new_session_id()
    options = PipelineOptions(policy=Policy.FAST)
    out = pathlib.Path(output)
    try:
        recorder = SessionRecorder(
            out,
            session_info=session_info(session_id=session_id, scorer=scorer, options=options, mode="annotate", source=str(path)),
            audio=source.audio is not None,
        )
    except (FileExistsError, OSError) as exc:
        raise CliError(f"-o {out}: {exc}") from None
    total = last_step(source.duration or 0.0, scorer.features.step_seconds)
    bar = tqdm(total=total, unit="win", desc=pathlib.Path(path).name, disable=not progress)
    pipeline = LivePipeline(source=source, scorer=scorer, options=options, session_id=session_id, recorder=recorder,
                            featurizer=featurizer, transcriber=transcriber, on_window=lambda msg: bar.update(1))
    try:
        pipeline.start()
        while not pipeline.wait(0.5):
            pass
        # the total was estimated from the header's duration: at the end, the bar shows
        # every window there was as 100 % (a file shorter than its header says included)
        bar.total = bar.n
        bar.refresh()
    finally:
        pipeline.stop()
        bar.close()
    return pipeline


def _annotate(argv: Sequence[str] | None) -> int:
    parser = annotate_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    _stop_signals_as_interrupt()
    if args.ray:
        from realtime.archive import archive_command

        return archive_command(args)
    if args.ray_address or args.ray_workers:
        parser.error("--ray-address and --ray-workers go with --ray")
    if len(args.inputs) != 1:
        parser.error("one file without --ray (several files, folders or globs need --ray)")
    args.file = args.inputs[0]
    try:
        pipeline = annotate(args.file, args.output, checkpoint=args.checkpoint, device=args.device, progress=not args.quiet)
    except KeyboardInterrupt:
        print("interrupted; the windows so far are in the session folder", file=sys.stderr)
        return 130
    problems = pipeline.problems()
    if pipeline.recorder is not None and pipeline.recorder.error is not None:
        problems.append(pipeline.recorder.error)
    s = pipeline.scores
    print(
        f"{args.file}: {s.count} windows"
        + (f", mean score {s.mean:+.2f}, min {s.min:+.2f}, max {s.max:+.2f}" if s.count else "")
        + f"; written to {args.output}"
    )
    if problems:
        print("problems: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


def annotate_main(argv: Sequence[str] | None = None) -> int:
    return _run(_annotate, argv)


# --------------------------------------------------------------------- hcl-replay
def replay_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hcl-replay", description="Serve a recorded session folder to the dashboard.")
    p.add_argument("directory", help="session folder written by hcl-live --record or hcl-annotate")
    _serve_options(p)
    p.add_argument("--verbose", "-v", action="store_true")
    return p


def replay_messages(directory: str) -> tuple[dict, dict]:
    """(hello, session) protocol messages for a recorded session folder."""
    from realtime import protocol
    from realtime.recording import SessionError, read_session

    try:
        rec = read_session(directory)
    except SessionError as exc:
        raise CliError(str(exc)) from None
    info = rec.info
    settings = info.get("settings") or {}
    clusters = info.get("clusters")
    if clusters is None:
        first = next((w for w in rec.windows if w.get("weights")), None)
        clusters = len(next(iter(first["weights"].values()))) if first else 0
    hello = protocol.hello_message(
        session=rec.session_id,
        mode="replay",
        model=info.get("model") or {"name": "?", "version": ""},
        step_seconds=float(settings.get("step_seconds", 0.5)),
        window_steps=int(settings.get("window_steps", 8)),
        clusters=int(clusters),
    )
    session = protocol.session_message(session=rec.session_id, windows=rec.windows, words=rec.words)
    return hello, session


def _replay(argv: Sequence[str] | None) -> int:
    args = replay_parser().parse_args(argv)
    _setup_logging(args.verbose)
    hello, session = replay_messages(args.directory)
    server = _start_server(args, hello=hello, session=session)
    server.attach_recording(args.directory)
    print(f"replaying {args.directory}: {len(session['windows'])} windows; Ctrl-C to stop", flush=True)
    _stop_signals_as_interrupt()
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def replay_main(argv: Sequence[str] | None = None) -> int:
    return _run(_replay, argv)


if __name__ == "__main__":  # python -m realtime.cli
    sys.exit(live_main())
