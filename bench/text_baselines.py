"""Text-only baselines for the model card: what HCL must beat on the same data.

    python bench/text_baselines.py --transcripts ../shared/data/mosi/label.csv \
        --transcripts ../shared/data/mosei/label.csv --tune-layers 1 --seeds 1 \
        --out bench/results/text_baselines.json

Two baselines, each on the same train split, selected on the same valid split,
the test splits scored once:

- **ridge**: the frozen encoder's last hidden state, mean-pooled over tokens, then
  ridge regression; the ridge strength is chosen on valid MAE. (The last hidden
  state is computed as the pretrained top layers over the same cached lower-layer
  states the fine-tuned runs use, so the encoder runs over the data once.)
- **finetuned**: the same encoder with its top `--tune-layers` layers fine-tuned
  end to end with a mean-pool + linear head (the layers under them frozen and
  cached, as for HCL), AdamW, L1 loss, early stopping on valid MAE. With
  `--tune-layers` equal to the encoder's depth this is full fine-tuning.

- **zero_shot** (`--zero-shot`, e5-small only): the sentimentai-py logistic head over
  the frozen encoder's mean-pooled last layer, never trained on MOSI/MOSEI; its 1-D
  map to [-3, 3] (a * score + b) is fitted on the valid split.

`--text-encoder` picks the encoder (default the live MiniLM). Prints a table and writes
JSON (read by scripts/ship_model.py for the card).

    python bench/text_baselines.py --transcripts ../shared/data/mosi/label.csv \
        --transcripts ../shared/data/mosei/label.csv --text-encoder packaged:multilingual-e5-small \
        --tune-layers 2 --skip-finetuned --zero-shot --out bench/results/text_baselines_e5.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hcl.config import ModelConfig, TrainConfig
from hcl.data.transcripts import load_transcripts
from hcl.features.config import FeatureSettings
from hcl.metrics import aggregate_seeds, format_metrics, sentiment_metrics
from hcl.model import SCORE_RANGE
from hcl.text_top import TextTop, encoder_depth, replace_tuned
from hcl.train import TrainingData, evaluate, fit_seed


class MeanPoolHead(nn.Module):
    """Mean over the present tokens, then a linear layer: the classic sentence-regression head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config  # batching reads the input widths from it
        self.linear = nn.Linear(config.text_dim, 1)

    def forward(self, text, text_mask, *_, **__) -> torch.Tensor:
        m = text_mask.unsqueeze(-1).float()  # (B, L, 1)
        pooled = (text * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, D)
        raw = self.linear(pooled).squeeze(-1)
        return raw if self.training else raw.clamp(-SCORE_RANGE, SCORE_RANGE)


@torch.no_grad()
def pooled(samples, top: TextTop, batch_size: int = 128) -> np.ndarray:
    """Mean over tokens of the frozen encoder's last hidden state, (N, D)."""
    from hcl.data.sample import collate

    out = []
    dims = (samples[0].text.shape[1], samples[0].audio.shape[1], samples[0].video.shape[1])
    for i in range(0, len(samples), batch_size):
        batch = collate(samples[i : i + batch_size], dims, max_len=64)
        h = top(batch.text, batch.text_mask)  # (B, L, D)
        m = batch.text_mask.unsqueeze(-1).float()
        out.append(((h * m).sum(1) / m.sum(1).clamp(min=1.0)).numpy())
    return np.concatenate(out)


def ridge_baseline(data: TrainingData, top: TextTop, alphas=tuple(10.0**e for e in range(-1, 6))) -> dict:
    feats = {id(data.train): pooled(data.train, top), id(data.valid): pooled(data.valid, top),
             **{id(s): pooled(s, top) for s in data.tests.values()}}
    x, y = feats[id(data.train)], np.array([s.label for s in data.train])
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs = np.c_[(x - mu) / sd, np.ones(len(x))]
    best = None
    for alpha in alphas:
        reg = alpha * np.eye(xs.shape[1])
        reg[-1, -1] = 0.0  # no penalty on the intercept
        w = np.linalg.solve(xs.T @ xs + reg, xs.T @ y)

        def score(samples, w=w):
            z = np.c_[(feats[id(samples)] - mu) / sd, np.ones(len(samples))]
            return sentiment_metrics(np.clip(z @ w, -SCORE_RANGE, SCORE_RANGE), np.array([s.label for s in samples]))

        valid = score(data.valid)
        if best is None or valid["mae"] < best["valid"]["mae"]:
            best = {"alpha": alpha, "valid": valid, "test": {n: score(s) for n, s in data.tests.items()}}
    return best


class OnTop(nn.Module):
    """A scorer of last-layer features run over the encoder's top layers: inputs are h_{L-k}."""

    def __init__(self, top: TextTop, scorer: nn.Module) -> None:
        super().__init__()
        self.top, self.scorer, self.config = top, scorer, scorer.config

    def forward(self, text, text_mask, *rest, **kw) -> torch.Tensor:
        return self.scorer(self.top(text, text_mask), text_mask, *rest, **kw)


