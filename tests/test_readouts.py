"""Face and voice readouts: their definitions, and that they move the right way on planted signals.

Real mediapipe on real faces (the astronaut photograph, the MOSI clip) and
generated clips of two faces; generated tones and espeak-ng speech for the voice.
"""

import dataclasses
import math

import numpy as np
import pytest

from hcl.features.face import BLENDSHAPE_NAMES, FaceObservation
from hcl.features.media import read_media
from hcl.features.readouts import (
    FACE_READOUTS,
    LOUDNESS_FLOOR_DBFS,
    READOUT_HELP,
    VOICE_HELP,
    FaceReadout,
    FaceReadouts,
    FaceSummary,
    VoiceReadouts,
    blendshape_readouts,
    rotation_degrees,
    voice_readouts,
    window_readouts,
    yin_pitch,
)
from hcl.features.speech import Word
from media_fixtures import SR, face_image, faint_noise, tone
from multiface_fixtures import fit, make_two_face_clip, two_face_frame

BLENDSHAPE_READOUT_NAMES = [r.name for r in FACE_READOUTS]


# ------------------------------------------------------------------ definitions
def test_every_readout_is_documented_and_well_formed():
    assert BLENDSHAPE_READOUT_NAMES == ["smile", "frown", "brow_lowered", "brow_raised", "eyes_widened", "jaw_open"]
    for r in FACE_READOUTS:
        assert set(r.weights) <= set(BLENDSHAPE_NAMES), r.name
        assert math.isclose(sum(r.weights.values()), 1.0)
    numeric = [f for f in FaceReadout.__dataclass_fields__ if f not in ("face_id", "speaker", "box")]
    voice = [f for f in VoiceReadouts.__dataclass_fields__ if f not in ("t0", "t1", "words")]
    for name, text in [*((n, READOUT_HELP[n]) for n in numeric), *((n, VOICE_HELP[n]) for n in voice)]:
        assert text.endswith(".") and text.count(". ") == 0 and len(text) < 160, name  # one sentence
    assert "uncalibrated" in READOUT_HELP["uncalibrated_expression"]


def test_blendshape_readouts_are_the_documented_means():
    b = np.zeros(len(BLENDSHAPE_NAMES), np.float32)
    b[BLENDSHAPE_NAMES.index("mouthSmileLeft")] = 0.8
    b[BLENDSHAPE_NAMES.index("mouthSmileRight")] = 0.6
    b[BLENDSHAPE_NAMES.index("browInnerUp")] = 0.4
    b[BLENDSHAPE_NAMES.index("jawOpen")] = 0.3
    r = dict(zip(BLENDSHAPE_READOUT_NAMES, blendshape_readouts(b)))
    assert r["smile"] == pytest.approx(0.7) and r["brow_raised"] == pytest.approx(0.2) and r["jaw_open"] == pytest.approx(0.3)
    assert r["frown"] == r["brow_lowered"] == r["eyes_widened"] == 0.0


def _roll(deg: float, scale: float = 1.0) -> np.ndarray:
    a = math.radians(deg)
    m = np.eye(4)
    m[:3, :3] = scale * np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    m[:3, 3] = [0, 0, -40]
    return m


def test_rotation_degrees():
    assert rotation_degrees(_roll(0), _roll(0)) == pytest.approx(0.0, abs=1e-6)
    assert rotation_degrees(_roll(10), _roll(-20)) == pytest.approx(30.0)
    assert rotation_degrees(_roll(5), _roll(20, scale=3.0)) == pytest.approx(15.0)  # scale is not rotation


def _obs(cx, size, deg, smile=0.0):
    b = np.zeros(len(BLENDSHAPE_NAMES), np.float32)
    b[BLENDSHAPE_NAMES.index("mouthSmileLeft")] = b[BLENDSHAPE_NAMES.index("mouthSmileRight")] = smile
    box = (cx - size / 2, 0.5 - size / 2, cx + size / 2, 0.5 + size / 2)
    return FaceObservation(box=box, blendshapes=b, matrix=_roll(deg), frame_size=(480, 640))


