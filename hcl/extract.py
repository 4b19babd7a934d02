"""hcl-extract: raw videos/audio (+ a label CSV) -> a trimodal feature dataset for hcl-train.

    hcl-extract VIDEOS_DIR --labels mosi/label.csv -o data/mosi_feats
    hcl-extract talk1.mp4 talk2.webm -o data/unlabelled
    hcl-extract recordings/ -o data/mine        # session folders with labels.json

Inputs are media files and/or folders (searched recursively for
mp4/webm/mkv/mov/avi/wav/flac/mp3/ogg/m4a).

Labelled recordings: a session folder that `hcl-live --record` wrote, with a
`labels.json` beside its files (spans with a sentiment in [-3, 3]; the schema is
in `hcl.data.recordings`), found among the inputs (recursively), gives one
sample per span: the span's sound from audio.wav, its frames from video.mp4,
its words from the recorded transcript (words whose middle lies in the span;
Whisper only if the folder has no words file), id "<folder>_<start>-<end>", the
span's mode or, unmarked, the per-recording time split of
`hcl.data.recordings.assign_modes` (last 20 % valid). Their media files are not
also taken as unlabelled files. Spans that changed since an earlier run into
the same -o give new samples, and the old ones are reported as stale (write
to a new folder to drop them).

With --labels (MOSI form: video_id, clip_id, label, mode, text, start, end):
each row is one sample with id "<video_id>_<clip_id>". A file named
"<video_id>_<clip_id>.<ext>" (or "<video_id>/<clip_id>.<ext>", MMSA's Raw
layout) is taken whole as that clip; otherwise "<video_id>.<ext>" is cut at
the row's start/end seconds. The transcript is the row's text; a row with empty text (or
--text whisper) is transcribed with faster-whisper. Rows without a media file
are counted and reported; media files that no row names are ignored.

Without --labels every file is one sample (id = file name without extension)
with label 0.0 and mode "unlabelled": such a dataset can be scored or
inspected, but hcl-train needs "train"/"valid" modes, so training sets need
--labels. Transcripts then come from faster-whisper.

Memory does not grow with a file's length: files longer than
`LOAD_AUDIO_SECONDS` are never decoded whole (their audio is streamed through
the feature extractor) and a span longer than `TRANSCRIBE_SECONDS` is transcribed
that much at a time.

The output folder (format: `hcl.data.extracted`) is resumable: run the same
command again after an interruption and finished samples are skipped. A file
that cannot be read is reported by name and skipped; the rest goes on. The
exit code is 0 when the dataset holds at least one sample, 1 when it is empty,
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Sequence

from hcl.arg_types import device_name, existing_file, non_negative_int, output_folder, positive_float
from hcl.features.config import SPEECH_ENGINES, FeatureSettings
from hcl.features.face import packaged_face_model
from hcl.features.media import MEDIA_EXTENSIONS, MediaError, read_media

LOAD_AUDIO_SECONDS = 600.0  # shorter files: decode the audio once and cut every segment from it
# longer spans go to Whisper in pieces this long (its memory grows with the input); spans up
# to this length are transcribed in one call, exactly as before (Whisper's 30 s windows are
# laid from the start of its input, so another cut can change a word or two)
TRANSCRIBE_SECONDS = 600.0


@dataclass(frozen=True)
class Job:
    """One sample to make: a span of a media file."""

    id: str
    path: Path
    start: float
    end: float | None  # None = to the end of the file
    label: float
    mode: str
    text: str | None  # None = transcribe
    text_source: str = "labels"  # where `text` came from: "labels" (the CSV) or "recording" (its words)


def find_media(inputs: Sequence[str]) -> list[Path]:
    """Media files named directly or found (recursively) in folders, sorted, without duplicates."""
    found: dict[Path, None] = {}
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in MEDIA_EXTENSIONS:
                    found.setdefault(f, None)
        elif p.exists():
            found.setdefault(p, None)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return list(found)


def plan_recording_jobs(recordings: list[Path]) -> tuple[list[Job], list[str]]:
    """(one job per labelled span of each session folder, problems: folders whose labels cannot be used)."""
    # torch-heavy (~1.3 s to import): imported once the arguments are parsed, so `hcl-extract --help` stays quick
    from hcl.data.recordings import LabelsError, assign_modes, read_labels as read_span_labels, read_words, span_text

    jobs, problems = [], []
    names = [r.name for r in recordings]
    for folder in recordings:
        name = folder.name if names.count(folder.name) == 1 else f"{folder.parent.name}_{folder.name}"
        try:
            spans = assign_modes(read_span_labels(folder))
            words = read_words(folder)
        except (LabelsError, OSError) as exc:
            problems.append(str(exc))
            continue
        for s in spans:
            text = None if words is None else span_text(words, s.start, s.end)
            jobs.append(Job(f"{name}_{s.start:.2f}-{s.end:.2f}", folder, s.start, s.end, s.label, str(s.mode), text,
                            "recording" if text is not None else "labels"))
    return jobs, problems


def read_labels(path: str | Path) -> list[dict]:
    """Rows of a MOSI-style label CSV (needs video_id, clip_id, label; mode, text, start, end optional)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: label CSV not found")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        missing = {"video_id", "clip_id", "label"} - cols
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {sorted(missing)}; expected the MOSI form "
                "video_id,clip_id,text,label,mode,start,end"
            )
        return list(reader)


