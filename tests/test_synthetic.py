"""The synthetic data: shape, determinism, and that it really needs an interaction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hcl.config import MODALITIES
from hcl.data.sample import collate
from hcl.data.synthetic import (
    DEFAULT_DIMS,
    make_synthetic,
    synthetic_label,
    synthetic_splits,
)


@pytest.fixture(scope="module")
def splits() -> dict:
    return synthetic_splits(3000, 50, 1000, seed=3)


def _pooled(samples: list, mods: list[str]) -> np.ndarray:
    """(N, sum D_m): mean over time of each modality, concatenated."""
    return np.stack([np.concatenate([getattr(s, m).mean(0) for m in mods]) for s in samples])


def _labels(samples: list) -> np.ndarray:
    return np.array([s.label for s in samples])


def _r2(pred: np.ndarray, y: np.ndarray) -> float:
    return float(1.0 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def test_shapes_labels_and_meta() -> None:
    dims, seq = (12, 5, 7), (10, 8, 6)
    samples = make_synthetic(50, dims=dims, seq_len=seq, seed=1, mode="valid")
    assert len(samples) == 50
    for s in samples:
        assert s.mode == "valid" and s.id.startswith("syn-valid-1-")
        for name, dim, max_len in zip(MODALITIES, dims, seq):
            x = getattr(s, name)
            assert x.dtype == np.float32 and x.shape[1] == dim
            assert (max_len + 1) // 2 <= x.shape[0] <= max_len
            start, stop = s.meta["span"][name]
            assert 0 <= start < stop <= x.shape[0]
            assert 0.3 <= abs(s.meta["latent"][name]) <= 1.0
        assert -3.0 <= s.label <= 3.0
        z = s.meta["latent"]
        assert s.label == pytest.approx(float(synthetic_label(z["text"], z["audio"], z["video"])))
    batch = collate(samples, dims=dims)
    assert batch.text.shape == (50, max(len(s.text) for s in samples), 12)
    assert len({s.id for s in samples}) == 50


def test_deterministic_by_seed() -> None:
    a = make_synthetic(5, seed=7)
    b = make_synthetic(5, seed=7)
    c = make_synthetic(5, seed=8)
    for x, y in zip(a, b):
        assert x.label == y.label and x.id == y.id
        np.testing.assert_array_equal(x.audio, y.audio)
    assert [x.label for x in a] != [x.label for x in c]
    sp1, sp2 = synthetic_splits(4, 3, 2, seed=5), synthetic_splits(4, 3, 2, seed=5)
    assert [len(v) for v in sp1.values()] == [4, 3, 2]
    for split in sp1:
        assert all(s.mode == split for s in sp1[split])
        np.testing.assert_array_equal(sp1[split][0].text, sp2[split][0].text)
    ids = [s.id for v in sp1.values() for s in v]
    assert len(set(ids)) == len(ids)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="3 entries"):
        make_synthetic(2, dims=(4, 4))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dim must be >= 2"):
        make_synthetic(2, dims=(1, 4, 4))
    with pytest.raises(ValueError, match="noise"):
        make_synthetic(2, noise=-1.0)


def test_no_single_latent_predicts_the_label() -> None:
    """Even knowing a modality's latent exactly, a cubic in it explains nothing."""
    s = make_synthetic(6000, seed=11)
    y = _labels(s)
    z = {m: np.array([x.meta["latent"][m] for x in s]) for m in MODALITIES}
    for name in MODALITIES:
        A = np.stack([np.ones_like(y), z[name], z[name] ** 2, z[name] ** 3], 1)
        assert _r2(A @ np.linalg.lstsq(A, y, rcond=None)[0], y) < 0.02, name
    za, zv = z["audio"], z["video"]
    A = np.stack([np.ones_like(y), za, zv, za * zv, za**2, zv**2], 1)
    assert _r2(A @ np.linalg.lstsq(A, y, rcond=None)[0], y) < 0.02  # audio + video without text
    assert np.std(y) > 1.0  # the labels are spread, not all near 0


@pytest.mark.parametrize("mods", [["text"], ["audio"], ["video"], ["text", "audio", "video"]])
def test_linear_model_cannot_learn_it(splits: dict, mods: list[str]) -> None:
    """Least squares on mean-pooled features: held-out R^2 < 0.1 (linear cannot multiply)."""
    X, y = _pooled(splits["train"], mods), _labels(splits["train"])
    Xt, yt = _pooled(splits["test"], mods), _labels(splits["test"])
    A = np.c_[X, np.ones(len(X))]
    w = np.linalg.lstsq(A, y, rcond=None)[0]
    assert _r2(np.c_[Xt, np.ones(len(Xt))] @ w, yt) < 0.1
    assert _r2(A @ w, y) < 0.1  # not even on the training set


class _TinyFusion(torch.nn.Module):
    """Per-modality linear read-out of the pooled features, then a small MLP."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.read = torch.nn.ModuleList([torch.nn.Linear(d, 2) for d in dims])
        self.mlp = torch.nn.Sequential(torch.nn.Linear(2 * len(dims), 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.mlp(torch.cat([r(x) for r, x in zip(self.read, xs)], -1)).squeeze(-1)


def _fit_tiny(splits: dict, mods: list[str]) -> float:
    torch.set_num_threads(1)
    torch.manual_seed(0)

    def inputs(split: str) -> list[torch.Tensor]:
        return [torch.tensor(_pooled(splits[split], [m])) for m in mods]

    X, Xt = inputs("train"), inputs("test")
    y = torch.tensor(_labels(splits["train"]), dtype=torch.float32)
    net = _TinyFusion([x.shape[1] for x in X])
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(500):
        loss = ((net(X) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = net(Xt).numpy()
    return _r2(pred, _labels(splits["test"]))


def test_learnable_from_all_three_not_from_one(splits: dict) -> None:
    """A small nonlinear model learns it from all modalities, not from any single one."""
    assert _fit_tiny(splits, list(MODALITIES)) > 0.45
    for name in MODALITIES:
        assert _fit_tiny(splits, [name]) < 0.1, name


def test_default_dims() -> None:
    s = make_synthetic(1)[0]
    assert (s.text.shape[1], s.audio.shape[1], s.video.shape[1]) == DEFAULT_DIMS
