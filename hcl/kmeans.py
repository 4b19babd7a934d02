"""Batched, fixed-iteration K-means over channel descriptors (COWA step 2).

Points are the d channels of a token block, each a vector in R^T; every problem
in the batch (sample x modality) is clustered independently, so a sample gives
the same groups alone or inside a batch. Fixed shapes and a fixed iteration
count mean no data-dependent Python control flow: the step runs in working
tensors allocated once (`KMeansWorkspace`) and can be captured in a CUDA graph.

Initial centroid k = mean of the fixed channel block k (channels k*d/K ..
(k+1)*d/K - 1). An empty cluster keeps its previous centroid. `iters == 0`
returns the fixed channel blocks themselves (the paper's "w/o K-Means").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def block_assignment(d: int, k: int, *, device=None) -> torch.Tensor:
    """Fixed channel groups: channel c belongs to block c // (d / k). Shape (d,), int64."""
    if d % k:
        raise ValueError(f"{d} channels cannot be split into {k} equal blocks")
    return torch.arange(d, device=device) // (d // k)


@dataclass
class KMeansResult:
    assignment: torch.Tensor  # (N, d) int64, cluster of each point
    onehot: torch.Tensor  # (N, d, K) float, one-hot of the assignment
    counts: torch.Tensor  # (N, K) float, points per cluster
    centroids: torch.Tensor  # (N, K, T)


class KMeansWorkspace:
    """Working tensors for K-means on (N, d, T) points, allocated once per shape and reused.

    `run(x)` overwrites the buffers in place; its outputs are views of them (the
    caller clones when it must keep them across calls, e.g. for autograd).
    Each problem shape (N, d, T, dtype, device) keeps its own buffers for the
    workspace's life, so a CUDA graph captured at one batch size still points at
    live memory after another batch size ran (a few shapes in practice: the
    batch sizes a trainer or scorer uses).
    """

    _NAMES = ("block", "block_onehot", "centroids", "sums", "dist", "x_sq", "c_sq", "assignment", "onehot",
              "counts", "safe_counts", "nonempty")

    def __init__(self, *, clusters: int, iters: int) -> None:
        self.clusters, self.iters = clusters, iters
        self.key: tuple | None = None
        self.allocations = 0
        self._sets: dict[tuple, dict[str, torch.Tensor]] = {}

    def _ensure(self, n: int, d: int, t: int, dtype: torch.dtype, device: torch.device) -> None:
        key = (n, d, t, dtype, device)
        found = self._sets.get(key)
        # buffers made under torch.inference_mode() cannot be written outside it (e.g. when a
        # model scored under inference_mode is then traced or trained): make new ones then
        if found is None or not (torch.is_inference_mode_enabled() or not found["centroids"].is_inference()):
            found = self._sets[key] = self._allocate(n, d, t, dtype, device)
        if key != self.key or found["centroids"] is not getattr(self, "centroids", None):
            self.key = key
            for name in self._NAMES:
                setattr(self, name, found[name])

    def _allocate(self, n: int, d: int, t: int, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
        k = self.clusters
        self.allocations += 1
        block = block_assignment(d, k, device=device)  # (d,)
        block_onehot = torch.zeros(d, k, dtype=dtype, device=device)  # (d, K)
        block_onehot[torch.arange(d, device=device), block] = 1.0
        return {
            "block": block,
            "block_onehot": block_onehot,
            "centroids": torch.empty(n, k, t, dtype=dtype, device=device),
            "sums": torch.empty(n, k, t, dtype=dtype, device=device),
            "dist": torch.empty(n, d, k, dtype=dtype, device=device),
            "x_sq": torch.empty(n, d, 1, dtype=dtype, device=device),
            "c_sq": torch.empty(n, 1, k, dtype=dtype, device=device),
            "assignment": torch.empty(n, d, dtype=torch.int64, device=device),
            "onehot": torch.empty(n, d, k, dtype=dtype, device=device),
            "counts": torch.empty(n, k, dtype=dtype, device=device),
            "safe_counts": torch.empty(n, k, 1, dtype=dtype, device=device),
            "nonempty": torch.empty(n, k, 1, dtype=torch.bool, device=device),
        }

    def buffers(self) -> dict[str, torch.Tensor]:
        names = ("centroids", "sums", "dist", "x_sq", "c_sq", "assignment", "onehot", "counts")
        return {name: getattr(self, name) for name in names}

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> KMeansResult:
        """x: (N, d, T) points -> assignment, one-hot, counts and centroids."""
        n, d, t = x.shape
        self._ensure(n, d, t, x.dtype, x.device)
        x = x.detach()
        # block initialisation: centroid k = mean of channel block k
        self.onehot.copy_(self.block_onehot.expand(n, d, self.clusters))
        self._update_centroids(x, keep_empty=False)
        self.assignment.copy_(self.block.expand(n, d))
        if self.iters > 0:
            torch.sum(x * x, dim=-1, keepdim=True, out=self.x_sq)
        for _ in range(self.iters):
            self._assign(x)
            self._update_centroids(x, keep_empty=True)
        if self.iters == 0:
            torch.sum(self.onehot, dim=1, out=self.counts)
        return KMeansResult(self.assignment, self.onehot, self.counts, self.centroids)

    def _assign(self, x: torch.Tensor) -> None:
        # squared distances ||x||^2 - 2 x.c + ||c||^2, (N, d, K)
        torch.sum(self.centroids * self.centroids, dim=-1, out=self.c_sq[:, 0])
        torch.baddbmm(self.x_sq, x, self.centroids.transpose(1, 2), beta=1.0, alpha=-2.0, out=self.dist)
        self.dist.add_(self.c_sq)
        torch.argmin(self.dist, dim=-1, out=self.assignment)
        self.onehot.zero_().scatter_(2, self.assignment.unsqueeze(-1), 1.0)

    def _update_centroids(self, x: torch.Tensor, *, keep_empty: bool) -> None:
        torch.bmm(self.onehot.transpose(1, 2), x, out=self.sums)  # (N, K, T)
        torch.sum(self.onehot, dim=1, out=self.counts)
        torch.clamp(self.counts.unsqueeze(-1), min=1.0, out=self.safe_counts)
        self.sums.div_(self.safe_counts)
        if keep_empty:
            torch.gt(self.counts.unsqueeze(-1), 0, out=self.nonempty)
            torch.where(self.nonempty, self.sums, self.centroids, out=self.centroids)
        else:
            self.centroids.copy_(self.sums)


def kmeans(x: torch.Tensor, *, clusters: int, iters: int) -> KMeansResult:
    """One-off K-means (allocates a fresh workspace); see `KMeansWorkspace`."""
    return KMeansWorkspace(clusters=clusters, iters=iters).run(x)
