"""Sentiment regression metrics, computed the way MSA papers report them.

All functions are pure and work on 1-D numpy arrays of continuous scores:
`pred` (model output) and `label` (ground truth), both nominally in [-3, 3]
(CMU-MOSI / CMU-MOSEI sentiment scale). The conventions follow the widely used
MMSA toolkit (`MetricsTop`, regression mode):

- ``mae``: mean absolute error.
- ``corr``: Pearson correlation; 0.0 (not NaN) when either side is constant
  or there are fewer than two samples.
- ``acc7``: both clipped to [-3, 3], rounded to the nearest integer
  (numpy's round-half-to-even, as in MMSA), then accuracy over {-3..3}.
- ``acc5``: the same after clipping to [-2, 2] (five classes {-2..2}).
- ``acc2_non0`` / ``f1_non0``: negative vs positive; samples whose label is
  exactly 0 are dropped; a sample is positive when ``> 0``.
- ``acc2_has0`` / ``f1_has0``: negative vs non-negative over all samples;
  a sample is "non-negative" when ``>= 0``.

F1 is the support-weighted mean of the per-class F1 scores over the classes
present in either the truth or the prediction (what scikit-learn's
``f1_score(average="weighted")`` computes), implemented here without sklearn.
Accuracies and F1 scores are in percent, like the papers; MAE and Corr are not.
If the non0 subset is empty (every label is 0), ``acc2_non0`` and ``f1_non0``
are NaN: the quantity is undefined, and a number would be misleading.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

METRIC_KEYS: tuple[str, ...] = (
    "mae",
    "corr",
    "acc7",
    "acc5",
    "acc2_non0",
    "f1_non0",
    "acc2_has0",
    "f1_has0",
)

_LABELS = {
    "mae": "MAE",
    "corr": "Corr",
    "acc7": "Acc-7",
    "acc5": "Acc-5",
    "acc2_non0": "Acc-2(non0)",
    "f1_non0": "F1(non0)",
    "acc2_has0": "Acc-2(has0)",
    "f1_has0": "F1(has0)",
}


def _as_pair(pred: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten both to float64 (N,) and check they match and are finite."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    y = np.asarray(label, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(
            f"pred and label must have the same number of elements, got {p.size} and {y.size}"
        )
    if p.size == 0:
        raise ValueError("metrics need at least one sample, got empty arrays")
    if not (np.isfinite(p).all() and np.isfinite(y).all()):
        raise ValueError(
            "pred/label contain NaN or inf; check the model output and the labels before scoring"
        )
    return p, y


def mae(pred: np.ndarray, label: np.ndarray) -> float:
    """Mean absolute error. pred, label: (N,)."""
    p, y = _as_pair(pred, label)
    return float(np.mean(np.abs(p - y)))


def pearson_corr(pred: np.ndarray, label: np.ndarray) -> float:
    """Pearson correlation of (N,) arrays; 0.0 if N < 2 or either side is constant."""
    p, y = _as_pair(pred, label)
    if p.size < 2:
        return 0.0
    dp = p - p.mean()
    dy = y - y.mean()
    denom = math.sqrt(float(np.dot(dp, dp)) * float(np.dot(dy, dy)))
    if denom == 0.0 or not math.isfinite(denom):
        return 0.0
    return float(np.clip(np.dot(dp, dy) / denom, -1.0, 1.0))


def multiclass_acc(pred: np.ndarray, label: np.ndarray, bound: float) -> float:
    """Accuracy (percent) after clipping both to [-bound, bound] and rounding.

    bound=3 gives Acc-7, bound=2 gives Acc-5. Rounding is `np.round`
    (half to even), as in MMSA.
    """
    p, y = _as_pair(pred, label)
    pc = np.round(np.clip(p, -bound, bound))
    yc = np.round(np.clip(y, -bound, bound))
    return float(np.mean(pc == yc) * 100.0)


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Support-weighted F1 (as a fraction in [0, 1]) for discrete labels (N,).

    Classes are the union of the values seen in `y_true` and `y_pred`. For each
    class c: F1_c = 2 TP / (2 TP + FP + FN) (0 when that is 0/0), weighted by
    the number of true samples of c. Matches
    `sklearn.metrics.f1_score(y_true, y_pred, average="weighted")`.
    """
    t = np.asarray(y_true).reshape(-1)
    p = np.asarray(y_pred).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    if t.size == 0:
        return float("nan")
    total = 0.0
    for c in np.union1d(t, p):
        tp = float(np.sum((t == c) & (p == c)))
        fp = float(np.sum((t != c) & (p == c)))
        fn = float(np.sum((t == c) & (p != c)))
        denom = 2.0 * tp + fp + fn
        f1 = 2.0 * tp / denom if denom > 0 else 0.0
        total += f1 * float(np.sum(t == c))
    return total / float(t.size)


