import dataclasses

import pytest
import torch

from hcl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hcl.config import ModelConfig
from hcl.features.config import FeatureSettings
from hcl.model import HCL

torch.set_num_threads(1)
CFG = ModelConfig(text_dim=24, audio_dim=6, video_dim=10, max_len=32, d_model=64)


def _inputs(cfg):
    g = torch.Generator().manual_seed(1)
    out = {}
    for m in ("text", "audio", "video"):
        out[m] = torch.randn(2, 8, cfg.input_dim(m), generator=g)
        out[f"{m}_mask"] = torch.ones(2, 8, dtype=torch.bool)
    return out


def test_round_trip_keeps_config_settings_metrics_and_scores(tmp_path):
    torch.manual_seed(0)
    model = HCL(config=CFG).eval()
    settings = FeatureSettings(step_seconds=0.25)
    path = save_checkpoint(tmp_path / "m.pt", model, features=settings, metrics={"test": {"mae": 0.7}}, meta={"seed": 3})
    ckpt = load_checkpoint(path)
    assert ckpt.model_config == CFG
    assert ckpt.features == settings
    assert ckpt.metrics["test"]["mae"] == 0.7
    assert ckpt.meta["seed"] == 3 and "torch_version" in ckpt.meta
    assert not ckpt.model.training
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(**_inputs(CFG)), model(**_inputs(CFG)))


def test_half_precision_checkpoint_is_smaller_and_close(tmp_path):
    torch.manual_seed(0)
    model = HCL(config=CFG).eval()
    full = save_checkpoint(tmp_path / "f.pt", model, features=FeatureSettings())
    half = save_checkpoint(tmp_path / "h.pt", model, features=FeatureSettings(), half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(half).model(**_inputs(CFG)), model(**_inputs(CFG)), atol=2e-2, rtol=0)


def test_wrong_shape_names_the_dimension(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", HCL(config=CFG), features=FeatureSettings())
    other = dataclasses.replace(CFG, audio_dim=74)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, model_config=other)
    msg = str(err.value)
    assert "embed.audio.proj.weight" in msg
    assert "dimension 1 is 6 in the checkpoint but 74 in the model" in msg
    assert "audio_dim" in msg


def test_not_a_checkpoint_is_refused_clearly(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_newer_format_version_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", HCL(config=CFG), features=FeatureSettings())
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="upgrade hcl-live"):
        load_checkpoint(path)
