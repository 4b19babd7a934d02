"""The data folder is a setting (`hcl-eval --data DIR` or $HCL_DATA), never a path
outside the installed package: without one, `hcl-eval` with no dataset says what to pass."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from hcl.cli import DATA_ENV, eval_main

MOSI = Path(__file__).resolve().parents[2] / "shared" / "data" / "mosi" / "label.csv"


def _exit_message(argv) -> str:
    with pytest.raises(SystemExit) as exc:
        eval_main(argv)
    return str(exc.value.code)


def test_no_dataset_and_no_data_folder_says_what_to_pass(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    message = _exit_message([])
    assert "--data DIR" in message and f"{DATA_ENV}=DIR" in message and "--transcripts" in message


def test_a_missing_data_folder_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "nowhere"))
    message = _exit_message([])
    assert f"{DATA_ENV}={tmp_path / 'nowhere'}" in message and "no such folder" in message
    message = _exit_message(["--data", str(tmp_path / "elsewhere")])  # the option wins over the variable
    assert f"--data={tmp_path / 'elsewhere'}" in message


def test_a_data_folder_without_mosi_labels_is_explained(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    message = _exit_message([])
    assert str(tmp_path / "mosi" / "label.csv") in message and "not found" in message


@pytest.fixture()
def small_data(tmp_path):
    """A data folder holding mosi/label.csv with four real MOSI test rows."""
    if not MOSI.is_file():
        pytest.skip(f"{MOSI} not available")
    rows = list(csv.DictReader(MOSI.open()))
    path = tmp_path / "data" / "mosi" / "label.csv"
    path.parent.mkdir(parents=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([r for r in rows if r["mode"] == "test"][:4])
    return path.parent.parent


@pytest.mark.parametrize("how", ["env", "option"])
def test_eval_scores_the_mosi_labels_of_the_data_folder(small_data, shipped_live_checkpoint, monkeypatch, tmp_path, capsys, how):
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("HCL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "m.json"
    if how == "env":
        monkeypatch.setenv(DATA_ENV, str(small_data))
        argv = ["--json", str(out)]
    else:
        monkeypatch.setenv(DATA_ENV, str(tmp_path / "nowhere"))  # --data wins over a stale variable
        argv = ["--data", str(small_data), "--json", str(out)]
    assert eval_main([str(shipped_live_checkpoint), *argv]) == 0
    metrics = json.loads(out.read_text())
    assert list(metrics) == ["mosi"] and 0 <= metrics["mosi"]["mae"] < 10
    assert "mosi test (n=4)" in capsys.readouterr().out  # the folder's four rows, not another copy
