import numpy as np
import pytest

from hcl.features.config import N_BLENDSHAPES, FaceFeatureConfig
from hcl.features.face import FACE_DIM, FaceFeatureExtractor, aggregate_steps, head_pose, packaged_face_model
from media_fixtures import face_image, faceless_image

POSE = slice(N_BLENDSHAPES, N_BLENDSHAPES + 3)


def test_dim_matches_settings():
    assert FACE_DIM == FaceFeatureConfig().dim == 58


def test_real_mosi_face_in_most_frames(mosi_face_frames):
    times, feats = mosi_face_frames
    assert len(times) == 75
    found = [f for f in feats if f is not None]
    assert len(found) >= 0.8 * len(feats)
    arr = np.stack(found)
    assert arr.shape[1] == FACE_DIM and np.isfinite(arr).all()
    blend = arr[:, :N_BLENDSHAPES]
    assert blend.min() >= 0.0 and blend.max() <= 1.0
    assert blend.std(axis=0).max() > 0.05  # her face moves: some blendshape varies
    assert np.abs(arr[:, POSE]).max() <= 1.0
    assert np.all(arr[:, -1] < 0)  # the face is in front of the camera (tz < 0)


def test_face_and_no_face(segment_featurizer):
    face = segment_featurizer.face.frame(face_image(256), 0)
    assert face is not None and face.shape == (FACE_DIM,) and face.dtype == np.float32
    assert segment_featurizer.face.frame(faceless_image(256), 100) is None


def _crop_face(h, w, mirror=False):
    from skimage.data import astronaut
    from skimage.transform import resize

    img = resize(astronaut()[0:240, 140:340], (h, w), anti_aliasing=True, preserve_range=True).astype(np.uint8)
    return img[:, ::-1].copy() if mirror else img


@pytest.mark.parametrize("big_on_left", [True, False])
def test_largest_face_is_the_speaker(segment_featurizer, big_on_left):
    big, small = _crop_face(240, 200), _crop_face(120, 100, mirror=True)  # the small one looks the other way
    canvas = np.full((240, 400, 3), 30, np.uint8)
    only_big, only_small = canvas.copy(), canvas.copy()
    bx, sx = (0, 260) if big_on_left else (200, 40)
    for img in (canvas, only_big):
        img[:, bx : bx + 200] = big
    for img in (canvas, only_small):
        img[60:180, sx : sx + 100] = small
    ex = segment_featurizer.face
    both, b, s = ex.frame(canvas), ex.frame(only_big), ex.frame(only_small)
    assert both is not None and b is not None and s is not None
    assert np.abs(both - b).max() < 0.02
    assert np.abs(both - s).max() > 0.2
    assert np.sign(both[N_BLENDSHAPES]) != np.sign(s[N_BLENDSHAPES])  # yaw of the big face, not the mirrored one


def test_aggregate_steps_means_and_masks():
    f1, f2 = np.full(FACE_DIM, 0.2, np.float32), np.full(FACE_DIM, 0.4, np.float32)
    times = [0.0, 0.3, 0.6, 1.1, 1.4, 2.9]
    feats = [f1, f2, None, None, f1, f2]
    out, mask = aggregate_steps(times, feats, n_steps=4, step_seconds=0.5)
    assert out.shape == (4, FACE_DIM) and out.dtype == np.float32
    assert mask.tolist() == [True, False, True, False]
    assert np.allclose(out[0], 0.3) and np.allclose(out[2], 0.2)
    assert np.all(out[~mask] == 0)  # never a "neutral face": zero and masked
    empty, m = aggregate_steps([], [], n_steps=2, step_seconds=0.5)
    assert empty.shape == (2, FACE_DIM) and not m.any()
    with pytest.raises(ValueError):
        aggregate_steps([0.0], [], 1, 0.5)


def test_generated_video_face_then_no_face(talking_segment, talking_video):
    n_face = int(talking_video.speech_end / 0.5)
    mask = talking_segment.video_mask
    assert len(mask) == 15
    assert mask[:n_face].all()
    assert not mask[n_face:].any()
    assert np.all(talking_segment.video[n_face:] == 0)
    blend = talking_segment.video[:n_face, :N_BLENDSHAPES]
    assert blend.min() >= 0 and blend.max() <= 1


def test_same_file_twice_gives_identical_features(talking_clip, talking_segment):
    from hcl.features.segment import SegmentFeaturizer

    fresh = SegmentFeaturizer()
    try:
        again = fresh.featurize(talking_clip)
    finally:
        fresh.close()
    for a, b in zip(talking_segment, again):
        assert np.array_equal(a, b)


def test_head_pose_of_known_rotations():
    def rot(yaw, pitch, roll):
        cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
        rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        m = np.eye(4)
        m[:3, :3] = rz @ ry @ rx
        return m

    assert np.allclose(head_pose(rot(0.3, -0.2, 0.1)), [0.3, -0.2, 0.1])
    assert np.allclose(head_pose(rot(-0.5, 0.4, -0.3)), [-0.5, 0.4, -0.3])


def test_model_path_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_path"):
        FaceFeatureExtractor(config=FaceFeatureConfig(model_path=str(tmp_path / "nope.task")))
    with FaceFeatureExtractor(config=FaceFeatureConfig(model_path=str(packaged_face_model())), running_mode="video") as ex:
        assert ex.frame(face_image(256), 0) is not None
        assert ex.frame(face_image(256), 0) is not None  # repeated timestamps are made increasing
        with pytest.raises(ValueError, match="RGB uint8"):
            ex.frame(np.zeros((10, 10), np.uint8))
    with pytest.raises(RuntimeError, match="closed"):
        ex.frame(face_image(64), 10)


def test_featurize_arrays_for_one_live_step(segment_featurizer, talking_clip):
    """The live path: one step of raw audio plus the frames seen during it."""
    wave = talking_clip.audio_span(0.5, 1.0)
    seg = segment_featurizer.featurize_arrays(wave, [(0.1, face_image(256)), (0.3, faceless_image(256))], n_steps=1)
    assert seg.audio.shape == (1, 48) and seg.video.shape == (1, 58)
    assert seg.audio_mask.tolist() == [True] and seg.video_mask.tolist() == [True]
    none = segment_featurizer.featurize_arrays(None, [(0.2, faceless_image(256))], n_steps=1)
    assert none.audio_mask.tolist() == [False] and none.video_mask.tolist() == [False]
    assert np.all(none.video == 0) and np.all(none.audio == 0)


def test_names_match_mediapipe_and_the_astronaut_smiles(segment_featurizer):
    import mediapipe as mp

    from hcl.features.face import BLENDSHAPE_NAMES, FACE_FEATURE_NAMES

    img = face_image(256)
    result = segment_featurizer.face._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=img))
    names = tuple(c.category_name for c in sorted(result.face_blendshapes[0], key=lambda c: c.index))
    assert names == BLENDSHAPE_NAMES and len(FACE_FEATURE_NAMES) == FACE_DIM
    feats = dict(zip(FACE_FEATURE_NAMES, segment_featurizer.face.frame(img)))
    assert feats["mouthSmileLeft"] > 0.5 and feats["mouthSmileRight"] > 0.5  # she smiles in the photograph
    assert feats["mouthFrownLeft"] < 0.2
