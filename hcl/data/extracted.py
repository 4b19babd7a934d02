"""The on-disk trimodal feature dataset that `hcl-extract` writes and `hcl-train --extracted` reads.

Layout of a dataset folder:

    manifest.json
    samples/<id>.npz          one per sample

manifest.json (UTF-8 JSON, rewritten atomically: temp file + rename):

    format          "hcl-extracted"
    format_version  1  (EXTRACTED_FORMAT_VERSION)
    features        FeatureSettings.to_dict(): step length, extractor settings (the
                    settings a checkpoint trained on this data must be served with)
    versions        package versions of the run that wrote it (hcl-live, torch,
                    torchaudio, mediapipe, faster-whisper, av, ...) and the face model's sha256
    created, updated  ISO times (UTC)
    samples         list, one entry per sample, in writing order:
        id           unique sample id (MOSI: "<video_id>_<clip_id>")
        file         path of its .npz, relative to the folder
        label        float sentiment in [-3, 3] (0.0 when unlabelled)
        mode         "train" / "valid" / "test", or "unlabelled" (no --labels)
        source       the media file it was cut from
        start, end   seconds of the segment within the source
        text         transcript used for the text features
        text_source  "labels" (the CSV's text), "recording" (a labelled recording's words)
                     or "whisper" (transcribed)
        steps        number of time steps S of audio/video
        speech_steps, face_steps, text_tokens   counts, for a quick look
    skipped         [{source, reason}] of the latest run: files/segments that failed

samples/<id>.npz (numpy.savez, no pickles):

    text        (L_t, D_t) float16   token features (L_t = 0: no transcript)
    audio       (S, D_a) float16     per-step acoustic features (hcl.features.audio)
    audio_mask  (S,) bool            True = the step holds speech
    video       (S, D_v) float16     per-step face features (hcl.features.face); zero rows where masked
    video_mask  (S,) bool            True = a face was seen in the step
    entry       0-d str              this sample's manifest entry as JSON (lets a resumed
                                     run re-adopt samples written just before an interruption)

`export_mmsa(folder, pkl)` writes a dataset's labelled samples as an MMSA-style pickle
(`hcl-extract --mmsa PKL`).

Writing is append-only and resumable: `ExtractedDatasetWriter` reopens an
existing folder, keeps what is there (re-adopting any .npz the manifest missed,
dropping entries whose .npz is gone), and `has(id)` tells the caller what to skip.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import time
import zlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from hcl.data.sample import FeatureSample
from hcl.features.config import FeatureSettings

EXTRACTED_FORMAT = "hcl-extracted"
EXTRACTED_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SAMPLES_DIR = "samples"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _safe_name(sample_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", sample_id).strip(".") or "sample"
    if name != sample_id:  # keep distinct ids distinct after sanitising
        name = f"{name}-{abs(hash_id(sample_id)):08x}"
    return name


def hash_id(text: str) -> int:
    """A stable 32-bit hash (Python's hash() is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, ensure_ascii=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_manifest(folder: str | Path) -> dict:
    """The parsed manifest.json of a dataset folder (checked for format and version)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{folder}: no {MANIFEST}; is this a folder written by hcl-extract?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); re-run hcl-extract with the same -o to rebuild it") from exc
    if data.get("format") != EXTRACTED_FORMAT:
        raise ValueError(f"{path}: not an hcl-extract manifest (format={data.get('format')!r})")
    if int(data.get("format_version", 0)) > EXTRACTED_FORMAT_VERSION:
        raise ValueError(
            f"{path}: format version {data.get('format_version')} is newer than this hcl-live "
            f"understands ({EXTRACTED_FORMAT_VERSION}); upgrade hcl-live"
        )
    return data


class ExtractedDatasetWriter:
    """Appends samples to a dataset folder; resumable. Use as a context manager (flushes on exit)."""

    def __init__(
        self,
        folder: str | Path,
        *,
        settings: FeatureSettings,
        versions: dict[str, Any] | None = None,
        flush_every: int = 20,
    ) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self.flush_every = flush_every
        (self.folder / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
        if (self.folder / MANIFEST).exists():
            manifest = read_manifest(self.folder)
            stored = FeatureSettings.from_dict(manifest["features"])
            if stored != settings:
                raise ValueError(
                    f"{self.folder} holds features made with other settings ({stored}); "
                    f"this run uses {settings}. Write to another folder (-o), or delete this one to start over."
                )
        else:
            manifest = {
                "format": EXTRACTED_FORMAT,
                "format_version": EXTRACTED_FORMAT_VERSION,
                "features": settings.to_dict(),
                "versions": dict(versions or {}),
                "created": _now(),
                "samples": [],
            }
        if versions and manifest.get("versions") != versions:
            history = manifest.setdefault("versions_history", [])
            if manifest.get("versions"):
                history.append(manifest["versions"])
            manifest["versions"] = dict(versions)
        manifest["skipped"] = []
        self._manifest = manifest
        self._entries: dict[str, dict] = {}
        for entry in manifest["samples"]:
            if (self.folder / entry["file"]).exists():
                self._entries[entry["id"]] = entry
        self._adopt_orphans()
        self._pending = 0
        self.flush()

    def _adopt_orphans(self) -> None:
        samples = self.folder / SAMPLES_DIR
        for tmp in samples.glob("*.tmp.npz"):
            tmp.unlink(missing_ok=True)
        known = {e["file"] for e in self._entries.values()}
        for path in sorted(samples.glob("*.npz")):
            rel = f"{SAMPLES_DIR}/{path.name}"
            if rel in known:
                continue
            try:
                with np.load(path) as z:
                    entry = json.loads(str(z["entry"]))
            except Exception:  # an unreadable leftover: redo that sample
                path.unlink(missing_ok=True)
                continue
            if entry.get("id") and entry["id"] not in self._entries:
                entry["file"] = rel
                self._entries[entry["id"]] = entry

    # ------------------------------------------------------------------ API
    def has(self, sample_id: str) -> bool:
        return sample_id in self._entries

    __contains__ = has

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[dict]:
        """The manifest entries of the samples held now (copies), in writing order."""
        return [dict(e) for e in self._entries.values()]

    def add(
        self,
        sample: FeatureSample,
        *,
        source: str,
        start: float,
        end: float,
        text: str,
        text_source: str,
    ) -> dict:
        """Write one sample (its .npz at once, the manifest every `flush_every` samples). Returns its entry."""
        if sample.id in self._entries:
            raise ValueError(f"sample {sample.id!r} is already in {self.folder}")
        s = self.settings
        n = len(sample.audio)
        checks = [
            (sample.audio.shape == (n, s.audio.dim), f"audio {sample.audio.shape} != ({n}, {s.audio.dim})"),
            (sample.video.shape == (n, s.face.dim), f"video {sample.video.shape} != ({n}, {s.face.dim})"),
            (sample.text.ndim == 2 and sample.text.shape[1] == s.text.dim, f"text {sample.text.shape} width != {s.text.dim}"),
        ]
        for ok, what in checks:
            if not ok:
                raise ValueError(f"sample {sample.id!r}: {what}")
        audio_mask = np.ones(n, bool) if sample.audio_mask is None else np.asarray(sample.audio_mask, bool)
        video_mask = np.ones(n, bool) if sample.video_mask is None else np.asarray(sample.video_mask, bool)
        rel = f"{SAMPLES_DIR}/{_safe_name(sample.id)}.npz"
        entry = {
            "id": sample.id,
            "file": rel,
            "label": float(sample.label),
            "mode": sample.mode,
            "source": str(source),
            "start": round(float(start), 4),
            "end": round(float(end), 4),
            "text": text,
            "text_source": text_source,
            "steps": int(n),
            "speech_steps": int(audio_mask.sum()),
            "face_steps": int(video_mask.sum()),
            "text_tokens": int(len(sample.text)),
        }
        path = self.folder / rel
        tmp = path.with_name(path.stem + ".tmp.npz")
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                text=np.asarray(sample.text, np.float16),
                audio=np.asarray(sample.audio, np.float16),
                audio_mask=audio_mask,
                video=np.asarray(sample.video, np.float16),
                video_mask=video_mask,
                entry=np.array(json.dumps(entry, ensure_ascii=False)),
            )
        os.replace(tmp, path)
        self._entries[sample.id] = entry
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()
        return entry

    def record_skipped(self, source: str, reason: str) -> None:
        self._manifest["skipped"].append({"source": str(source), "reason": reason})

    def flush(self) -> None:
        self._manifest["samples"] = list(self._entries.values())
        self._manifest["updated"] = _now()
        _write_json_atomic(self.folder / MANIFEST, self._manifest)
        self._pending = 0

    close = flush

    def __enter__(self) -> "ExtractedDatasetWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()


def load_extracted(
    folder: str | Path, *, modes: Iterable[str] | None = None
) -> tuple[list[FeatureSample], FeatureSettings]:
    """Read a dataset folder: (samples as float32 `FeatureSample`s, the `FeatureSettings` they were made with).

    modes: keep only these modes (e.g. {"train", "valid"}); None = all.
    `FeatureSample.meta` holds source, start, end, text and text_source.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    settings = FeatureSettings.from_dict(manifest["features"])
    keep = None if modes is None else set(modes)
    samples: list[FeatureSample] = []
    for entry in manifest["samples"]:
        if keep is not None and entry["mode"] not in keep:
            continue
        path = folder / entry["file"]
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: listed in the manifest but missing; re-run hcl-extract with -o {folder} to redo it"
            )
        with np.load(path) as z:
            samples.append(
                FeatureSample(
                    id=entry["id"],
                    label=float(entry["label"]),
                    mode=entry["mode"],
                    text=z["text"].astype(np.float32),
                    audio=z["audio"].astype(np.float32),
                    video=z["video"].astype(np.float32),
                    audio_mask=z["audio_mask"].astype(bool),
                    video_mask=z["video_mask"].astype(bool),
                    meta={k: entry[k] for k in ("source", "start", "end", "text", "text_source") if k in entry},
                )
            )
    return samples, settings


