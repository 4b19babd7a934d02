"""The text path: fusion reads the text rows, fine-tuned encoder layers save, load and
run live, absent inputs cannot poison a score, outputs are not views into buffers."""

import dataclasses

import numpy as np
import pytest
import torch

from hcl.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from hcl.config import ModelConfig, TrainConfig
from hcl.data.sample import FeatureSample
from hcl.features.config import FeatureSettings, TextFeatureConfig
from hcl.model import HCL
from hcl.text_top import TextTop, TunedTextHCL, replace_tuned, text_top_from_state
from hcl.train import TrainingData, fit_seed, predict

torch.set_num_threads(1)

SMALL = ModelConfig(text_dim=24, audio_dim=6, video_dim=10, max_len=32, d_model=64, dropout=0.0)


def inputs(cfg=SMALL, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m, length in (("text", 10), ("audio", 8), ("video", 8)):
        out[m] = torch.randn(b, length, cfg.input_dim(m), generator=g)
        out[f"{m}_mask"] = torch.ones(b, length, dtype=torch.bool)
    out["text_mask"][0, 6:] = False
    return out


# ---------------------------------------------------------------- fusion readout
def test_fusion_score_depends_on_the_text_rows():
    """Sec. 2.4: F_t^N is the query of the fusion; its rows must reach the score."""
    torch.manual_seed(0)
    model = HCL(config=SMALL).eval()
    guide, hyper = torch.randn(2, 8, 64), torch.randn(2, 8, 64)
    with torch.no_grad():
        base = model.fusion(guide, hyper)
        moved = model.fusion(guide + torch.randn_like(guide), hyper)
    assert (base - moved).abs().min() > 1e-4, (base, moved)


def test_cls_readout_ignores_the_text_rows_which_is_why_it_was_replaced():
    torch.manual_seed(0)
    model = HCL(config=dataclasses.replace(SMALL, fusion_readout="cls")).eval()
    guide, hyper = torch.randn(2, 8, 64), torch.randn(2, 8, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.fusion(guide, hyper), model.fusion(torch.randn_like(guide), hyper))


def test_format_1_checkpoint_loads_with_its_cls_readout_and_same_scores(tmp_path):
    torch.manual_seed(0)
    old = HCL(config=dataclasses.replace(SMALL, fusion_readout="cls")).eval()
    path = save_checkpoint(tmp_path / "v1.pt", old, features=FeatureSettings())
    payload = torch.load(path, weights_only=True)
    payload["version"] = 1
    del payload["model_config"]["fusion_readout"]  # format 1 had no such key
    torch.save(payload, path)
    ckpt = load_checkpoint(path)
    assert ckpt.model_config.fusion_readout == "cls"
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(**inputs()), old(**inputs()), rtol=0, atol=0)


# ---------------------------------------------------------------- absent inputs
def test_nan_in_a_modality_the_model_does_not_consume_leaves_the_score_finite_and_unchanged():
    torch.manual_seed(0)
    model = HCL(config=dataclasses.replace(SMALL, inputs=("text",))).eval()
    x = inputs()
    with torch.no_grad():
        clean = model(**x)
        x["audio"] = torch.full((3, 5, 99), float("nan"))  # wrong width too: not consumed, not checked
        x["audio_mask"] = torch.ones(3, 5, dtype=torch.bool)
        x["video"] = torch.full_like(x["video"], float("inf"))
        dirty = model(**x)
    assert torch.isfinite(dirty).all()
    torch.testing.assert_close(dirty, clean, rtol=0, atol=0)


def test_nan_in_masked_rows_cannot_reach_the_score():
    torch.manual_seed(0)
    model = HCL(config=SMALL).eval()
    x = inputs()
    with torch.no_grad():
        clean = model(**x)
        x["text"][0, 6:] = float("nan")  # rows the mask marks absent
        x["audio"][1] = float("inf")
        x["audio_mask"][1] = False
        clean_b1 = model(**{**inputs(), "audio_mask": x["audio_mask"]})
        dirty = model(**x)
    assert torch.isfinite(dirty).all()
    torch.testing.assert_close(dirty[0], clean[0])
    torch.testing.assert_close(dirty[1], clean_b1[1])


def test_assignment_is_not_overwritten_by_the_next_forward():
    torch.manual_seed(0)
    model = HCL(config=SMALL).eval()
    with torch.no_grad():
        first = model(**inputs(seed=1), details=True)
        kept = {m: a.clone() for m, a in first.assignment.items()}
        model(**inputs(seed=2), details=True)
    for m in kept:
        assert torch.equal(first.assignment[m], kept[m]), m


# ---------------------------------------------------------------- fine-tuned encoder layers
@pytest.fixture(scope="module")
def minilm_top():
    return TextTop.from_encoder(TextFeatureConfig(), 1)


def _text_samples(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(3, 12))
        out.append(FeatureSample(id=str(i), label=float(rng.uniform(-3, 3)), mode="train",
                                 text=rng.normal(size=(length, 384)).astype(np.float32),
                                 audio=np.zeros((0, 48), np.float32), video=np.zeros((0, 58), np.float32)))
    return out