def test_face_readouts_step_on_planted_observations():
    ro = FaceReadouts()
    frames = []
    for k in range(10):  # a small face turning 30 deg/s, a large still one; 10 fps, the detector's order swaps
        t = k / 10
        faces = [_obs(0.25, 0.2, 3.0 * k, smile=0.9), _obs(0.7, 0.4, 0.0)]
        frames.append(ro.step(faces if k % 2 else faces[::-1], t))
    first, last = frames[0], frames[-1]
    assert [f.face_id for f in last.faces] == [f.face_id for f in first.faces]  # the speaker first, then by id
    assert last.speaker is not None and last.speaker.box[0] > 0.45  # the large face
    small = [fr.faces[1] for fr in frames]
    assert len({f.face_id for f in small}) == 1 and not any(f.speaker for f in small)
    assert small[0].head_movement is None
    assert all(f.head_movement == pytest.approx(30.0, rel=1e-3) for f in small[1:])
    assert all(fr.speaker.head_movement in (None, 0.0) for fr in frames)
    assert small[-1].smile == pytest.approx(0.9) and last.speaker.smile == 0.0
    d = last.to_dict()
    assert d["faces"][1]["smile"] == 0.9 and d["faces"][1]["uncalibrated_expression"] is None
    assert ro.step([], 1.0).faces == () and ro.step([], 1.1).speaker is None


def test_window_readouts_summarise_each_face():
    ro = FaceReadouts()
    frames = []
    for k in range(20):  # 2 s at 10 fps; the small face smiles only in the second second and turns 30 deg/s
        faces = [_obs(0.25, 0.2, 3.0 * k, smile=0.8 if k >= 10 else 0.0), _obs(0.7, 0.4, 0.0)]
        if k in (4, 5):
            faces = faces[1:]  # the detector misses the small face twice
        frames.append(ro.step(faces, k / 10))
    voice = voice_readouts(tone(150, 1.0), [], 1.0, 2.0)
    first, second = window_readouts(frames, 0.0, 1.0), window_readouts(frames, 1.0, 2.0, voice)
    assert first.frames == second.frames == 10
    speaker, small = first.faces
    assert speaker.speaker and not small.speaker and speaker.frames == 10 and small.frames == 8
    assert small.smile == 0.0 and second.faces[1].smile == pytest.approx(0.8)
    assert second.faces[1].head_movement == pytest.approx(30.0, rel=1e-3) and speaker.head_movement == 0.0
    d = second.to_dict()
    assert d["voice"]["pitch_hz"] == pytest.approx(150, rel=0.01) and d["faces"][0]["face_id"] == speaker.face_id
    assert window_readouts(frames, 5.0, 6.0).faces == () and first.voice is None


def test_expression_classifier_needs_the_frame():
    class Fake:
        labels = ("happy", "sad")

        def classify(self, rgb, boxes):
            return np.tile([0.75, 0.25], (len(boxes), 1))

    ro = FaceReadouts(expressions=Fake())
    with pytest.raises(ValueError, match="needs the frame"):
        ro.step([_obs(0.5, 0.3, 0.0)], 0.0)
    frame = ro.step([_obs(0.5, 0.3, 0.0)], 0.1, np.zeros((480, 640, 3), np.uint8))
    assert frame.speaker.uncalibrated_expression == {"happy": 0.75, "sad": 0.25}
    window = window_readouts([frame], 0.0, 1.0)
    assert window.speaker.uncalibrated_expression == {"happy": 0.75, "sad": 0.25}
    assert window.to_dict()["faces"][0]["uncalibrated_expression"] == {"happy": 0.75, "sad": 0.25}


