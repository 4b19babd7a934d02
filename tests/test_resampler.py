"""The microphone's streaming resampler (av.AudioResampler): 44.1/48 kHz -> 16 kHz."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.sources.microphone import StreamResampler


def sine(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def streamed(rs: StreamResampler, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    """x fed in pieces of the given sizes (cycled), then the filter's tail."""
    out, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        out.append(rs(x[i : i + n]))
        i, k = i + n, k + 1
    out.append(rs.flush())
    return np.concatenate(out)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("rate", [44100, 48000])
def test_frequency_length_and_streaming_equal_one_shot(rate):
    x = sine(440.0, rate, seconds=2.0)
    # odd block sizes, as PortAudio may deliver (20 ms blocks and ragged ones)
    out = streamed(StreamResampler(rate_in=rate), x, [rate // 50, 1, 333, 4097, 7])
    one_shot = streamed(StreamResampler(rate_in=rate), x, [len(x)])
    assert out.dtype == np.float32
    assert len(out) == len(one_shot) == round(len(x) * 16000 / rate)
    assert np.abs(out - one_shot).max() < 1e-4, "streaming pieces must join up to the one-shot result"
    assert peak_hz(out, 16000) == pytest.approx(440.0, abs=1.0)
    # the same sine sampled at 16 kHz, in phase: no delay, amplitude kept
    ref = sine(440.0, 16000, seconds=2.0)
    assert np.abs(out[100:-100] - ref[100:-100]).max() < 0.01


def test_tone_above_the_new_nyquist_is_suppressed():
    rate = 48000
    hi = streamed(StreamResampler(rate_in=rate), sine(12000.0, rate, amp=1.0), [960])
    assert np.abs(hi[100:-100]).max() < 0.01  # 12 kHz would alias to 4 kHz


def test_without_flush_a_stream_lags_by_the_filter_only():
    rate = 44100
    rs = StreamResampler(rate_in=rate)
    pieces = [rs(b) for b in np.array_split(sine(1000.0, rate), 50)]
    got = sum(len(p) for p in pieces)
    assert 16000 - 64 <= got <= 16000  # the filter holds back a few samples until flush()
    assert len(rs.flush()) == 16000 - got


def test_16k_passes_through_unchanged():
    x = sine(440.0, 16000)
    rs = StreamResampler(rate_in=16000.0)
    assert np.array_equal(rs(x), x) and len(rs.flush()) == 0
