"""The shipped default model reproduces its card: `hcl-eval` on MOSI test gives the test
metrics in the model's metrics.json (and its README) within what float16 storage explains.

The model is found as the live default is (`default_live_checkpoint()`), never by name:
models/ is replaced whenever a better model ships.

Tolerance, derived rather than guessed: the card was scored with float32 weights, the
shipped file stores them in float16. Rounding a weight to float16 moves it by at most a
relative 2^-11. The test perturbs every weight of the loaded model by a random relative
±2^-11 (three draws) and scores each draw: a metric may differ from the card by twice the
largest change a draw caused, and an accuracy or F1 by at least one sample's share (K-means
assignments are discrete: a tiny weight change can move a channel to another group and a
prediction across a class boundary).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

MOSI_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "mosi" / "label.csv"
RELATIVE_FP16 = 2.0**-11


def _perturbed_predictions(model, samples, seed: int) -> np.ndarray:
    import copy

    from hcl.train import predict

    noisy = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in noisy.parameters():
            if p.is_floating_point():
                p.mul_(1 + (torch.rand(p.shape, generator=gen, dtype=p.dtype) * 2 - 1) * RELATIVE_FP16)
    return predict(noisy, samples)


def test_shipped_model_reproduces_its_card_on_mosi_test(tmp_path, monkeypatch):
    if not MOSI_CSV.is_file():
        pytest.skip(f"MOSI transcripts {MOSI_CSV} not available")
    from hcl.checkpoint import default_live_checkpoint
    from hcl.cli import eval_main

    import hcl.train as train_mod
    from hcl.metrics import METRIC_KEYS, sentiment_metrics

    try:
        ckpt_path = default_live_checkpoint()
    except FileNotFoundError:
        pytest.skip("no shipped default model")
    folder = ckpt_path.parent
    card = json.loads((folder / "metrics.json").read_text())["test"]["mosi"]

    seen = {}
    real_evaluate = train_mod.evaluate

    def evaluate(model, samples, **kw):  # keep what hcl-eval scored, to size the tolerance
        seen["model"], seen["samples"] = model, samples
        return real_evaluate(model, samples, **kw)

    monkeypatch.setattr(train_mod, "evaluate", evaluate)
    torch.set_num_threads(1)
    out = tmp_path / "eval.json"
    assert eval_main([str(ckpt_path), "--transcripts", str(MOSI_CSV), "--split", "test", "--json", str(out)]) == 0
    got = json.loads(out.read_text())["mosi"]

    from hcl.train import predict

    samples = seen["samples"]
    assert len(samples) == 686  # the official MOSI test split
    label = np.array([s.label for s in samples])
    pred = predict(seen["model"], samples)
    base = sentiment_metrics(pred, label)
    draws = [sentiment_metrics(_perturbed_predictions(seen["model"], samples, seed), label) for seed in (0, 1, 2)]
    n, n_non0 = len(label), int((label != 0).sum())
    for key in METRIC_KEYS:
        one_sample = 0.0 if key in ("mae", "corr") else 100.0 / (n_non0 if key.endswith("non0") else n)
        tolerance = max(2 * max(abs(d[key] - base[key]) for d in draws), one_sample) + 1e-9
        assert abs(got[key] - card[key]) <= tolerance, (key, got[key], card[key], tolerance)
        if key == "mae":
            assert tolerance < 0.02, f"float16 rounding moves the MAE by {tolerance}: the check would be meaningless"

    # the model card (README.md) shows the same numbers
    readme = (folder / "README.md").read_text()
    assert f"{card['mae']:.3f}" in readme and f"{card['acc2_non0']:.2f}" in readme
