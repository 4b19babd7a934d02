"""COWA: clustering optimisation and weight allocation (Sec. 2.3, Eq. 2-5).

Per sample and per modality, K-means groups the d channels of H_m^1 (each
channel a point in R^T) into K clusters. Group features Z_m (Eq. 2) are the
channel means per cluster; D_m = mean_t Z_m (Eq. 3); the joint descriptor
P = ReLU(BN(D_t + D_a + D_v)) (Eq. 4); W_m = softmax_k(Linear_m(P)) (Eq. 5,
reading: one K x K map per modality); every channel takes its group's weight:
F_m = H_m^1 * K * W_m[A(c)] (the factor K makes uniform weights the identity).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from hcl.kmeans import KMeansWorkspace


@dataclass
class COWAOutput:
    features: torch.Tensor  # (B, M, T, d) re-weighted F_m
    weights: torch.Tensor  # (B, M, K) W_m
    assignment: torch.Tensor  # (B, M, d) cluster of each channel


class COWA(nn.Module):
    def __init__(self, *, dim: int, clusters: int, kmeans_iters: int, modalities: int = 3) -> None:
        super().__init__()
        self.dim, self.clusters = dim, clusters
        self.workspace = KMeansWorkspace(clusters=clusters, iters=kmeans_iters)
        self.norm = nn.BatchNorm1d(clusters)
        self.to_weights = nn.ModuleList(nn.Linear(clusters, clusters) for _ in range(modalities))

    def forward(self, h: torch.Tensor) -> COWAOutput:
        """h: (B, M, T, d) stacked H_m^1 of the M modalities."""
        b, m, t, d = h.shape
        points = rearrange(h, "b m t d -> (b m) d t")
        result = self.workspace.run(points)  # batched over samples and modalities
        onehot, counts = result.onehot, result.counts
        if torch.is_grad_enabled():  # autograd keeps these; the workspace is reused next call
            onehot, counts = onehot.clone(), counts.clone()
        onehot = rearrange(onehot, "(b m) d k -> b m d k", b=b)
        counts = rearrange(counts, "(b m) k -> b m 1 k", b=b)
        z = torch.einsum("bmtd,bmdk->bmtk", h, onehot) / counts.clamp(min=1.0)  # Eq. 2
        desc = z.mean(dim=2)  # Eq. 3, (B, M, K)
        p = torch.relu(self.norm(desc.sum(dim=1)))  # Eq. 4, (B, K)
        weights = torch.stack([lin(p) for lin in self.to_weights], dim=1).softmax(dim=-1)  # Eq. 5
        channel_w = torch.einsum("bmdk,bmk->bmd", onehot, weights) * self.clusters  # (B, M, d)
        features = h * channel_w.unsqueeze(2)
        assignment = rearrange(result.assignment, "(b m) d -> b m d", b=b)
        return COWAOutput(features=features, weights=weights, assignment=assignment)
