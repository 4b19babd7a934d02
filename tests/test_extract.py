"""hcl-extract end to end on a small folder: real MOSI clips, a generated talking video, a corrupt file."""

import csv
import json
import shutil

import numpy as np
import pytest

from hcl.data.extracted import ExtractedDatasetWriter, load_extracted, read_manifest
from hcl.extract import main
from hcl.features.config import FeatureSettings

ROWS = [
    # video_id, clip_id, text, label, mode, start, end
    ("talk", "1", "i really love this wonderful movie", "2.5", "train", "0.0", "2.5"),
    ("talk", "2", "", "1.0", "train", "2.0", "4.5"),  # no text: Whisper transcribes
    ("talk", "3", "", "0.0", "test", "4.5", "7.0"),  # silence, no face
    ("Oz06ZWiO20M", "6", "and sucker punch is a failer but like a really ambitious weird the interesting "
     "idiosyncratic failure", "-0.8", "train", "66.87052154", "74.31360544"),  # clip file <vid>_<clip>.mp4
    ("03bSnISJMiM", "1", "anyhow it was really good", "2.4", "valid", "52.73265306", "56.04512472"),
    ("x", "1", "hello", "0.0", "test", "0", "1"),  # corrupt file
    ("nothere", "1", "hello", "0.0", "test", "0", "1"),  # no media
]
COMMON = ["--threads", "1", "--no-progress"]


def write_labels(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video_id", "clip_id", "text", "label", "mode", "start", "end"])
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, talking_video, mosi_video_path, mosi_wav_path):
    folder = tmp_path_factory.mktemp("raw")
    shutil.copy(talking_video.path, folder / "talk.mp4")
    (folder / mosi_video_path.name).symlink_to(mosi_video_path)
    (folder / mosi_wav_path.name).symlink_to(mosi_wav_path)
    (folder / "x.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 30000, np.uint8).tobytes())
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, inputs):
    """An interrupted first run (two rows), then the full run that resumes it. Returns (out, outputs)."""
    out = tmp_path_factory.mktemp("ds") / "feats"
    labels_dir = tmp_path_factory.mktemp("labels")
    first = write_labels(labels_dir / "first.csv", ROWS[:2])
    full = write_labels(labels_dir / "labels.csv", ROWS)
    return out, full, first


def run(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_extract_resume_and_load(dataset, inputs, capsys):
    out, full, first = dataset
    code, text1 = run(capsys, [str(inputs), "--labels", str(first), "-o", str(out), *COMMON])
    assert code == 0, text1
    assert "wrote 2 new sample(s)" in text1

    code, text2 = run(capsys, [str(inputs), "--labels", str(full), "-o", str(out), *COMMON])
    assert code == 0, text2
    assert "wrote 3 new sample(s)" in text2 and "2 already done" in text2  # resumed, not redone
    assert "x.mp4" in text2  # the corrupt file is named ...
    assert "skipped 1" in text2  # ... and the summary says what was skipped
    assert "nothere_1" in text2

    code, text3 = run(capsys, [str(inputs), "--labels", str(full), "-o", str(out), *COMMON])
    assert code == 0 and "wrote 0 new sample(s)" in text3 and "5 already done" in text3

    manifest = read_manifest(out)
    assert FeatureSettings.from_dict(manifest["features"]) == FeatureSettings()
    assert manifest["versions"]["mediapipe"] and manifest["versions"]["face_model_sha256"]
    assert [s["source"].endswith("x.mp4") for s in manifest["skipped"]] == [True]
    entries = {e["id"]: e for e in manifest["samples"]}
    assert sorted(entries) == ["03bSnISJMiM_1", "Oz06ZWiO20M_6", "talk_1", "talk_2", "talk_3"]
    assert entries["talk_1"]["text_source"] == "labels"
    assert entries["talk_2"]["text_source"] == "whisper" and entries["talk_2"]["text"]
    assert entries["talk_3"]["text"] == ""  # silence: Whisper gives nothing
    assert entries["talk_2"]["start"] == 2.0 and entries["talk_2"]["end"] == 4.5

    samples, settings = load_extracted(out)
    assert settings == FeatureSettings()
    by_id = {s.id: s for s in samples}
    for s in samples:
        assert s.text.shape[1] == 384 and s.audio.shape[1] == 48 and s.video.shape[1] == 58
        assert s.audio.dtype == np.float32 and s.audio_mask.dtype == bool
        assert len(s.audio) == len(s.video) == len(s.audio_mask) == len(s.video_mask)
        assert np.isfinite(s.audio).all() and np.isfinite(s.video).all()
    assert by_id["Oz06ZWiO20M_6"].label == pytest.approx(-0.8) and by_id["Oz06ZWiO20M_6"].mode == "train"
    assert by_id["Oz06ZWiO20M_6"].video_mask.mean() > 0.8 and by_id["Oz06ZWiO20M_6"].audio_mask.mean() > 0.7
    assert len(by_id["talk_1"].audio) == 5 and by_id["talk_1"].video_mask.all()
    quiet = by_id["talk_3"]
    assert len(quiet.text) == 0 and not quiet.audio_mask.any() and not quiet.video_mask.any()
    wav = by_id["03bSnISJMiM_1"]
    assert not wav.video_mask.any() and wav.audio_mask.any() and len(wav.audio) == 7
    assert {s.mode for s in samples} == {"train", "valid", "test"}


def test_orphan_npz_is_adopted_not_redone(dataset, inputs, capsys):
    out, full, _ = dataset
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["samples"] = [e for e in manifest["samples"] if e["id"] != "talk_1"]  # as if killed before the flush
    (out / "manifest.json").write_text(json.dumps(manifest))
    code, text = run(capsys, [str(inputs), "--labels", str(full), "-o", str(out), *COMMON])
    assert code == 0 and "wrote 0 new sample(s)" in text
    assert "talk_1" in {e["id"] for e in read_manifest(out)["samples"]}


def test_same_files_extracted_twice_are_identical(dataset, inputs, tmp_path, capsys):
    out, _, first = dataset
    code, text = run(capsys, [str(inputs), "--labels", str(first), "-o", str(tmp_path / "again"), *COMMON])
    assert code == 0, text
    again = {s.id: s for s in load_extracted(tmp_path / "again")[0]}
    before = {s.id: s for s in load_extracted(out)[0]}
    assert set(again) == {"talk_1", "talk_2"}
    for sid, s in again.items():
        b = before[sid]
        for field in ("text", "audio", "audio_mask", "video", "video_mask"):
            assert np.array_equal(getattr(s, field), getattr(b, field)), (sid, field)


def test_other_settings_refuse_to_mix(dataset, inputs, capsys):
    out, full, _ = dataset
    code, text = run(capsys, [str(inputs), "--labels", str(full), "-o", str(out), "--face-fps", "5", *COMMON])
    assert code == 2 and "other settings" in text


def test_unlabelled_files_and_all_bad(inputs, mosi_wav_path, tmp_path, capsys):
    from hcl.cli import extract_main

    code, text = run(capsys, [str(mosi_wav_path), "-o", str(tmp_path / "u"), *COMMON])
    assert code == 0, text
    (sample,), _ = load_extracted(tmp_path / "u")
    assert sample.id == "03bSnISJMiM_1" and sample.mode == "unlabelled" and sample.label == 0.0
    assert set(sample.meta["text"].lower().replace(".", "").replace(",", "").split()) & {"really", "good", "anyhow"}
    assert "unlabelled" in text

    code = extract_main([str(inputs / "x.mp4"), "-o", str(tmp_path / "bad"), *COMMON])
    assert code == 1 and "x.mp4" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "m"), *COMMON]) == 2


