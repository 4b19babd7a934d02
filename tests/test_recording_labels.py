"""Labelled recordings: the labels.json schema, the split, and hcl-extract reading session folders."""

import json

import numpy as np
import pytest

from hcl.data.extracted import load_extracted, read_manifest
from hcl.data.recordings import (
    LABELS,
    LabelsError,
    SpanLabel,
    assign_modes,
    find_recordings,
    read_labels,
    span_text,
    write_labels,
)
from hcl.extract import main
from recording_fixtures import Part, make_labelled_session

COMMON = ["--threads", "1", "--no-progress"]


def test_labels_round_trip_sorted(tmp_path):
    spans = [SpanLabel(5.0, 7.0, -1.5, note="the delay"), SpanLabel(1.0, 3.0, 2.0, mode="test")]
    path = write_labels(tmp_path, spans)
    data = json.loads(path.read_text())
    assert data["format"] == "hcl-labels" and data["format_version"] == 1
    assert data["spans"][0] == {"start": 1.0, "end": 3.0, "label": 2.0, "mode": "test"}
    assert read_labels(tmp_path) == [spans[1], spans[0]]


@pytest.mark.parametrize(
    "spans, message",
    [
        ([{"start": 0, "end": 2, "label": 3.5}], "outside \\[-3, 3\\]"),
        ([{"start": 0, "end": 0.2, "label": 1}], "end - start >= 0.5"),
        ([{"start": 0, "end": 2, "label": 1}, {"start": 1.5, "end": 3, "label": 0}], "overlap"),
        ([{"start": 0, "end": 2}], "missing 'label'"),
        ([{"start": 0, "end": 2, "label": 1, "mode": "dev"}], "mode must be one of"),
        ([{"start": 0, "end": 2, "label": 1, "score": 1}], "unknown key"),
        ([{"start": "soon", "end": 2, "label": 1}], "must be numbers"),
    ],
)
def test_bad_labels_are_refused_with_what_to_fix(tmp_path, spans, message):
    (tmp_path / LABELS).write_text(json.dumps({"format": "hcl-labels", "format_version": 1, "spans": spans}))
    with pytest.raises(LabelsError, match=message):
        read_labels(tmp_path)


def test_not_a_labels_file(tmp_path):
    (tmp_path / LABELS).write_text(json.dumps({"spans": []}))
    with pytest.raises(LabelsError, match="not an hcl labels file"):
        read_labels(tmp_path)
    with pytest.raises(FileNotFoundError, match="mark spans"):
        read_labels(tmp_path / "elsewhere")


def test_assign_modes_takes_the_last_fifth_of_each_recording_for_valid():
    spans = [SpanLabel(float(i), i + 0.5, 0.0) for i in range(10)]
    spans[3] = SpanLabel(3.0, 3.5, 0.0, mode="test")
    modes = [s.mode for s in assign_modes(spans)]
    assert modes == ["train"] * 3 + ["test"] + ["train"] * 4 + ["valid"] * 2  # 9 unmarked: round(1.8) = 2
    assert [s.mode for s in assign_modes(spans[:1])] == ["train"]
    assert [s.mode for s in assign_modes(spans[:2])] == ["train", "valid"]


def test_span_text_takes_words_by_their_middle():
    words = [{"w": "a", "start": 0.0, "end": 0.4}, {"w": "b", "start": 0.9, "end": 1.3}, {"w": "c", "start": 2.0, "end": 2.2}]
    assert span_text(words, 0.0, 1.0) == "a"
    assert span_text(words, 0.5, 2.5) == "b c"


def test_file_names_agree_with_the_recorder_layout():
    from hcl.data import recordings
    from realtime.recording import layout

    assert (recordings.SESSION_INFO, recordings.SESSION_WORDS, recordings.SESSION_WORDS_V1,
            recordings.SESSION_AUDIO, recordings.SESSION_VIDEO) == (
        layout.INFO, layout.WORDS, layout.WORDS_V1, layout.AUDIO, layout.VIDEO)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    root = tmp_path_factory.mktemp("recordings")
    a = make_labelled_session(root / "alice", [Part(1.5, 220.0, 2.0), Part(1.5, 110.0, -2.0),
                                               Part(1.5, 220.0, 1.5, text="i like it"), Part(1.5, 0.0, 0.0, mode="test")])
    b = make_labelled_session(root / "bob", [Part(1.0, 200.0, 1.0), Part(1.0, 120.0, -1.0)])
    (root / "loose.mp4").write_bytes((root / "bob" / "video.mp4").read_bytes())  # not a recording
    return root, a, b


def test_find_recordings(sessions):
    root, _, _ = sessions
    assert [p.name for p in find_recordings([root])] == ["alice", "bob"]
    assert [p.name for p in find_recordings([root / "bob"])] == ["bob"]


def test_recordings_and_loose_files_together(sessions, tmp_path, capsys):
    root, _, _ = sessions
    assert main([str(root), "-o", str(tmp_path / "all"), *COMMON]) == 0
    assert "media files outside labelled recordings have mode 'unlabelled'" in capsys.readouterr().out
    modes = sorted(e["mode"] for e in read_manifest(tmp_path / "all")["samples"])
    assert modes.count("unlabelled") == 1 and len(modes) == 7  # loose.mp4, and the 6 spans


