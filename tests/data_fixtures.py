"""Small real datasets for the training commands' tests."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

SHARED_MOSI_LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "mosi" / "label.csv"


def write_mosi_subset(folder: Path, *, train: int, valid: int, test: int = 0) -> Path:
    """`folder`/mosi/label.csv holding the first rows of each split of the real MOSI
    transcripts (a small real dataset for the training commands)."""
    if not SHARED_MOSI_LABELS.is_file():
        pytest.skip(f"MOSI transcripts {SHARED_MOSI_LABELS} not available (see shared/data/README.md)")
    rows = list(csv.DictReader(SHARED_MOSI_LABELS.open()))
    picked = [r for split, n in (("train", train), ("valid", valid), ("test", test))
              for r in [r for r in rows if r["mode"] == split][:n]]
    path = folder / "mosi" / "label.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(picked)
    return path
