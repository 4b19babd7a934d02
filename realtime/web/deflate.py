"""permessage-deflate (RFC 7692) that sends large messages uncompressed.

websockets compresses every outgoing message on the event loop's thread. The windows
and statuses are small (a few kB: compressing them is cheap and saves bandwidth), but a
replayed session is sent whole to every page that connects (3.45 MB for a 50-minute
session): compressing it took ~90 ms of the loop per viewer, so 100 viewers connecting
stalled /health for 8.6 s. RFC 7692 lets a sender leave any message uncompressed (RSV1
clear on its first frame; the peer's decompressor context is untouched), so messages over
`max_compressed` bytes go as they are and cost the loop only a copy.
"""

from __future__ import annotations

from typing import Any, Sequence

from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.frames import CTRL_OPCODES, Frame, Opcode
from websockets.typing import ExtensionParameter

MAX_COMPRESSED = 256 * 1024  # bytes: larger messages are sent uncompressed


class SmallMessageDeflate(PerMessageDeflate):
    """PerMessageDeflate whose messages over `max_compressed` bytes (as their first frame
    holds) are sent uncompressed, continuation frames included."""

    def __init__(self, *args: Any, max_compressed: int = MAX_COMPRESSED, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_compressed = max_compressed
        self._plain = False  # the message being sent goes uncompressed

    def encode(self, frame: Frame) -> Frame:
        if frame.opcode in CTRL_OPCODES:
            return frame
        if frame.opcode is not Opcode.CONT:
            self._plain = len(frame.data) > self.max_compressed
        if self._plain:
            return frame  # RSV1 stays clear: the peer reads it as an uncompressed message
        return super().encode(frame)


class SmallMessageDeflateFactory(ServerPerMessageDeflateFactory):
    """The server's permessage-deflate with websockets' default settings (12-bit windows,
    memLevel 5), whose connections send messages over `max_compressed` bytes uncompressed.
    Pass as serve(..., extensions=[SmallMessageDeflateFactory()])."""

    def __init__(self, *, max_compressed: int = MAX_COMPRESSED, **kwargs: Any) -> None:
        kwargs.setdefault("server_max_window_bits", 12)
        kwargs.setdefault("client_max_window_bits", 12)
        kwargs.setdefault("compress_settings", {"memLevel": 5})
        super().__init__(**kwargs)
        self.max_compressed = max_compressed

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        response, ext = super().process_request_params(params, accepted_extensions)
        return response, SmallMessageDeflate(
            ext.remote_no_context_takeover,
            ext.local_no_context_takeover,
            ext.remote_max_window_bits,
            ext.local_max_window_bits,
            ext.compress_settings,
            max_compressed=self.max_compressed,
        )