def _float(value: str | None) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except ValueError:
        return None


def plan_jobs(
    files: list[Path], rows: list[dict] | None, *, text_from: str
) -> tuple[list[Job], list[str], list[Path]]:
    """(jobs, ids of labelled rows without media, media files no row names)."""
    if rows is None:
        seen: set[str] = set()
        jobs = []
        for f in files:
            sid = f.stem if f.stem not in seen else f"{f.stem}_{f.suffix.lstrip('.')}"
            seen.add(sid)
            jobs.append(Job(sid, f, 0.0, None, 0.0, "unlabelled", None))
        return jobs, [], []
    by_stem: dict[str, Path] = {}
    for f in files:
        by_stem.setdefault(f.stem, f)
    for f in files:  # MMSA's Raw layout: <video_id>/<clip_id>.mp4
        by_stem.setdefault(f"{f.parent.name}_{f.stem}", f)
    jobs, missing, used = [], [], set()
    for row in rows:
        vid, cid = row["video_id"].strip(), str(row["clip_id"]).strip()
        sid = f"{vid}_{cid}"
        label = _float(row.get("label"))
        if label is None:
            missing.append(f"{sid} (no numeric label)")
            continue
        text = (row.get("text") or "").strip()
        text = text if (text and text_from == "labels") else None
        mode = (row.get("mode") or "train").strip() or "train"
        if sid in by_stem:
            path, start, end = by_stem[sid], 0.0, None
        elif vid in by_stem and _float(row.get("start")) is not None and _float(row.get("end")) is not None:
            path, start, end = by_stem[vid], float(row["start"]), float(row["end"])
        else:
            missing.append(sid)
            continue
        used.add(path)
        jobs.append(Job(sid, path, start, end, label, mode, text))
    # one pass per file: keep each file's jobs together, in time order
    order = {p: i for i, p in enumerate(files)}
    jobs.sort(key=lambda j: (order[j.path], j.start))
    return jobs, missing, [f for f in files if f not in used]


