"""Memory that does not grow with the input: pitch and the other frame statistics in
blocks (features unchanged), audio streamed from the file, the file source's ring
bounded, frames scaled down as they are decoded. Long files are measured by
bench/memory_bench.py, not here."""

from __future__ import annotations

import numpy as np
import pytest

from hcl.features import audio as audio_mod
from hcl.features.audio import AudioFeatureExtractor
from hcl.features.media import read_media, write_media
from realtime.core.component import Policy

SR = 16000


def long_wave(mosi_clip, seconds: float = 64.0) -> np.ndarray:
    """Real speech repeated, then noise and a tone: longer than two blocks of frames."""
    reps = int(np.ceil(seconds / mosi_clip.duration))
    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    tail = [rng.normal(0, 0.05, 2 * SR).astype(np.float32), (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)]
    return np.concatenate([mosi_clip.audio] * reps + tail)[: int(seconds * SR) + 1234]


@pytest.mark.parametrize("n_steps", [None, 3, 200])
def test_blocked_features_equal_one_pass(mosi_clip, monkeypatch, n_steps):
    """Blocks of 30 s (with 1 s of neighbouring audio) give the features of one pass
    over the whole input: equal to float rounding (stated tolerance 1e-4; in practice 0)."""
    wave = long_wave(mosi_clip)
    ex = AudioFeatureExtractor()
    blocked, speech_b = ex.steps(wave, 0.5, n_steps=n_steps)
    if n_steps != 3:
        assert len(blocked) * 0.5 > 2 * audio_mod.FRAME_BLOCK * ex.hop / SR  # really several blocks
    monkeypatch.setattr(audio_mod, "FRAME_BLOCK", 10**9)  # one block: the whole input at once
    whole, speech_w = ex.steps(wave, 0.5, n_steps=n_steps)
    assert blocked.shape == whole.shape
    np.testing.assert_allclose(blocked, whole, atol=1e-4, rtol=0)
    assert (speech_b == speech_w).all() and speech_b.any()
    if n_steps != 3:
        assert not speech_b.all()


def test_pitch_block_needs_only_a_block_of_memory(monkeypatch):
    """YIN's FFT buffers are made per block: the largest tensor it builds is the same
    for 2 minutes as for 20 s of audio."""
    import torch

    ex = AudioFeatureExtractor()
    sizes: list[int] = []
    real_rfft = torch.fft.rfft

    def spy(x, *a, **k):
        sizes.append(x.numel())
        return real_rfft(x, *a, **k)

    monkeypatch.setattr(torch.fft, "rfft", spy)
    for seconds in (20, 120):
        sizes.clear()
        ex.steps(np.zeros(seconds * SR, np.float32), 0.5)
        largest = max(sizes)
        if seconds == 20:
            small = largest
    assert largest <= (audio_mod.FRAME_BLOCK / 2000 + 1) * small  # 30 s block vs 20 s: bounded, not 6x


def test_streamed_audio_equals_the_decoded_track(mosi_video_path, monkeypatch):
    from hcl.features import media

    monkeypatch.setattr(media, "AUDIO_CHUNK_SAMPLES", SR)  # 1 s pieces: the 7 s clip comes in several
    loaded = read_media(mosi_video_path)
    lazy = read_media(mosi_video_path, load_audio=False)
    assert lazy.audio is None and lazy.has_audio and lazy.duration == pytest.approx(loaded.duration, abs=0.1)
    pieces = list(lazy.audio_chunks())
    assert len(pieces) >= 5 and max(len(p) for p in pieces) <= 2 * SR
    np.testing.assert_array_equal(np.concatenate(pieces), loaded.audio)
    np.testing.assert_array_equal(lazy.audio_span(3.0, 11.5), loaded.audio_span(3.0, 11.5))
    np.testing.assert_array_equal(lazy.audio_span(loaded.duration - 1, loaded.duration + 2),
                                  loaded.audio_span(loaded.duration - 1, loaded.duration + 2))


def test_file_source_streams_and_bounds_its_ring(tmp_path):
    """Played as fast as possible with a bound, the ring holds the bound, not the file,
    and every sample arrives in order (checked against the decoded file)."""
    import threading

    from realtime.core.clock import SessionClock
    from realtime.sources.file import FileSource

    seconds = 75
    t = np.arange(seconds * SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * (200 + t) * t)).astype(np.float32)  # a sweep: every sample differs
    path = write_media(tmp_path / "long.mkv", [], tone)
    expected = read_media(path).audio
    src = FileSource(path=path, policy=Policy.FAST, read_ahead=5.0, buffer_seconds=30.0, clock=SessionClock())
    src.open()
    assert src.clip.audio is None, "the file source must not decode the whole track up front"
    assert src.audio._cap == 30 * SR
    got: list[np.ndarray] = []
    ahead: list[float] = []

    def consume() -> None:  # reads everything as it comes, then releases it
        done = 0
        while True:
            ended = src.audio.ended
            h = src.audio.horizon
            if h > done / SR:
                ahead.append(h - done / SR)
                got.append(src.audio.read(done / SR, h))
                done += len(got[-1])
                src.release(h)
            if ended:
                return
            src.audio.wait_until(h + 0.5, timeout=0.2)

    consumer = threading.Thread(target=consume)
    src.start()
    consumer.start()
    src.join(60)
    consumer.join(60)
    audio = np.concatenate(got)
    assert src.audio.ended and len(audio) == len(expected)
    np.testing.assert_array_equal(audio, expected)
    # the reader never ran further than read_ahead past what the consumer released
    assert max(ahead) <= 5.0 + 0.05, max(ahead)


