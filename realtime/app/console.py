"""What every command shares: user errors, stop signals, TLS, the dashboard server."""

from __future__ import annotations

import logging
import secrets
import signal
import ssl
import sys
import threading
import webbrowser

from realtime.core.errors import SetupError
from realtime.web.access import is_loopback
from realtime.web.server import DashboardServer

log = logging.getLogger("realtime")

# seconds Ctrl-C waits for the sessions' last passes and the shared services to finish
SHUTDOWN_WAIT = 30.0


class CliError(SetupError):
    """A bad command line: printed as one line, exit status 2."""


def stop_signals_as_interrupt() -> None:
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


def run_command(main, argv) -> int:
    """`main(argv)`, with a user error printed as one line (exit status 2)."""
    try:
        return main(argv)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def open_browser(url: str) -> None:
    try:
        webbrowser.open(url)
    except Exception:  # no browser here: the printed URL is enough
        pass


def tls_context(args):
    """The server's SSL context for --tls-cert/--tls-key, or None."""
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise CliError("--tls-cert and --tls-key go together (a certificate and its private key, PEM)")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"--tls-cert {cert} / --tls-key {key}: {exc}; make a pair with openssl (see the README)") from None
    return ctx


def token_for(host: str, token: str | None) -> str | None:
    if token is not None and not token.strip():
        raise CliError("--token must not be empty")
    if not is_loopback(host) and token is None:
        token = secrets.token_urlsafe(16)
    return token


def dashboard_server(args, *, hello: dict, metrics=None, session: dict | None = None, sessions=None) -> DashboardServer:
    """The dashboard server of --host/--port/--token/--tls-*, not started yet."""
    return DashboardServer(host=args.host, port=args.port, token=token_for(args.host, args.token), hello=hello,
                           metrics=metrics, session=session, sessions=sessions, ssl_context=tls_context(args))


def serve_dashboard(server: DashboardServer, args) -> DashboardServer:
    """Start `server`, print its URL (and why it has a token), open a browser unless --no-browser."""
    try:
        server.start()
    except OSError as exc:
        raise CliError(f"{exc}; choose another --port (0 = any free one)") from None
    print(f"dashboard: {server.url}", flush=True)
    if server.token and args.token is None:
        print("  (--host is not a loopback address: the dashboard needs this token; pass --token to choose it)", flush=True)
    if not args.no_browser:
        open_browser(server.url)
    return server


def start_server(args, *, hello: dict, metrics=None, session: dict | None = None, sessions=None) -> DashboardServer:
    return serve_dashboard(dashboard_server(args, hello=hello, metrics=metrics, session=session, sessions=sessions), args)


def report_stragglers() -> None:
    """Name the threads still running once everything was stopped: a daemon thread still
    in a native call when the interpreter exits is where a hang at exit would come from."""
    main = threading.main_thread()
    # tqdm's monitor only sleeps on an event between progress bars: it cannot hold up exit
    left = [t.name for t in threading.enumerate()
            if t is not main and t is not threading.current_thread() and t.is_alive() and t.name != "tqdm_monitor"]
    if left:
        log.warning("still running after stop (%.0f s): %s", SHUTDOWN_WAIT, ", ".join(sorted(left)))
