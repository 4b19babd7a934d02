import dataclasses

import numpy as np
import pytest
import torch

from hcl.config import ModelConfig, TrainConfig
from hcl.data.synthetic import synthetic_splits
from hcl.train import TrainingData, fit_seed, iterate_batches, present_modalities

CFG = ModelConfig(text_dim=32, audio_dim=16, video_dim=16, max_len=32, d_model=32, heads=2, clusters=4,
                  guidance_layers=2, ff_mult=2)


def test_ctrl_c_keeps_the_best_epoch_so_far():
    torch.set_num_threads(1)
    sp = synthetic_splits(64, 32, 0, seed=0)
    epochs_logged = []

    def log(line: str) -> None:
        if " epoch " in line:
            epochs_logged.append(line)
            if len(epochs_logged) == 2:
                raise KeyboardInterrupt

    model, info = fit_seed(TrainingData(sp["train"], sp["valid"]), model_config=CFG,
                           train_config=TrainConfig(epochs=50, batch_size=16), seed=0, progress=False, log=log)
    assert info["interrupted"] is True
    assert len(info["history"]) == 2 and info["best_epoch"] in (1, 2)
    assert not model.training


def test_present_modalities_and_length_bucketing():
    sp = synthetic_splits(40, 0, 0, seed=0)["train"]
    assert present_modalities(sp) == ("text", "audio", "video")
    text_only = [dataclasses.replace(s, audio=s.audio[:0], video=s.video[:0]) for s in sp]
    assert present_modalities(text_only) == ("text",)
    batches = list(iterate_batches(sp, CFG, 8, shuffle=True, rng=__import__("random").Random(0)))
    assert sorted(i for b in batches for i in b.ids) == sorted(s.id for s in sp)
    # inside a batch, text lengths are close (sorted within chunks), so padding is small
    lengths = {s.id: len(s.text) for s in sp}
    spread = [np.ptp([lengths[i] for i in b.ids]) for b in batches]
    assert max(spread) <= np.ptp(list(lengths.values()))
    assert np.mean(spread) < 0.6 * np.ptp(list(lengths.values()))


def _spoil_after(epoch_to_spoil_from: int, monkeypatch) -> list[int]:
    """Make every epoch from `epoch_to_spoil_from` on end with a ruined model (constant
    prediction far from the labels), so the valid-best epoch is never the last one."""
    import hcl.train as train_mod

    real = train_mod.train_epoch
    epochs: list[int] = []

    def epoch_then_spoil(model, *args, **kwargs):
        loss = real(model, *args, **kwargs)
        epochs.append(len(epochs) + 1)
        if epochs[-1] >= epoch_to_spoil_from:
            with torch.no_grad():
                last = model.fusion.mlp[-1]
                last.weight.zero_()
                last.bias.fill_(2.5 + 0.1 * epochs[-1])  # a bit worse every epoch
        return loss

    monkeypatch.setattr(train_mod, "train_epoch", epoch_then_spoil)
    return epochs


def test_returned_model_is_the_valid_best_epoch_not_the_last(monkeypatch):
    torch.set_num_threads(1)
    from hcl.train import evaluate

    sp = synthetic_splits(64, 48, 0, seed=1)
    epochs = _spoil_after(3, monkeypatch)
    model, info = fit_seed(TrainingData(sp["train"], sp["valid"]), model_config=CFG,
                           train_config=TrainConfig(epochs=5, batch_size=16, patience=10, lr=3e-4),
                           seed=0, progress=False, log=lambda line: None)
    history = info["history"]
    assert epochs == [1, 2, 3, 4, 5] and [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    maes = [h["valid"]["mae"] for h in history]
    best = int(np.argmin(maes)) + 1
    assert best in (1, 2) and maes[-1] > min(maes) + 1.0  # the last epoch really is worse
    assert info["best_epoch"] == best
    assert info["best_valid"]["mae"] == min(maes)
    # the model handed back scores exactly like the best epoch did
    assert evaluate(model, sp["valid"])["mae"] == pytest.approx(min(maes), rel=1e-6, abs=1e-7)
    assert not model.training


def test_selection_on_corr_picks_the_highest_valid_corr(monkeypatch):
    torch.set_num_threads(1)
    from hcl.train import evaluate

    sp = synthetic_splits(64, 48, 0, seed=2)
    _spoil_after(3, monkeypatch)
    model, info = fit_seed(TrainingData(sp["train"], sp["valid"]), model_config=CFG,
                           train_config=TrainConfig(epochs=4, batch_size=16, patience=10, lr=3e-4, select_metric="corr"),
                           seed=0, progress=False, log=lambda line: None)
    corrs = [h["valid"]["corr"] for h in info["history"]]
    assert info["best_epoch"] == int(np.argmax(corrs)) + 1 and info["best_epoch"] in (1, 2)
    assert evaluate(model, sp["valid"])["corr"] == pytest.approx(max(corrs), abs=1e-6)


def test_early_stopping_waits_patience_epochs_after_the_best(monkeypatch):
    torch.set_num_threads(1)
    sp = synthetic_splits(48, 32, 0, seed=3)
    epochs = _spoil_after(2, monkeypatch)
    _, info = fit_seed(TrainingData(sp["train"], sp["valid"]), model_config=CFG,
                       train_config=TrainConfig(epochs=20, batch_size=16, patience=2, lr=3e-4),
                       seed=0, progress=False, log=lambda line: None)
    assert info["best_epoch"] == 1  # every later epoch is spoiled
    assert epochs == [1, 2, 3] and len(info["history"]) == 3  # stops after `patience` epochs without progress
