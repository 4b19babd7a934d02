"""The binary capture format: round trips, refused headers and payloads, JPEG size
checks on real JPEGs, and the per-client rate guard driven by a fake clock."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from realtime.sources.capture_wire import (
    CAPTURE_MAGIC,
    CAPTURE_VERSION,
    CLOSE_INVALID,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED,
    HEADER,
    HEADER_SIZE,
    CaptureFormatError,
    CaptureGuard,
    CaptureHello,
    CaptureKind,
    CaptureLimits,
    CaptureMessage,
    check_jpeg_size,
    jpeg_size,
    pack,
    pack_audio,
    pack_hello,
    parse_hello,
    unpack,
)


def jpeg(width: int, height: int, quality: int = 80) -> bytes:
    import cv2
    from media_fixtures import face_image

    img = cv2.resize(face_image(256), (width, height), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def header(**fields) -> bytes:
    values = {"magic": CAPTURE_MAGIC, "version": CAPTURE_VERSION, "kind": 2, "flags": 0, "seq": 1, "t_ms": 0.0, "length": 0}
    values.update(fields)
    return HEADER.pack(*values.values())


def test_header_is_24_bytes_little_endian_with_the_documented_offsets():
    data = pack(CaptureKind.VIDEO, 0x01020304, 1234.5, b"\xff\xd8xx")
    assert HEADER_SIZE == 24 and len(data) == 28
    assert data[:4] == b"HCLc" and data[4] == 1 and data[5] == 3
    assert data[6:8] == b"\0\0"
    assert data[8:12] == bytes([4, 3, 2, 1])
    assert struct.unpack("<d", data[12:20])[0] == 1234.5
    assert struct.unpack("<I", data[20:24])[0] == 4


@pytest.mark.parametrize("kind, payload", [
    (CaptureKind.AUDIO, np.arange(-800, 800, dtype="<i2").tobytes()),
    (CaptureKind.VIDEO, None),
    (CaptureKind.HELLO, CaptureHello(audio=True, video=False, agent="test").to_payload()),
    (CaptureKind.END, b""),
])
def test_round_trip_every_kind(kind, payload):
    if payload is None:
        payload = jpeg(320, 240)
    msg = unpack(pack(kind, 7, 1500.25, payload))
    assert msg == CaptureMessage(kind=kind, seq=7, t_ms=1500.25, payload=payload)
    assert msg.t == pytest.approx(1.50025)


def test_audio_samples_survive_in_int16_and_chunk_length_is_counted():
    x = (0.5 * np.sin(np.linspace(0, 40, 1600))).astype(np.float32)
    msg = unpack(pack_audio(3, 100.0, x))
    assert msg.samples == 1600 and msg.duration == pytest.approx(0.1)
    back = np.frombuffer(msg.payload, "<i2").astype(np.float32) / 32767
    assert np.max(np.abs(back - x)) < 1 / 32767 + 1e-6
    # int16 input is sent unchanged, out-of-range floats are clipped
    ints = np.array([-32768, 0, 32767], np.int16)
    assert np.array_equal(np.frombuffer(unpack(pack_audio(0, 0, ints)).payload, "<i2"), ints)
    assert np.frombuffer(unpack(pack_audio(0, 0, np.array([2.0, -2.0]))).payload, "<i2").tolist() == [32767, -32767]


@pytest.mark.parametrize("data, words, code", [
    (b"HCL", "shorter than the 24-byte header", CLOSE_INVALID),
    (header(magic=b"RIFF"), "bad magic", CLOSE_UNSUPPORTED),
    (header(version=2), "version 2 is not supported", CLOSE_INVALID),
    (header(kind=9), "unknown message kind 9", CLOSE_UNSUPPORTED),
    (header(kind=0), "unknown message kind 0", CLOSE_UNSUPPORTED),
    (header(flags=1), "reserved flags", CLOSE_INVALID),
    (header(t_ms=-1.0), "finite number of ms", CLOSE_INVALID),
    (header(t_ms=float("nan")), "finite number of ms", CLOSE_INVALID),
    (header(t_ms=float("inf")), "finite number of ms", CLOSE_INVALID),
    (header(length=10) + b"\0" * 4, "truncated", CLOSE_INVALID),
    (header(length=2) + b"\0" * 4, "trailing bytes", CLOSE_INVALID),
    (header(kind=2, length=0), "non-empty whole number of int16", CLOSE_INVALID),
    (header(kind=2, length=3) + b"\0" * 3, "whole number of int16", CLOSE_INVALID),
    (header(kind=3, length=4) + b"GIF8", "not a JPEG", CLOSE_INVALID),
    (header(kind=4, length=1) + b"x", "end message must have no payload", CLOSE_INVALID),
])
def test_bad_messages_are_refused_with_a_reason_and_close_code(data, words, code):
    with pytest.raises(CaptureFormatError, match=words) as err:
        unpack(data)
    assert err.value.close_code == code
    assert len(err.value.reason.encode()) <= 123


def test_text_frames_are_refused():
    with pytest.raises(CaptureFormatError, match="binary") as err:
        unpack("hello")
    assert err.value.close_code == CLOSE_UNSUPPORTED


def test_every_truncation_of_a_valid_message_is_refused():
    data = pack_audio(1, 10.0, np.zeros(320, np.int16))
    for cut in range(len(data)):
        with pytest.raises(CaptureFormatError):
            unpack(data[:cut])


def test_oversize_payloads_are_refused_at_the_limits():
    limits = CaptureLimits(max_audio_seconds=0.25, max_jpeg_bytes=5000, max_hello_bytes=64)
    assert limits.max_audio_bytes == 8000
    unpack(pack(CaptureKind.AUDIO, 1, 0, b"\0" * 8000), limits)  # exactly at the limit: fine
    with pytest.raises(CaptureFormatError, match="over the limit of 0.25 s") as err:
        unpack(pack(CaptureKind.AUDIO, 1, 0, b"\0" * 8002), limits)
    assert err.value.close_code == CLOSE_TOO_BIG
    big = jpeg(640, 480, quality=95)
    assert len(big) > 5000
    with pytest.raises(CaptureFormatError, match="JPEG of .* over the limit of 5000"):
        unpack(pack(CaptureKind.VIDEO, 1, 0, big), limits)
    with pytest.raises(CaptureFormatError, match="hello of .* over the limit"):
        unpack(pack_hello(CaptureHello(agent="x" * 100)), limits)
    assert limits.max_message_bytes == HEADER_SIZE + 8000


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_jpeg_bytes"):
        CaptureLimits(max_jpeg_bytes=0)


def test_pack_refuses_what_unpack_would_refuse():
    with pytest.raises(ValueError):
        pack(CaptureKind.AUDIO, -1, 0.0, b"\0\0")
    with pytest.raises(ValueError):
        pack(CaptureKind.AUDIO, 2**32, 0.0, b"\0\0")
    with pytest.raises(ValueError):
        pack(CaptureKind.AUDIO, 0, float("nan"), b"\0\0")
    with pytest.raises(ValueError):
        pack(7, 0, 0.0)


# ------------------------------------------------------------------ hello
def test_hello_round_trip_and_defaults():
    hello = CaptureHello(audio=True, video=True, fps=12.5, width=320, height=180, agent="Chromium")
    assert parse_hello(unpack(pack_hello(hello))) == hello
    assert parse_hello(CaptureMessage(CaptureKind.HELLO, 0, 0.0, b"{}")) == CaptureHello()


@pytest.mark.parametrize("body, words", [
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"audio": "yes"}).encode(), "hello.audio must be true or false"),
    (json.dumps({"sample_rate": 48000}).encode(), "16000 Hz mono"),
    (json.dumps({"width": -5}).encode(), "hello.width must be a positive integer"),
    (json.dumps({"fps": 0}).encode(), "hello.fps"),
    (json.dumps({"fps": 1000}).encode(), "hello.fps"),
    (json.dumps({"audio": False, "video": False}).encode(), "neither audio nor video"),
])
def test_bad_hellos_are_refused(body, words):
    with pytest.raises(CaptureFormatError, match=words):
        parse_hello(CaptureMessage(CaptureKind.HELLO, 0, 0.0, body))


def test_a_video_only_hello_may_name_any_sample_rate():
    assert parse_hello(CaptureMessage(CaptureKind.HELLO, 0, 0.0, b'{"audio": false, "sample_rate": 44100}')).video


def test_the_first_message_must_be_a_hello():
    with pytest.raises(CaptureFormatError, match="must be a hello, got audio"):
        parse_hello(unpack(pack_audio(0, 0, np.zeros(16, np.int16))))


# ------------------------------------------------------------------ JPEG size
@pytest.mark.parametrize("size", [(320, 240), (17, 33), (1280, 720)])
def test_jpeg_size_reads_the_frame_header_of_real_jpegs(size):
    data = jpeg(*size)
    assert jpeg_size(data) == size


def test_jpeg_size_reads_progressive_jpegs():
    import cv2
    from media_fixtures import face_image

    ok, buf = cv2.imencode(".jpg", face_image(200)[:, :150], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok and jpeg_size(buf.tobytes()) == (150, 200)


def test_jpeg_frame_side_limits():
    limits = CaptureLimits(max_frame_side=400, min_frame_side=16)
    assert check_jpeg_size(jpeg(400, 300), limits) == (400, 300)
    with pytest.raises(CaptureFormatError, match="401x300 is over the limit of 400 px") as err:
        check_jpeg_size(jpeg(401, 300), limits)
    assert err.value.close_code == CLOSE_TOO_BIG
    with pytest.raises(CaptureFormatError, match="under 16 px"):
        check_jpeg_size(jpeg(15, 300), limits)


def test_a_jpeg_declaring_huge_dimensions_is_refused_before_decoding():
    data = bytearray(jpeg(64, 48))
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):  # find the frame header, then forge it
        i += 2 + ((data[i + 2] << 8) | data[i + 3])
    data[i + 5 : i + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")
    assert jpeg_size(bytes(data)) == (60000, 60000)
    with pytest.raises(CaptureFormatError, match="60000x60000 is over the limit"):
        check_jpeg_size(bytes(data))


@pytest.mark.parametrize("data, words", [
    (b"\x89PNG\r\n\x1a\n", "no FF D8"),
    (b"\xff\xd8\x00\x00\x00\x00", "no marker at byte 2"),
    (b"\xff\xd8\xff\xe0\x00\x01", "segment length 1"),
    (b"\xff\xd8\xff\xda\x00\x08abcdef", "no frame header"),
])
def test_corrupt_jpeg_headers_are_refused(data, words):
    with pytest.raises(CaptureFormatError, match=words):
        jpeg_size(data)


def test_a_truncated_real_jpeg_before_its_frame_header_is_refused():
    data = jpeg(320, 240)
    with pytest.raises(CaptureFormatError):
        jpeg_size(data[:20])


# ------------------------------------------------------------------ guard
def test_guard_admits_a_normal_client_for_a_minute():
    """100 ms audio (3.2 kB) and 10 fps JPEGs (20 kB) for 60 s of fake time: never refused."""
    guard = CaptureGuard(CaptureLimits())
    for i in range(600):
        now = i * 0.1
        assert guard.admit(now, HEADER_SIZE + 3200) is None
        assert guard.admit(now + 0.05, HEADER_SIZE + 20000) is None
    assert guard.messages == 1200 and guard.bytes == 600 * (2 * HEADER_SIZE + 23200)
    messages, nbytes = guard.rate()
    assert messages == 20 and nbytes == 10 * (2 * HEADER_SIZE + 23200)  # one second's worth kept


def test_guard_refuses_a_message_flood_and_stays_refused():
    guard = CaptureGuard(CaptureLimits(max_messages_per_second=50))
    for i in range(50):
        assert guard.admit(10.0 + i * 0.001, 30) is None
    v = guard.admit(10.06, 30)
    assert v is not None and v.code == CLOSE_POLICY and "too many messages: 51 in 1 s (limit 50/s)" in v.reason
    assert guard.admit(100.0, 30) == v  # later, calm: still refused
    assert guard.stats()["violation"] == v.reason


def test_guard_refuses_a_byte_flood():
    guard = CaptureGuard(CaptureLimits(max_bytes_per_second=100_000))
    assert guard.admit(0.0, 60_000) is None
    assert guard.admit(0.5, 40_000) is None  # exactly 100 kB within the second: fine
    v = guard.admit(0.9, 1)
    assert v is not None and "too much data: 100001 bytes in 1 s" in v.reason


def test_guard_window_slides_a_burst_after_a_pause_is_fine():
    """The same bytes spread over more than the window pass; the window forgets old ones."""
    guard = CaptureGuard(CaptureLimits(max_bytes_per_second=100_000))
    assert guard.admit(0.0, 90_000) is None
    assert guard.admit(1.0, 90_000) is None  # the first left the window exactly at 1 s
    assert guard.rate() == (1, 90_000)
    assert guard.admit(1.5, 20_000) is not None


def test_guard_memory_is_bounded_by_the_message_limit():
    limits = CaptureLimits(max_messages_per_second=20)
    guard = CaptureGuard(limits)
    t = 0.0
    while guard.admit(t, 10) is None:
        t += 0.001
    assert len(guard._recent) == 21
    guard.admit(t + 5, 10)
    assert len(guard._recent) == 21  # refused clients are not counted further


# ------------------------------------------------------------------ receiver
from realtime.sources.capture_wire import CaptureReceiver, Violation  # noqa: E402


def test_receiver_takes_a_normal_connection():
    rx = CaptureReceiver()
    got = rx.receive(0.0, pack_hello(CaptureHello(video=False)))
    assert isinstance(got, CaptureMessage) and got.kind is CaptureKind.HELLO
    assert rx.hello == CaptureHello(video=False)
    for i in range(1, 30):
        got = rx.receive(i * 0.1, pack_audio(i, (i - 1) * 100.0, np.zeros(1600, np.int16)))
        assert isinstance(got, CaptureMessage) and got.samples == 1600
    frame = rx.receive(3.0, pack(CaptureKind.VIDEO, 30, 2900.0, jpeg(320, 240)))
    assert frame.kind is CaptureKind.VIDEO  # video not announced: passed on, the source ignores it
    assert rx.receive(3.1, pack(CaptureKind.END, 31, 3000.0)).kind is CaptureKind.END
    assert rx.stats()["received"] == {"hello": 1, "audio": 29, "video": 1, "end": 1}
    assert rx.stats()["violation"] is None


@pytest.mark.parametrize("first, words", [
    (pack_audio(0, 0.0, np.zeros(16, np.int16)), "must be a hello, got audio"),
    (pack(CaptureKind.HELLO, 0, 0.0, b"not json"), "not UTF-8 JSON"),
    (b"\x00" * 30, "bad magic"),
    ("a text frame", "binary"),
])
def test_receiver_refuses_a_bad_start(first, words):
    rx = CaptureReceiver()
    v = rx.receive(0.0, first)
    assert isinstance(v, Violation) and words in v.reason
    assert rx.receive(1.0, pack_hello(CaptureHello())) == v  # refused for good


def test_receiver_refuses_a_second_hello_messages_after_end_and_oversize_frames():
    for tail, words, code in (
        ([pack_hello(CaptureHello(), seq=1)], "second hello", CLOSE_INVALID),
        ([pack(CaptureKind.END, 1, 0.0), pack_audio(2, 0.0, np.zeros(16, np.int16))], "audio message after the end", CLOSE_INVALID),
        ([pack(CaptureKind.VIDEO, 1, 0.0, jpeg(2000, 40))], "2000x40 is over the limit of 1920 px", CLOSE_TOO_BIG),
    ):
        rx = CaptureReceiver()
        assert isinstance(rx.receive(0.0, pack_hello(CaptureHello())), CaptureMessage)
        results = [rx.receive(0.1 * (i + 1), data) for i, data in enumerate(tail)]
        v = results[-1]
        assert isinstance(v, Violation) and words in v.reason and v.code == code, v


def test_receiver_counts_every_message_against_the_rate_even_garbage():
    rx = CaptureReceiver(CaptureLimits(max_messages_per_second=10))
    rx.receive(0.0, pack_hello(CaptureHello()))
    for i in range(9):
        assert isinstance(rx.receive(0.01 * (i + 1), pack_audio(i + 1, i * 10.0, np.zeros(160, np.int16))), CaptureMessage)
    v = rx.receive(0.2, b"garbage" * 10)
    assert isinstance(v, Violation) and v.code == CLOSE_POLICY and "too many messages" in v.reason