def binary_metrics(pred: np.ndarray, label: np.ndarray, convention: str) -> tuple[float, float]:
    """(Acc-2, weighted F1), both in percent, under "non0" or "has0".

    non0: drop samples with label == 0, classes `> 0` vs `<= 0`.
    has0: keep all samples, classes `>= 0` vs `< 0`.
    Returns (nan, nan) if non0 leaves no samples.
    """
    p, y = _as_pair(pred, label)
    if convention == "non0":
        keep = y != 0
        bt, bp = y[keep] > 0, p[keep] > 0
    elif convention == "has0":
        bt, bp = y >= 0, p >= 0
    else:
        raise ValueError(f"convention must be 'non0' or 'has0', got {convention!r}")
    if bt.size == 0:
        return float("nan"), float("nan")
    acc = float(np.mean(bt == bp) * 100.0)
    return acc, weighted_f1(bt, bp) * 100.0


def sentiment_metrics(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """All paper metrics for (N,) predictions and labels.

    Keys (in order): mae, corr, acc7, acc5, acc2_non0, f1_non0, acc2_has0,
    f1_has0. Accuracies and F1 are percentages.
    """
    p, y = _as_pair(pred, label)
    acc2_non0, f1_non0 = binary_metrics(p, y, "non0")
    acc2_has0, f1_has0 = binary_metrics(p, y, "has0")
    return {
        "mae": mae(p, y),
        "corr": pearson_corr(p, y),
        "acc7": multiclass_acc(p, y, 3.0),
        "acc5": multiclass_acc(p, y, 2.0),
        "acc2_non0": acc2_non0,
        "f1_non0": f1_non0,
        "acc2_has0": acc2_has0,
        "f1_has0": f1_has0,
    }


def _fmt_value(key: str, value: float) -> str:
    digits = 3 if key in ("mae", "corr") else 2
    return f"{value:.{digits}f}"


def format_metrics(metrics: Mapping[str, float | Mapping[str, float]]) -> str:
    """One line, e.g. ``MAE 0.701 | Corr 0.802 | Acc-7 47.45 | ...``.

    Accepts either `sentiment_metrics` output or `aggregate_seeds` output
    (values ``{"mean", "std"}`` are shown as ``mean±std``). Known keys come
    first in the standard order; any extra keys follow as ``key value``.
    """
    ordered = [k for k in METRIC_KEYS if k in metrics] + [k for k in metrics if k not in METRIC_KEYS]
    parts = []
    for key in ordered:
        value = metrics[key]
        name = _LABELS.get(key, key)
        if isinstance(value, Mapping):
            text = f"{_fmt_value(key, float(value['mean']))}±{_fmt_value(key, float(value['std']))}"
        else:
            text = _fmt_value(key, float(value))
        parts.append(f"{name} {text}")
    return " | ".join(parts)


def aggregate_seeds(runs: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample std (ddof=1; 0.0 for a single run) of each metric over runs.

    All runs must have the same keys. Returns ``{key: {"mean": m, "std": s}}``.
    """
    if not runs:
        raise ValueError("aggregate_seeds needs at least one run's metrics, got an empty list")
    keys = list(runs[0].keys())
    for i, run in enumerate(runs[1:], start=1):
        if set(run.keys()) != set(keys):
            raise ValueError(
                f"run {i} has keys {sorted(run.keys())}, run 0 has {sorted(keys)}; "
                "aggregate runs scored with the same metric set"
            )
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        values = np.array([float(run[key]) for run in runs], dtype=np.float64)
        std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
        out[key] = {"mean": float(np.mean(values)), "std": std}
    return out