def zero_shot_baseline(data: TrainingData, top: TextTop, dim: int) -> dict:
    from hcl.zero_shot import ZeroShotScorer

    scorer = ZeroShotScorer(ModelConfig(text_dim=dim, inputs=("text",)))
    model = OnTop(top, scorer).eval()
    scorer.scale, scorer.bias = 1.0, 0.0
    from hcl.train import predict

    scorer.fit(predict(model, data.valid), [x.label for x in data.valid])
    return {"scale": scorer.scale, "bias": scorer.bias, "head": "sentimentai-py 2.0.0 logistic 2.0 e5-small",
            "valid": evaluate(model, data.valid), "test": {n: evaluate(model, t) for n, t in data.tests.items()}}


def load(paths: list[str], settings: FeatureSettings) -> TrainingData:
    train, valid, tests = [], [], {}
    for path in paths:
        splits = load_transcripts(path, settings)
        train += splits["train"]
        valid += splits["valid"]
        tests[Path(path).parent.name] = splits["test"]
    return TrainingData(train=train, valid=valid, tests=tests)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--transcripts", action="append", required=True, metavar="CSV")
    p.add_argument("--tune-layers", type=int, default=1, help="top encoder layers fine-tuned (encoder depth = all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3, help="head learning rate")
    p.add_argument("--text-lr", type=float, default=5e-5, help="encoder-layer learning rate")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-finetuned", action="store_true", help="only the ridge baseline")
    p.add_argument("--text-encoder", default=None, metavar="NAME", help="text encoder (default: the live MiniLM)")
    p.add_argument("--zero-shot", action="store_true", help="also the sentimentai head's zero-shot row (e5-small)")
    p.add_argument("--append", action="store_true",
                   help="keep the fine-tuned runs of other seeds already in --out (seeds run as separate processes)")
    p.add_argument("--out", default="bench/results/text_baselines.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from hcl.cli import with_text_encoder

    settings = with_text_encoder(FeatureSettings(), args.text_encoder)
    result: dict = {"argv": sys.argv[1:] if argv is None else list(argv), "encoder": settings.text.encoder}

    depth = encoder_depth(settings.text)
    lower = replace(settings, text=replace_tuned(settings.text, 0, layer=depth - args.tune_layers))
    data = load(args.transcripts, lower)  # hidden states under the top layers, cached
    top = TextTop.from_encoder(settings.text, args.tune_layers).eval()
    t0 = time.perf_counter()
    ridge = ridge_baseline(data, top)
    result["ridge"] = {**ridge, "seconds": time.perf_counter() - t0}
    if args.zero_shot:
        t0 = time.perf_counter()
        result["zero_shot"] = {**zero_shot_baseline(data, top, settings.text.dim), "seconds": time.perf_counter() - t0}

    if not args.skip_finetuned:
        cfg = ModelConfig(text_dim=settings.text.dim, inputs=("text",))
        tc = TrainConfig(lr=args.lr, text_lr=args.text_lr, batch_size=args.batch_size, epochs=args.epochs,
                         patience=args.patience, seeds=tuple(args.seeds), num_threads=args.threads)
        runs = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            model, info = fit_seed(data, model_config=cfg, train_config=tc, seed=seed, progress=False,
                                   text_top=top, model=MeanPoolHead(cfg))
            runs.append({"seed": seed, "best_epoch": info["best_epoch"], "valid": evaluate(model, data.valid),
                         "test": {n: evaluate(model, s) for n, s in data.tests.items()},
                         "seconds": time.perf_counter() - t0})
        previous = json.loads(Path(args.out).read_text()) if args.append and Path(args.out).is_file() else {}
        kept = [r for r in previous.get("finetuned", {}).get("runs", []) if r["seed"] not in args.seeds]
        if kept and previous["finetuned"]["tune_layers"] != args.tune_layers:
            raise SystemExit(f"--append: {args.out} holds runs with another --tune-layers")
        runs = sorted(kept + runs, key=lambda r: r["seed"])
        result["finetuned"] = {
            "tune_layers": args.tune_layers, "encoder_depth": depth, "train_config": tc.to_dict(), "runs": runs,
            "summary": {n: aggregate_seeds([r["test"][n] for r in runs]) for n in data.tests},
        }

    print(f"{'baseline':<34} {'test':<6} metrics")
    for name, m in result["ridge"]["test"].items():
        print(f"{'ridge (alpha ' + str(result['ridge']['alpha']) + ')':<34} {name:<6} {format_metrics(m)}")
    for name, m in result.get("zero_shot", {}).get("test", {}).items():
        print(f"{'zero-shot sentimentai head':<34} {name:<6} {format_metrics(m)}")
    for run in result.get("finetuned", {}).get("runs", []):
        for name, m in run["test"].items():
            label = f"finetuned top {args.tune_layers} seed {run['seed']}"
            print(f"{label:<34} {name:<6} {format_metrics(m)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
