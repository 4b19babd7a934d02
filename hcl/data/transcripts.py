"""Transcript CSVs (MOSI / MOSEI label files) as text-only samples.

Columns used: video_id, clip_id, text, label, mode (train/valid/test). Text is
encoded by `hcl.features.text.TextEncoder` (the same code path as live use);
the encoded token features are cached on disk, keyed by the encoder settings
and the exact texts, so a second run loads in seconds. Audio and video are
absent (zero rows) in these samples.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from hcl.cache import default_cache_dir  # noqa: F401  (also imported from here)
from hcl.data.sample import FeatureSample
from hcl.features.config import PACKAGED_E5, FeatureSettings, TextFeatureConfig
from hcl.features.e5 import BUILD_VERSION as E5_BUILD_VERSION
from hcl.features.text import TextEncoder

SPLITS = ("train", "valid", "test")


def read_label_csv(path: str | Path) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label CSV {path} not found; pass the path to a MOSI/MOSEI label.csv")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    needed = {"video_id", "clip_id", "text", "label", "mode"}
    missing = needed - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected {sorted(needed)}")
    return rows


# what a cached file holds: bump when the encoding code changes the features it writes
# (tokenisation, pooling, dtype...), so that a cache written by older code is never read.
# Version 1 files predate the field, so it joins the key from version 2 on.
TEXT_CACHE_VERSION = 1


def _cache_key(config: TextFeatureConfig, layer: int, texts: list[str]) -> str:
    h = hashlib.sha256()
    meta = {**config.to_dict(), "layer": layer}
    if TEXT_CACHE_VERSION != 1:
        meta["cache_version"] = TEXT_CACHE_VERSION
    if config.encoder == PACKAGED_E5 and E5_BUILD_VERSION != 1:  # the dequantised encoder was built anew
        meta["e5_build"] = E5_BUILD_VERSION
    h.update(json.dumps(meta, sort_keys=True).encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()[:24]


def encode_cached(
    texts: list[str],
    config: TextFeatureConfig,
    *,
    layers: tuple[int, ...] | None = None,
    cache_dir: Path | None = None,
    encoder=None,
) -> dict[int, list[np.ndarray]]:
    """Token features per text for each requested layer, from the disk cache when possible."""
    if config.tuned_layers and encoder is None:
        raise ValueError(
            "features of a fine-tuned text encoder are not cached by settings alone: encode the layer under "
            "the tuned ones (layer=-1-tuned_layers, tuned_layers=0) and run hcl.text_top.TextTop over it"
        )
    layers = layers or (config.layer,)
    cache_dir = (cache_dir or default_cache_dir()) / "text"
    cache_dir.mkdir(parents=True, exist_ok=True)
    result: dict[int, list[np.ndarray]] = {}
    todo = []
    for layer in layers:
        f = cache_dir / f"{_cache_key(config, layer, texts)}.npz"
        if f.exists():
            with np.load(f) as z:
                data, offsets = z["data"], z["offsets"]
            result[layer] = [data[offsets[i] : offsets[i + 1]] for i in range(len(texts))]
        else:
            todo.append(layer)
    if todo:
        encoder = encoder or TextEncoder(config=config)
        encoded = encoder.encode(texts, layers=tuple(todo))
        for layer in todo:
            feats = encoded[layer]
            offsets = np.cumsum([0] + [len(x) for x in feats])
            data = np.concatenate(feats, axis=0).astype(np.float16) if feats else np.zeros((0, config.dim), np.float16)
            f = cache_dir / f"{_cache_key(config, layer, texts)}.npz"
            tmp = f.with_suffix(".tmp.npz")
            np.savez(tmp, data=data, offsets=offsets)
            os.replace(tmp, f)
            result[layer] = [data[offsets[i] : offsets[i + 1]] for i in range(len(texts))]
    return result


def load_transcripts(
    path: str | Path,
    settings: FeatureSettings = FeatureSettings(),
    *,
    cache_dir: Path | None = None,
    name: str | None = None,
) -> dict[str, list[FeatureSample]]:
    """Samples per split from a label CSV; text features from `settings.text`."""
    rows = read_label_csv(path)
    texts = [r["text"] or "" for r in rows]
    feats = encode_cached(texts, settings.text, cache_dir=cache_dir)[settings.text.layer]
    name = name or Path(path).parent.name
    out: dict[str, list[FeatureSample]] = {s: [] for s in SPLITS}
    for row, f in zip(rows, feats):
        mode = row["mode"].strip().lower()
        if mode not in out:
            continue
        out[mode].append(text_sample(f, settings, id=f"{name}/{row['video_id']}_{row['clip_id']}",
                                     label=float(row["label"]), mode=mode, meta={"dataset": name}))
    return out


def text_sample(text: np.ndarray, settings: FeatureSettings, *, id: str, label: float = 0.0, mode: str = "test",
                meta: dict | None = None) -> FeatureSample:
    """A sample of text features (L_t, D_t) alone: no audio or video rows, as transcripts train."""
    return FeatureSample(id=id, label=label, mode=mode, text=text,
                         audio=np.zeros((0, settings.audio.dim), np.float32),
                         video=np.zeros((0, settings.face.dim), np.float32), meta=meta or {})
