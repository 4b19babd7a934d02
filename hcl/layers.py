"""Pre-norm attention building blocks shared by every part of HCL.

Masks are boolean with True = present. A query whose keys are all absent gets a
zero attention output (never NaN), so a missing modality cannot poison a batch.

A live window is scored at batch 1, where the cost is the number of operations,
not their size: heads are split and merged with plain views (no einops parsing
per call), the key mask becomes an additive bias in two operations, and the
attention itself is one fused `F.scaled_dot_product_attention` unless the
weights are asked for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeedForward(nn.Module):
    def __init__(self, *, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * mult),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim * mult, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Attention(nn.Module):
    """Multi-head attention, queries (B, Lq, d) over keys/values (B, Lk, d).

    Pre-norm on both inputs. Returns only the attention output (no residual);
    callers add residuals where the paper does.
    """

    def __init__(self, *, dim: int, heads: int, dropout: float = 0.0, norm_kv: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim) if norm_kv else nn.Identity()
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(
        self,
        q: torch.Tensor,
        kv: torch.Tensor | None = None,
        *,
        key_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        q_in = self.norm_q(q)
        kv_in = q_in if kv is None else self.norm_kv(kv)
        e = q_in.shape[-1] // self.heads  # a Python int: no shape arithmetic in a traced graph
        # (B, L, 2d) -> (B, L, 2, h, e) -> (2, B, h, L, e): k and v split by the same view
        kv_h = self.to_kv(kv_in).unflatten(-1, (2, self.heads, e)).permute(2, 0, 3, 1, 4)
        k_h, v_h = kv_h[0], kv_h[1]
        q_h = self.to_q(q_in).unflatten(-1, (self.heads, e)).transpose(1, 2)  # (B, h, Lq, e)
        bias = None
        if key_mask is not None:
            # additive mask, finite so that an all-absent row stays finite; zeroed below
            bias = torch.logical_not(key_mask).to(q_h.dtype).mul_(-1e9)[:, None, None, :]  # (B, 1, 1, Lk)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = torch.einsum("bhqe,bhke->bhqk", q_h, k_h) * q_h.shape[-1] ** -0.5
            if bias is not None:
                scores = scores + bias
            weights = scores.softmax(dim=-1)
            out = torch.einsum("bhqk,bhke->bhqe", F.dropout(weights, p, self.training), v_h)
        else:
            out = F.scaled_dot_product_attention(q_h, k_h, v_h, attn_mask=bias, dropout_p=p)
        out = self.to_out(out.transpose(1, 2).flatten(2))
        if key_mask is not None:
            out = out * key_mask.any(dim=-1).to(out.dtype)[:, None, None]
        return out, weights


class TransformerLayer(nn.Module):
    """Pre-norm self-attention + feed-forward, with residuals."""

    def __init__(self, *, dim: int, heads: int, ff_mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = Attention(dim=dim, heads=heads, dropout=dropout, norm_kv=False)
        self.ff = FeedForward(dim=dim, mult=ff_mult, dropout=dropout)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(x, key_mask=mask)[0]
        return x + self.ff(x)


class CrossTransformerLayer(nn.Module):
    """Pre-norm cross-attention (queries over a context) + feed-forward, with residuals."""

    def __init__(self, *, dim: int, heads: int, ff_mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = Attention(dim=dim, heads=heads, dropout=dropout)
        self.ff = FeedForward(dim=dim, mult=ff_mult, dropout=dropout)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, *, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        out, weights = self.attn(x, context, need_weights=need_weights)
        x = x + out
        return x + self.ff(x), weights