# ------------------------------------------------------------------ faces: real mediapipe
@pytest.fixture(scope="module")
def two_face_run(tmp_path_factory, segment_featurizer):
    """The generated two-face clip through mediapipe (image mode) and FaceReadouts at 10 fps."""
    clip = make_two_face_clip(tmp_path_factory.mktemp("faces") / "two.mp4")
    media = read_media(clip.path)
    ro = FaceReadouts()
    frames = [ro.step(segment_featurizer.face.faces(rgb, int(t * 1000)), t) for t, rgb in media.frames(10.0)]
    return clip, frames


def test_two_faces_get_their_own_ids_and_readouts(two_face_run):
    clip, frames = two_face_run
    assert len(frames) == 30
    both = [fr for fr in frames if len(fr.faces) == 2]
    assert len(both) >= 27  # mediapipe finds both faces in (nearly) every frame
    left_ids = {min(fr.faces, key=lambda f: f.box[0]).face_id for fr in both}
    right_ids = {max(fr.faces, key=lambda f: f.box[0]).face_id for fr in both}
    assert len(left_ids) == 1 and len(right_ids) == 1 and left_ids != right_ids
    # the larger (right) face is the speaker, the one the model reads, in every frame
    assert all(fr.speaker is not None and fr.speaker.face_id in right_ids for fr in both)
    left = [fr.face(*left_ids) for fr in both]
    right = [fr.face(*right_ids) for fr in both]
    # planted head movement: the left face tilts (up to 38 deg/s), the right one is still
    moving = np.median([f.head_movement for f in left if f.head_movement is not None])
    still = np.median([f.head_movement for f in right if f.head_movement is not None])
    assert moving > 15.0 and still < 3.0, (moving, still)
    # the astronaut smiles in the photograph: both crops read as smiling, neither frowns
    assert min(f.smile for f in left + right) > 0.5
    assert max(f.frown for f in left + right) < 0.2
    # over the whole clip as one window: two faces, the speaker first, the tilting one moving
    window = window_readouts(frames, 0.0, clip.seconds)
    assert [f.face_id for f in window.faces] == [*right_ids, *left_ids] and window.faces[0].speaker
    assert window.faces[1].head_movement > 15.0 and window.faces[0].head_movement < 3.0


def test_smile_of_the_astronaut_vs_the_mosi_speaker(mosi_clip, segment_featurizer):
    """Two real people in one frame: the smiling astronaut (left) and the MOSI speaker (right), who does not smile."""
    _, mosi = next(iter(mosi_clip.frames(1.0)))
    frame = two_face_frame(0.0, 0.0, right=_mosi_crop(mosi), slide=0.0)
    faces = segment_featurizer.face.faces(frame)
    assert len(faces) == 2
    readouts = FaceReadouts().step(faces, 0.0)
    astronaut, speaker = sorted(readouts.faces, key=lambda f: f.box[0])
    assert astronaut.smile > 0.6 and speaker.smile < 0.1, (astronaut.smile, speaker.smile)
    assert speaker.speaker and not astronaut.speaker


def _mosi_crop(rgb):
    return fit(rgb[10:290, 130:370], 280, 240)


def test_brows_of_the_mosi_speaker_raised_then_lowered(mosi_clip, segment_featurizer):
    """Real frames of one person: brows raised at 1.0 s, pulled down at 4.5 s of the MOSI clip."""
    frames = dict((round(t, 1), rgb) for t, rgb in mosi_clip.frames(2.0))
    ro = FaceReadouts()
    raised = ro.step(segment_featurizer.face.faces(frames[1.0]), 1.0).speaker
    lowered = ro.step(segment_featurizer.face.faces(frames[4.5]), 4.5).speaker
    assert raised.face_id == lowered.face_id
    assert raised.brow_raised > lowered.brow_raised + 0.3
    assert lowered.brow_lowered > raised.brow_lowered + 0.3


def test_face_image_readouts_are_in_range(segment_featurizer):
    faces = segment_featurizer.face.faces(face_image(256))
    (face,) = FaceReadouts().step(faces, 0.0).faces
    values = [getattr(face, n) for n in BLENDSHAPE_READOUT_NAMES]
    assert all(0.0 <= v <= 1.0 for v in values) and face.speaker and face.face_id == 1


