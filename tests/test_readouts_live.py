"""The readouts in the live path: per window in the messages, recorded, exported, replayed;
they never change the score (real mediapipe, real clips, the live scorer)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from multiface_fixtures import make_two_face_clip
from realtime.core import protocol
from realtime.core.component import Policy
from realtime.pipeline.build import annotate, build_session, open_file_source
from realtime.pipeline.live import PipelineOptions
from realtime.recording import read_session

pytestmark = pytest.mark.slow


def run_file(path, scorer, out=None, **options):
    source = open_file_source(str(path), policy=Policy.FAST, fps=scorer.features.face.frames_per_second)
    pipeline = build_session(source=source, scorer=scorer, options=PipelineOptions(policy=Policy.FAST, **options),
                             mode="annotate", record_to=out)
    try:
        pipeline.start()
        assert pipeline.wait(300), "the file was not scored in 300 s"
    finally:
        pipeline.stop()
        pipeline.join()
    assert not pipeline.problems()
    return pipeline


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory, live_scorer):
    """The two-face clip (no sound) annotated with readouts into a session folder."""
    folder = tmp_path_factory.mktemp("two-faces")
    clip = make_two_face_clip(folder / "two.mp4", seconds=4.0)
    run_file(clip.path, live_scorer, folder / "session")
    return clip, folder / "session"


def test_two_faces_get_their_own_ids_and_readouts_in_every_window(two_faces):
    _, session = two_faces
    rec = read_session(session)
    assert len(rec.windows) >= 6
    ids = set()
    for w in rec.windows:
        r = w["readouts"]
        assert r is not None and r["t0"] == pytest.approx(w["start"]) and r["t1"] == pytest.approx(w["end"])
        assert r["voice"] is None  # no sound in this clip
        assert len(r["faces"]) == 2, r
        speaker, other = r["faces"]
        assert speaker["speaker"] and not other["speaker"]
        ids.update(f["face_id"] for f in r["faces"])
        for f in r["faces"]:
            assert 0 <= f["smile"] <= 1 and 0 <= f["jaw_open"] <= 1 and f["frames"] >= 1
    assert ids == {1, 2}  # two faces, two ids for the whole clip
    # the left (smaller, tilting) face is not the speaker and moves its head; the still one does not
    late = [w["readouts"] for w in rec.windows if w["readouts"]["frames"] >= 15]
    assert late
    for r in late:
        speaker, other = r["faces"]
        assert other["head_movement"] > 5 > speaker["head_movement"], r


def test_readouts_are_exported_as_csv_columns(two_faces):
    _, session = two_faces
    rows = list(csv.DictReader(io.StringIO(protocol.csv_text(read_session(session).windows))))
    assert list(rows[0]) == list(protocol.CSV_COLUMNS)
    for row in rows:
        assert row["faces"] == "2" and row["speaker_face_id"] in ("1", "2")
        assert 0 <= float(row["speaker_smile"]) <= 1
        assert row["loudness_dbfs"] == ""  # no sound: empty, not zero
        assert [f["face_id"] for f in json.loads(row["faces_json"])] == sorted(
            [int(row["speaker_face_id"])], key=int) + [3 - int(row["speaker_face_id"])]


def test_replay_sends_the_readouts(two_faces):
    from realtime.app.replay import replay_messages

    _, session = two_faces
    hello, msg = replay_messages(str(session))
    assert hello["v"] == 3 and msg["windows"] and all(len(w["readouts"]["faces"]) == 2 for w in msg["windows"])


def test_readouts_do_not_change_the_score(two_faces, live_scorer, demo_media):
    clip, session = two_faces
    with_readouts = [w["score"] for w in read_session(session).windows]
    without = run_file(clip.path, live_scorer, readouts=False)
    assert [(m["seq"], m["end"]) for m in without.messages] == [(w["seq"], w["end"]) for w in read_session(session).windows]
    assert [m["score"] for m in without.messages] == with_readouts
    assert all(m["readouts"] is None for m in without.messages)


def test_voice_readouts_on_the_demo_clip(demo_media, live_scorer, tmp_path):
    """espeak speech over a real face: the windows with words read a pitch, a speaking rate and
    a loudness; silent windows read no pitch."""
    path, utterances = demo_media
    annotate(str(path), str(tmp_path / "demo"), scorer=live_scorer, progress=False)
    rec = read_session(tmp_path / "demo")
    voices = [w["readouts"]["voice"] for w in rec.windows]
    assert all(v is not None for v in voices)
    spoken = [v for v in voices if v["words"] >= 3]
    assert spoken, voices
    for v in spoken:
        assert v["pitch_hz"] is not None and 60 < v["pitch_hz"] < 400
        assert v["speaking_rate"] == pytest.approx(v["words"] / (v["t1"] - v["t0"]), abs=1e-3)  # the first windows are shorter
        assert v["loudness_dbfs"] > -40
    assert all(len(w["readouts"]["faces"]) == 1 and w["readouts"]["faces"][0]["speaker"] for w in rec.windows
               if w["presence"]["video"])
