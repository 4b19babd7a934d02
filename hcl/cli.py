"""Command-line entry points: hcl-train, hcl-eval, hcl-info, hcl-extract."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from hcl.arg_types import (
    below_one, device_name, existing_file, non_negative_float, non_negative_int, output_folder, positive_int, share,
)
from hcl.config import ModelConfig, TrainConfig
from hcl.features.config import MODALITIES, PACKAGED_E5, FeatureSettings

# The commands' working parts (hcl.train, hcl.checkpoint, hcl.model, the data loaders, hcl.text_top,
# hcl.features.text) import torch (~1.3 s) and some transformers too: each is imported inside the
# function that uses it, marked "heavy", so `--help` and argument errors answer in ~0.1 s.
# Argument types and config dataclasses are light and imported above.

# the folder holding the datasets (mosi/label.csv, ...): `--data DIR`, else this variable
DATA_ENV = "HCL_DATA"


def data_folder(explicit: str | None = None) -> Path:
    """The data folder: `explicit` (a --data option), else $HCL_DATA; a clear error when
    neither is given or the folder does not exist."""
    value = explicit or os.environ.get(DATA_ENV)
    if not value:
        raise SystemExit(f"error: no data folder: pass --data DIR or set {DATA_ENV}=DIR "
                         "(the folder holding mosi/label.csv), or name a dataset with --transcripts CSV")
    path = Path(value).expanduser()
    if not path.is_dir():
        origin = "--data" if explicit else DATA_ENV
        raise SystemExit(f"error: {origin}={value}: no such folder (pass the folder holding mosi/label.csv)")
    return path


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (repeatable; splits are taken from each source)")
    g.add_argument("--transcripts", action="append", default=[], metavar="CSV", type=existing_file,
                   help="MOSI/MOSEI-style label CSV (video_id, clip_id, text, label, mode); text only")
    g.add_argument("--mmsa", action="append", default=[], metavar="PKL", type=existing_file,
                   help="MMSA feature pickle (aligned_50.pkl / unaligned_50.pkl)")
    g.add_argument("--trust-pickle", action="store_true",
                   help="load MMSA pickles with plain pickle (only for files you trust)")
    g.add_argument("--extracted", action="append", default=[], metavar="DIR", help="dataset written by hcl-extract")
    g.add_argument("--synthetic", type=non_negative_int, default=0, metavar="N", help="synthetic trimodal task with N train samples")
    g.add_argument("--text-layer", type=int, default=None, help="encoder hidden state used as text features")
    g.add_argument("--text-encoder", default=None, metavar="NAME",
                   help="text encoder: packaged:all-MiniLM-L6-v2 (default, the live one), "
                        "packaged:all-mpnet-base-v2, a local folder or a hub name")
    g.add_argument("--eval-transcripts", action="append", default=[], metavar="CSV", type=existing_file,
                   help="label CSV whose test split is scored at the end; none of it is trained or selected on")


def _fail(exc: BaseException) -> SystemExit:
    """A clear one-line error for the user instead of a traceback."""
    return SystemExit(f"error: {exc}")


def _load_checkpoint_or_exit(path):
    """The checkpoint at `path` (None = the shipped live model), or exit with a clear message."""
    # heavy (torch; see the note at the top): imported only when a command runs
    from hcl.checkpoint import CheckpointError, default_live_checkpoint, load_checkpoint

    try:
        return load_checkpoint(path or default_live_checkpoint())
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        raise _fail(exc) from None


def with_text_encoder(settings, name: str | None):
    """Settings whose text comes from encoder `name` (its hidden size read from its config)."""
    if not name:
        return settings
    # heavy (torch; see the note at the top): imported only when a command runs
    from hcl.features.text import encoder_hidden_size

    try:
        dim = encoder_hidden_size(name)
    except (OSError, RuntimeError, ValueError) as exc:
        raise SystemExit(f"error: --text-encoder {name}: {exc}") from None
    return replace(settings, text=replace(settings.text, encoder=name, dim=dim))


def soften_labels(train: list, targets_path: str, weight: float) -> list:
    """Train samples whose label is (1 - weight) * label + weight * teacher score.

    Distillation with an L1 loss: the student fits a mix of the gold label and the
    teacher's score (`hcl-eval TEACHER --split train --predictions FILE` writes them,
    {sample id: score}).
    Valid and test keep their gold labels, so selection and scores are unchanged.
    """
    if not 0.0 <= weight <= 1.0:
        raise SystemExit(f"--soft-weight must be in [0, 1], got {weight}")
    targets = json.loads(Path(targets_path).read_text())
    missing = [s.id for s in train if s.id not in targets]
    if missing:
        raise SystemExit(f"--soft-targets {targets_path} has no score for {len(missing)} train samples "
                         f"(e.g. {missing[0]}): write it from the same training data")
    return [replace(s, label=(1.0 - weight) * s.label + weight * float(targets[s.id])) for s in train]


def base_text_settings(settings, tuned_layers: int):
    """Settings whose text is the hidden state under the top `tuned_layers` encoder layers."""
    # heavy (torch; see the note at the top): imported only when a command runs
    from hcl.text_top import encoder_depth, replace_tuned

    if tuned_layers <= 0:
        return settings
    depth = encoder_depth(settings.text)
    if tuned_layers > depth:
        raise SystemExit(f"--tune-text-layers {tuned_layers}: the text encoder has only {depth} layers")
    return replace(settings, text=replace_tuned(settings.text, 0, layer=depth - tuned_layers))


def _source_name(path: str) -> str:
    p = Path(path)
    return p.parent.name if p.is_file() or p.suffix else p.name


def load_source(kind: str, path: str, settings, *, trust_pickle: bool = False) -> tuple[dict, object]:
    """Samples per split of one data source, and the feature settings they were made with."""
    if kind == "transcripts":
        # heavy (torch; see the note at the top): each loader imported only when its kind is named
        from hcl.data.transcripts import load_transcripts

        return load_transcripts(path, settings), settings
    if kind == "mmsa":
        # heavy (torch; see the note at the top)
        from hcl.data.mmsa import load_mmsa

        return load_mmsa(path, trust=trust_pickle), settings
    if kind == "extracted":
        # heavy (torch; see the note at the top)
        from hcl.data.extracted import load_extracted

        samples, ds_settings = load_extracted(path)
        splits: dict = {}
        for s in samples:
            splits.setdefault(s.mode, []).append(s)
        return splits, ds_settings
    raise ValueError(f"unknown data source kind {kind!r}")


def _sources(args) -> list[tuple[str, str]]:
    return [("transcripts", p) for p in args.transcripts] + [("mmsa", p) for p in args.mmsa] + [
        ("extracted", p) for p in args.extracted
    ]


def load_data(args, settings):
    """Build TrainingData + the feature settings actually used (from the sources' manifests)."""
    # heavy (torch; see the note at the top): imported only when a command runs
    from hcl.train import TrainingData

    train, valid, tests = [], [], {}
    if args.text_layer is not None:
        settings = replace(settings, text=replace(settings.text, layer=args.text_layer))
    sources = [(_source_name(path), *load_source(kind, path, settings, trust_pickle=args.trust_pickle))
               for kind, path in _sources(args)]
    if args.synthetic:
        # heavy (torch; see the note at the top): only --synthetic needs it
        from hcl.data.synthetic import synthetic_splits

        n = args.synthetic
        sources.append(("synthetic", synthetic_splits(n, max(n // 5, 64), max(n // 5, 64), seed=0), settings))
    for name, splits, used in sources:
        settings = used  # an extracted dataset brings the settings its features were made with
        train.extend(splits.get("train", []))
        valid.extend(splits.get("valid", []))
        if splits.get("test"):
            tests[name] = splits["test"]
    for path in getattr(args, "eval_transcripts", []):
        splits, _ = load_source("transcripts", path, settings)
        tests[_source_name(path)] = splits.get("test", [])
    if not train:
        raise SystemExit("no training samples: give --transcripts, --mmsa, --extracted or --synthetic")
    if not valid:
        raise SystemExit("no valid split in the data: model selection needs one (mode == 'valid')")
    return TrainingData(train=train, valid=valid, tests=tests), settings


def infer_dims(samples) -> dict[str, int]:
    s = samples[0]
    longest = max(max(len(x.text), len(x.audio), len(x.video)) for x in samples)
    return {
        "text_dim": s.text.shape[1],
        "audio_dim": s.audio.shape[1],
        "video_dim": s.video.shape[1],
        "max_len": max(64, int(longest)),
    }


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (paper defaults; ablations of Tables 3-6)")
    g.add_argument("--no-cowa", action="store_true", help="ablation: w/o COWA")
    g.add_argument("--kmeans-iters", type=non_negative_int, default=10, help="0 = fixed channel groups (w/o K-Means)")
    g.add_argument("--no-collaborative", action="store_true", help="ablation: w/o audio-video collaboration")
    g.add_argument("--no-text-guidance", action="store_true", help="ablation: w/o text guidance")
    g.add_argument("--guide", choices=list(MODALITIES), default="text")
    g.add_argument("--layers", type=positive_int, default=3, help="guidance layers N")
    g.add_argument("--dropout", type=below_one, default=0.1)
    g.add_argument("--text-prior", choices=["none", "sentimentai"], default="none",
                   help="sentimentai: the score adds a learned a * s + b, s the packaged zero-shot sentiment head "
                        "over the mean text features (needs --text-encoder packaged:multilingual-e5-small)")


def train_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hcl-train", description="Train HCL; select on valid, score test once.")
    _add_data_args(p)
    _model_args(p)
    g = p.add_argument_group("training")
    g.add_argument("--out", required=True, type=output_folder, help="output folder (checkpoints, results.json, results.csv)")
    g.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    g.add_argument("--epochs", type=positive_int, default=100)
    g.add_argument("--batch-size", type=positive_int, default=64)
    g.add_argument("--lr", type=non_negative_float, default=1e-4,
                   help="learning rate (0 keeps the weights: with --init, the checkpoint as it is)")
    g.add_argument("--tune-text-layers", type=non_negative_int, default=0, metavar="K",
                   help="fine-tune the top K text-encoder layers with HCL (0 = frozen encoder); "
                        "the layers under them are encoded once and cached")
    g.add_argument("--text-lr", type=non_negative_float, default=3e-5, help="learning rate of the fine-tuned text-encoder layers")
    g.add_argument("--soft-targets", metavar="JSON", default=None, type=existing_file,
                   help="distil: teacher scores per train sample id (hcl-eval TEACHER --split train --predictions FILE)")
    g.add_argument("--soft-weight", type=share, default=0.5,
                   help="share of the teacher score in each train target (with --soft-targets)")
    g.add_argument("--init", metavar="CKPT", default=None,
                   help="start from this checkpoint's weights (staged training, e.g. MOSEI+MOSI then MOSI); "
                        "its model config and text layers are kept")
    g.add_argument("--weight-decay", type=non_negative_float, default=1e-2)
    g.add_argument("--patience", type=non_negative_int, default=10)
    g.add_argument("--modality-dropout", type=below_one, default=0.0)
    g.add_argument("--select", choices=["mae", "acc2", "corr"], default="mae")
    g.add_argument("--threads", type=non_negative_int, default=0)
    g.add_argument("--device", default="auto", type=device_name, help="torch device: auto, cpu, cuda or cuda:N")
    g.add_argument("--no-progress", action="store_true")
    g.add_argument("--no-test", action="store_true",
                   help="do not score the test splits (compare runs on valid; score the chosen one with hcl-eval)")
    args = p.parse_args(argv)

    # heavy (torch; see the note at the top): imported only when a command runs
    import torch

    from hcl.metrics import format_metrics
    from hcl.train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = base_text_settings(with_text_encoder(FeatureSettings(), args.text_encoder), args.tune_text_layers)
    if args.tune_text_layers and args.text_layer is not None:
        raise SystemExit("--tune-text-layers sets the text layer itself; drop --text-layer")
    data, settings = load_data(args, settings)
    if args.soft_targets:
        data = replace(data, train=soften_labels(data.train, args.soft_targets, args.soft_weight))
    if args.no_test:
        data = replace(data, tests={})
    text_top = init = None
    if args.init:
        init = _load_checkpoint_or_exit(args.init)
        if init.features.text.tuned_layers != args.tune_text_layers:
            raise SystemExit(f"--init {args.init} fine-tuned {init.features.text.tuned_layers} text layers: "
                             f"pass --tune-text-layers {init.features.text.tuned_layers}")
    if args.tune_text_layers:
        # heavy (torch; see the note at the top): only --tune-text-layers needs it
        from hcl.text_top import TextTop, text_top_from_state

        text_top = (text_top_from_state(init.features.text, init.text_top) if init is not None
                    else TextTop.from_encoder(settings.text, args.tune_text_layers))
    model_config = init.model_config if init is not None else ModelConfig(
        **infer_dims(data.train + data.valid),
        use_cowa=not args.no_cowa,
        kmeans_iters=args.kmeans_iters,
        collaborative=not args.no_collaborative,
        text_guidance=not args.no_text_guidance,
        guide=args.guide,
        guidance_layers=args.layers,
        dropout=args.dropout,
        text_prior=args.text_prior,
    )
    train_config = TrainConfig(
        lr=args.lr,
        text_lr=args.text_lr,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=args.patience,
        seeds=tuple(args.seeds),
        modality_dropout=args.modality_dropout,
        select_metric=args.select,
        num_threads=args.threads,
        device=args.device,
    )
    print(f"train {len(data.train)}  valid {len(data.valid)}  tests {{{', '.join(f'{k}: {len(v)}' for k, v in data.tests.items())}}}")
    result = train(
        data,
        model_config=model_config,
        train_config=train_config,
        features=settings,
        out_dir=args.out,
        progress=not args.no_progress,
        meta={"argv": sys.argv[1:] if argv is None else list(argv)},
        text_top=text_top,
        init=init.model if init is not None else None,
    )
    for name, agg in result["summary"].items():
        print(f"{name:>8} mean±std over seeds {list(args.seeds)}: {format_metrics(agg)}")
    print(f"wrote {Path(args.out) / 'results.json'}")
    return 0


def _checkpoint_model(args):
    """The model of `args.checkpoint` (the shipped one by default) and the settings its inputs need."""
    ckpt = _load_checkpoint_or_exit(args.checkpoint)
    model = ckpt.model
    tuned = ckpt.features.text.tuned_layers
    if tuned:
        # the training path: cached states under the tuned layers, then the fine-tuned layers
        # (heavy: torch; see the note at the top; only a fine-tuned checkpoint needs it)
        from hcl.text_top import TunedTextHCL, text_top_from_state

        settings = base_text_settings(ckpt.features, tuned)
        model = TunedTextHCL(ckpt.model, text_top_from_state(ckpt.features.text, ckpt.text_top)).eval()
    else:
        layer = ckpt.features.text.layer if args.text_layer is None else args.text_layer
        settings = replace(ckpt.features, text=replace(ckpt.features.text, layer=layer))
    return model, settings


def zero_shot_scorer(args):
    """The packaged sentimentai head over e5-small's last layer, its map to [-3, 3] fitted on the
    valid split of the named sources (all of them together), and the settings its inputs need."""
    # heavy (torch; see the note at the top): imported only when a command runs
    from hcl.train import predict
    from hcl.zero_shot import ZeroShotScorer

    settings = with_text_encoder(FeatureSettings(), PACKAGED_E5)
    valid = [s for kind, src in _sources(args)
             for s in load_source(kind, src, settings, trust_pickle=args.trust_pickle)[0].get("valid", [])]
    if not valid:
        raise SystemExit("error: --zero-shot fits its map to the label range on the valid split: the data has none")
    scorer = ZeroShotScorer(ModelConfig(text_dim=settings.text.dim, inputs=("text",)), scale=1.0, bias=0.0)
    scorer.fit(predict(scorer.eval(), valid), [s.label for s in valid])
    print(f"zero-shot sentimentai head: score = {scorer.scale:.3f} * (P+ - P-) + {scorer.bias:.3f} "
          f"(fitted on {len(valid)} valid clips)")
    return scorer.eval(), settings


def eval_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hcl-eval", description="Score a checkpoint on a split of a dataset.")
    p.add_argument("checkpoint", nargs="?", default=None, help="checkpoint (default: the shipped live model)")
    _add_data_args(p)
    p.add_argument("--data", metavar="DIR", default=None,
                   help=f"data folder whose mosi/label.csv is scored when no dataset is named (default: ${DATA_ENV})")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--zero-shot", action="store_true",
                   help="score the packaged sentimentai head over packaged:multilingual-e5-small instead of a "
                        "checkpoint (no MOSI/MOSEI training; its map to [-3, 3] is fitted on the valid split)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    p.add_argument("--predictions", metavar="FILE",
                   help="also write every scored sample's score as JSON {sample id: score} "
                        "(teacher targets for hcl-train --soft-targets)")
    args = p.parse_args(argv)

    # heavy (torch; see the note at the top): imported only when a command runs
    from hcl.metrics import format_metrics
    from hcl.train import evaluate, predict

    if not (args.transcripts or args.mmsa or args.extracted or args.synthetic):
        default = data_folder(args.data) / "mosi" / "label.csv"
        if not default.is_file():
            raise SystemExit(f"error: {default} not found: give a dataset (--transcripts CSV, --mmsa PKL or "
                             f"--extracted DIR) or a data folder holding mosi/label.csv (--data DIR / {DATA_ENV})")
        args.transcripts = [str(default)]
    if args.zero_shot:
        if args.checkpoint:
            raise SystemExit("error: --zero-shot scores the packaged head, not a checkpoint: drop one of them")
        model, settings = zero_shot_scorer(args)
    else:
        model, settings = _checkpoint_model(args)
    results, scores = {}, {}
    for kind, src in _sources(args):
        splits, _ = load_source(kind, src, settings, trust_pickle=args.trust_pickle)
        samples = splits.get(args.split, [])
        if not samples:
            print(f"{src}: no samples in split {args.split!r}")
            continue
        m = evaluate(model, samples)
        results[_source_name(src)] = m
        if args.predictions:
            scores.update({s.id: float(y) for s, y in zip(samples, predict(model, samples))})
        print(f"{_source_name(src)} {args.split} (n={len(samples)}): {format_metrics(m)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.predictions:
        Path(args.predictions).write_text(json.dumps(scores))
    return 0 if results else 1


def info_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hcl-info", description="Parameters, FLOPs per sample and config of a model.")
    p.add_argument("checkpoint", nargs="?", default=None, help="checkpoint (default: the shipped live model)")
    p.add_argument("--paper", action="store_true", help="describe a fresh model with the paper's MOSI setting instead")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    # heavy (torch; see the note at the top): imported only when a command runs
    from hcl.model import HCL
    from hcl.profile import model_profile

    if args.paper:
        cfg = ModelConfig(text_dim=768, audio_dim=5, video_dim=20)
        model, features, metrics, source = HCL(config=cfg), None, {}, "fresh model, MOSI dims 768/5/20"
    else:
        ckpt = _load_checkpoint_or_exit(args.checkpoint)
        model, cfg, features, metrics, source = ckpt.model, ckpt.model_config, ckpt.features, ckpt.metrics, str(ckpt.path)
    lengths = {"text": 50, "audio": 8, "video": 8} if not args.paper else {"text": 50, "audio": 50, "video": 50}
    prof = model_profile(model, lengths=lengths)
    info = {"source": source, **prof, "model_config": cfg.to_dict()}
    if features is not None:
        info["features"] = features.to_dict()
    if metrics:
        info["metrics"] = metrics
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"model: {source}")
    print(f"parameters: {prof['parameters']:,} ({prof['parameters'] / 1e6:.2f} M)")
    print(f"FLOPs per sample: {prof['flops_per_sample'] / 1e9:.4f} G  (input lengths {lengths})")
    print("config:")
    for k, v in cfg.to_dict().items():
        print(f"  {k}: {v}")
    if features is not None:
        print("features:", json.dumps(features.to_dict()))
    if metrics:
        print("metrics:", json.dumps(metrics.get("test", metrics)))
    return 0


def extract_main(argv: list[str] | None = None) -> int:
    # hcl.extract imports its torch-heavy parts itself once its arguments are parsed; imported here so
    # hcl-train/eval/info do not pay for its own imports (~0.15 s: numpy, PyAV)
    from hcl.extract import main

    return main(argv)
