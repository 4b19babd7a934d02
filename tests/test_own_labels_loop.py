"""Own labels to a trimodal model: a labelled recording -> hcl-extract -> hcl-train learns a signal the words lack.

The recording's parts all say the same words; the label follows the pitch of
the voice (a 220 Hz tone: +2, a 110 Hz tone: -2). A model that scores the
held-out test spans well has learned it from the audio.
"""

import json

import numpy as np

from hcl.extract import main as extract_main
from recording_fixtures import Part, make_labelled_session


def test_labelled_recording_trains_a_model_that_hears_the_pitch(tmp_path, capsys):
    from hcl.cli import train_main

    rng = np.random.default_rng(1)
    high = rng.permutation([True] * 12 + [False] * 12)
    parts = [Part(1.0, 220.0 if h else 110.0, 2.0 if h else -2.0) for h in high]
    parts += [Part(1.0, f, 2.0 if f > 150 else -2.0, mode="test") for f in (220.0, 110.0, 110.0, 220.0)]
    make_labelled_session(tmp_path / "rec", parts, gap=0.3)

    assert extract_main([str(tmp_path / "rec"), "-o", str(tmp_path / "ds"), "--threads", "1", "--no-progress"]) == 0
    code = train_main(["--extracted", str(tmp_path / "ds"), "--out", str(tmp_path / "run"), "--epochs", "30",
                       "--seeds", "1", "--batch-size", "8", "--lr", "1e-3", "--patience", "30", "--threads", "1",
                       "--device", "cpu", "--no-progress"])
    capsys.readouterr()
    assert code == 0
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result["sizes"]["train"] == 19 and result["sizes"]["valid"] == 5  # 24 unmarked: the last 5 are valid
    (test,) = result["runs"][0]["test"].values()  # the one test split: the 4 marked spans
    # the words are the same everywhere: a text-only guess is 0 and misses by 2
    assert test["mae"] < 0.5 and test["acc2_non0"] == 100.0, test
