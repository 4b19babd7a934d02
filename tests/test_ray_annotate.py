"""hcl-annotate --ray: archives annotated on a real local Ray (Ray Data actor pool).

The fast tests cover the list of inputs and the command line; the slow ones start a
real Ray (one local node with 2 CPUs; a two-node `ray.cluster_utils.Cluster` with 1 CPU
per node) and annotate generated clips (espeak-ng speech over a real face) with the
real models, against the single-process `hcl-annotate`.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest

from realtime.app.annotate import annotate_main
from realtime.scale.archive import ArchiveError, ArchiveOptions, finished, folder_names, media_files, read_summary, workers_for

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'hcl-live[ray]')")

SENTENCES = ("I really love this wonderful movie.", "This was a terrible boring waste of time.", "The music is beautiful.")


# --------------------------------------------------------------------- inputs (no Ray)
def test_inputs_are_files_folders_and_globs_each_once(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "deep").mkdir()
    for name in ("a/x.mp4", "a/deep/y.wav", "a/notes.txt", "b.webm", "c.mp4"):
        (tmp_path / name).write_bytes(b"")
    files = media_files([str(tmp_path / "a"), str(tmp_path / "*.mp4"), str(tmp_path / "c.mp4"), str(tmp_path / "b.webm")])
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a/deep/y.wav", "a/x.mp4", "c.mp4", "b.webm"]
    with pytest.raises(ArchiveError, match="no such file or folder"):
        media_files([str(tmp_path / "missing.mp4")])
    with pytest.raises(ArchiveError, match="matches no file"):
        media_files([str(tmp_path / "*.mkv")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArchiveError, match="no media files"):
        media_files([str(tmp_path / "empty")])


def test_folder_names_are_stems_and_stay_apart_when_stems_clash(tmp_path):
    files = [tmp_path / "a" / "talk.mp4", tmp_path / "b" / "talk.mp4", tmp_path / "other.wav"]
    names = folder_names(files)
    assert names[2] == "other"
    assert names[0] != names[1] and all(n.startswith("talk-") for n in names[:2])
    assert folder_names(files) == names  # stable: a second run finds the same folders


def test_finished_means_closed_without_a_write_error(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    assert not finished(folder)
    info = {"recording": {"ended_at": None}}
    (folder / "session.json").write_text(json.dumps(info))
    assert not finished(folder)  # a killed run
    info["recording"]["ended_at"] = "2026-01-01T00:00:00"
    (folder / "session.json").write_text(json.dumps(info))
    assert finished(folder)
    info["recording"]["stopped_early"] = "No space left on device"
    (folder / "session.json").write_text(json.dumps(info))
    assert not finished(folder)


def test_pool_size_defaults_to_the_cluster_cpus_and_never_exceeds_the_files():
    assert workers_for(ArchiveOptions(output="o"), 4.0, 10) == 4
    assert workers_for(ArchiveOptions(output="o"), 4.0, 2) == 2
    assert workers_for(ArchiveOptions(output="o", workers=3), 16.0, 10) == 3


def test_ray_options_need_ray_and_several_files_need_ray(tmp_path, capsys):
    with pytest.raises(SystemExit):
        annotate_main(["a.mp4", "-o", str(tmp_path / "o"), "--ray-workers", "2"])
    assert "go with --ray" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        annotate_main(["a.mp4", "b.mp4", "-o", str(tmp_path / "o")])
    assert "need --ray" in capsys.readouterr().err
    assert annotate_main(["--ray", str(tmp_path / "nothing.mp4"), "-o", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


# --------------------------------------------------------------------- real Ray
@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three short clips (one espeak-ng sentence each over a real face) and a corrupt 'video'."""
    from realtime.sources.demo import make_clip

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    folder = tmp_path_factory.mktemp("archive")
    for i, sentence in enumerate(SENTENCES):
        make_clip(folder / f"clip{i}.mp4", sentences=[sentence], lead=0.3, gap=0.5, tail=1.0, fps=10, size=256)
    for extra in folder.glob("*.json"):  # make_clip's utterance files are not media
        extra.unlink()
    bad = folder / "broken.mp4"
    bad.write_bytes(b"this is not a video at all" * 100)
    return folder


@pytest.fixture(scope="module")
def single_process(clips, live_scorer, tmp_path_factory):
    """Scores per clip from the single-process hcl-annotate path: {stem: [score per window]}."""
    from realtime.pipeline.build import annotate

    out = tmp_path_factory.mktemp("single")
    scores = {}
    for clip in sorted(clips.glob("clip*.mp4")):
        annotate(str(clip), str(out / clip.stem), scorer=live_scorer, progress=False)
        scores[clip.stem] = _scores(out / clip.stem)
    return scores


