"""The dashboard server's HTTP routes: which requests may go on to a websocket
handshake (/ws, /ws?session=<secret>, /capture) and the answer to every other request:
the dashboard's pages and files, a session's page at /s/<secret>, /health, /metrics,
/sessions, the model card and the attached recording. The checks of who may ask are
`realtime.web.access`; responses and files are `realtime.web.http`."""

from __future__ import annotations

import asyncio
import pathlib
from typing import TYPE_CHECKING, Any

from realtime.web import http
from realtime.web.access import Access
from realtime.web.channels import SESSION_LINK, Streams, session_key
from realtime.web.figures import Figures
from realtime.web.replay import AttachedRecording

if TYPE_CHECKING:
    from websockets.http11 import Request, Response


class Routes:
    """`sessions` is the session hub (None: no browser capture, no operator view)."""

    def __init__(self, *, access: Access, streams: Streams, figures: Figures, recording: AttachedRecording,
                 client_dir: pathlib.Path, model_card: pathlib.Path | None, sessions: Any) -> None:
        self._access = access
        self._streams = streams
        self._figures = figures
        self._recording = recording
        self._client_dir = client_dir
        self._model_card = model_card
        self._sessions = sessions

    async def process_request(self, connection: Any, request: Request) -> Response | None:
        """The answer to a plain HTTP request, or None to go on with the websocket
        handshake at /ws or /capture (websockets' process_request hook)."""
        refused = self._access.check_request(request)
        if refused is not None:
            return refused
        path = http.request_path(request.path)
        if path == "/ws":
            key = session_key(request.path)
            if key is None:
                return self._access.check_websocket(request)
            # a session's link is its own key: its stream needs no token, only the secret
            if key not in self._streams:
                return http.text_response(404, "No live session at this link: it ended, or the link is wrong.\n")
            if request.method == "HEAD":
                return http.text_response(405, "The websocket handshake is a GET.\n", [("Allow", "GET")])
            if not self._access.origin_allowed(request.headers):
                return http.text_response(403, "Cross-origin websocket connections are refused.\n")
            return None
        if path == "/capture":
            if self._sessions is None:
                return http.text_response(404, "This server takes no browser capture (start hcl-live with --browser).\n")
            return self._access.check_websocket(request)  # loopback, or the token
        if http.asks_upgrade(request.headers):
            return http.text_response(404, "The websocket is at /ws.\n")
        response = await self._route(request, path)
        return http.without_body(response) if request.method == "HEAD" else response

    async def _route(self, request: Request, path: str) -> Response:
        if path.startswith(SESSION_LINK) and http.is_public_asset(path):
            # a session's page at /s/<secret> asks for its code relative to /s/
            return http.static_response(self._client_dir, "/" + path[len(SESSION_LINK):])
        if http.is_public_asset(path):
            return http.static_response(self._client_dir, path)
        if path.startswith(SESSION_LINK):  # a session's page: its secret is the key
            key = path[len(SESSION_LINK):].rstrip("/")
            if key and key in self._streams:
                return http.static_response(self._client_dir, "/index.html")
            return http.text_response(404, "No live session at this link: it ended, or the link is wrong.\n")
        denied = self._access.check_token(request)
        if denied is not None:
            return denied
        if path == "/sessions":  # the operator view's figures
            if self._sessions is None:
                return http.json_response(200, {"sessions": [], "live": 0, "max_sessions": 0})
            return http.json_response(200, await asyncio.to_thread(self._sessions.stats))
        if path == "/operator":  # the dashboard with the sessions table on top (client/operator.js)
            return http.static_response(self._client_dir, "/index.html")
        if path == "/health":
            return http.json_response(200, self._figures.health())
        if path == "/metrics":
            return http.json_response(200, await self._figures.metrics_async(sessions=True))
        if path == "/model-card":
            return self._model_card_response()
        if path == "/help":  # the dashboard with its help panel open
            query = http.query_of(request.path)
            return http.redirect("/" + (f"?{query}" if query else "") + "#help")
        if path == "/recording/video.mp4":
            return await asyncio.to_thread(self._recording.video, request)
        if path == "/recording/scores.csv":
            return await asyncio.to_thread(self._recording.session_csv)
        if path == "/recording/labels.json":
            return await asyncio.to_thread(self._recording.labels_file)
        return http.static_response(self._client_dir, path)

    def _model_card_response(self) -> Response:
        card = self._model_card
        if card is None or not card.is_file():
            name = (self._streams.own.hello.get("model") or {}).get("name")
            return http.text_response(404, f"No model card for {name!r} (models/<name>/README.md).\n")
        try:
            return http.response(200, card.read_bytes(), "text/plain; charset=utf-8")
        except OSError as exc:
            return http.text_response(404, f"The model card cannot be read: {exc}\n")
