"""The recording attached to the server's own session: its video (/recording/video.mp4,
in Range pieces so a browser can seek), the whole session as CSV (/recording/scores.csv),
and, when a replay shows it, its labels (/recording/labels.json; set_label and
delete_label from the replay's pages change it)."""

from __future__ import annotations

import json
import pathlib
import re
import threading
from typing import TYPE_CHECKING, Any

from hcl.data.recordings import LABELS, LabelsError, SpanLabel, read_labels, write_labels
from realtime.core import protocol
from realtime.recording import SessionError, read_session
from realtime.web import http
from realtime.web.channels import Stream

if TYPE_CHECKING:
    from websockets.http11 import Request, Response


class AttachedRecording:
    """The session folder attached to `own` (the server's own stream), served from it.
    The methods that read or write files run off the loop (asyncio.to_thread)."""

    def __init__(self, own: Stream) -> None:
        self._own = own
        self._labels_lock = threading.Lock()  # one labels.json change at a time (read, change, write)

    @property
    def directory(self) -> pathlib.Path | None:
        return self._own.recording

    def file(self, name: str) -> pathlib.Path | None:
        if self.directory is None:
            return None
        path = self.directory / name
        return path if path.is_file() else None

    def labels_here(self, stream: Stream | None) -> bool:
        """A page of this stream may label: it replays the attached recording."""
        return stream is self._own and self.directory is not None and stream.session_text is not None

    # ---------------------------------------------------------------- HTTP
    def video(self, request: Request) -> Response:
        """The recording's video.mp4, in Range pieces (http.range_response)."""
        path = self.file("video.mp4")
        if path is None:
            return http.text_response(404, "This session has no recorded video (record with hcl-live --record).\n")
        try:
            return http.range_response(path, request.headers.get_all("Range"), "video/mp4")
        except OSError as exc:
            return http.text_response(404, f"The video cannot be read: {exc}\n")

    def session_csv(self) -> Response:
        """The whole recorded session as CSV (protocol.CSV_COLUMNS), read from the folder."""
        if self.directory is None:
            return http.text_response(
                404, "No recording is attached: start hcl-live with --record to export whole sessions.\n"
            )
        try:
            rec = read_session(self.directory)
        except (SessionError, OSError) as exc:
            return http.text_response(404, f"The recording cannot be read: {exc}\n")
        body = protocol.csv_text(rec.windows).encode()
        name = re.sub(r"[^\w.-]+", "_", rec.session_id or "session")
        return http.response(
            200, body, "text/csv; charset=utf-8", [("Content-Disposition", f'attachment; filename="hcl-{name}-scores.csv"')]
        )

    def labels_file(self) -> Response:
        """The replayed recording's labels.json (hcl.data.recordings), as saved."""
        path = self.file(LABELS)
        if path is None:
            return http.text_response(404, "No labels yet: mark spans in the replay (keys [ ] and 0-6, see Help).\n")
        return http.response(200, path.read_bytes(), "application/json")

    # ---------------------------------------------------------------- labels messages
    def labels_text(self, *, saved: bool = False, error: str | None = None) -> str:
        """The "labels" message of the attached recording: its labels.json's spans."""
        spans: list[dict[str, Any]] = []
        try:
            spans = [s.to_dict() for s in read_labels(self.directory)]
        except FileNotFoundError:
            pass
        except LabelsError as exc:
            error = error or str(exc)
        return json.dumps(protocol.labels_message(spans, saved=saved, error=error), separators=(",", ":"))

    def change_labels(self, msg: dict[str, Any]) -> str:
        """Apply a set_label / delete_label to labels.json (read, change, write atomically and
        checked by hcl.data.recordings.write_labels); the "labels" message to send."""
        try:
            start, end = float(msg["start"]), float(msg["end"])
            label = float(msg["label"]) if msg["type"] == "set_label" else 0.0
        except (KeyError, TypeError, ValueError):
            return self.labels_text(error="a label needs numbers start, end (seconds) and label (-3 ... 3)")
        with self._labels_lock:
            try:
                spans = read_labels(self.directory)
            except FileNotFoundError:
                spans = []
            except LabelsError as exc:
                return self.labels_text(error=f"{exc}; fix or remove it, then mark again")
            kept = [s for s in spans if not (s.start < end and start < s.end)]  # a new span replaces those it overlaps
            if msg["type"] == "set_label":
                kept.append(SpanLabel(round(start, 3), round(end, 3), label))
            try:
                write_labels(self.directory, kept)
            except (LabelsError, ValueError, OSError) as exc:
                return self.labels_text(error=str(exc))
        return self.labels_text(saved=True)
