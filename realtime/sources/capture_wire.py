"""The binary websocket format of capture clients (a browser sending its camera and
microphone), its size limits, and the per-client rate guard.

Every message is one binary websocket message: a fixed 24-byte header, then the payload.

    offset size type     field
    0      4    bytes    magic      b"HCLc"
    4      1    uint8    version    CAPTURE_VERSION (1)
    5      1    uint8    kind       1 hello, 2 audio, 3 video, 4 end
    6      2    uint16   flags      0 (reserved; anything else is refused)
    8      4    uint32   seq        0 for hello, then +1 per message, all kinds together
    12     8    float64  t_ms       capture time in ms on the client's monotonic clock,
                                    counted from the capture start (>= 0, finite)
    20     4    uint32   length     payload bytes that follow (exactly)

All fields little-endian (`struct` layout HEADER below). Payloads:

- hello: UTF-8 JSON {"audio": bool, "video": bool, "sample_rate": 16000,
  "fps": float, "width": int, "height": int, "agent": str}, at most
  `max_hello_bytes`; the first message of a connection.
- audio: 16 kHz mono signed 16-bit PCM, little-endian; t_ms is the capture time of
  the chunk's first sample. 16-bit rather than float32: half the bytes (32 kB/s),
  the 96 dB a microphone delivers fit, and the recording's WAV is 16-bit anyway.
  Chunks of 100-250 ms are expected; more than `max_audio_seconds` is refused.
- video: one JPEG image (starts with FF D8); t_ms is the time it was drawn.
  At most `max_jpeg_bytes`, at most `max_frame_side` pixels a side as its
  header declares, and at most `max_jpeg_scans` scans (SOS markers: a baseline JPEG
  has 1, a progressive one about 10; thousands of empty scans make one small file
  take seconds to decode), checked before decoding: no decompression or CPU bombs.
- end: empty; the client stops capturing (closing the socket means the same).

A malformed message raises `CaptureFormatError`, whose `close_code` and reason are
what the server closes the connection with; `CaptureGuard` bounds the bytes and
messages a client may send per second and answers a `Violation` when exceeded;
`CaptureReceiver` is all of it for one connection (the server's receiving step).
The format is documented for client writers in docs/capture-protocol.md.
"""

from __future__ import annotations

import collections
import enum
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from hcl.features.config import SAMPLE_RATE

CAPTURE_MAGIC = b"HCLc"
CAPTURE_VERSION = 1
HEADER = struct.Struct("<4sBBHIdI")
HEADER_SIZE = HEADER.size  # 24
AUDIO_SAMPLE_BYTES = 2  # int16

# websocket close codes (RFC 6455) the server uses for a capture client
CLOSE_UNSUPPORTED = 1003  # not a capture message (a text frame, an unknown kind)
CLOSE_INVALID = 1007  # a message that breaks the format
CLOSE_POLICY = 1008  # too many bytes or messages per second
CLOSE_TOO_BIG = 1009  # a payload over its size limit


class CaptureKind(enum.IntEnum):
    HELLO = 1
    AUDIO = 2
    VIDEO = 3
    END = 4


class CaptureFormatError(ValueError):
    """A capture message that breaks the format; `close_code` is what the server closes with."""

    def __init__(self, message: str, *, close_code: int = CLOSE_INVALID) -> None:
        super().__init__(message)
        self.close_code = close_code

    @property
    def reason(self) -> str:
        return close_reason(str(self))


def close_reason(text: str) -> str:
    """`text` cut to the 123 bytes a websocket close reason may hold."""
    data = text.encode("utf-8")
    if len(data) <= 123:
        return text
    return data[:120].decode("utf-8", "ignore") + "..."


