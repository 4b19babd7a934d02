import numpy as np
import pytest
import torch

from hcl.features.audio import F0_REFERENCE_HZ, AudioFeatureExtractor
from hcl.features.config import AudioFeatureConfig
from media_fixtures import faint_noise, tone

torch.set_num_threads(1)
CFG = AudioFeatureConfig()
N = CFG.n_mfcc
F0_MEAN, F0_STD, VOICED, SPEECH = 2 * N + 2, 2 * N + 3, 2 * N + 4, 2 * N + 7


@pytest.fixture(scope="module")
def extractor():
    return AudioFeatureExtractor(config=CFG)


def f0_of(feats):
    return F0_REFERENCE_HZ * 2.0 ** feats[:, F0_MEAN]


@pytest.mark.parametrize("freq", [220.0, 110.0, 330.0])
def test_pure_tone_pitch_within_5_percent(extractor, freq):
    feats, speech = extractor.steps(tone(freq, 2.0), 0.5)
    assert feats.shape == (4, CFG.dim) and feats.dtype == np.float32
    assert np.all(np.abs(f0_of(feats) / freq - 1) < 0.05), f0_of(feats)
    assert np.all(feats[:, VOICED] > 0.9)
    assert np.all(feats[:, F0_STD] < 0.02)
    assert speech.all()


def test_harmonic_tone_gives_its_fundamental(extractor):
    t = np.arange(32000) / 16000
    wave = sum(0.3 / k * np.sin(2 * np.pi * 150 * k * t) for k in range(1, 8)).astype(np.float32)
    f0 = f0_of(extractor.steps(wave, 0.5)[0])
    assert np.all(np.abs(f0 / 150 - 1) < 0.05), f0


def test_frame_pitch_of_220_hz(extractor):
    f0, voiced = extractor.frame_pitch(tone(220.0, 1.0))
    assert voiced[5:-5].all()
    assert np.median(f0[voiced]) == pytest.approx(220.0, rel=0.01)


@pytest.mark.parametrize("name", ["zeros", "faint_noise", "loud_noise"])
def test_silence_and_noise_are_finite_and_speech_free(extractor, name):
    wave = {
        "zeros": np.zeros(24000, np.float32),
        "faint_noise": faint_noise(1.5),
        "loud_noise": np.random.default_rng(3).normal(0, 0.2, 24000).astype(np.float32),
    }[name]
    feats, speech = extractor.steps(wave, 0.5)
    assert np.isfinite(feats).all()
    assert not speech.any()
    assert np.all(feats[:, VOICED] < 0.1)
    assert np.all(feats[:, SPEECH] == 0)
    assert np.abs(feats).max() < 20  # roughly normalised, no log(0) blow-ups


def test_empty_and_short_input(extractor):
    feats, speech = extractor.steps(np.zeros(0, np.float32), 0.5, n_steps=2)
    assert feats.shape == (2, CFG.dim) and np.isfinite(feats).all() and not speech.any()
    feats, _ = extractor.steps(tone(220.0, 0.1), 0.5)  # shorter than a step: one step
    assert feats.shape == (1, CFG.dim)


def test_n_steps_pads_missing_audio_as_silence(extractor):
    feats, speech = extractor.steps(tone(220.0, 1.0), 0.5, n_steps=4)
    assert speech.tolist() == [True, True, False, False]
    assert np.isfinite(feats).all()


def test_deterministic_across_calls_and_instances(extractor, mosi_clip):
    a = extractor.steps(mosi_clip.audio, 0.5)
    b = extractor.steps(mosi_clip.audio, 0.5)
    c = AudioFeatureExtractor(config=CFG).steps(mosi_clip.audio, 0.5)
    for x, y in ((a, b), (a, c)):
        assert np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1])


def test_real_mosi_speech(extractor, mosi_clip):
    feats, speech = extractor.steps(mosi_clip.audio, 0.5)
    assert feats.shape == (15, CFG.dim)
    assert np.isfinite(feats).all()
    assert speech.mean() > 0.7  # she talks the whole clip
    f0 = f0_of(feats[speech])
    assert np.all((f0 > 80) & (f0 < 450))
    assert np.abs(feats).max() < 20


def test_generated_speech_then_silence(extractor, talking_clip, talking_video):
    feats, speech = extractor.steps(talking_clip.audio, 0.5)
    n_speech = int(talking_video.speech_end / 0.5)
    assert speech[:n_speech].mean() >= 0.75
    assert not speech[n_speech + 1 :].any()  # the faint-noise stretch is speech-free


def test_rejects_stereo_and_bad_step(extractor):
    with pytest.raises(ValueError, match="mono"):
        extractor.steps(np.zeros((2, 16000), np.float32), 0.5)
    with pytest.raises(ValueError, match="multiple of the hop"):
        extractor.steps(np.zeros(16000, np.float32), 0.123)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(extractor, mosi_clip):
    cpu = extractor.steps(mosi_clip.audio, 0.5)[0]
    gpu = AudioFeatureExtractor(config=CFG, device="cuda").steps(mosi_clip.audio, 0.5)[0]
    assert np.allclose(cpu, gpu, atol=5e-3)


def test_live_per_step_calls_match_the_offline_pass(extractor, mosi_clip):
    """The live windowing calls steps() once per 0.5 s step; features must match one pass over the clip."""
    whole, speech = extractor.steps(mosi_clip.audio, 0.5)
    parts = [extractor.steps(mosi_clip.audio[i * 8000 : (i + 1) * 8000], 0.5, n_steps=1) for i in range(len(whole))]
    per_step = np.concatenate([p[0] for p in parts])
    assert np.array_equal(np.concatenate([p[1] for p in parts]), speech)
    relative = np.abs(whole - per_step) / (whole.std(axis=0) + 1e-6)
    assert np.median(relative) < 0.05 and relative.max() < 0.5


def test_feature_names():
    from hcl.features.audio import audio_feature_names

    names = audio_feature_names(CFG)
    assert len(names) == CFG.dim and names[F0_MEAN] == "f0_mean" and names[SPEECH] == "speech"