def test_writer_checks_shapes(tmp_path):
    from hcl.data.sample import FeatureSample

    with ExtractedDatasetWriter(tmp_path / "w", settings=FeatureSettings()) as writer:
        bad = FeatureSample("a", 0.0, "train", np.zeros((3, 384)), np.zeros((4, 48)), np.zeros((5, 58)))
        with pytest.raises(ValueError, match="video"):
            writer.add(bad, source="s", start=0, end=1, text="", text_source="labels")
        good = FeatureSample("a/b c", 1.0, "train", np.zeros((3, 384)), np.zeros((4, 48)), np.zeros((4, 58)))
        writer.add(good, source="s", start=0, end=2, text="hi", text_source="labels")
        assert writer.has("a/b c")
    (s,), _ = load_extracted(tmp_path / "w")
    assert s.id == "a/b c" and s.audio_mask.all() and s.video.shape == (4, 58)
    with pytest.raises(FileNotFoundError, match="hcl-extract"):
        load_extracted(tmp_path / "nothing")


def test_hcl_train_runs_an_epoch_on_the_dataset(dataset, tmp_path, capsys):
    """hcl-train (the core trainer) trains for one epoch on what hcl-extract wrote."""
    from hcl.checkpoint import load_checkpoint
    from hcl.cli import train_main

    out, _, _ = dataset
    code = train_main(["--extracted", str(out), "--out", str(tmp_path / "run"), "--epochs", "1", "--seeds", "1",
                       "--batch-size", "2", "--threads", "1", "--device", "cpu", "--no-progress"])
    assert code == 0
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result["sizes"]["train"] == 3 and result["sizes"]["valid"] == 1
    assert np.isfinite(result["runs"][0]["valid"]["mae"])
    loaded = load_checkpoint(tmp_path / "run" / "seed1.pt")
    assert loaded.features == FeatureSettings()  # the checkpoint names the extractor settings it expects


def test_plan_jobs_matches_clip_and_full_video_files(tmp_path):
    from pathlib import Path

    from hcl.extract import plan_jobs

    files = [Path("raw/vidA_1.mp4"), Path("raw/vidB.mp4"), Path("Raw/vidC/2.mp4"), Path("raw/stray.mp4")]
    rows = [
        {"video_id": "vidA", "clip_id": "1", "label": "1.5", "mode": "train", "text": "a", "start": "3", "end": "5"},
        {"video_id": "vidB", "clip_id": "4", "label": "-1", "mode": "test", "text": "", "start": "10.5", "end": "12"},
        {"video_id": "vidC", "clip_id": "2", "label": "0", "mode": "valid", "text": "c"},
        {"video_id": "vidD", "clip_id": "1", "label": "0", "mode": "valid", "text": "d"},
        {"video_id": "vidB", "clip_id": "5", "label": "n/a", "mode": "test", "text": "", "start": "1", "end": "2"},
    ]
    jobs, missing, unused = plan_jobs(files, rows, text_from="labels")
    by_id = {j.id: j for j in jobs}
    assert by_id["vidA_1"].path == files[0] and by_id["vidA_1"].end is None  # a clip file is taken whole
    assert (by_id["vidB_4"].start, by_id["vidB_4"].end, by_id["vidB_4"].text) == (10.5, 12.0, None)  # cut; Whisper
    assert by_id["vidC_2"].path == files[2] and by_id["vidC_2"].text == "c"
    assert missing == ["vidD_1", "vidB_5 (no numeric label)"]
    assert unused == [files[3]]
    jobs, _, _ = plan_jobs(files, rows, text_from="whisper")
    assert all(j.text is None for j in jobs)