def package_versions() -> dict[str, str]:
    out = {}
    for name in ("hcl-live", "torch", "torchaudio", "numpy", "av", "mediapipe", "faster-whisper", "ctranslate2", "transformers"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hcl-extract",
        description="Extract per-step text/audio/face features from videos into a dataset for hcl-train.",
        epilog="Without --labels, media files outside labelled recordings get mode 'unlabelled' (not usable for training). Re-run to resume.",
    )
    p.add_argument("inputs", nargs="+",
                   help="media files and/or folders; session folders (hcl-live --record) with a labels.json are labelled recordings")
    p.add_argument("-o", "--out", required=True, type=output_folder, help="output dataset folder (created; resumed if it exists)")
    p.add_argument("--labels", type=existing_file, help="MOSI-style label CSV: video_id,clip_id,text,label,mode,start,end")
    p.add_argument("--text", choices=["labels", "whisper"], default="labels",
                   help="transcripts from the label CSV (default; Whisper where empty) or always from Whisper")
    p.add_argument("--asr", choices=SPEECH_ENGINES, default=None,
                   help="speech recogniser for clips without a transcript: whisper or moonshine (default: the settings')")
    p.add_argument("--device", default="cpu", type=device_name, help="torch device for audio features and the text encoder")
    p.add_argument("--threads", type=non_negative_int, default=0, help="CPU threads for torch and Whisper (0 = default)")
    p.add_argument("--step-seconds", type=positive_float, default=None, help="step length (default 0.5; new datasets only)")
    p.add_argument("--face-fps", type=positive_float, default=None, help="video frames analysed per second (default 10)")
    p.add_argument("--mmsa", metavar="PKL",
                   help="also write the dataset's train/valid/test samples as an MMSA-style pickle "
                        "(hcl's feature widths, not MMSA's BERT/COVAREP/Facet)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="show the libraries' start-up output (model loading bars, mediapipe/TFLite lines)")
    return p


def _settings_for(args, out: Path):
    # torch-heavy (~1.3 s to import): imported once the arguments are parsed, so `hcl-extract --help` stays quick
    from hcl.data.extracted import MANIFEST, read_manifest

    if (out / MANIFEST).exists():
        settings = FeatureSettings.from_dict(read_manifest(out)["features"])
    else:
        settings = FeatureSettings()
    wanted = settings
    if args.step_seconds is not None:
        wanted = replace(wanted, step_seconds=args.step_seconds)
    if args.face_fps is not None:
        wanted = replace(wanted, face=replace(wanted.face, frames_per_second=args.face_fps))
    return wanted


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    # torch-heavy (~1.3 s to import): imported once the arguments are parsed, so `hcl-extract --help` stays quick
    from hcl.data.recordings import find_recordings, open_recording

    try:
        recordings = find_recordings(args.inputs)
        # a recording's own media files are its spans, not unlabelled files
        files = [f for f in find_media(args.inputs) if not any(r in f.parents for r in recordings)]
        rows = read_labels(args.labels) if args.labels else None
        settings = _settings_for(args, out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"hcl-extract: {exc}", file=sys.stderr)
        return 2
    jobs, missing, unused = plan_jobs(files, rows, text_from=args.text) if files or not recordings else ([], [], [])
    recording_jobs, label_problems = plan_recording_jobs(recordings)
    jobs += recording_jobs
    if recordings and not recording_jobs and not jobs:
        for problem in label_problems:
            print(f"hcl-extract: {problem}", file=sys.stderr)
        return 2
    if args.verbose:
        os.environ["HCL_NATIVE_LOGS"] = "1"  # read by hcl.features.face
    else:  # set before transformers is imported: it reads the switch then
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    # imported here, after the switches above are set (transformers reads them when first imported),
    # and torch-heavy (~1.3 s): `hcl-extract --help` and argument errors stay quick
    import torch
    from tqdm.auto import tqdm

    from hcl.data.extracted import ExtractedDatasetWriter
    from hcl.data.sample import build_sample
    from hcl.features.segment import SegmentFeaturizer
    from hcl.features.speech_engine import SpeechEngine, make_engine
    from hcl.features.text import TextEncoder

    if args.threads:
        torch.set_num_threads(args.threads)
    featurizer = SegmentFeaturizer(settings=settings, device=args.device)
    versions = package_versions()
    versions["face_model_sha256"] = _file_sha256(featurizer_face_model(settings))
    versions["speech_model"] = settings.speech.model
    try:
        writer = ExtractedDatasetWriter(out, settings=settings, versions=versions)
    except ValueError as exc:
        print(f"hcl-extract: {exc}", file=sys.stderr)
        return 2
    text_encoder = TextEncoder(config=settings.text, device=args.device)
    transcriber: SpeechEngine | None = None

    done_before = sum(1 for j in jobs if writer.has(j.id))
    todo = [j for j in jobs if not writer.has(j.id)]
    written, failed = 0, []  # failed: (source, reason)
    bar = tqdm(total=len(todo), desc="hcl-extract", unit="clip", disable=args.no_progress, file=sys.stderr)
    try:
        by_file: dict[Path, list[Job]] = {}
        for j in todo:
            by_file.setdefault(j.path, []).append(j)
        for path, file_jobs in by_file.items():
            try:
                if path.is_dir():  # a labelled recording: video.mp4 + audio.wav
                    clip = open_recording(path, load_audio_seconds=LOAD_AUDIO_SECONDS)
                else:
                    clip = read_media(path, load_audio=False)
                    if clip.has_audio and clip.duration <= LOAD_AUDIO_SECONDS:
                        clip = read_media(path)
            except MediaError as exc:
                failed.append((str(path), str(exc)))
                writer.record_skipped(str(path), str(exc))
                bar.write(f"skipped: {exc}", file=sys.stdout)
                bar.update(len(file_jobs))
                continue
            for job in file_jobs:
                bar.set_postfix_str(job.id[-24:])
                try:
                    end = clip.duration if job.end is None else min(job.end, clip.duration)
                    if job.start >= clip.duration or end - job.start < 0.05:
                        raise ValueError(
                            f"segment {job.start:.2f}-{job.end} s lies outside the file ({clip.duration:.2f} s); check the label CSV"
                        )
                    features = featurizer.featurize(clip, job.start, end)
                    text, source = job.text, job.text_source
                    if text is None:
                        if transcriber is None:
                            config = settings.speech if args.asr is None else replace(settings.speech, engine=args.asr)
                            transcriber = make_engine(config, cpu_threads=args.threads)
                        text = transcribe_span(transcriber, clip, job.start, end)
                        source = transcriber.name  # the engine that heard it: "whisper" | "moonshine"
                    (text_feats,) = text_encoder.encode([text])
                    sample = build_sample(features, text_feats, id=job.id, label=job.label, mode=job.mode)
                    writer.add(sample, source=str(path), start=job.start, end=end, text=text, text_source=source)
                    written += 1
                except Exception as exc:  # one bad segment must not stop the run
                    where = f"{path} [{job.id}]"
                    failed.append((where, f"{type(exc).__name__}: {exc}"))
                    writer.record_skipped(where, f"{type(exc).__name__}: {exc}")
                    bar.write(f"skipped {where}: {type(exc).__name__}: {exc}", file=sys.stdout)
                bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        writer.flush()
        print(f"\ninterrupted: {written} new sample(s) saved in {out}; run the same command again to resume")
        return 130
    finally:
        bar.close()
        writer.flush()
        featurizer.close()

    total = len(writer)
    if args.mmsa and total:
        # torch-heavy (~1.3 s to import): as in main()
        from hcl.data.extracted import export_mmsa

        sizes = export_mmsa(out, args.mmsa)
        print(f"hcl-extract: wrote {args.mmsa} (MMSA layout; train/valid/test = "
              f"{sizes['train']}/{sizes['valid']}/{sizes['test']})")
    planned = {j.id for j in jobs}
    stale = [e["id"] for e in writer.entries() if Path(e["source"]) in set(recordings) and e["id"] not in planned]
    print(f"hcl-extract: wrote {written} new sample(s) to {out} ({total} in the dataset, {done_before} already done before)")
    if failed:
        print(f"skipped {len(failed)} file(s)/segment(s):")
        for where, why in failed:
            print(f"  {why}" if why.startswith(where) else f"  {where}: {why}")
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        print(f"{len(missing)} labelled clip(s) have no media file among the inputs: {shown}")
    if unused:
        shown = ", ".join(p.name for p in unused[:5]) + (" ..." if len(unused) > 5 else "")
        print(f"{len(unused)} media file(s) not named in --labels were ignored: {shown}")
    for problem in label_problems:
        print(f"labels not used: {problem}")
    if stale:
        shown = ", ".join(stale[:5]) + (" ..." if len(stale) > 5 else "")
        print(f"{len(stale)} sample(s) in {out} come from spans no longer in the recordings' labels "
              f"(changed or removed): {shown}; extract into a new folder (-o) to leave them out")
    if rows is None and written and any(j.mode == "unlabelled" for j in jobs):
        print("note: no --labels, so media files outside labelled recordings have mode 'unlabelled' "
              "and label 0.0 (not usable by hcl-train)")
    return 0 if total > 0 else 1


def transcribe_span(transcriber, clip, start: float, end: float) -> str:
    """The words of [start, end) of `clip`, the span sent to Whisper in pieces of at most
    `TRANSCRIBE_SECONDS` (a word across a piece boundary may be cut; pieces of 10 minutes
    make that rare) so that a long file needs no more memory than a short one."""
    words = []
    t = start
    while t < end - 0.05:
        t1 = min(end, t + TRANSCRIBE_SECONDS)
        if end - t1 < 1.0:  # no piece shorter than a second
            t1 = end
        words += [w.text for w in transcriber.transcribe(clip.audio_span(t, t1))]
        t = t1
    return " ".join(words)


def featurizer_face_model(settings) -> Path:
    return Path(settings.face.model_path) if settings.face.model_path else packaged_face_model()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
