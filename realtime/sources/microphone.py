"""A microphone (sounddevice / PortAudio) as a thread filling a 16 kHz mono `AudioRing`."""

from __future__ import annotations

import logging
import queue
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from hcl.features.config import SAMPLE_RATE
from realtime.core.clock import SessionClock
from realtime.core.component import Worker
from realtime.core.streams import AudioRing
from realtime.sources import SourceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Microphone:
    index: int
    name: str
    channels: int
    sample_rate: float


def _sounddevice():
    try:
        # not at the top: sounddevice raises OSError at import on a machine without PortAudio,
        # and only the microphone needs it (hcl-live with a file, the demo or a browser does not)
        import sounddevice
    except OSError as exc:  # libportaudio missing
        raise SourceError(
            f"the microphone needs the PortAudio library ({exc}); install it with "
            "`sudo apt-get install libportaudio2` (Debian/Ubuntu) or `brew install portaudio` (macOS)"
        ) from exc
    return sounddevice


def list_microphones() -> list[Microphone]:
    """Input devices PortAudio knows (empty without a sound card)."""
    sd = _sounddevice()
    found = []
    for i, dev in enumerate(sd.query_devices()):
        if int(dev.get("max_input_channels", 0)) > 0:
            found.append(Microphone(i, str(dev["name"]), int(dev["max_input_channels"]), float(dev["default_samplerate"])))
    return found


def describe_microphones(mics: list[Microphone]) -> str:
    if not mics:
        return "no microphones were found on this machine (PortAudio lists no input device)"
    return "microphones that exist: " + "; ".join(f"--mic {m.index} ({m.name})" for m in mics)


def find_microphone(device: int | str | None) -> Microphone:
    """Resolve an index, a (part of a) name, or None (the default input)."""
    mics = list_microphones()
    if not mics:
        raise SourceError(describe_microphones(mics))
    if device is None:
        sd = _sounddevice()
        default = sd.default.device[0] if isinstance(sd.default.device, (list, tuple)) else sd.default.device
        for m in mics:
            if m.index == default:
                return m
        return mics[0]
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    if isinstance(device, int):
        for m in mics:
            if m.index == device:
                return m
        raise SourceError(f"microphone {device} does not exist; {describe_microphones(mics)}")
    matches = [m for m in mics if str(device).lower() in m.name.lower()]
    if len(matches) != 1:
        what = "matches no" if not matches else "matches more than one"
        raise SourceError(f"microphone name {device!r} {what} input device; {describe_microphones(mics)}")
    return matches[0]


class StreamResampler:
    """Streaming resampling to `rate_out` mono float32 by FFmpeg's libswresample
    (`av.AudioResampler`), which carries its filter state from call to call: the
    pieces it returns join up to what resampling the whole signal at once gives.
    `flush()` returns the samples still held in the filter at the end."""

    def __init__(self, *, rate_in: float, rate_out: int = SAMPLE_RATE) -> None:
        self.rate_in = int(round(rate_in))
        self.rate_out = int(rate_out)
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate_out)
        self._pts = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32).reshape(-1)
        if self.rate_in == self.rate_out:
            return x
        if not len(x):
            return np.zeros(0, np.float32)
        frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
        frame.sample_rate = self.rate_in
        frame.pts = self._pts
        self._pts += len(x)
        return self._samples(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        return self._samples(self._resampler.resample(None))

    @staticmethod
    def _samples(frames) -> np.ndarray:
        if not frames:
            return np.zeros(0, np.float32)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)


class MicrophoneSource(Worker):
    """Captures `device` (index, name or None = default) into `audio`, stamped on `clock`
    (the session clock, see `Source`).

    A `Worker`: PortAudio's callback only copies each block into a bounded queue; the
    worker's thread (`run`) downmixes, resamples to 16 kHz and fills the ring; `finish`
    closes the ring."""

    kind = "microphone"
    thread_name = "microphone"

    def __init__(self, *, device: int | str | None = None, capacity_seconds: float = 120.0, block_seconds: float = 0.02,
                 clock: SessionClock | None = None) -> None:
        super().__init__()
        self.clock = clock if clock is not None else SessionClock(running=False)
        self.frame_tap = None  # no video
        self.device = device
        self.block_seconds = block_seconds
        self.audio = AudioRing(sample_rate=SAMPLE_RATE, capacity_seconds=capacity_seconds)
        self.frames = None
        self.duration: float | None = None
        self.mic: Microphone | None = None
        self.name = "microphone"
        self.overflows = 0
        self._q: queue.Queue = queue.Queue(maxsize=500)
        self._stream = None
        self._rate = float(SAMPLE_RATE)

    def open(self) -> None:
        """Resolve the device; raises SourceError listing what exists. Idempotent."""
        if self.mic is not None:
            return
        self.mic = find_microphone(self.device)
        self.name = f"microphone {self.mic.index} ({self.mic.name})"

    def start(self) -> None:
        sd = _sounddevice()
        self.open()
        self.clock.begin()  # the pipeline began it already, after loading its models
        clock = self.clock
        mic = self.mic
        rate = self._rate = mic.sample_rate or SAMPLE_RATE
        channels = min(mic.channels, 2)

        def callback(indata, frames, time_info, status):  # PortAudio thread: copy and go
            if status:
                self.overflows += 1
            try:
                self._q.put_nowait((clock.now(), indata.copy()))
            except queue.Full:
                self.overflows += 1

        try:
            self._stream = sd.InputStream(
                device=mic.index,
                channels=channels,
                samplerate=rate,
                blocksize=int(rate * self.block_seconds),
                dtype="float32",
                callback=callback,
            )
            self._stream.start()
        except Exception as exc:
            raise SourceError(f"cannot open {self.name}: {exc}; {describe_microphones(list_microphones())}") from exc
        super().start()

    def run(self) -> None:
        rate = self._rate
        resample = StreamResampler(rate_in=rate)
        while not self.stopping:
            try:
                t, block = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            mono = block.mean(axis=1) if block.ndim == 2 else block
            self.audio.append(resample(mono), start_time=t - len(mono) / rate)

    def finish(self) -> None:
        self.audio.close()

    def stop(self) -> None:
        super().stop()
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception:  # device already gone
                pass

    def release(self, t: float) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "overflows": self.overflows,
                "audio_s": round(max(0.0, self.audio.horizon - (self.audio.start_time or 0.0)), 3)}
