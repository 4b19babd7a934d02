import dataclasses

import numpy as np
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
