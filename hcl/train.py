"""Training: AdamW + L1, early stopping on the valid split, test scored once at the end.

`fit_seed` trains one seed; `train` runs several seeds, writes per-seed
checkpoints, `results.json` (per seed + mean/std) and `results.csv` (a row per
seed and test set).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from hcl.checkpoint import save_checkpoint
from hcl.config import ModelConfig, TrainConfig
from hcl.data.sample import Batch, FeatureSample, collate
from hcl.features.config import MODALITIES, FeatureSettings
from hcl.metrics import aggregate_seeds, format_metrics, sentiment_metrics
from hcl.model import HCL
from hcl.text_top import TextTop, TunedTextHCL


@dataclass
class TrainingData:
    """Samples per split; `tests` maps a test-set name (e.g. "mosi") to its samples."""

    train: list[FeatureSample]
    valid: list[FeatureSample]
    tests: dict[str, list[FeatureSample]] = field(default_factory=dict)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _dims(config: ModelConfig) -> tuple[int, int, int]:
    return (config.text_dim, config.audio_dim, config.video_dim)


def iterate_batches(
    samples: Sequence[FeatureSample], config: ModelConfig, batch_size: int, *, shuffle: bool, rng: random.Random | None = None
):
    """Batches of padded samples. With `shuffle`, samples of similar text length are
    batched together (random chunks of 32 batches, sorted by length inside a chunk,
    batches shuffled), which roughly halves padding and time on transcript data."""
    order = list(range(len(samples)))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        rng = rng or random.Random()
        rng.shuffle(order)
        chunk = batch_size * 32
        batches = []
        for c in range(0, len(order), chunk):
            part = sorted(order[c : c + chunk], key=lambda j: len(samples[j].text))
            batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
        rng.shuffle(batches)
    for idx in batches:
        yield collate([samples[j] for j in idx], _dims(config), max_len=config.max_len)


def drop_modalities(batch: Batch, p: float, generator: torch.Generator) -> Batch:
    """Randomly mark present audio / video as absent per sample (robustness to missing inputs)."""
    if p <= 0:
        return batch
    b = batch.label.shape[0]
    keep_a = torch.rand(b, generator=generator) >= p
    keep_v = torch.rand(b, generator=generator) >= p
    batch.audio_mask = batch.audio_mask & keep_a[:, None]
    batch.video_mask = batch.video_mask & keep_v[:, None]
    batch.audio = batch.audio * batch.audio_mask[..., None]
    batch.video = batch.video * batch.video_mask[..., None]
    return batch


def present_modalities(samples: Sequence[FeatureSample]) -> tuple[str, ...]:
    """Modalities with at least one present row somewhere in `samples`."""
    def seen(m: str) -> bool:
        for s in samples:
            x, mask = getattr(s, m), getattr(s, f"{m}_mask", None)
            if len(x) and (mask is None or np.any(mask)):
                return True
        return False

    return tuple(m for m in MODALITIES if seen(m)) or MODALITIES


@torch.no_grad()
def predict(model: HCL, samples: Sequence[FeatureSample], *, batch_size: int = 256, device="cpu") -> np.ndarray:
    model.eval()
    preds = []
    for batch in iterate_batches(samples, model.config, batch_size, shuffle=False):
        preds.append(model(**batch.to(device).inputs()).float().cpu())
    return torch.cat(preds).numpy() if preds else np.zeros(0, np.float32)


def evaluate(model: HCL, samples: Sequence[FeatureSample], *, device="cpu") -> dict[str, float]:
    labels = np.array([s.label for s in samples], dtype=np.float64)
    return sentiment_metrics(predict(model, samples, device=device), labels)


_BETTER: dict[str, Callable[[float, float], bool]] = {
    "mae": lambda new, best: new < best,
    "acc2": lambda new, best: new > best,
    "corr": lambda new, best: new > best,
}
_KEY = {"mae": "mae", "acc2": "acc2_non0", "corr": "corr"}


def train_epoch(model: HCL, opt, batches, train_config: TrainConfig, gen: torch.Generator, device) -> float:
    """One pass of L1 training over `batches`; returns the mean training L1."""
    model.train()
    total, count = 0.0, 0
    for batch in batches:
        if batch.label.shape[0] < 2:  # BatchNorm needs two samples
            continue
        batch = drop_modalities(batch, train_config.modality_dropout, gen).to(device)
        loss = torch.nn.functional.l1_loss(model(**batch.inputs()), batch.label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if train_config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
        opt.step()
        total += loss.item() * batch.label.shape[0]
        count += batch.label.shape[0]
        if hasattr(batches, "set_postfix"):
            batches.set_postfix(loss=f"{total / max(count, 1):.3f}")
    return total / max(count, 1)


def fit_seed(
    data: TrainingData,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    seed: int,
    progress: bool = True,
    log: Callable[[str], None] = print,
    text_top: TextTop | None = None,
    model: torch.nn.Module | None = None,
) -> tuple[HCL | TunedTextHCL, dict]:
    """Train one seed; returns the model restored to its best valid epoch, and a history.

    With `text_top` (pretrained top encoder layers; the samples' text is then the
    hidden state under them) a copy of those layers trains jointly with HCL at
    `train_config.text_lr`, and a `TunedTextHCL` is returned. `model`: train this
    module (same call as HCL, e.g. a baseline) instead of a fresh HCL.
    """
    set_seed(seed)
    device = resolve_device(train_config.device)
    model = model if model is not None else HCL(config=model_config)
    groups = [{"params": list(model.parameters()), "lr": train_config.lr}]
    if text_top is not None:
        top = copy.deepcopy(text_top)
        groups.append({"params": list(top.parameters()), "lr": train_config.text_lr})
        model = TunedTextHCL(model, top)
    model = model.to(device)
    opt = torch.optim.AdamW(groups, lr=train_config.lr, weight_decay=train_config.weight_decay)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    key, better = _KEY[train_config.select_metric], _BETTER[train_config.select_metric]
    best_value = math.inf if train_config.select_metric == "mae" else -math.inf
    best_state, best_epoch, stale = None, -1, 0
    history = []
    steps_per_epoch = math.ceil(len(data.train) / train_config.batch_size)
    interrupted = False
    try:
        for epoch in range(1, train_config.epochs + 1):
            t0 = time.perf_counter()
            bar = tqdm(
                iterate_batches(data.train, model_config, train_config.batch_size, shuffle=True, rng=rng),
                total=steps_per_epoch,
                desc=f"seed {seed} epoch {epoch}",
                leave=False,
                disable=not progress,
            )
            train_l1 = train_epoch(model, opt, bar, train_config, gen, device)
            valid = evaluate(model, data.valid, device=device)
            history.append({"epoch": epoch, "train_l1": train_l1, "valid": valid, "seconds": time.perf_counter() - t0})
            improved = better(valid[key], best_value)
            if improved:
                best_value, best_epoch, stale = valid[key], epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
            log(
                f"seed {seed} epoch {epoch:3d} train L1 {train_l1:.4f} | valid {format_metrics(valid)}"
                f"{'  *' if improved else ''} ({history[-1]['seconds']:.1f}s)"
            )
            if stale >= train_config.patience:
                break
    except KeyboardInterrupt:  # Ctrl-C: keep the best epoch so far, then stop
        interrupted = True
        log(f"seed {seed}: interrupted; keeping the best epoch so far ({best_epoch})")
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, {"best_epoch": best_epoch, "best_valid": {key: best_value}, "history": history, "interrupted": interrupted}


def train(
    data: TrainingData,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    features: FeatureSettings,
    out_dir: str | Path,
    progress: bool = True,
    meta: dict | None = None,
    log: Callable[[str], None] = print,
    text_top: TextTop | None = None,
    init: HCL | None = None,
) -> dict:
    """Train every seed, score each test set once with the selected model, write results.

    `features`: the settings the samples were made with. With `text_top` those are
    the hidden states under the tuned layers; checkpoints then record the live
    settings (last layer, `tuned_layers = k`) and carry the fine-tuned layers.
    `init`: every seed starts from a copy of these weights (and `text_top`'s) instead
    of a fresh HCL (staged training).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    present = present_modalities(data.train)
    if init is None and present != model_config.inputs:
        log(f"training data has {list(present)} only: the model consumes just those")
        model_config = replace(model_config, inputs=present)
    if train_config.num_threads:
        torch.set_num_threads(train_config.num_threads)
    device = resolve_device(train_config.device)
    saved_features = features
    if text_top is not None:
        saved_features = replace(features, text=replace(features.text, layer=-1, tuned_layers=text_top.k))
    runs = []
    for seed in train_config.seeds:
        t0 = time.perf_counter()
        model, info = fit_seed(
            data, model_config=model_config, train_config=train_config, seed=seed, progress=progress, log=log,
            text_top=text_top, model=copy.deepcopy(init).train() if init is not None else None,
        )
        valid = evaluate(model, data.valid, device=device)
        tests = {name: evaluate(model, samples, device=device) for name, samples in data.tests.items()}
        for name, m in tests.items():
            log(f"seed {seed} TEST {name}: {format_metrics(m)}")
        metrics = {"valid": valid, "test": tests, "best_epoch": info["best_epoch"]}
        save_checkpoint(
            out / f"seed{seed}.pt",
            model.hcl if text_top is not None else model,
            text_top=model.top if text_top is not None else None,
            features=saved_features,
            metrics=metrics,
            meta={"seed": seed, "train_config": train_config.to_dict(), **(meta or {})},
        )
        runs.append({"seed": seed, **metrics, "seconds": time.perf_counter() - t0, "history": info["history"]})
        if info["interrupted"]:
            log("interrupted: the remaining seeds are skipped; results below cover the seeds done")
            break
    summary = {
        name: aggregate_seeds([r["test"][name] for r in runs]) for name in data.tests
    }
    summary["valid"] = aggregate_seeds([r["valid"] for r in runs])
    best = min(runs, key=lambda r: r["valid"]["mae"])
    result = {
        "model_config": model_config.to_dict(),
        "train_config": train_config.to_dict(),
        "features": saved_features.to_dict(),
        "sizes": {"train": len(data.train), "valid": len(data.valid), **{k: len(v) for k, v in data.tests.items()}},
        "runs": runs,
        "summary": summary,
        "best_seed_on_valid": best["seed"],
        **({"meta": meta} if meta else {}),
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))
    with (out / "results.csv").open("w", newline="") as fh:
        writer = None
        for r in runs:
            for name, m in r["test"].items():
                row = {"seed": r["seed"], "test_set": name, "best_epoch": r["best_epoch"], **m}
                if writer is None:
                    writer = csv.DictWriter(fh, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
    return result
