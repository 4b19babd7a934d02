"""Checkpoints: weights + model config + feature settings + metrics + format version.

Loaded with `torch.load(weights_only=True)`: a checkpoint holds tensors and
plain data only, never code. A checkpoint whose tensors do not fit the model
config fails with a message naming the parameter and the disagreeing dimension.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hcl.config import ModelConfig
from hcl.features.config import FeatureSettings
from hcl.model import HCL

CHECKPOINT_FORMAT = "hcl-live-checkpoint"
CHECKPOINT_VERSION = 1
DEFAULT_LIVE_MODEL = "hcl-text-minilm"


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


def save_checkpoint(
    path: str | Path,
    model: HCL,
    *,
    features: FeatureSettings,
    metrics: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write atomically. `half=True` stores floating tensors as float16 (shipped models)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().clone()
        for k, v in model.state_dict().items()
    }
    import hcl

    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_config": model.config.to_dict(),
        "features": features.to_dict(),
        "state_dict": state,
        "metrics": metrics or {},
        "meta": {
            "hcl_live_version": hcl.__version__,
            "torch_version": str(torch.__version__),
            "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **(meta or {}),
        },
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
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
        raise CheckpointError(f"{path} is not a readable hcl-live checkpoint ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an hcl-live checkpoint (no '{CHECKPOINT_FORMAT}' header)")
    version = payload.get("version", 0)
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}; this hcl-live reads up to {CHECKPOINT_VERSION}: upgrade hcl-live"
        )
    config = model_config or ModelConfig.from_dict(payload["model_config"])
    features = FeatureSettings.from_dict(payload["features"])
    model = HCL(config=config)
    load_state_checked(model, payload["state_dict"], source=f"checkpoint {path}")
    model.to(map_location).eval()
    return LoadedCheckpoint(
        model=model,
        model_config=config,
        features=features,
        metrics=payload.get("metrics", {}),
        meta=payload.get("meta", {}),
        path=path,
    )


def models_dir() -> Path:
    """The shipped-models folder: `models/` of a source checkout, else the installed `hcl_models`."""
    repo = Path(__file__).resolve().parent.parent / "models"
    if repo.is_dir():
        return repo
    from importlib.resources import files

    return Path(str(files("hcl_models")))


def default_live_checkpoint() -> Path:
    path = models_dir() / DEFAULT_LIVE_MODEL / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"the shipped live model is missing at {path}; reinstall hcl-live or pass --checkpoint"
        )
    return path