# ------------------------------------------------------------------ voice
def test_louder_tone_reads_louder_and_the_level_is_dbfs():
    quiet = voice_readouts(tone(200, 2.0, amplitude=0.1), [], 0.0, 2.0)
    loud = voice_readouts(tone(200, 2.0, amplitude=0.5), [], 0.0, 2.0)
    assert quiet.loudness_dbfs == pytest.approx(-20.0, abs=0.2)  # a sine of amplitude 0.1: -20 dBFS
    assert loud.loudness_dbfs - quiet.loudness_dbfs == pytest.approx(20 * math.log10(5), abs=0.2)
    # pauses (silence) in the window do not pull the level down
    gappy = np.concatenate([tone(200, 1.0, amplitude=0.1), np.zeros(SR, np.float32)])
    assert voice_readouts(gappy, [], 0.0, 2.0).loudness_dbfs == pytest.approx(quiet.loudness_dbfs, abs=0.3)


@pytest.mark.parametrize("freq", [90.0, 150.0, 240.0, 400.0])
def test_pitch_of_a_tone(freq):
    r = voice_readouts(tone(freq, 1.5, amplitude=0.2), [], 0.0, 1.5)
    assert r.pitch_hz == pytest.approx(freq, rel=0.01)
    assert r.pitch_variability_st < 0.05 and r.voiced_fraction > 0.9


def test_pitch_variability_of_a_glide():
    t = np.arange(2 * SR) / SR
    f = 150.0 * 2 ** (t / 2)  # one octave up over 2 s
    glide = (0.2 * np.sin(2 * np.pi * np.cumsum(f) / SR)).astype(np.float32)
    r = voice_readouts(glide, [], 0.0, 2.0)
    steady = voice_readouts(tone(212, 2.0, amplitude=0.2), [], 0.0, 2.0)
    # 12 semitones spread evenly: a standard deviation of 12 / sqrt(12) = 3.46
    assert r.pitch_variability_st == pytest.approx(12 / math.sqrt(12), rel=0.1)
    assert r.pitch_hz == pytest.approx(212, rel=0.05) and steady.pitch_variability_st < 0.1


def test_silence_and_noise_have_no_pitch():
    silent = voice_readouts(np.zeros(SR, np.float32), [], 0.0, 1.0)
    assert silent.loudness_dbfs == LOUDNESS_FLOOR_DBFS and silent.pitch_hz is None and silent.voiced_fraction == 0.0
    noise = voice_readouts(faint_noise(1.0, level=0.002), [], 0.0, 1.0)
    assert noise.pitch_hz is None and noise.loudness_dbfs == LOUDNESS_FLOOR_DBFS  # -51 dBFS: under the gate


def test_speaking_rate_and_pauses_from_word_timings():
    words = [Word("a", 0.0, 0.3, 1.0), Word("b", 0.35, 0.6, 1.0), Word("c", 1.2, 1.5, 1.0),
             Word("d", 1.55, 1.8, 1.0), {"w": "e", "start": 2.9, "end": 3.2}, Word("f", 3.4, 3.7, 1.0)]
    wave = np.zeros(5 * SR, np.float32)
    r = voice_readouts(wave, words, 0.0, 4.0)
    assert r.words == 6 and r.speaking_rate == pytest.approx(1.5)
    assert r.pauses == 2 and r.pause_seconds == pytest.approx(0.6 + 1.1)  # 0.6-1.2 and 1.8-2.9; 0.05 and 0.2 s gaps are not pauses
    # a window from 1.0 s: a pause across its start counts only for its part inside
    late = voice_readouts(wave, words, 1.0, 3.0, wave_start=0.0)
    assert late.words == 2 and late.pauses == 1 and late.pause_seconds == pytest.approx(1.1)  # 0.6-1.2: 0.2 s inside, too short
    early = voice_readouts(wave, words, 0.0, 1.0)  # 0.6-1.2: 0.4 s inside
    assert early.pauses == 1 and early.pause_seconds == pytest.approx(0.4)
    assert voice_readouts(wave, [], 0.0, 4.0).speaking_rate == 0.0


