"""Own labels to a trimodal model, end to end: a labelled recording -> hcl-extract ->
hcl-train learns a signal the words lack -> the checkpoint runs in `hcl-live --checkpoint`
on a new clip and scores that signal there.

The recording's parts all say the same words; the label follows the pitch of the voice
(a 220 Hz tone: +2, a 110 Hz tone: -2). A model that scores the held-out spans well has
learned it from the audio. The recording is made, extracted and trained once for the module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hcl.cli import train_main
from hcl.extract import main as extract_main
from realtime.recording import read_session
from recording_fixtures import Part, make_labelled_session

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pitch_run(tmp_path_factory) -> Path:
    """hcl-train's output folder for the pitch-labelled recording (one seed)."""
    root = tmp_path_factory.mktemp("own_labels")
    rng = np.random.default_rng(1)
    high = rng.permutation([True] * 12 + [False] * 12)
    parts = [Part(1.0, 220.0 if h else 110.0, 2.0 if h else -2.0) for h in high]
    parts += [Part(1.0, f, 2.0 if f > 150 else -2.0, mode="test") for f in (220.0, 110.0, 110.0, 220.0)]
    make_labelled_session(root / "rec", parts, gap=0.3)
    assert extract_main([str(root / "rec"), "-o", str(root / "ds"), "--threads", "1", "--no-progress"]) == 0
    assert train_main(["--extracted", str(root / "ds"), "--out", str(root / "run"), "--epochs", "30",
                       "--seeds", "1", "--batch-size", "8", "--lr", "1e-3", "--patience", "30", "--threads", "1",
                       "--device", "cpu", "--no-progress"]) == 0
    return root / "run"


def test_labelled_recording_trains_a_model_that_hears_the_pitch(pitch_run):
    result = json.loads((pitch_run / "results.json").read_text())
    assert result["sizes"]["train"] == 19 and result["sizes"]["valid"] == 5  # 24 unmarked: the last 5 are valid
    (test,) = result["runs"][0]["test"].values()  # the one test split: the 4 marked spans
    # the words are the same everywhere: a text-only guess is 0 and misses by 2
    assert test["mae"] < 0.5 and test["acc2_non0"] == 100.0, test


@pytest.mark.slow
def test_a_model_trained_on_own_labels_runs_live_and_hears_the_pitch(pitch_run, tmp_path):
    (checkpoint,) = sorted(pitch_run.glob("*.pt"))
    # a new clip the model never saw: 5 s of the high voice, then 5 s of the low one, same words
    make_labelled_session(tmp_path / "clip", [Part(5.0, 220.0, 2.0), Part(5.0, 110.0, -2.0)], gap=0.5)
    clip = tmp_path / "clip" / "video.mp4"
    out = tmp_path / "live"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(BIN / "hcl-live"), "--file", str(clip), "--checkpoint", str(checkpoint), "--fast", "--exit-when-done",
         "--no-browser", "--port", "0", "--record", str(out), "--device", "cpu"],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = read_session(out)
    info = json.loads((out / "session.json").read_text())
    assert info["checkpoint"] == str(checkpoint)
    assert set(info["model"]["inputs"]) >= {"audio"}, info["model"]
    by_end = {w["end"]: w for w in rec.windows}
    # windows inside the high part (0.5-5.5 s) and inside the low part (6.0-11.0 s)
    high_scores = [by_end[e]["score"] for e in (4.5, 5.0, 5.5)]
    low_scores = [by_end[e]["score"] for e in (10.0, 10.5, 11.0)]
    assert min(high_scores) > max(low_scores) + 1.0, (high_scores, low_scores)
    assert min(high_scores) > 0 > max(low_scores), (high_scores, low_scores)
    # the readouts ran beside it: the voice's pitch follows the tone, the score was not theirs
    pitch = {e: by_end[e]["readouts"]["voice"]["pitch_hz"] for e in (4.5, 10.5)}
    assert pitch[4.5] == pytest.approx(220, rel=0.03) and pitch[10.5] == pytest.approx(110, rel=0.03), pitch