def test_4k_frames_are_scaled_down_as_decoded(tmp_path):
    from realtime.core.clock import SessionClock
    from realtime.sources.file import FileSource

    frames = [np.full((2160, 3840, 3), 90 + 10 * i, np.uint8) for i in range(3)]
    path = write_media(tmp_path / "uhd.mp4", frames, None, fps=10)
    clip = read_media(path)
    (t0, full), *_ = list(clip.frames(10))
    assert full.shape == (2160, 3840, 3)
    small = [rgb for _, rgb in clip.frames(10, max_side=1280)]
    assert [f.shape for f in small] == [(720, 1280, 3)] * 3
    assert abs(int(small[1].mean()) - 100) <= 3
    src = FileSource(path=path, policy=Policy.FAST, clock=SessionClock())  # the live source scales to ANALYSIS_MAX_SIDE
    src.open()
    src.start()
    item = src.frames.get(timeout=10)
    src.stop()
    src.join(5)
    assert item is not None and item[1].shape == (720, 1280, 3)


@pytest.mark.parametrize("n_steps", [40, 140])
def test_streamed_pieces_give_the_features_of_the_whole(mosi_clip, n_steps):
    """steps_stream over uneven pieces (a file's decoder output) = steps over the
    concatenated wave, also when the steps end before or after the audio."""
    wave = long_wave(mosi_clip)
    ex = AudioFeatureExtractor()
    cuts = np.cumsum(np.random.default_rng(3).integers(1, 9 * SR, size=40))
    pieces = [p for p in np.split(wave, cuts[cuts < len(wave)]) if len(p)]
    assert len(pieces) > 8
    whole, sp_whole = ex.steps(wave, 0.5, n_steps=n_steps)
    streamed, sp_streamed = ex.steps_stream(iter(pieces), 0.5, n_steps=n_steps)
    np.testing.assert_allclose(streamed, whole, atol=1e-4, rtol=0)
    assert (sp_streamed == sp_whole).all()


def test_featurize_equals_the_array_path_on_a_normal_clip(talking_clip, talking_video, segment_featurizer):
    """The offline span featurizer (streamed audio, frames one by one) gives what the
    array path gives for the same span: today's features on a normal clip."""
    s = segment_featurizer.settings
    lazy = read_media(talking_video.path, load_audio=False)
    for clip, (start, end) in ((talking_clip, (0.0, None)), (lazy, (0.7, 3.2))):
        got = segment_featurizer.featurize(clip, start, end)
        stop = clip.duration if end is None else end
        n = segment_featurizer.n_steps(stop - start)
        frames = ((t - start, rgb) for t, rgb in talking_clip.frames(s.face.frames_per_second, start, stop))
        ref = segment_featurizer.featurize_arrays(
            talking_clip.audio_span(start, stop), frames, n_steps=n, t0_ms=int(round(start * 1000))
        )
        np.testing.assert_allclose(got.audio, ref.audio, atol=1e-4, rtol=0)
        assert (got.audio_mask == ref.audio_mask).all() and (got.video_mask == ref.video_mask).all()
        np.testing.assert_allclose(got.video, ref.video, atol=1e-5, rtol=0)


def test_long_spans_go_to_whisper_in_pieces(tmp_path, monkeypatch):
    """hcl-extract hands Whisper at most TRANSCRIBE_SECONDS at a time, in order, every
    sample once (no piece under a second), and joins the words."""
    from hcl import extract

    t = np.arange(20 * SR + 8000) / SR  # 20.5 s
    sweep = (0.3 * np.sin(2 * np.pi * (200 + 5 * t) * t)).astype(np.float32)
    path = write_media(tmp_path / "long.mkv", [], sweep)
    clip = read_media(path, load_audio=False)
    monkeypatch.setattr(extract, "TRANSCRIBE_SECONDS", 10.0)
    calls = []

    class FakeWhisper:
        def transcribe(self, wave):
            calls.append(wave)

            class W:
                text = f"piece{len(calls)}"

            return [W()]

    text = extract.transcribe_span(FakeWhisper(), clip, 0.0, clip.duration)
    lengths = [len(c) / SR for c in calls]
    assert len(lengths) == 2 and lengths[0] == 10.0 and 10.4 < lengths[1] < 10.7  # the 0.5 s rest joins the last piece
    assert text == "piece1 piece2"
    np.testing.assert_array_equal(np.concatenate(calls)[: len(sweep)], read_media(path).audio[: len(sweep)])