def test_tuned_layers_train_save_and_load_to_the_exact_scores(tmp_path, minilm_top):
    cfg = ModelConfig(text_dim=384, d_model=64, inputs=("text",), dropout=0.0)
    data = TrainingData(train=_text_samples(48, 0), valid=_text_samples(16, 1))
    before = {k: v.clone() for k, v in minilm_top.state_dict().items()}
    model, _ = fit_seed(data, model_config=cfg, train_config=TrainConfig(epochs=1, batch_size=16, text_lr=1e-3),
                        seed=0, progress=False, log=lambda _: None, text_top=minilm_top)
    assert isinstance(model, TunedTextHCL)
    # the copy trained, the pretrained layers passed in did not
    assert any(not torch.equal(v, model.top.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, minilm_top.state_dict()[k]) for k, v in before.items())
    settings = FeatureSettings(text=replace_tuned(TextFeatureConfig(), 1))
    path = save_checkpoint(tmp_path / "tuned.pt", model.hcl, text_top=model.top, features=settings)
    ckpt = load_checkpoint(path)
    assert ckpt.features.text.tuned_layers == 1 and set(ckpt.text_top) == set(model.top.state_dict())
    reloaded = TunedTextHCL(ckpt.model, text_top_from_state(ckpt.features.text, ckpt.text_top))
    np.testing.assert_array_equal(predict(reloaded, data.valid), predict(model, data.valid))


def test_checkpoint_refuses_tuned_settings_without_the_layers(tmp_path):
    model = HCL(config=ModelConfig(text_dim=384, d_model=64)).eval()
    settings = FeatureSettings(text=replace_tuned(TextFeatureConfig(), 1))
    with pytest.raises(ValueError, match="tuned_layers"):
        save_checkpoint(tmp_path / "x.pt", model, features=settings)


def test_live_encoder_with_tuned_layers_equals_cached_lower_layers_plus_text_top(minilm_top):
    """Live runs the whole fine-tuned encoder; training runs the cached h_{L-1} through TextTop."""
    from hcl.features.text import TextEncoder

    torch.manual_seed(0)
    tuned = {k: v + 0.01 * torch.randn_like(v) for k, v in minilm_top.state_dict().items()}
    base = TextEncoder(config=replace_tuned(TextFeatureConfig(), 0, layer=-2))
    live = TextEncoder(config=replace_tuned(TextFeatureConfig(), 1), tuned_state=tuned)
    texts = ["i really loved this movie", "it was terrible and boring", "okay"]
    lower = base.encode(texts)
    top = text_top_from_state(replace_tuned(TextFeatureConfig(), 1), tuned)
    plain = TextEncoder(config=TextFeatureConfig()).encode(texts)
    for text, h, want, untuned in zip(texts, lower, live.encode(texts), plain):
        with torch.no_grad():
            got = top(torch.as_tensor(h)[None], torch.ones(1, len(h), dtype=torch.bool))[0].numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=text)
        assert np.abs(want - untuned).max() > 1e-3  # the tuned weights are really used


def test_live_encoder_refuses_tuned_settings_without_weights():
    from hcl.features.text import TextEncoder

    with pytest.raises(ValueError, match="checkpoint"):
        TextEncoder(config=replace_tuned(TextFeatureConfig(), 1))


# ---------------------------------------------------------------- checkpoint validation at load
@pytest.mark.parametrize("damage", ["random", "empty", "truncated", "future", "no_config", "bad_step", "bad_weights"])
def test_damaged_checkpoints_fail_at_load_with_one_clear_error(tmp_path, damage):
    from hcl.checkpoint import CheckpointError

    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "m.pt", HCL(config=SMALL).eval(), features=FeatureSettings())
    if damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:3000])
    else:
        payload = torch.load(path, weights_only=True)
        if damage == "future":
            payload["version"] = 99
        elif damage == "no_config":
            del payload["model_config"]
        elif damage == "bad_step":
            payload["features"]["step_seconds"] = -1
        elif damage == "bad_weights":
            payload["model_config"]["d_model"] = 32
        torch.save(payload, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message
    expected = {"future": "upgrade", "no_config": "lacks model_config", "bad_step": "step_seconds",
                "bad_weights": "does not fit"}.get(damage, "not")
    assert expected in message, message


@pytest.mark.parametrize("command", ["eval", "info"])
def test_eval_and_info_print_a_message_not_a_traceback(tmp_path, command, capsys):
    from hcl.cli import eval_main, info_main

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    main = eval_main if command == "eval" else info_main
    with pytest.raises(SystemExit) as exc:
        main([str(bad), "--synthetic", "64"] if command == "eval" else [str(bad)])
    assert "not a readable hcl-live checkpoint" in str(exc.value.code)
    assert CHECKPOINT_FORMAT  # the header name stays part of the format


def test_init_starts_every_seed_from_the_given_checkpoint(tmp_path):
    """Staged training: with a learning rate of 0 the result is the --init checkpoint itself."""
    from hcl.cli import train_main

    common = ["--synthetic", "96", "--epochs", "1", "--no-progress", "--threads", "1", "--seeds", "1"]
    assert train_main([*common, "--out", str(tmp_path / "a")]) == 0
    assert train_main([*common, "--out", str(tmp_path / "b"), "--init", str(tmp_path / "a" / "seed1.pt"),
                       "--lr", "0"]) == 0
    # parameters, not BatchNorm's running statistics (those follow the data whatever the rate)
    a = dict(load_checkpoint(tmp_path / "a" / "seed1.pt").model.named_parameters())
    b = dict(load_checkpoint(tmp_path / "b" / "seed1.pt").model.named_parameters())
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
