"""Checkpoints: weights + model config + feature settings + metrics + format version.

Loaded with `torch.load(weights_only=True)`: a checkpoint holds tensors and
plain data only, never code. Everything is validated at load, so a bad file
fails at once with one clear `CheckpointError` (never a traceback later): a
file that is not a checkpoint, a newer format, a missing part, settings out of
range, tensors that do not fit the model config (the message names the
parameter and the disagreeing dimension).

Format 2 adds `text_top`: the fine-tuned top layers of the text encoder (only
those; the rest is the packaged encoder), present when
`FeatureSettings.text.tuned_layers > 0`. Format-1 files load with the fusion
readout they were trained with (`ModelConfig.fusion_readout = "cls"`).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch

import hcl
from hcl.atomic_file import atomic_write
from hcl.config import ModelConfig
from hcl.features.config import FeatureSettings
from hcl.model import HCL

CHECKPOINT_FORMAT = "hcl-live-checkpoint"
CHECKPOINT_VERSION = 2
DEFAULT_LIVE_MODEL = "hcl-text-e5"


class CheckpointError(ValueError):
    pass


@dataclass
class LoadedCheckpoint:
    model: HCL
    model_config: ModelConfig
    features: FeatureSettings
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    # state dict of the fine-tuned top text-encoder layers (`hcl.text_top.TextTop`), or None
    text_top: dict[str, torch.Tensor] | None = None


def _tensors(module_or_state, half: bool) -> dict[str, torch.Tensor]:
    state = module_or_state if isinstance(module_or_state, dict) else module_or_state.state_dict()
    return {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().clone() for k, v in state.items()}


def save_checkpoint(
    path: str | Path,
    model: HCL,
    *,
    features: FeatureSettings,
    metrics: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    half: bool = False,
    text_top=None,
) -> Path:
    """Write atomically. `half=True` stores floating tensors as float16 (shipped models).

    `text_top`: the fine-tuned top text-encoder layers (module or state dict); required
    when `features.text.tuned_layers > 0`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if (text_top is not None) != (features.text.tuned_layers > 0):
        raise ValueError(
            f"features.text.tuned_layers={features.text.tuned_layers} but text_top is "
            f"{'given' if text_top is not None else 'missing'}: pass the fine-tuned layers exactly when tuned_layers > 0"
        )
    state = _tensors(model, half)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_config": model.config.to_dict(),
        "features": features.to_dict(),
        "state_dict": state,
        **({"text_top": _tensors(text_top, half)} if text_top is not None else {}),
        "metrics": metrics or {},
        "meta": {
            "hcl_live_version": hcl.__version__,
            "torch_version": str(torch.__version__),
            "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **(meta or {}),
        },
    }
    with atomic_write(path, "wb") as f:  # a crash mid-save leaves the previous checkpoint
        torch.save(payload, f)
    return path


def _describe_mismatch(name: str, got: tuple, want: tuple) -> str:
    if len(got) != len(want):
        return f"{name}: checkpoint tensor has {len(got)} dimensions {got}, the model expects {want}"
    dims = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
    parts = ", ".join(f"dimension {i} is {got[i]} in the checkpoint but {want[i]} in the model" for i in dims)
    return f"{name}: shape {got} vs expected {want}: {parts}"


_DIM_HINTS = {
    "embed.text.proj.weight": "text_dim",
    "embed.audio.proj.weight": "audio_dim",
    "embed.video.proj.weight": "video_dim",
}


def load_state_checked(model: HCL, state: dict[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Load weights, refusing missing/unexpected keys and shape mismatches with a precise message."""
    own = model.state_dict()
    problems = []
    for name, tensor in state.items():
        if name not in own:
            problems.append(f"{name}: in the {source} but not in the model")
            continue
        got, want = tuple(tensor.shape), tuple(own[name].shape)
        if got != want:
            msg = _describe_mismatch(name, got, want)
            if name in _DIM_HINTS:
                msg += f" (ModelConfig.{_DIM_HINTS[name]})"
            problems.append(msg)
    problems += [f"{name}: the model needs it but the {source} lacks it" for name in own if name not in state]
    if problems:
        raise CheckpointError(f"{source} does not fit the model:\n  " + "\n  ".join(problems))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def load_checkpoint(
    path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    model_config: ModelConfig | None = None,
) -> LoadedCheckpoint:
    """Load a checkpoint into a fresh HCL (eval mode). `model_config` overrides the stored one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; train one with hcl-train or use the shipped model")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a readable hcl-live checkpoint ({exc.__class__.__name__}: {(str(exc).strip().splitlines() or ['empty file'])[0][:200]})"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an hcl-live checkpoint (no '{CHECKPOINT_FORMAT}' header)")
    version = payload.get("version", 0)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}; this hcl-live reads up to {CHECKPOINT_VERSION}: upgrade hcl-live"
        )
    missing = [k for k in ("model_config", "features", "state_dict") if not isinstance(payload.get(k), dict)]
    if missing:
        raise CheckpointError(f"{path} is damaged: it lacks {', '.join(missing)}; re-save it with hcl-train or use another")
    try:
        stored = dict(payload["model_config"])
        if version < 2:
            stored.setdefault("fusion_readout", "cls")  # format 1 read a CLS row
        config = model_config or ModelConfig.from_dict(stored)
        features = FeatureSettings.from_dict(payload["features"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has invalid settings: {exc}") from exc
    model = HCL(config=config)
    load_state_checked(model, payload["state_dict"], source=f"checkpoint {path}")
    text_top = payload.get("text_top")
    if (text_top is not None) != (features.text.tuned_layers > 0):
        raise CheckpointError(
            f"{path}: features.text.tuned_layers={features.text.tuned_layers} but the fine-tuned "
            f"text layers are {'present' if text_top is not None else 'missing'}"
        )
    model.to(map_location).eval()
    return LoadedCheckpoint(
        model=model,
        model_config=config,
        features=features,
        metrics=payload.get("metrics", {}),
        meta=payload.get("meta", {}),
        path=path,
        text_top=text_top,
    )


def models_dir() -> Path:
    """The shipped-models folder: `models/` of a source checkout, else the installed `hcl_models`."""
    repo = Path(__file__).resolve().parent.parent / "models"
    if repo.is_dir():
        return repo
    return Path(str(files("hcl_models")))


def default_live_checkpoint() -> Path:
    path = models_dir() / DEFAULT_LIVE_MODEL / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"the shipped live model is missing at {path}; reinstall hcl-live or pass --checkpoint"
        )
    return path
