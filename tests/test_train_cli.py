"""hcl-train / hcl-eval / hcl-info end to end on a small real transcript CSV
(rows of the real MOSI label file), with the real packaged MiniLM encoder."""

import csv
import json

import pytest
import torch
from data_fixtures import write_mosi_subset

from hcl.checkpoint import load_checkpoint
from hcl.cli import eval_main, info_main, train_main


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    return write_mosi_subset(tmp_path_factory.mktemp("data"), train=48, valid=16, test=16)


def test_train_eval_info(small_csv, tmp_path, monkeypatch, capsys):
    torch.set_num_threads(1)
    monkeypatch.setenv("HCL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    rc = train_main(
        ["--transcripts", str(small_csv), "--out", str(out), "--seeds", "1", "2", "--epochs", "2",
         "--batch-size", "16", "--no-progress", "--threads", "1"]
    )
    assert rc == 0
    result = json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in result["runs"]] == [1, 2]
    assert result["sizes"] == {"train": 48, "valid": 16, "mosi": 16}
    assert set(result["summary"]["mosi"]["mae"]) == {"mean", "std"}
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["seed"] for r in rows] == ["1", "2"] and rows[0]["test_set"] == "mosi"
    # the text cache was written and is reused
    assert list((tmp_path / "cache" / "text").glob("*.npz"))

    ckpt = load_checkpoint(out / "seed1.pt")
    assert ckpt.model_config.inputs == ("text",)  # audio/video never present in transcripts
    assert ckpt.model_config.text_dim == 384
    assert ckpt.metrics["test"]["mosi"]["mae"] == pytest.approx(result["runs"][0]["test"]["mosi"]["mae"])
    assert ckpt.meta["seed"] == 1

    assert eval_main([str(out / "seed1.pt"), "--transcripts", str(small_csv), "--json", str(tmp_path / "m.json")]) == 0
    evaluated = json.loads((tmp_path / "m.json").read_text())["mosi"]
    assert evaluated["mae"] == pytest.approx(ckpt.metrics["test"]["mosi"]["mae"], rel=1e-5)

    capsys.readouterr()
    assert info_main([str(out / "seed1.pt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] > 1e6 and info["flops_per_sample"] > 1e7
    assert info["model_config"]["guidance_layers"] == 3