def export_mmsa(folder: str | Path, path: str | Path) -> dict[str, int]:
    """Write an extracted dataset as an MMSA-style pickle ({train, valid, test} splits; the layout
    `hcl.data.mmsa` reads): the same features, zero-padded per split to its longest sample.

    The features are hcl's (text: the dataset's encoder, audio: `hcl.features.audio`, vision:
    blendshapes + head pose), not MMSA's BERT / COVAREP / Facet, so a model built for MMSA's
    widths needs its input sizes changed. `text_bert` holds only the attention mask (row 1:
    1 over each sample's token rows) so that readers keep exactly those rows; steps without
    speech or a face stay as they are (zero video rows where no face was seen: MMSA has no
    per-step mask). Samples of other modes ("unlabelled") are left out. Returns the split sizes."""
    samples, _ = load_extracted(folder, modes=("train", "valid", "test"))
    settings = FeatureSettings.from_dict(read_manifest(folder)["features"])
    dims = (settings.text.dim, settings.audio.dim, settings.face.dim)
    data: dict[str, dict[str, np.ndarray]] = {}
    for split in ("train", "valid", "test"):
        part = [s for s in samples if s.mode == split]
        n = len(part)
        lt = max([len(s.text) for s in part] + [1])
        ls = max([len(s.audio) for s in part] + [1])
        text = np.zeros((n, lt, dims[0]), np.float32)
        bert = np.zeros((n, 3, lt), np.int64)
        audio = np.zeros((n, ls, dims[1]), np.float32)
        vision = np.zeros((n, ls, dims[2]), np.float32)
        for i, s in enumerate(part):
            text[i, : len(s.text)] = s.text
            bert[i, 1, : len(s.text)] = 1
            audio[i, : len(s.audio)] = s.audio
            vision[i, : len(s.video)] = s.video
        data[split] = {
            "text": text,
            "text_bert": bert,
            "audio": audio,
            "vision": vision,
            "audio_lengths": np.array([len(s.audio) for s in part], np.int64),
            "vision_lengths": np.array([len(s.video) for s in part], np.int64),
            "regression_labels": np.array([s.label for s in part], np.float32),
            "id": np.array([s.id for s in part], dtype=str),
            "raw_text": np.array([s.meta.get("text", "") for s in part], dtype=str),
        }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(data, fh, protocol=4)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return {split: len(d["id"]) for split, d in data.items()}