def test_wave_start_cuts_the_window():
    wave = np.concatenate([tone(120, 1.0, amplitude=0.3), tone(300, 1.0, amplitude=0.05)])
    second = voice_readouts(wave, [], 1.0, 2.0, wave_start=0.0)
    direct = voice_readouts(wave[SR:], [], 1.0, 2.0)
    assert second.pitch_hz == pytest.approx(direct.pitch_hz) and second.pitch_hz == pytest.approx(300, rel=0.01)
    assert second.loudness_dbfs == pytest.approx(direct.loudness_dbfs)
    past_end = voice_readouts(wave, [], 1.5, 2.5, wave_start=0.0)  # half of it after the audio: silence
    assert past_end.voiced_fraction == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError, match="mono"):
        voice_readouts(np.zeros((SR, 2), np.float32), [], 0.0, 1.0)
    with pytest.raises(ValueError, match="empty window"):
        voice_readouts(wave, [], 1.0, 1.0)


def test_speech_higher_voice_reads_higher():
    from media_fixtures import espeak_available, speak

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    low = speak("the weather is fine today and we are going out")
    high = _pitch_shift(low, 1.5)
    a = voice_readouts(low, [], 0.0, len(low) / SR)
    b = voice_readouts(high, [], 0.0, len(high) / SR)
    assert 60 < a.pitch_hz < 250 and 0.2 < a.voiced_fraction < 0.9
    assert b.pitch_hz / a.pitch_hz == pytest.approx(1.5, rel=0.1)


def _pitch_shift(wave, factor):
    """Resample so that the pitch (and the tempo) rises by `factor`."""
    idx = np.arange(0, len(wave) - 1, factor)
    return np.interp(idx, np.arange(len(wave)), wave).astype(np.float32)


def test_numpy_yin_agrees_with_the_model_features_yin(mosi_wav_path):
    """The readouts' pitch tracker and the audio features' torch YIN on real speech."""
    import wave as wavmod

    from hcl.features.audio import AudioFeatureExtractor

    with wavmod.open(str(mosi_wav_path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
        assert w.getframerate() == SR
    x = pcm.mean(axis=1).astype(np.float32) / 32768
    f0, voiced, _ = yin_pitch(x)
    # the torch frames (yin_len = 668 samples) are centred on k * hop, these start at k * hop:
    # with 146 zeros in front, torch frame k + 3 starts where this frame k does (3 * 160 - 334 - 146 = 0)
    f0t, vt = AudioFeatureExtractor().frame_pitch(np.concatenate([np.zeros(146, np.float32), x]))
    f0t, vt = f0t[3:], vt[3:]
    n = min(len(f0), len(f0t))
    both = voiced[:n] & vt[:n]
    assert both.sum() > 50
    assert np.median(np.abs(f0[:n][both] - f0t[:n][both]) / f0t[:n][both]) < 0.02
    r = voice_readouts(x, [], 0.0, len(x) / SR)
    assert 80 < r.pitch_hz < 300


def test_a_frame_face_and_a_window_face_carry_the_same_readouts():
    """FaceReadout (one frame) and FaceSummary (a window) are two schemas of one list:
    a readout added to FACE_READOUTS (or its help) and not to both would go missing somewhere."""
    names = {r.name for r in FACE_READOUTS} | {"head_movement", "uncalibrated_expression"}
    assert names == set(READOUT_HELP)
    frame = {f.name for f in dataclasses.fields(FaceReadout)}
    window = {f.name for f in dataclasses.fields(FaceSummary)}
    assert names <= frame and names <= window
    assert frame - names == {"face_id", "speaker", "box"} and window - names == {"face_id", "speaker", "frames"}