@dataclass(frozen=True)
class CaptureLimits:
    """What one capture client may send."""

    max_audio_seconds: float = 0.5  # per audio message (clients send 0.1-0.25 s)
    max_jpeg_bytes: int = 256 * 1024  # per video message
    max_frame_side: int = 1920  # pixels, width or height, as the JPEG declares
    min_frame_side: int = 16
    max_jpeg_scans: int = 32  # SOS markers per JPEG: baseline 1, progressive ~10
    max_hello_bytes: int = 2048
    max_bytes_per_second: int = 1024 * 1024  # headers included, over the last `window_seconds`
    max_messages_per_second: int = 100
    window_seconds: float = 1.0
    idle_seconds: float = 30.0  # a client that sends nothing for this long is closed (1008): its slot is freed

    def __post_init__(self) -> None:
        for name in ("max_audio_seconds", "max_jpeg_bytes", "max_frame_side", "max_jpeg_scans", "max_hello_bytes",
                     "max_bytes_per_second", "max_messages_per_second", "window_seconds", "idle_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"CaptureLimits.{name} must be > 0, got {getattr(self, name)!r}")

    @property
    def max_audio_bytes(self) -> int:
        return int(self.max_audio_seconds * SAMPLE_RATE) * AUDIO_SAMPLE_BYTES

    @property
    def max_message_bytes(self) -> int:
        """The largest valid message (header included): the websocket server's max_size."""
        return HEADER_SIZE + max(self.max_audio_bytes, self.max_jpeg_bytes, self.max_hello_bytes)


DEFAULT_LIMITS = CaptureLimits()


@dataclass(frozen=True)
class CaptureMessage:
    kind: CaptureKind
    seq: int
    t_ms: float
    payload: bytes = b""

    @property
    def t(self) -> float:
        """Capture time in seconds on the client's clock."""
        return self.t_ms / 1000.0

    @property
    def samples(self) -> int:
        """Audio samples in the payload (0 for other kinds)."""
        return len(self.payload) // AUDIO_SAMPLE_BYTES if self.kind is CaptureKind.AUDIO else 0

    @property
    def duration(self) -> float:
        """Seconds of audio in the payload (0 for other kinds)."""
        return self.samples / SAMPLE_RATE


@dataclass(frozen=True)
class CaptureHello:
    """What the client says it will send (the payload of the hello message)."""

    audio: bool = True
    video: bool = True
    sample_rate: int = SAMPLE_RATE
    fps: float = 10.0
    width: int = 320
    height: int = 240
    agent: str = ""

    def to_payload(self) -> bytes:
        return json.dumps(
            {"audio": self.audio, "video": self.video, "sample_rate": self.sample_rate, "fps": self.fps,
             "width": self.width, "height": self.height, "agent": self.agent},
            separators=(",", ":"),
        ).encode("utf-8")


# ------------------------------------------------------------------ packing
def pack(kind: CaptureKind | int, seq: int, t_ms: float, payload: bytes = b"") -> bytes:
    """One capture message: header + payload."""
    kind = CaptureKind(kind)
    if not 0 <= seq < 2**32:
        raise ValueError(f"seq must be 0 .. 2**32-1, got {seq}")
    if not (math.isfinite(t_ms) and t_ms >= 0):
        raise ValueError(f"t_ms must be a finite time >= 0, got {t_ms}")
    payload = bytes(payload)
    return HEADER.pack(CAPTURE_MAGIC, CAPTURE_VERSION, int(kind), 0, seq, float(t_ms), len(payload)) + payload


def pack_audio(seq: int, t_ms: float, samples) -> bytes:
    """Audio (float in [-1, 1] or int16 samples) as an audio message."""
    x = np.asarray(samples).reshape(-1)
    if x.dtype != np.int16:
        x = np.round(np.clip(x.astype(np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)
    return pack(CaptureKind.AUDIO, seq, t_ms, x.astype("<i2").tobytes())


def pack_hello(hello: CaptureHello, *, seq: int = 0, t_ms: float = 0.0) -> bytes:
    return pack(CaptureKind.HELLO, seq, t_ms, hello.to_payload())


def unpack(data: bytes | bytearray | memoryview, limits: CaptureLimits = DEFAULT_LIMITS) -> CaptureMessage:
    """Parse and check one message; raises `CaptureFormatError` saying what is wrong."""
    if isinstance(data, str):
        raise CaptureFormatError("capture messages are binary; a text frame was sent", close_code=CLOSE_UNSUPPORTED)
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise CaptureFormatError(f"message of {len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, version, kind, flags, seq, t_ms, length = HEADER.unpack_from(data)
    if magic != CAPTURE_MAGIC:
        raise CaptureFormatError(f"bad magic {magic!r} (expected {CAPTURE_MAGIC!r}): not a capture message",
                                 close_code=CLOSE_UNSUPPORTED)
    if version != CAPTURE_VERSION:
        raise CaptureFormatError(f"capture format version {version} is not supported (this server speaks {CAPTURE_VERSION}); reload the page")
    try:
        kind = CaptureKind(kind)
    except ValueError:
        raise CaptureFormatError(f"unknown message kind {kind} (1 hello, 2 audio, 3 video, 4 end)",
                                 close_code=CLOSE_UNSUPPORTED) from None
    if flags != 0:
        raise CaptureFormatError(f"reserved flags must be 0, got {flags}")
    if not (math.isfinite(t_ms) and t_ms >= 0):
        raise CaptureFormatError(f"capture time must be a finite number of ms >= 0, got {t_ms}")
    if len(data) - HEADER_SIZE != length:
        what = "truncated" if len(data) - HEADER_SIZE < length else "has trailing bytes"
        raise CaptureFormatError(f"{kind.name.lower()} message {what}: header says {length} payload bytes, {len(data) - HEADER_SIZE} came")
    payload = data[HEADER_SIZE:]
    _check_payload(kind, payload, limits)
    return CaptureMessage(kind=kind, seq=seq, t_ms=t_ms, payload=payload)


def _check_payload(kind: CaptureKind, payload: bytes, limits: CaptureLimits) -> None:
    n = len(payload)
    if kind is CaptureKind.AUDIO:
        if n == 0 or n % AUDIO_SAMPLE_BYTES:
            raise CaptureFormatError(f"audio payload of {n} bytes: must be a non-empty whole number of int16 samples")
        if n > limits.max_audio_bytes:
            raise CaptureFormatError(
                f"audio chunk of {n / AUDIO_SAMPLE_BYTES / SAMPLE_RATE:.3f} s is over the limit of {limits.max_audio_seconds:g} s",
                close_code=CLOSE_TOO_BIG)
    elif kind is CaptureKind.VIDEO:
        if n > limits.max_jpeg_bytes:
            raise CaptureFormatError(f"JPEG of {n} bytes is over the limit of {limits.max_jpeg_bytes} bytes",
                                     close_code=CLOSE_TOO_BIG)
        if n < 4 or payload[:2] != b"\xff\xd8":
            raise CaptureFormatError("video payload is not a JPEG image (it must start with FF D8)")
    elif kind is CaptureKind.HELLO:
        if n > limits.max_hello_bytes:
            raise CaptureFormatError(f"hello of {n} bytes is over the limit of {limits.max_hello_bytes} bytes",
                                     close_code=CLOSE_TOO_BIG)
    elif kind is CaptureKind.END and n:
        raise CaptureFormatError(f"end message must have no payload, got {n} bytes")


def parse_hello(msg: CaptureMessage) -> CaptureHello:
    """The hello's JSON as a `CaptureHello`; raises `CaptureFormatError` for anything off."""
    if msg.kind is not CaptureKind.HELLO:
        raise CaptureFormatError(f"the first capture message must be a hello, got {msg.kind.name.lower()}")
    try:
        body = json.loads(msg.payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CaptureFormatError(f"hello payload is not UTF-8 JSON ({exc})") from None
    except RecursionError:  # json nests one Python call per level: ~1,000 levels overflow the stack
        raise CaptureFormatError("hello payload is nested too deep: send one flat JSON object") from None
    if not isinstance(body, dict):
        raise CaptureFormatError("hello payload must be a JSON object")
    fields: dict[str, Any] = {}
    for name, typ in (("audio", bool), ("video", bool)):
        if name in body:
            if not isinstance(body[name], typ):
                raise CaptureFormatError(f"hello.{name} must be true or false")
            fields[name] = body[name]
    for name in ("sample_rate", "width", "height"):
        if name in body:
            v = body[name]
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise CaptureFormatError(f"hello.{name} must be a positive integer, got {v!r}")
            fields[name] = v
    if "fps" in body:
        v = body["fps"]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (0 < v <= 60):
            raise CaptureFormatError(f"hello.fps must be a number in (0, 60], got {v!r}")
        fields["fps"] = float(v)
    if "agent" in body:
        fields["agent"] = str(body["agent"])[:200]
    hello = CaptureHello(**fields)
    if hello.audio and hello.sample_rate != SAMPLE_RATE:
        raise CaptureFormatError(f"audio must be sent at {SAMPLE_RATE} Hz mono, the hello says {hello.sample_rate} Hz")
    if not (hello.audio or hello.video):
        raise CaptureFormatError("hello announces neither audio nor video: nothing to capture")
    return hello


# ------------------------------------------------------------------ JPEG
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (not DHT/JPG/DAC)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) a JPEG's frame header declares, read without decoding the image."""
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise CaptureFormatError("not a JPEG image (no FF D8 start marker)")
    i = 2
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise CaptureFormatError(f"corrupt JPEG: no marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:  # standalone markers
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before a frame header
            break
        seg = (data[i + 2] << 8) | data[i + 3]
        if seg < 2:
            raise CaptureFormatError(f"corrupt JPEG: segment length {seg} at byte {i}")
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                break
            height = (data[i + 5] << 8) | data[i + 6]
            width = (data[i + 7] << 8) | data[i + 8]
            return width, height
        i += 2 + seg
    raise CaptureFormatError("corrupt JPEG: no frame header (SOF) before the image data")


def jpeg_scans(data: bytes) -> int:
    """How many scans (SOS markers, FF DA) a JPEG holds. Exact without parsing: inside
    entropy-coded data every FF byte is followed by 00 (stuffing) or a restart marker, so
    FF DA is always a marker; one embedded in a segment (a thumbnail) counts too."""
    return data.count(b"\xff\xda")


def check_jpeg_size(data: bytes, limits: CaptureLimits = DEFAULT_LIMITS) -> tuple[int, int]:
    """`jpeg_size`, refused outside [min_frame_side, max_frame_side] or with more than
    `max_jpeg_scans` scans (a progressive JPEG of thousands of empty scans decodes for
    seconds: a CPU bomb in 256 KiB)."""
    w, h = jpeg_size(data)
    scans = jpeg_scans(data)
    if scans > limits.max_jpeg_scans:
        raise CaptureFormatError(f"JPEG of {scans} scans is over the limit of {limits.max_jpeg_scans}: send baseline JPEG",
                                 close_code=CLOSE_TOO_BIG)
    if max(w, h) > limits.max_frame_side:
        raise CaptureFormatError(f"frame of {w}x{h} is over the limit of {limits.max_frame_side} px a side",
                                 close_code=CLOSE_TOO_BIG)
    if min(w, h) < limits.min_frame_side:
        raise CaptureFormatError(f"frame of {w}x{h} is under {limits.min_frame_side} px a side")
    return w, h


# ------------------------------------------------------------------ rates
@dataclass(frozen=True)
class Violation:
    """Why a client must be disconnected: the websocket close code and reason."""

    code: int
    reason: str


class CaptureGuard:
    """Bytes and messages a client sent over the last `limits.window_seconds`, checked
    per message. A step object: `admit(now, nbytes)` with `now` the receiver's clock in
    seconds (a fake clock in tests). Memory is bounded: at most
    max_messages_per_second + 1 entries are kept (one more is a violation)."""

    def __init__(self, limits: CaptureLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        self._bytes = 0
        self.messages = 0
        self.bytes = 0
        self.violation: Violation | None = None

    def admit(self, now: float, nbytes: int) -> Violation | None:
        """Count one received message of `nbytes`; a `Violation` once the client is over a
        limit (and every time after: a violating client stays refused)."""
        if self.violation is not None:
            return self.violation
        lim = self.limits
        self.messages += 1
        self.bytes += nbytes
        self._recent.append((now, nbytes))
        self._bytes += nbytes
        horizon = now - lim.window_seconds
        while self._recent and self._recent[0][0] <= horizon:
            self._bytes -= self._recent.popleft()[1]
        per = lim.window_seconds
        if len(self._recent) > lim.max_messages_per_second * per:
            self.violation = Violation(CLOSE_POLICY, close_reason(
                f"too many messages: {len(self._recent)} in {per:g} s (limit {lim.max_messages_per_second}/s)"))
        elif self._bytes > lim.max_bytes_per_second * per:
            self.violation = Violation(CLOSE_POLICY, close_reason(
                f"too much data: {self._bytes} bytes in {per:g} s (limit {lim.max_bytes_per_second} bytes/s)"))
        return self.violation

    def rate(self) -> tuple[int, int]:
        """(messages, bytes) in the current window."""
        return len(self._recent), self._bytes

    def stats(self) -> dict[str, Any]:
        messages, nbytes = self.rate()
        return {"messages": self.messages, "bytes": self.bytes, "window_messages": messages, "window_bytes": nbytes,
                "violation": None if self.violation is None else self.violation.reason}


# ------------------------------------------------------------------ one connection
class CaptureReceiver:
    """The server's per-connection step: received bytes in, a checked `CaptureMessage`
    or the `Violation` to close the connection with out.

        receiver = CaptureReceiver(limits)
        for data in websocket:                      # the server's receiving loop
            got = receiver.receive(time.monotonic(), data)
            if isinstance(got, Violation):
                close(got.code, got.reason); break
            if got.kind is CaptureKind.HELLO:       # receiver.hello: what the client sends
                source = BrowserSource.from_hello(receiver.hello); ...start the session
            else:
                source.feed(got)                    # audio, video, end

    It applies the rate guard (to every message, before parsing), the format, the
    hello-first rule (exactly one hello, first), the JPEG size limits, and refuses
    anything after "end". Once it answered a Violation it answers the same forever.
    """

    def __init__(self, limits: CaptureLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.guard = CaptureGuard(limits)
        self.hello: CaptureHello | None = None
        self.ended = False
        self.violation: Violation | None = None
        self.counts = {kind.name.lower(): 0 for kind in CaptureKind}

    def receive(self, now: float, data: bytes | bytearray | memoryview | str) -> CaptureMessage | Violation:
        if self.violation is not None:
            return self.violation
        size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
        refused = self.guard.admit(now, size)
        if refused is not None:
            self.violation = refused
            return refused
        try:
            msg = unpack(data, self.limits)
            if self.ended:
                raise CaptureFormatError(f"{msg.kind.name.lower()} message after the end message")
            if self.hello is None:
                self.hello = parse_hello(msg)
            elif msg.kind is CaptureKind.HELLO:
                raise CaptureFormatError("a second hello on the same connection")
            elif msg.kind is CaptureKind.VIDEO:
                check_jpeg_size(msg.payload, self.limits)
            elif msg.kind is CaptureKind.END:
                self.ended = True
        except CaptureFormatError as exc:
            self.violation = Violation(exc.close_code, exc.reason)
            return self.violation
        self.counts[msg.kind.name.lower()] += 1
        return msg

    def stats(self) -> dict[str, Any]:
        return {**self.guard.stats(), "received": dict(self.counts),
                "violation": None if self.violation is None else self.violation.reason}
