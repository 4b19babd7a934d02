"""A larger teacher encoder and distillation into the live student.

- `TextTop` over an MPNet encoder (relative position bias added in every layer)
  computes what the whole encoder computes, so a teacher with fine-tuned MPNet
  layers trains on the same features it would see live.
- `hcl-eval --predictions` writes teacher scores per sample id, and
  `hcl-train --soft-targets` trains a student on a mix of gold labels and those
  scores (valid and test keep their gold labels).
"""

import csv
import json
from pathlib import Path

import pytest
import torch
from data_fixtures import write_mosi_subset

from hcl.cli import eval_main, soften_labels, train_main, with_text_encoder
from hcl.data.sample import FeatureSample
from hcl.features.config import FeatureSettings
from hcl.text_top import TextTop


def _tiny_mpnet(tmp_path: Path):
    """A randomly initialised 3-layer MPNet (no download), saved as a local encoder folder."""
    from transformers import MPNetConfig, MPNetModel

    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=80)
    model = MPNetModel(config).eval()
    with torch.no_grad():  # a bias as strong as a trained one (the init is near zero)
        model.encoder.relative_attention_bias.weight.normal_(0.0, 2.0)
    folder = tmp_path / "tiny-mpnet"
    model.save_pretrained(folder)
    return model, folder


def test_text_top_of_mpnet_matches_the_whole_encoder(tmp_path):
    model, _ = _tiny_mpnet(tmp_path)
    ids = torch.randint(5, 120, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    top = TextTop.from_model(model, 2).eval()
    assert top.position is not None  # MPNet: the relative position bias travels with the top layers
    present = mask.bool()
    with torch.no_grad():
        got = top(hidden[1], present)
    want = hidden[3].masked_fill(~present[..., None], 0.0)
    assert torch.allclose(got, want, atol=1e-5)

    # without the bias the layers compute something else: the parity above depends on it
    top.position = None
    with torch.no_grad():
        assert not torch.allclose(top(hidden[1], present), want, atol=1e-3)


def test_text_top_of_mpnet_trains_only_its_layers(tmp_path):
    model, _ = _tiny_mpnet(tmp_path)
    top = TextTop.from_model(model, 1)
    frozen = [name for name, p in top.named_parameters() if not p.requires_grad]
    assert frozen == ["position.relative_attention_bias.weight"]
    # the state round-trips (the checkpoint stores it) and installs over a fresh encoder
    again = TextTop.from_model(model, 1)
    again.load_state_dict(top.state_dict())
    top.install(model)


def test_text_encoder_option_reads_the_hidden_size(tmp_path):
    _, folder = _tiny_mpnet(tmp_path)
    settings = with_text_encoder(FeatureSettings(), str(folder))
    assert settings.text.encoder == str(folder) and settings.text.dim == 32
    assert with_text_encoder(FeatureSettings(), None) == FeatureSettings()
    with pytest.raises(SystemExit, match="--text-encoder"):
        with_text_encoder(FeatureSettings(), str(tmp_path / "no-such-encoder"))


def _sample(id: str, label: float) -> FeatureSample:
    empty = torch.zeros(0, 1).numpy()
    return FeatureSample(id=id, label=label, mode="train", text=empty, audio=empty, video=empty)


def test_soft_targets_mix_gold_and_teacher(tmp_path):
    targets = tmp_path / "t.json"
    targets.write_text(json.dumps({"a": 2.0, "b": -1.0}))
    mixed = soften_labels([_sample("a", 0.0), _sample("b", 1.0)], str(targets), 0.25)
    assert [s.label for s in mixed] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert [s.label for s in soften_labels([_sample("a", 0.0)], str(targets), 1.0)] == [2.0]
    with pytest.raises(SystemExit, match="no score for 1 train samples"):
        soften_labels([_sample("a", 0.0), _sample("c", 1.0)], str(targets), 0.5)
    with pytest.raises(SystemExit, match="soft-weight"):
        soften_labels([_sample("a", 0.0)], str(targets), 1.5)


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    return write_mosi_subset(tmp_path_factory.mktemp("data"), train=40, valid=12)


def test_teacher_predictions_drive_a_student(small_csv, tmp_path, monkeypatch):
    """hcl-eval --predictions -> hcl-train --soft-targets: with weight 1 the student
    learns the teacher's scores, not the gold labels (checked against a teacher whose
    scores are the negated gold labels, so the two cannot be confused)."""
    torch.set_num_threads(1)
    monkeypatch.setenv("HCL_CACHE", str(tmp_path / "cache"))
    common = ["--transcripts", str(small_csv), "--seeds", "1", "--batch-size", "8", "--no-progress", "--threads", "1"]
    assert train_main(common + ["--out", str(tmp_path / "teacher"), "--epochs", "1"]) == 0
    predictions = tmp_path / "teacher.json"
    assert eval_main([str(tmp_path / "teacher" / "seed1.pt"), "--transcripts", str(small_csv),
                      "--split", "train", "--predictions", str(predictions)]) == 0
    written = json.loads(predictions.read_text())
    rows = [r for r in csv.DictReader(small_csv.open()) if r["mode"] == "train"]
    assert set(written) == {f"mosi/{r['video_id']}_{r['clip_id']}" for r in rows}

    # a contrary "teacher": the student must follow it when it has all the weight
    contrary = tmp_path / "contrary.json"
    contrary.write_text(json.dumps({f"mosi/{r['video_id']}_{r['clip_id']}": -float(r["label"]) for r in rows}))
    assert train_main(common + ["--out", str(tmp_path / "student"), "--epochs", "12", "--lr", "1e-3",
                                "--soft-targets", str(contrary), "--soft-weight", "1"]) == 0
    fitted = tmp_path / "fitted.json"
    assert eval_main([str(tmp_path / "student" / "seed1.pt"), "--transcripts", str(small_csv),
                      "--split", "train", "--predictions", str(fitted)]) == 0
    scores = json.loads(fitted.read_text())
    gold = torch.tensor([float(r["label"]) for r in rows])
    student = torch.tensor([scores[f"mosi/{r['video_id']}_{r['clip_id']}"] for r in rows])
    corr = torch.corrcoef(torch.stack([student, gold]))[0, 1]
    assert corr < -0.3, f"the student should follow the contrary teacher, corr with gold {corr:.2f}"
