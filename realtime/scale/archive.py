"""Annotating an archive of media files on Ray Data (`hcl-annotate --ray INPUTS... -o OUT`).

    files = media_files(["talks/", "extra/*.mp4"])
    rows = annotate_archive(files, ArchiveOptions(output="out"))

Each file gets the session folder `OUT/<name>/` that single-process `hcl-annotate`
writes (same live path, same FAST policy, same recording), and `OUT/summary.csv` gets
one row per file: file, folder, status, windows, mean score, duration, seconds, error.

The work runs as a Ray Data `map_batches` over the list of files with a pool of
actors (`ArchiveAnnotator`); each actor loads the checkpoint's WindowScorer, the face
model and Whisper once and keeps them for every file it gets. The face extractor runs
in mediapipe's image mode (each frame judged on its own, no timestamps carried), so one
extractor serves file after file; Whisper and the scorer hold no per-file state.

Resumable: a folder whose session.json has `ended_at` (and no write error) is a
finished file and is skipped; an unfinished folder (a killed run) is cleared and done
again. A file that cannot be read is named in the summary with its error; the others go on.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import math
import os
import pathlib
import shutil
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from tqdm import tqdm

from hcl.features.segment import SegmentFeaturizer
from realtime.core.component import Policy
from realtime.core.errors import SetupError
from realtime.core.logs import setup_logging
from realtime.pipeline.build import annotate, load_scorer
from realtime.pipeline.speech import SpeechOptions, transcriber_for
from realtime.recording.reader import read_session

log = logging.getLogger(__name__)

# what a folder given as input is searched for (recursively); a file named directly is taken as it is
MEDIA_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus"})
SUMMARY = "summary.csv"
SUMMARY_FIELDS = ("file", "folder", "status", "windows", "mean_score", "duration", "seconds", "node", "error")
# the library threads of one actor (torch, OpenMP / BLAS, numba, Whisper): one each, so
# N actors use N cores and do not fight over them
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


class ArchiveError(Exception):
    """A user error about the inputs or the output folder (printed as one line)."""


@dataclass(frozen=True)
class ArchiveOptions:
    """How an archive is annotated."""

    output: str | os.PathLike
    checkpoint: str | None = None  # None: the shipped live model
    device: str = "cpu"  # scoring device of each actor (auto, cpu, cuda)
    address: str | None = None  # join this Ray cluster (e.g. "auto" or "ray://head:10001"); None: start a local Ray
    workers: int | None = None  # actors; None: one per CPU of the cluster
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    threads: int = 1  # torch / Whisper threads inside an actor
    asr: str | None = None  # the speech engine, "whisper" | "moonshine" (--asr); None: SpeechOptions' default
    summary: str = SUMMARY  # file name inside `output`
    # seconds to wait for every actor to load its models before the first file is handed
    # out; longer: a clear error that the cluster lacks the CPUs/GPUs the pool asks for
    start_timeout: int = 600


# --------------------------------------------------------------------- the inputs
def media_files(inputs: Sequence[str]) -> list[pathlib.Path]:
    """The media files named by `inputs` (files, folders searched recursively, glob patterns), in
    order, each once. An input that names nothing raises ArchiveError."""
    out: list[pathlib.Path] = []
    seen: set[pathlib.Path] = set()

    def add(path: pathlib.Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(path)

    for item in inputs:
        path = pathlib.Path(item)
        if path.is_file():
            add(path)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
            if not found:
                raise ArchiveError(f"{item}: no media files in this folder (looked for {', '.join(sorted(MEDIA_SUFFIXES))})")
            for p in found:
                add(p)
        elif glob.has_magic(item):
            found = sorted(pathlib.Path(p) for p in glob.glob(item, recursive=True))
            files = [p for p in found if p.is_file()]
            if not files:
                raise ArchiveError(f"{item}: the pattern matches no file")
            for p in files:
                add(p)
        else:
            raise ArchiveError(f"{item}: no such file or folder")
    return out


def folder_names(files: Sequence[pathlib.Path]) -> list[str]:
    """The session folder name of each file: its stem, or where two files share a stem, the stem
    plus a short hash of the file's absolute path (stable from run to run, so resuming finds it)."""
    stems = [f.stem for f in files]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [s if counts[s] == 1 else f"{s}-{hashlib.sha1(str(f.resolve()).encode()).hexdigest()[:8]}" for s, f in zip(stems, files)]