def _scores(folder: pathlib.Path) -> list[float]:
    from realtime.recording.reader import read_session

    return [w["score"] for w in read_session(folder).windows]


def _assert_same_scores(out: pathlib.Path, single: dict[str, list[float]]) -> None:
    for stem, expected in single.items():
        got = _scores(out / stem)
        assert len(got) == len(expected) > 0, stem
        assert max(abs(a - b) for a, b in zip(got, expected)) <= 1e-4, stem


@pytest.mark.slow
def test_ray_annotates_like_the_single_process_path_resumes_and_reports_a_corrupt_file(
        clips, single_process, live_checkpoint, tmp_path, capsys, monkeypatch):
    import os

    out = tmp_path / "out"
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
    # relative input and output paths, from a folder the Ray workers (started from Ray's own) are not in
    monkeypatch.chdir(tmp_path)
    try:
        argv = ["--ray", os.path.relpath(clips, tmp_path), "-o", "out", "--checkpoint", str(live_checkpoint), "-q"]
        assert annotate_main(argv) == 1  # the corrupt file fails, the others are done
        printed = capsys.readouterr()
        assert "4 files: 3 annotated, 0 already done, 1 failed" in printed.out
        assert "broken.mp4" in printed.err

        _assert_same_scores(out, single_process)
        rows = {pathlib.Path(r["file"]).stem: r for r in read_summary(out / "summary.csv")}
        assert set(rows) == {"broken", "clip0", "clip1", "clip2"}
        assert rows["broken"]["status"] == "error" and rows["broken"]["error"]
        assert not (out / "broken" / "session.json").exists()
        for stem, expected in single_process.items():
            r = rows[stem]
            assert r["status"] == "done" and r["error"] == ""
            assert int(r["windows"]) == len(expected)
            assert float(r["mean_score"]) == pytest.approx(sum(expected) / len(expected), abs=1e-4)
            assert float(r["duration"]) > 1.0 and r["node"]
            assert finished(out / stem)

        # second run: finished folders are skipped untouched; an unfinished one (a killed run) is done again
        before = {stem: (out / stem / "scores.jsonl").read_bytes() for stem in single_process}
        info = json.loads((out / "clip1" / "session.json").read_text())
        info["recording"]["ended_at"] = None
        (out / "clip1" / "session.json").write_text(json.dumps(info))
        assert annotate_main(argv + ["--ray-workers", "1"]) == 1  # one file left to do: one actor to start
        assert "4 files: 1 annotated, 2 already done, 1 failed" in capsys.readouterr().out
        rows = {pathlib.Path(r["file"]).stem: r for r in read_summary(out / "summary.csv")}
        assert [rows[s]["status"] for s in ("clip0", "clip1", "clip2", "broken")] == ["skipped", "done", "skipped", "error"]
        assert rows["clip0"]["windows"] == str(len(single_process["clip0"]))  # a skipped row is read back from its folder
        for stem in ("clip0", "clip2"):
            assert (out / stem / "scores.jsonl").read_bytes() == before[stem]
        assert finished(out / "clip1")
        _assert_same_scores(out, single_process)
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_annotates_on_a_two_node_cluster(clips, single_process, live_checkpoint, tmp_path, capsys):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 150 * 1024**2,
                                                             "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=150 * 1024**2)
        cluster.wait_for_nodes()
        out = tmp_path / "out"
        argv = ["--ray", str(clips / "clip*.mp4"), "-o", str(out), "--checkpoint", str(live_checkpoint), "-q",
                "--ray-address", cluster.address]
        assert annotate_main(argv) == 0
        assert "3 files: 3 annotated" in capsys.readouterr().out
        _assert_same_scores(out, single_process)
        rows = read_summary(out / "summary.csv")
        node_ids = {n.node_id for n in cluster.list_all_nodes()}
        used = {r["node"] for r in rows}
        assert used <= node_ids
        # one actor per node (each node has one CPU and each actor takes one), and both are
        # loaded before the first file is handed out, so each node annotates a file
        assert len(used) == 2, used
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_a_missing_checkpoint_is_a_user_error_before_ray_starts(tmp_path, capsys):
    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"")
    rc = annotate_main(["--ray", str(clip), "-o", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "none.pt")])
    assert rc == 2 and "none.pt: no such file" in capsys.readouterr().err
    assert not ray.is_initialized()
