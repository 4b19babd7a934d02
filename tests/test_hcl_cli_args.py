"""hcl-train, hcl-eval and hcl-extract refuse nonsense values as they parse them:
exit code 2, a message naming the option and what to give, no traceback (issue 25)."""

from __future__ import annotations

import pytest

from hcl.cli import eval_main, train_main
from hcl.extract import main as extract_main


def _refused(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err
    return err


@pytest.fixture()
def csv_file(tmp_path):
    path = tmp_path / "label.csv"
    path.write_text("video_id,clip_id,text,label,mode\nv,1,good,1.0,train\nv,2,bad,-1.0,valid\n")
    return str(path)


@pytest.mark.parametrize("option, value, says", [
    ("--batch-size", "0", "give 1 or more"),
    ("--epochs", "0", "give 1 or more"),
    ("--epochs", "-1", "give 1 or more"),
    ("--lr", "-1", "must be 0 or more"),
    ("--lr", "nan", "not a finite number"),
    ("--text-lr", "-0.5", "must be 0 or more"),
    ("--text-lr", "inf", "not a finite number"),
    ("--threads", "-1", "give 0 or more"),
    ("--dropout", "2", "not a share"),
    ("--dropout", "1", "would drop everything"),
    ("--modality-dropout", "1.5", "not a share"),
    ("--modality-dropout", "1", "would drop everything"),
    ("--soft-weight", "1.5", "not a share"),
    ("--synthetic", "-5", "give 0 or more"),
    ("--patience", "-1", "give 0 or more"),
    ("--layers", "0", "give 1 or more"),
    ("--kmeans-iters", "-1", "give 0 or more"),
    ("--weight-decay", "-0.1", "must be 0 or more"),
])
def test_hcl_train_refuses_nonsense_numbers(option, value, says, csv_file, tmp_path, capsys):
    err = _refused(train_main, ["--transcripts", csv_file, "--out", str(tmp_path / "run"), option, value], capsys)
    assert option in err and says in err


def test_hcl_train_refuses_a_file_as_its_output_folder(csv_file, tmp_path, capsys):
    a_file = tmp_path / "results.txt"
    a_file.write_text("x")
    err = _refused(train_main, ["--transcripts", csv_file, "--out", str(a_file)], capsys)
    assert "--out" in err and "is a file" in err


@pytest.mark.parametrize("main", [train_main, eval_main])
def test_transcripts_must_be_an_existing_file(main, tmp_path, capsys):
    out = ["--out", str(tmp_path / "run")] if main is train_main else []
    err = _refused(main, ["--transcripts", str(tmp_path), *out], capsys)
    assert "--transcripts" in err and "is a folder" in err
    err = _refused(main, ["--transcripts", str(tmp_path / "missing.csv"), *out], capsys)
    assert "no such file" in err


def test_hcl_extract_refuses_a_folder_for_labels_a_file_for_out_and_negative_threads(tmp_path, capsys):
    media = tmp_path / "clip.mp4"
    media.write_bytes(b"")
    err = _refused(extract_main, [str(media), "-o", str(tmp_path / "ds"), "--labels", str(tmp_path)], capsys)
    assert "--labels" in err and "is a folder" in err
    err = _refused(extract_main, [str(media), "-o", str(media)], capsys)
    assert "--out" in err and "is a file" in err
    err = _refused(extract_main, [str(media), "-o", str(tmp_path / "ds"), "--threads", "-1"], capsys)
    assert "--threads" in err and "give 0 or more" in err
    err = _refused(extract_main, [str(media), "-o", str(tmp_path / "ds"), "--face-fps", "0"], capsys)
    assert "--face-fps" in err


def test_sensible_values_still_parse(csv_file, tmp_path):
    """The checks refuse only nonsense. argparse converts each value as it reads it, so a
    trailing --help (exit 0, nothing trained) is reached only if every edge value before it parsed."""
    with pytest.raises(SystemExit) as info:
        train_main(["--transcripts", csv_file, "--out", str(tmp_path / "run"), "--dropout", "0", "--patience", "0",
                    "--threads", "0", "--synthetic", "0", "--soft-weight", "1", "--help"])
    assert info.value.code == 0


@pytest.mark.parametrize("main, argv", [
    (train_main, ["--out", "run"]),
    (extract_main, ["clip.mp4", "-o", "out"]),
])
def test_hcl_commands_refuse_an_unknown_device_as_hcl_live_does(main, argv, csv_file, tmp_path, capsys):
    argv = [a if a != "run" else str(tmp_path / "run") for a in argv]
    if main is not extract_main:
        argv = ["--transcripts", csv_file, *argv]
    err = _refused(main, [*argv, "--device", "gpu0"], capsys)
    assert "--device" in err and "'gpu0' is not a device: choose auto, cpu, cuda or cuda:N" in err
