"""hcl-live: one local session (camera, microphone, file, demo), browser sessions, or Ray Serve."""

from __future__ import annotations

import faulthandler
import pathlib
import sys
import time
from typing import Any, Sequence

from hcl.features.config import FeatureSettings
from realtime.app.console import (
    SHUTDOWN_WAIT,
    CliError,
    dashboard_server,
    report_stragglers,
    run_command,
    serve_dashboard,
    start_server,
    stop_signals_as_interrupt,
    tls_context,
    token_for,
)
from realtime.app.options import live_parser
from realtime.core import protocol
from realtime.core.clock import SessionClock
from realtime.core.component import Policy
from realtime.core.logs import setup_logging
from realtime.pipeline.build import build_session, load_scorer, open_file_source
from realtime.pipeline.live import PipelineOptions, new_session_id, session_hello
from realtime.pipeline.speech import SpeechOptions
from realtime.scale.placement import describe_reservations
from realtime.scale.settings import ServeSettings
from realtime.sessions.hub import HubConfig, SessionHub
from realtime.sources import DeviceSource, SourceError
from realtime.sources.camera import CameraSource, list_cameras
from realtime.sources.demo import DemoError, demo_clip
from realtime.sources.microphone import MicrophoneSource, list_microphones


def device_source(camera: str | None, mic: str | None, *, need_camera: bool):
    clock = SessionClock(running=False)  # the devices' one session clock: the pipeline begins it
    cam = None
    if camera is not None or need_camera:
        cam = CameraSource(index=camera if camera is not None else 0, clock=clock)
        try:
            cam.open()
        except SourceError as exc:
            raise CliError(f"{exc}; --list-devices shows what exists") from None
    microphone = MicrophoneSource(device=mic, clock=clock)
    try:
        microphone.open()
    except SourceError as exc:
        if mic is not None or cam is None:
            raise CliError(f"{exc}; --list-devices shows what exists") from None
        print(f"warning: {exc}; going on without audio (and so without a transcript)", file=sys.stderr)
        microphone = None
    return DeviceSource(camera=cam, microphone=microphone)


def record_dir(target: str, session_id: str) -> pathlib.Path:
    """--record DIR: DIR itself when new or empty, else a new folder named by the session inside it."""
    path = pathlib.Path(target)
    if path.exists() and not path.is_dir():
        raise CliError(f"--record {path}: is a file; give a folder")
    if path.is_dir() and any(path.iterdir()):
        return path / session_id
    return path


def list_devices() -> str:
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


def live(argv: Sequence[str] | None) -> int:
    """hcl-live ARGS: 0 when the session ended well, 1 with problems (CliError: a bad command line)."""
    args = live_parser().parse_args(argv)
    setup_logging(args.verbose)
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
    token_for(args.host, args.token)
    tls_context(args)  # a bad certificate fails before the models load
    if args.ray:
        if args.file or args.demo or args.camera is not None or args.no_camera:
            raise CliError("--ray serves browser sessions only: drop --file/--demo/--camera/--no-camera")
        return ray_sessions(args)
    if args.browser:
        return browser_sessions(args)
    # --fast and --reproducible name the two policies a file can have besides LIVE
    policy = Policy.FAST if args.fast else Policy.REPRODUCIBLE if args.reproducible else Policy.LIVE
    if args.provisional_words and policy is not Policy.LIVE:
        raise CliError("--provisional-words needs the live policy: leave out --reproducible and --fast "
                       "(their windows read confirmed words only, so that a file gives the same scores every time)")
    fps = FeatureSettings().face.frames_per_second
    if args.demo:
        try:
            path = demo_clip()
        except DemoError as exc:
            raise CliError(str(exc)) from None
        source = open_file_source(str(path), policy=policy, fps=fps)
    elif args.file:
        source = open_file_source(args.file, policy=policy, fps=fps)
    elif args.no_camera:
        source = device_source(None, args.mic, need_camera=False)
    else:
        source = device_source(args.camera, args.mic, need_camera=True)
    scorer = load_scorer(args.checkpoint, args.device, max_streams=args.max_sessions)
    if source.kind == "file" and scorer.features.face.frames_per_second != fps:  # the checkpoint's frame rate
        source = open_file_source(str(source.path), policy=policy, fps=scorer.features.face.frames_per_second)
    options = PipelineOptions(policy=policy, speech=SpeechOptions(max_backlog=None if args.reproducible else 4.0, engine=args.asr),
                              provisional_words=args.provisional_words or None)
    session_id = new_session_id()
    folder = record_dir(args.record, session_id) if args.record else None
    pipeline = None  # /metrics reads the pipeline once it is made
    hub = session_hub(args, scorer)
    server = dashboard_server(args, hello=session_hello(session_id=session_id, scorer=scorer, mode="live"),
                              metrics=lambda: live_metrics(pipeline), sessions=hub)
    # this session is one of the hub's: it scores through the shared scorer and is listed,
    # measured and counted for admission like the browsers' (its own link is printed)
    try:
        pipeline = build_session(source=source, scorer=hub.models.scorer_client(session_id), options=options, mode="live",
                                 session_id=session_id, publish=server.publish, record_to=folder,
                                 on_recording_error=lambda message: report_recording_error(server, message))
    except (FileExistsError, OSError) as exc:
        hub.stop()
        raise CliError(f"--record {folder}: {exc}") from None
    recorder = pipeline.recorder
    if recorder is not None:
        print(f"recording into {folder}", flush=True)
    serve_dashboard(server, args)
    server.attach_recording(recorder.directory if recorder is not None else None)
    own = hub.adopt(pipeline, kind=source.kind, recorder=recorder)
    server.alias_channel(own.secret)
    print(f"this session's own link (needs no token): {server.url.split('?')[0]}s/{own.secret}", flush=True)
    hub.start()
    stop_signals_as_interrupt()
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
            recorder.stop()
            recorder.join()
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
        pipeline.join(SHUTDOWN_WAIT)
        hub.stop()
        hub.join(SHUTDOWN_WAIT)
        server.stop()
        server.join(SHUTDOWN_WAIT)
        report_stragglers()
    return status