# --------------------------------------------------------------------- the session folders
def finished(folder: pathlib.Path) -> bool:
    """True when `folder` holds a session that was closed without a write error."""
    try:
        info = json.loads((folder / "session.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    rec = info.get("recording") or {}
    return bool(rec.get("ended_at")) and not rec.get("stopped_early") and not rec.get("errors")


def folder_row(file: pathlib.Path, folder: pathlib.Path) -> dict[str, Any]:
    """The summary row of a finished session folder (read back from what it holds)."""
    s = read_session(folder)
    scores = [float(w["score"]) for w in s.windows]
    rec = s.info.get("recording") or {}
    duration = rec.get("audio_seconds") or (float(s.windows[-1]["end"]) if s.windows else 0.0)
    return _row(file, folder, "done", windows=len(scores), mean=sum(scores) / len(scores) if scores else None,
                duration=duration)


def _row(file, folder, status: str, *, windows: int = 0, mean: float | None = None, duration: float | None = None,
         seconds: float | None = None, node: str = "", error: str = "") -> dict[str, Any]:
    return {
        "file": str(file),
        "folder": str(folder),
        "status": status,
        "windows": int(windows),
        "mean_score": None if mean is None or math.isnan(mean) else round(float(mean), 6),
        "duration": None if duration is None else round(float(duration), 3),
        "seconds": None if seconds is None else round(float(seconds), 3),
        "node": node,  # the Ray node that annotated the file
        "error": error,
    }


def _clear_unfinished(folder: pathlib.Path) -> None:
    """Remove a session folder a killed run left unfinished, so the file is done again; refuse a
    folder that is not a session folder (never delete what we did not write)."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ArchiveError(f"{folder} is a file; remove it or choose another -o")
    names = {p.name for p in folder.iterdir()}
    if names and "session.json" not in names and "scores.jsonl" not in names:
        raise ArchiveError(f"{folder} exists and is not a session folder; remove it or choose another -o")
    shutil.rmtree(folder)


# --------------------------------------------------------------------- one actor
class ArchiveAnnotator:
    """A Ray Data actor: loads the models once, then annotates each file of every batch it gets
    with `realtime.pipeline.build.annotate` (the single-process path). Never raises for a bad file: its
    row says what went wrong."""

    def __init__(self, checkpoint: str | None = None, device: str = "cpu", threads: int = 1, asr: str | None = None) -> None:
        os.environ.update({k: str(threads) for k in THREAD_ENV})
        torch.set_num_threads(threads)
        setup_logging(False)
        self.scorer = load_scorer(checkpoint, device)
        self.scorer.warm_up()
        self.featurizer = SegmentFeaturizer(settings=self.scorer.features)  # image mode: no state across files
        _ = self.featurizer.face
        # the engine the FAST pipeline makes for itself (the checkpoint's decoding), on `threads` threads
        self.transcriber = transcriber_for(self.scorer.features, SpeechOptions(threads=threads, **({"engine": asr} if asr else {})),
                                           Policy.FAST)
        _ = self.transcriber.model
        try:
            # the optional extra hcl-live[ray]; not at the top: hcl-annotate imports this module without --ray
            import ray

            self.node = ray.get_runtime_context().get_node_id()
        except Exception:  # not inside Ray (called directly)
            self.node = ""

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        rows = [self.annotate_one(pathlib.Path(f), pathlib.Path(d)) for f, d in zip(batch["file"], batch["folder"])]
        return {k: [r[k] for r in rows] for k in SUMMARY_FIELDS}

    def annotate_one(self, file: pathlib.Path, folder: pathlib.Path) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            _clear_unfinished(folder)
            pipeline = annotate(str(file), str(folder), scorer=self.scorer, featurizer=self.featurizer,
                                transcriber=self.transcriber, progress=False)
        except (SetupError, ArchiveError, OSError) as exc:
            return _row(file, folder, "error", seconds=time.perf_counter() - t0, node=self.node, error=str(exc))
        except Exception as exc:  # a decoder or model failure on this file: the others go on
            log.exception("annotating %s failed", file)
            return _row(file, folder, "error", seconds=time.perf_counter() - t0, node=self.node,
                        error=f"{type(exc).__name__}: {exc}")
        problems = pipeline.problems()
        if pipeline.recorder is not None and pipeline.recorder.error is not None:
            problems.append(str(pipeline.recorder.error))
        s = pipeline.scores
        return _row(file, folder, "error" if problems else "done", windows=s.count, mean=s.mean,
                    duration=pipeline.source.duration, seconds=time.perf_counter() - t0, node=self.node,
                    error="; ".join(problems))


# --------------------------------------------------------------------- the job
def _start_ray(options: ArchiveOptions):
    # the optional extra hcl-live[ray] (~0.2 s to import); not at the top: hcl-annotate imports this module without --ray
    import ray

    if ray.is_initialized():  # a caller (a test, a notebook) started or joined one already
        return ray, False
    env = {"runtime_env": {"env_vars": dict(THREAD_ENV)}}
    if options.address:
        ray.init(address=options.address, log_to_driver=False, **env)
    else:
        # "local": a Ray of our own, even when another one runs on this machine (ray.init()
        # with no address would join that one and share its CPUs)
        ray.init(address="local", log_to_driver=False, include_dashboard=False, **env)
    return ray, True


def workers_for(options: ArchiveOptions, cluster_cpus: float, n_files: int) -> int:
    """The actor pool size: --ray-workers, else one per `cpus_per_worker` CPUs of the cluster; never
    more than there are files."""
    n = options.workers or max(1, int(cluster_cpus // max(options.cpus_per_worker, 1e-9)))
    return max(1, min(n, n_files))


def annotate_archive(files: Sequence[pathlib.Path], options: ArchiveOptions, *, progress: bool = True) -> list[dict[str, Any]]:
    """Annotate `files` into `options.output` on Ray; returns the summary rows in input order (also
    written to `options.output / options.summary`)."""
    # absolute paths: an actor's working folder is not the caller's (another node, a Ray worker dir)
    files = [pathlib.Path(os.path.abspath(f)) for f in files]
    out = pathlib.Path(os.path.abspath(options.output))
    if out.exists() and not out.is_dir():
        raise ArchiveError(f"-o {out}: is a file; give a folder")
    if options.checkpoint and not pathlib.Path(options.checkpoint).is_file():
        # checked here, not in every actor: a missing model would fail the whole pool at start
        raise ArchiveError(f"--checkpoint {options.checkpoint}: no such file (every node reads it at this path)")
    out.mkdir(parents=True, exist_ok=True)
    folders = [out / name for name in folder_names(files)]
    rows: dict[str, dict[str, Any]] = {}
    todo = []
    for f, d in zip(files, folders):
        if finished(d):
            rows[str(f)] = {**folder_row(f, d), "status": "skipped"}
        else:
            todo.append({"file": str(f), "folder": str(d)})
    bar = tqdm(total=len(files), initial=len(rows), unit="file", desc="files", disable=not progress)
    try:
        if todo:
            ray, started = _start_ray(options)
            try:
                for row in _run_pool(ray, todo, options):
                    rows[row["file"]] = row
                    bar.update(1)
                    if row["status"] == "error":
                        bar.write(f"{row['file']}: {row['error']}")
                    _write_summary(out / options.summary, files, rows)  # after each file: readable after a kill
            finally:
                if started:
                    ray.shutdown()
    finally:
        bar.close()
    ordered = [rows[str(f)] for f in files if str(f) in rows]
    _write_summary(out / options.summary, files, rows)
    return ordered


def _run_pool(ray, todo: list[dict[str, str]], options: ArchiveOptions) -> Iterable[dict[str, Any]]:
    """Ray Data: one block per file (so idle actors take the next file), an actor pool of
    ArchiveAnnotator, results streamed back as each file finishes."""
    # the optional extra hcl-live[ray] (ray.data: ~0.6 s more to import); only with --ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts files
    ctx.print_on_execution_start = False
    # the whole pool is up before files are handed out: otherwise the first actor to finish
    # loading takes every file while the others still load (seen on a two-node cluster: one
    # node did all the work)
    ctx.wait_for_min_actors_s = options.start_timeout
    n = workers_for(options, ray.cluster_resources().get("CPU", 1.0), len(todo))
    ds = ray.data.from_items(todo, override_num_blocks=len(todo))
    ds = ds.map_batches(
        ArchiveAnnotator,
        fn_constructor_kwargs={"checkpoint": options.checkpoint, "device": options.device, "threads": options.threads,
                               "asr": options.asr},
        batch_size=1,
        batch_format="numpy",
        # a fixed pool of n actors, each given one file at a time: a file waits for the first
        # free actor rather than queueing behind a busy one (files take seconds to minutes)
        compute=ray.data.ActorPoolStrategy(size=n, max_tasks_in_flight_per_actor=1),
        num_cpus=options.cpus_per_worker,
        **({"num_gpus": options.gpus_per_worker} if options.gpus_per_worker else {}),
    )
    for row in ds.iter_rows():
        yield {k: _plain(row[k]) for k in SUMMARY_FIELDS}


def _plain(value):
    """numpy scalars from Ray Data's rows as Python values (for the CSV and the caller)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _write_summary(path: pathlib.Path, files: Sequence[pathlib.Path], rows: dict[str, dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=SUMMARY_FIELDS)
        w.writeheader()
        for f in files:
            r = rows.get(str(f))
            if r is not None:
                w.writerow({k: "" if r[k] is None else r[k] for k in SUMMARY_FIELDS})
    os.replace(tmp, path)


def read_summary(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))

