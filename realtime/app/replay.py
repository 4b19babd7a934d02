"""hcl-replay: a recorded session folder served to the dashboard."""

from __future__ import annotations

import time
from typing import Sequence

from realtime.app.console import CliError, run_command, start_server, stop_signals_as_interrupt
from realtime.app.options import replay_parser
from realtime.core import protocol
from realtime.core.logs import setup_logging
from realtime.recording import SessionError, read_session


def replay_messages(directory: str) -> tuple[dict, dict]:
    """(hello, session) protocol messages for a recorded session folder."""
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


def replay(argv: Sequence[str] | None) -> int:
    args = replay_parser().parse_args(argv)
    setup_logging(args.verbose)
    hello, session = replay_messages(args.directory)
    server = start_server(args, hello=hello, session=session)
    server.attach_recording(args.directory)
    print(f"replaying {args.directory}: {len(session['windows'])} windows; Ctrl-C to stop", flush=True)
    stop_signals_as_interrupt()
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        server.join(10)
    return 0


def replay_main(argv: Sequence[str] | None = None) -> int:
    return run_command(replay, argv)
