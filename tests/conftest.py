"""Shared pytest fixtures. Add new fixtures in their own section; keep others' intact."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# --------------------------------------------------------------------------------------
# Feature extractors on real media (tests/test_media.py, test_audio_features.py,
# test_face_features.py, test_speech.py, test_extract.py). Expensive things are made once.

SHARED_MOSI_RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "mosi" / "raw"


def _mosi_file(name: str) -> Path:
    path = SHARED_MOSI_RAW / name
    if not path.exists():
        pytest.skip(f"real MOSI clip {path} not available (see shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def mosi_video_path() -> Path:
    """A real MOSI clip with a face and speech (label -0.8), 7.5 s."""
    return _mosi_file("Oz06ZWiO20M_6.mp4")


@pytest.fixture(scope="session")
def mosi_wav_path() -> Path:
    """A real MOSI audio clip, 16 kHz stereo, 3.3 s: 'anyhow it was really good'."""
    return _mosi_file("03bSnISJMiM_1.wav")


@pytest.fixture(scope="session")
def mosi_clip(mosi_video_path):
    from hcl.features.media import read_media

    return read_media(mosi_video_path)


@pytest.fixture(scope="session")
def segment_featurizer():
    """One SegmentFeaturizer (default settings, CPU, one torch thread) for the whole session."""
    import torch

    from hcl.features.segment import SegmentFeaturizer

    torch.set_num_threads(1)
    featurizer = SegmentFeaturizer()
    yield featurizer
    featurizer.close()


@pytest.fixture(scope="session")
def mosi_face_frames(mosi_clip, segment_featurizer):
    """Per-frame face features of the MOSI clip at 10 fps: (times, [(58,) | None])."""
    return segment_featurizer.face_frames(mosi_clip.frames(10.0))


@pytest.fixture(scope="session")
def talking_video(tmp_path_factory):
    """Generated mp4: espeak-ng speech over the astronaut's face, then faint noise over face-free frames."""
    from media_fixtures import espeak_available, make_talking_video

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    return make_talking_video(tmp_path_factory.mktemp("media") / "talk.mp4")


@pytest.fixture(scope="session")
def talking_clip(talking_video):
    from hcl.features.media import read_media

    return read_media(talking_video.path)


@pytest.fixture(scope="session")
def talking_segment(talking_clip, segment_featurizer):
    """SegmentFeatures of the whole generated talking video."""
    return segment_featurizer.featurize(talking_clip)


@pytest.fixture(scope="session")
def whisper():
    """The packaged Whisper tiny.en, loaded once."""
    from hcl.features.speech import SpeechTranscriber

    transcriber = SpeechTranscriber(cpu_threads=2)
    transcriber.model  # load now
    return transcriber


# --------------------------------------------------------------------------------------
# The live pipeline (tests/test_windowing.py, test_scorer.py, test_live_e2e.py, test_cli.py).


def _shipped_live_checkpoint() -> Path | None:
    """The shipped live model, or the checkpoint named by $HCL_LIVE_CHECKPOINT (e.g. a fresh run)."""
    if os.environ.get("HCL_LIVE_CHECKPOINT"):
        return Path(os.environ["HCL_LIVE_CHECKPOINT"]).resolve()
    try:
        from hcl.checkpoint import default_live_checkpoint

        return default_live_checkpoint()
    except (FileNotFoundError, ImportError):
        return None


@pytest.fixture(scope="session")
def shipped_live_checkpoint() -> Path:
    """The shipped live model; tests that need its judgement skip without it."""
    path = _shipped_live_checkpoint()
    if path is None:
        pytest.skip("the shipped live model (models/<name>/model.pt) is not there yet")
    return path


@pytest.fixture(scope="session")
def live_checkpoint(tmp_path_factory) -> Path:
    """The shipped live model, or (until it exists) a randomly initialised real checkpoint."""
    path = _shipped_live_checkpoint()
    if path is not None:
        return path
    import torch

    from hcl.checkpoint import save_checkpoint
    from hcl.config import ModelConfig
    from hcl.features.config import FeatureSettings
    from hcl.model import HCL

    torch.manual_seed(0)
    settings = FeatureSettings()
    model = HCL(config=ModelConfig(**settings.model_dims())).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", model, features=settings, meta={"name": "random-test"})


@pytest.fixture(scope="session")
def live_scorer(live_checkpoint):
    """One warmed-up CPU WindowScorer for the session (one torch thread)."""
    import torch

    from realtime.pipeline.scorer import WindowScorer

    torch.set_num_threads(1)
    scorer = WindowScorer(checkpoint=live_checkpoint, device="cpu")
    scorer.warm_up()
    return scorer


@pytest.fixture(scope="session")
def demo_media(tmp_path_factory):
    """The demo clip (a positive then a negative espeak-ng sentence over a real face):
    (path, [Utterance])."""
    import shutil

    from realtime.sources.demo import make_clip

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    path = tmp_path_factory.mktemp("demo") / "demo.mp4"
    utterances = make_clip(path, lead=0.3, gap=2.5, tail=2.5)
    return path, utterances


# --------------------------------------------------------------------------------------
# Ray Serve on a busy machine: Serve kills an HTTP proxy that is not ready within 5 s
# (and one whose health check takes over 10 s). A loaded CI machine can take longer to
# start one, so the Ray clusters that tests start (in this process, and the hcl-live --ray
# subprocesses, which inherit the environment) get generous bounds.
# Ray also starts its workers (actors, Serve replicas) at nice 15: beside `stress-ng --cpu 2`
# they got about 4 % of a core each and the Ray tests' actors were still loading the model
# after ten minutes, so the tests' clusters run their workers at normal priority.
for _name, _seconds in (("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "120"),
                        ("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "120"),
                        ("RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S", "30"),
                        ("RAY_worker_niceness", "0")):
    os.environ.setdefault(_name, _seconds)
