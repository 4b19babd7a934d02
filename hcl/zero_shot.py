"""The sentimentai-py sentiment head for multilingual-e5-small, as a torch module.

sentimentai-py (MIT) ships heads trained on e5-small sentence embeddings (mean over the
tokens of the last hidden state, L2-normalised) as JSON: the logistic one is
z = x @ coef.T + intercept over the classes [negative, neutral, positive], then z / T,
softmax, and the score P(positive) - P(negative) in [-1, 1]. Only these JSON files are
read (found without importing the package, whose embedding call downloads from a hub).

    e5 last hidden state (B, L, 384), mask (B, L) ─ mean ─ L2 ─ logistic head ─ p+ - p- (B,)

`ZeroShotHead` is that forward pass. It scores MOSI/MOSEI without having seen them
(`hcl-eval --zero-shot`, a 1-D linear map to [-3, 3] fitted on valid), gives soft
targets (`hcl-eval --zero-shot --split train --predictions FILE`), and HCL can add its
score to its own output (`ModelConfig.text_prior = "sentimentai"`).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hcl.config import SCORE_RANGE

HEAD_KINDS = ("logistic",)


def sentiment_head_file(kind: str = "logistic", version: str = "2.0", model: str = "e5-small") -> Path:
    """The head JSON inside the installed sentimentai-py (its package is not imported)."""
    spec = importlib.util.find_spec("sentimentai")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the zero-shot sentiment head ships in 'sentimentai-py': pip install sentimentai-py==2.0.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "scoring" / kind / version / f"{model}.json"
    if not path.is_file():
        raise RuntimeError(f"sentimentai-py has no {kind} head {version} for {model} ({path}): install sentimentai-py==2.0.0")
    return path


class ZeroShotHead(nn.Module):
    """Token features of e5-small's last layer (B, L, D) + mask (B, L) -> sentiment in [-1, 1] (B,)."""

    def __init__(self, dim: int = 384, kind: str = "logistic") -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"zero-shot head kind must be one of {HEAD_KINDS}, got {kind!r}")
        head = json.loads(sentiment_head_file(kind).read_text())
        coef = torch.tensor(head["coef"], dtype=torch.float32)  # (3, D): [neg, neutral, pos]
        if coef.shape != (3, dim):
            raise ValueError(f"the sentimentai head expects {coef.shape[1]}-wide embeddings (e5-small), got dim {dim}")
        self.linear = nn.Linear(dim, 3)
        with torch.no_grad():
            self.linear.weight.copy_(coef)
            self.linear.bias.copy_(torch.tensor(head["intercept"], dtype=torch.float32))
        self.temperature = float(head.get("T") or 1.0)
        self.requires_grad_(False)  # the packaged head stays as trained

    def forward(self, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(text.dtype)  # (B, L, 1)
        pooled = (text * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, D)
        p = torch.softmax(self.linear(nn.functional.normalize(pooled.float(), dim=-1)) / self.temperature, dim=-1)
        return p[:, 2] - p[:, 0]  # (B,)


class ZeroShotScorer(nn.Module):
    """The head's score mapped to the label range, a * s + b (fitted on labelled data), clipped.

    Called like HCL (batching reads `config` for the input widths), so `evaluate` and
    `predict` score it as they score a checkpoint.
    """

    def __init__(self, config, scale: float = SCORE_RANGE, bias: float = 0.0) -> None:
        super().__init__()
        self.config = config
        self.head = ZeroShotHead(config.text_dim)
        self.scale, self.bias = float(scale), float(bias)

    def forward(self, text, text_mask, *_, **__) -> torch.Tensor:
        return (self.scale * self.head(text, text_mask) + self.bias).clamp(-SCORE_RANGE, SCORE_RANGE)

    def fit(self, head_scores, labels) -> "ZeroShotScorer":
        """Least-squares a, b of label ~ a * s + b (a 1-D calibration), s the head's own
        scores of labelled samples (what this scorer gives with scale 1, bias 0). The caller
        runs the head: this module is under hcl.model and does not import the training loop."""
        s = np.asarray(head_scores, np.float64)
        y = np.asarray(labels, np.float64)
        self.scale, self.bias = (float(v) for v in np.polyfit(s, y, 1))
        return self
