"""COWA (Eq. 2-5) against a reference written out in numpy on tiny inputs.

Reading of the equations (docs: shared/design/hcl-model.md, section 2):
  Z_m[t, k] = mean of H_m^1[t, c] over the channels c of cluster k   (Eq. 2)
  D_m[k]    = mean over t of Z_m[t, k]                               (Eq. 3)
  P         = ReLU(BatchNorm(D_t + D_a + D_v))                       (Eq. 4)
  W_m       = softmax_k(Linear_m(P))                                 (Eq. 5)
  F_m[t, c] = H_m^1[t, c] * K * W_m[A(c)]   (K: uniform weights are the identity)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hcl.cowa import COWA


def numpy_kmeans(x: np.ndarray, k: int, iters: int) -> np.ndarray:
    """Assignment of the d points x (d, T): block initialisation, Lloyd, empty clusters keep their centroid."""
    d = x.shape[0]
    block = np.arange(d) // (d // k)
    centroids = np.stack([x[block == j].mean(axis=0) for j in range(k)])
    assign = block.copy()
    for _ in range(iters):
        assign = ((x[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(axis=1)
        for j in range(k):
            if np.any(assign == j):
                centroids[j] = x[assign == j].mean(axis=0)
    return assign


def reference(h: np.ndarray, cowa: COWA, *, iters: int, train: bool):
    """(features, weights, assignment, bn_input) of COWA on h (B, M, T, d), in float64 numpy."""
    b, m, t, d = h.shape
    k = cowa.clusters
    assign = np.stack([[numpy_kmeans(h[i, j].T, k, iters) for j in range(m)] for i in range(b)])  # (B, M, d)
    z = np.zeros((b, m, t, k))
    for i in range(b):
        for j in range(m):
            for c in range(k):
                members = assign[i, j] == c
                if members.any():  # an empty cluster has no channels: its group feature is 0
                    z[i, j, :, c] = h[i, j][:, members].mean(axis=1)  # Eq. 2
    desc = z.mean(axis=2)  # Eq. 3, (B, M, K)
    s = desc.sum(axis=1)  # (B, K)
    bn = cowa.norm
    if train:
        mean, var = s.mean(axis=0), s.var(axis=0)  # batch statistics, biased variance
    else:
        mean, var = bn.running_mean.double().numpy(), bn.running_var.double().numpy()
    p = np.maximum(0.0, (s - mean) / np.sqrt(var + bn.eps) * bn.weight.detach().double().numpy()
                   + bn.bias.detach().double().numpy())  # Eq. 4
    weights = np.zeros((b, m, k))
    for j, lin in enumerate(cowa.to_weights):
        logits = p @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights[:, j] = e / e.sum(axis=1, keepdims=True)  # Eq. 5
    channel_w = np.take_along_axis(weights, assign, axis=2) * k  # (B, M, d)
    return h * channel_w[:, :, None, :], weights, assign, s


def capture_bn_input(cowa: COWA, seen: dict, key: str) -> None:
    """Keep the first BatchNorm input (sum over modalities of D_m) in seen[key]."""

    def hook(module, inputs, output) -> None:
        seen.setdefault(key, inputs[0].detach().numpy().copy())

    cowa.norm.register_forward_hook(hook)


def make_cowa(*, d: int, k: int, iters: int, seed: int = 0) -> COWA:
    torch.manual_seed(seed)
    cowa = COWA(dim=d, clusters=k, kmeans_iters=iters).double()
    with torch.no_grad():  # non-trivial BatchNorm and Linear parameters
        cowa.norm.weight.copy_(torch.linspace(0.5, 1.5, k))
        cowa.norm.bias.copy_(torch.linspace(-0.2, 0.3, k))
        cowa.norm.running_mean.copy_(torch.linspace(-0.3, 0.4, k))
        cowa.norm.running_var.copy_(torch.linspace(0.5, 2.0, k))
        for lin in cowa.to_weights:
            lin.weight.normal_(0, 1.0)
            lin.bias.normal_(0, 0.5)
    return cowa


def clustered_input(b: int, m: int, t: int, d: int, k: int, seed: int) -> np.ndarray:
    """Channels drawn around k well separated centres, shuffled over the channel axis so the
    K-means groups differ from the initial blocks (and have unequal sizes)."""
    rng = np.random.default_rng(seed)
    h = np.zeros((b, m, t, d))
    for i in range(b):
        for j in range(m):
            centres = rng.normal(0, 3, size=(k, t))
            labels = rng.integers(0, k, size=d)
            h[i, j] = (centres[labels] + rng.normal(0, 0.3, size=(d, t))).T
    return h


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("iters", [0, 3])
def test_matches_the_reference_equations(train, iters):
    b, m, t, d, k = 3, 3, 4, 12, 3
    h = clustered_input(b, m, t, d, k, seed=1)
    cowa = make_cowa(d=d, k=k, iters=iters)
    cowa.train(train)
    seen = {}
    capture_bn_input(cowa, seen, "bn_input")
    with torch.no_grad():
        out = cowa(torch.from_numpy(h))
    features, weights, assign, s = reference(h, cowa, iters=iters, train=train)
    np.testing.assert_array_equal(out.assignment.numpy(), assign)
    if iters:  # the data really was regrouped, into unequal groups
        assert (assign != np.arange(d) // (d // k)).any()
        assert len({tuple(np.bincount(a, minlength=k)) for a in assign.reshape(-1, d)}) > 1
    np.testing.assert_allclose(seen["bn_input"], s, rtol=1e-12, atol=1e-12)  # Eq. 2-3, summed over modalities
    np.testing.assert_allclose(out.weights.numpy(), weights, rtol=1e-10, atol=1e-12)  # Eq. 4-5
    np.testing.assert_allclose(out.features.numpy(), features, rtol=1e-10, atol=1e-12)


def test_group_features_are_cluster_means_on_a_hand_example():
    """One sample, K = 2, T = 2, d = 4: channels (0,0) | (10,10) (10,11) (12,10) after K-means.
    Means: Z[:, 0] = (0, 0), Z[:, 1] = (32/3, 31/3); D = (0, 21/2) per modality."""
    chan = np.array([[0.0, 0.0], [10.0, 10.0], [10.0, 11.0], [12.0, 10.0]])  # (d, T)
    h = np.stack([chan.T, 2 * chan.T, -chan.T])[None]  # (1, 3, T, d): text, 2 x text, - text
    cowa = make_cowa(d=4, k=2, iters=5).eval()
    seen = {}
    capture_bn_input(cowa, seen, "s")
    with torch.no_grad():
        out = cowa(torch.from_numpy(h))
    assert out.assignment.tolist() == [[[0, 1, 1, 1]] * 3]
    d_text = np.array([0.0, (32 / 3 + 31 / 3) / 2])
    np.testing.assert_allclose(seen["s"], [d_text * (1 + 2 - 1)])


def test_uniform_weights_leave_the_features_unchanged():
    """Linear maps with zero weight give W = 1/K for every group: then F_m = H_m^1 exactly."""
    h = torch.from_numpy(clustered_input(2, 3, 4, 12, 3, seed=2))
    for iters in (0, 4):
        cowa = make_cowa(d=12, k=3, iters=iters)
        with torch.no_grad():
            for lin in cowa.to_weights:
                lin.weight.zero_()
                lin.bias.fill_(0.7)  # any constant: softmax of equal logits is uniform
        for train in (False, True):
            cowa.train(train)
            with torch.no_grad():
                out = cowa(h)
            torch.testing.assert_close(out.weights, torch.full((2, 3, 3), 1 / 3, dtype=torch.float64))
            torch.testing.assert_close(out.features, h, rtol=1e-12, atol=1e-12)


def test_weights_are_per_modality_and_reach_the_channels_of_their_group():
    h = torch.from_numpy(clustered_input(2, 3, 4, 12, 3, seed=3))
    cowa = make_cowa(d=12, k=3, iters=3).eval()
    with torch.no_grad():
        out = cowa(h)
    w = out.weights
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, dtype=torch.float64))
    assert not torch.allclose(w[:, 0], w[:, 1])  # one Linear per modality
    ratio = out.features / h  # every channel scaled by K x its group's weight
    expected = 3 * torch.gather(w, 2, out.assignment)
    torch.testing.assert_close(ratio, expected[:, :, None, :].expand_as(ratio))


def test_an_empty_cluster_gives_finite_features():
    """Channels at 10, 30 | 11, 11 | 29, 29 (T = 1, K = 3): the first block's centroid (20)
    attracts no channel. Its group has no channels, Z = 0 for it, and nothing is NaN."""
    chan = np.array([10.0, 30.0, 11.0, 11.0, 29.0, 29.0])
    h = np.stack([chan[None], chan[None] + 1, chan[None] - 1])[None]  # (1, 3, 1, 6)
    h = np.concatenate([h, h * 0.5])  # two samples (BatchNorm in training mode needs two)
    cowa = make_cowa(d=6, k=3, iters=4)
    seen = {}
    capture_bn_input(cowa, seen, "s")
    with torch.no_grad():
        out = cowa(torch.from_numpy(h))
    assert out.assignment[0, 0].tolist() == [1, 2, 1, 1, 2, 2]  # cluster 0 is empty
    assert torch.isfinite(out.features).all() and torch.isfinite(out.weights).all()
    assert seen["s"][0, 0] == 0.0  # the empty group's descriptor
    features, weights, _, s = reference(h, cowa, iters=4, train=True)
    np.testing.assert_allclose(seen["s"], s, rtol=1e-12)
    np.testing.assert_allclose(out.features.numpy(), features, rtol=1e-10, atol=1e-12)


def test_gradients_flow_to_the_weights_and_the_features():
    h = torch.from_numpy(clustered_input(2, 3, 4, 12, 3, seed=4)).requires_grad_(True)
    cowa = make_cowa(d=12, k=3, iters=3).train()
    out = cowa(h)
    (out.features.square().sum() + out.weights[:, :, 0].sum()).backward()
    assert h.grad is not None and torch.isfinite(h.grad).all() and h.grad.abs().sum() > 0
    for lin in cowa.to_weights:
        assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
    assert cowa.norm.weight.grad is not None