def session_hub(args, scorer):
    """The sessions of this server: --max-sessions, browser sessions recorded under --record."""
    record = pathlib.Path(args.record) if args.record else None
    if record is not None and record.exists() and not record.is_dir():
        raise CliError(f"--record {record}: is a file; give a folder")
    return SessionHub(scorer=scorer, config=HubConfig(max_sessions=args.max_sessions, record_dir=record),
                      options=PipelineOptions(policy=Policy.LIVE, speech=SpeechOptions(max_backlog=4.0, engine=args.asr)))


def browser_sessions(args) -> int:
    """hcl-live --browser: no local capture; each browser that presses "Start my camera and
    microphone" is a session of its own, until Ctrl-C."""
    scorer = load_scorer(args.checkpoint, args.device, max_streams=args.max_sessions)
    hub = session_hub(args, scorer)
    # the shared models (the scorer's graphs, Whisper) load before the first page can come:
    # a session waiting for them drops every message its page sends meanwhile
    hub.warm_up()
    server = start_server(args, hello=session_hello(session_id="browser-sessions", scorer=scorer, mode="live"),
                           sessions=hub)
    server.set_status(protocol.STATUS_LOADING, "no local capture: press \"Start my camera and microphone\" to monitor yourself")
    stop_signals_as_interrupt()
    try:
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
        server.join(SHUTDOWN_WAIT)
        report_stragglers()
    return 0


def ray_sessions(args) -> int:
    """hcl-live --ray: the browser sessions on Ray Serve (realtime.scale.serve) until Ctrl-C."""
    try:
        # not at the top: it imports Ray, the optional extra hcl-live[ray] (about 1.2 s more after
        # hcl-live's own imports), which only --ray needs and the base install lacks
        from realtime.scale.deploy import serving
    except ImportError as exc:
        raise CliError(f"hcl-live --ray needs Ray Serve ({exc}): pip install 'hcl-live[ray]'") from None
    if args.tls_cert or args.tls_key:
        raise CliError("--tls-cert/--tls-key do not apply to --ray: put a TLS proxy in front of Serve's")
    token = token_for(args.host, args.token)
    values: dict[str, Any] = {"checkpoint": args.checkpoint, "max_sessions": args.max_sessions, "token": token,
                              "record_dir": str(pathlib.Path(args.record).resolve()) if args.record else None, "asr": args.asr}
    for item in args.ray_setting or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--ray-setting {item!r}: give KEY=VALUE, e.g. ingress_replicas=2")
        values[key.strip()] = value.strip()
    try:
        settings = ServeSettings.from_args(values)
    except (TypeError, ValueError) as exc:
        raise CliError(f"--ray-setting: {exc}") from None
    stop_signals_as_interrupt()
    given = {item.partition("=")[0].strip() for item in args.ray_setting or []}  # kept as given; the rest fitted to the cluster
    try:
        with serving(settings, given=given, address=args.ray_address, host=args.host, port=args.port,
                     verbose=args.verbose) as placed:
            host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
            print(f"dashboard: http://{host}:{args.port}/" + (f"?token={token}" if token else ""), flush=True)
            print(f"Ray Serve: {placed.ingress_replicas} ingress replica(s) x {placed.max_sessions} sessions; "
                  f"reserved: {describe_reservations(placed)}; Ctrl-C to stop", flush=True)
            while True:
                time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    return 0


def report_recording_error(server, message: str) -> None:
    """The recorder stopped (e.g. the disk is full): tell the terminal and the dashboard;
    the monitoring goes on."""
    print(f"warning: {message}; monitoring goes on", file=sys.stderr, flush=True)
    if server is not None:
        server.publish(protocol.error_message(message))


def live_metrics(pipeline) -> dict[str, Any]:
    """The /metrics body: the pipeline's figures plus the recorder's state (its error, if any)."""
    if pipeline is None:
        return {}
    out = pipeline.metrics()
    if pipeline.recorder is not None:
        out["recording"] = pipeline.recorder.stats()
    return out


def live_main(argv: Sequence[str] | None = None) -> int:
    return run_command(live, argv)


def live_command() -> int:
    """The hcl-live console script: `live_main`, then an exit that cannot hang. Everything
    is stopped and the recording closed by the time it returns, but the interpreter's own
    exit still runs native finalisers (mediapipe, Whisper, torch thread pools); if that
    has not finished in SHUTDOWN_WAIT seconds, every thread's stack goes to stderr and
    the process exits with status 1, instead of waiting for a second Ctrl-C."""
    status = live_main()
    faulthandler.dump_traceback_later(SHUTDOWN_WAIT, exit=True)
    return status


if __name__ == "__main__":  # python -m realtime.app.live
    sys.exit(live_main())