def test_hcl_extract_reads_labelled_recordings(sessions, tmp_path, capsys):
    root, alice, bob = sessions
    out = tmp_path / "mine"
    code = main([str(root / "alice"), str(root / "bob"), "-o", str(out), *COMMON])
    text = capsys.readouterr().out
    assert code == 0, text
    manifest = read_manifest(out)
    entries = {e["id"]: e for e in manifest["samples"]}
    assert len(entries) == 6  # one sample per span; the recordings' own media are not also unlabelled samples
    first = entries[f"alice_{alice[0].start:.2f}-{alice[0].end:.2f}"]
    assert first["label"] == 2.0 and first["mode"] == "train" and first["text_source"] == "recording"
    assert first["text"] == "this is what i think about it"
    assert first["start"] == pytest.approx(alice[0].start) and first["end"] == pytest.approx(alice[0].end)
    modes = [entries[f"alice_{s.start:.2f}-{s.end:.2f}"]["mode"] for s in alice]
    assert modes == ["train", "train", "valid", "test"]  # 3 unmarked: the last is valid; the marked test stays
    assert [entries[f"bob_{s.start:.2f}-{s.end:.2f}"]["mode"] for s in bob] == ["train", "valid"]
    assert entries[f"alice_{alice[2].start:.2f}-{alice[2].end:.2f}"]["text"] == "i like it"

    samples, _ = load_extracted(out)
    by_id = {s.id: s for s in samples}
    s = by_id[first["id"]]
    assert s.audio.shape[0] == 3 and s.video_mask.all()  # 1.5 s: 3 steps, the face in each
    assert s.audio_mask.all()  # the tone sounds in every step
    silent = by_id[f"alice_{alice[3].start:.2f}-{alice[3].end:.2f}"]
    assert not silent.audio_mask.any()
    # the planted pitch reaches the audio features: F0 mean (log2(F0 / 200 Hz)) of 220 vs 110 Hz
    from hcl.features.audio import audio_feature_names

    f0 = audio_feature_names().index("f0_mean")
    high, low = by_id[first["id"]], by_id[f"alice_{alice[1].start:.2f}-{alice[1].end:.2f}"]
    assert high.audio[:, f0].mean() == pytest.approx(np.log2(220 / 200), abs=0.05)
    assert low.audio[:, f0].mean() == pytest.approx(np.log2(110 / 200), abs=0.05)

    # a second run has nothing to do; a changed label gives a new sample and the old one is reported stale
    folders = [str(root / "alice"), str(root / "bob")]
    assert main([*folders, "-o", str(out), *COMMON]) == 0
    assert "wrote 0 new sample(s)" in capsys.readouterr().out
    changed = [SpanLabel(s.start, s.end, -0.5 if i == 0 else s.label, s.mode) for i, s in enumerate(read_labels(root / "bob"))]
    changed[0] = SpanLabel(changed[0].start, changed[0].end + 0.25, -0.5)
    write_labels(root / "bob", changed)
    try:
        assert main([*folders, "-o", str(out), *COMMON]) == 0
        text = capsys.readouterr().out
        assert "wrote 1 new sample(s)" in text and "1 sample(s)" in text and "no longer in the recordings' labels" in text
    finally:
        write_labels(root / "bob", [SpanLabel(s.start, s.end, s.label, s.mode) for s in bob])


def test_bad_labels_in_every_recording_is_a_usage_error(tmp_path, capsys):
    make_labelled_session(tmp_path / "s", [Part(1.0, 200.0, 1.0)])
    (tmp_path / "s" / LABELS).write_text(json.dumps({"format": "hcl-labels", "spans": [{"start": 0, "end": 1, "label": 9}]}))
    assert main([str(tmp_path), "-o", str(tmp_path / "out"), *COMMON]) == 2
    assert "outside [-3, 3]" in capsys.readouterr().err


def test_mmsa_export_reads_back(sessions, tmp_path, capsys):
    from hcl.data.mmsa import load_mmsa

    root, alice, _ = sessions
    out, pkl = tmp_path / "ds", tmp_path / "mine.pkl"
    assert main([str(root / "alice"), "-o", str(out), "--mmsa", str(pkl), *COMMON]) == 0
    assert "train/valid/test = 2/1/1" in capsys.readouterr().out
    back = load_mmsa(pkl)
    samples = {s.id: s for s in load_extracted(out)[0]}
    assert [len(back[k]) for k in ("train", "valid", "test")] == [2, 1, 1]
    for split, items in back.items():
        for b in items:
            s = samples[b.id]
            assert b.mode == s.mode == split and b.label == pytest.approx(s.label)
            assert b.text.shape == s.text.shape and np.allclose(b.text, s.text)
            assert np.allclose(b.audio, s.audio) and np.allclose(b.video, s.video)
            assert b.meta["raw_text"] == s.meta["text"]
