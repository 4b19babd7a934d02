"""audio.wav: 16-bit mono PCM written while the session runs, and read back.

Writing uses the standard `wave` module, which patches the header's sizes on every
`writeframes`; with the file flushed after each write, a killed recorder leaves a
file whose header matches its data (or, killed between the data and the patch, a
header that `read_wav` repairs from the file's length).
"""

from __future__ import annotations

import os
import pathlib
import struct
import wave

import numpy as np

from hcl.features.config import SAMPLE_RATE
from realtime.recording.layout import SessionError


def to_int16(chunk: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] as little-endian int16 (NaN -> 0, clipped)."""
    x = np.asarray(chunk, dtype=np.float32).reshape(-1)
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")


class WavWriter:
    """16-bit mono PCM appended chunk by chunk; the header matches the data after each write."""

    def __init__(self, path: pathlib.Path, *, sample_rate: int = SAMPLE_RATE) -> None:
        self.path = pathlib.Path(path)
        self.sample_rate = sample_rate
        self.frames = 0
        self._f = open(self.path, "wb")
        try:
            self._w = wave.open(self._f, "wb")
            self._w.setnchannels(1)
            self._w.setsampwidth(2)
            self._w.setframerate(sample_rate)
            self._w.writeframes(b"")  # the header (0 frames) is on disk from the start
            self._f.flush()
        except BaseException:
            self._f.close()
            raise

    def write(self, chunk: np.ndarray) -> None:
        """Append float32 samples in [-1, 1]; on disk (flushed, header patched) when this returns."""
        pcm = to_int16(chunk).tobytes()
        if not pcm:
            return
        self._w.writeframes(pcm)
        self._f.flush()
        self.frames += len(pcm) // 2

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate

    def close(self) -> None:
        if self._f.closed:
            return
        try:
            self._w.close()  # patches the header if a write was cut short; leaves our file open
        finally:
            self._f.close()


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """float32 samples in [-1, 1] and the sample rate of a 16-bit PCM wav.

    The chunks are walked by hand rather than with `wave.open`, which trusts the
    header: a file whose data size is 0 or larger than the file (a recorder killed
    before the header was patched) is read to its last whole sample."""
    path = pathlib.Path(path)
    data = path.read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SessionError(f"{path} is not a WAV file (no RIFF/WAVE header)")
    pos, rate, channels, bits, samples = 12, SAMPLE_RATE, 1, 16, None
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = pos + 8
        if chunk_id == b"fmt ":
            _fmt, channels, rate, _br, _ba, bits = struct.unpack("<HHIIHH", data[body : body + 16])
        elif chunk_id == b"data":
            available = len(data) - body
            size = available if size == 0 or size > available else size
            samples = data[body : body + size - size % (channels * bits // 8)]
            break
        pos = body + size + (size & 1)
    if samples is None:
        raise SessionError(f"{path} has no data chunk")
    if bits != 16:
        raise SessionError(f"{path}: only 16-bit PCM is supported, found {bits}-bit")
    audio = np.frombuffer(samples, dtype="<i2").astype(np.float32) / 32767.0
    if channels > 1:
        audio = audio.reshape(-1, channels).mean(axis=1)
    return audio, rate
