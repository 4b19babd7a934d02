import numpy as np
import pytest

from hcl.features.media import MediaError, n_steps_for, read_media
from media_fixtures import face_image, write_wav

from hcl.features.media import write_media


def test_real_mosi_video_audio_and_frames(mosi_clip):
    assert mosi_clip.has_video and mosi_clip.has_audio
    assert mosi_clip.sample_rate == 16000
    assert mosi_clip.audio.dtype == np.float32 and mosi_clip.audio.ndim == 1
    assert 7.3 < mosi_clip.duration < 7.7
    assert abs(len(mosi_clip.audio) / 16000 - mosi_clip.duration) < 0.2
    assert 0.05 < np.abs(mosi_clip.audio).max() <= 1.0
    assert mosi_clip.video_fps == pytest.approx(30.0)
    frames = list(mosi_clip.frames(10.0, start=2.0, end=3.0))
    times = [t for t, _ in frames]
    assert len(frames) == 10
    assert all(2.0 - 1e-6 <= t < 3.0 for t in times)
    assert np.allclose(np.diff(times), 0.1, atol=0.02)
    rgb = frames[0][1]
    assert rgb.dtype == np.uint8 and rgb.shape == (360, 480, 3)


def test_frames_slower_source_yields_each_frame_once(talking_clip, talking_video):
    # a 15 fps source asked for 30 fps gives its 15 frames per second, no repeats
    times = [t for t, _ in talking_clip.frames(30.0, 0.0, 2.0)]
    assert len(times) == 2 * talking_video.fps
    assert len(set(times)) == len(times)


def test_wav_is_audio_only(mosi_wav_path):
    clip = read_media(mosi_wav_path)  # stereo 16 kHz -> mono
    assert not clip.has_video and clip.has_audio
    assert clip.duration == pytest.approx(3.33, abs=0.02)
    assert list(clip.frames(10.0)) == []


def test_resamples_to_16k(tmp_path):
    # a 44.1 kHz file comes back at 16 kHz with the same duration and pitch
    t = np.arange(44100) / 44100
    write_wav(tmp_path / "t44.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sample_rate=44100)
    clip = read_media(tmp_path / "t44.wav")
    assert clip.duration == pytest.approx(1.0, abs=0.01)
    assert abs(len(clip.audio) - 16000) < 50
    spectrum = np.abs(np.fft.rfft(clip.audio[:16000]))
    assert abs(np.argmax(spectrum) - 440) <= 2  # 1 Hz bins


def test_video_without_audio(tmp_path):
    path = write_media(tmp_path / "silent.mp4", [face_image(64)] * 10, None, fps=10)
    clip = read_media(path)
    assert clip.has_video and not clip.has_audio
    assert clip.audio.shape == (0,)
    assert clip.duration == pytest.approx(1.0, abs=0.15)
    assert len(list(clip.frames(10.0))) == 10


def test_audio_span_pads_past_the_end(mosi_clip):
    span = mosi_clip.audio_span(7.0, 8.0)
    assert span.shape == (16000,)
    assert np.all(span[-4000:] == 0)


@pytest.mark.parametrize(
    "content, name",
    [(None, "missing.mp4"), (b"", "empty.mp4"), (bytes(np.random.default_rng(0).integers(0, 256, 20000, np.uint8)), "x.mp4"),
     (b"just some text\n" * 50, "notes.webm")],
)
def test_bad_files_raise_media_error_naming_the_file(tmp_path, content, name):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError) as err:
        read_media(path)
    message = str(err.value)
    assert str(path) in message
    assert any(w in message for w in ("check", "re-encode", "remove", "give"))


def test_truncated_mp4_is_an_error_or_shorter(tmp_path, talking_video):
    data = talking_video.path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])  # moov atom at the end is lost
    with pytest.raises(MediaError, match="cut.mp4"):
        read_media(cut)


def test_n_steps_for():
    assert n_steps_for(3.3, 0.5) == 7
    assert n_steps_for(3.0, 0.5) == 6
    assert n_steps_for(3.001, 0.5) == 6  # a sliver is not a step
    assert n_steps_for(0.1, 0.5) == 1


@pytest.mark.parametrize("ext", ["webm", "mkv"])
def test_webm_and_mkv(tmp_path, ext):
    from media_fixtures import faint_noise

    audio = faint_noise(1.0, level=0.1)
    path = write_media(tmp_path / f"clip.{ext}", [face_image(64)] * 15, audio, fps=15)
    clip = read_media(path)
    assert clip.has_video and clip.has_audio
    assert clip.duration == pytest.approx(1.0, abs=0.1)
    assert abs(len(clip.audio) - 16000) < 1200
    times = [t for t, _ in clip.frames(10.0, 0.5, 1.0)]
    assert times and all(0.5 - 1e-6 <= t < 1.0 for t in times)


def test_seeking_gives_the_same_frames_as_decoding_from_the_start(mosi_clip):
    sought = list(mosi_clip.frames(10.0, start=5.0, end=5.5))  # seeks (start > 1 s)
    full = [(t, f) for t, f in mosi_clip.frames(10.0) if 5.0 - 1e-6 <= t < 5.5]
    assert [t for t, _ in sought] == [t for t, _ in full] and len(sought) == 5
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(sought, full))
