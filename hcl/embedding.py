"""Modality embedding, Eq. 1 (ALMT's): H_m^1 = Transformer(concat(H_m^0 | Linear(U_m)))[:, :T]."""

from __future__ import annotations

import torch
from torch import nn

from hcl.layers import TransformerLayer


class ModalityEmbedding(nn.Module):
    def __init__(
        self,
        *,
        name: str,
        input_dim: int,
        max_len: int,
        tokens: int,
        dim: int,
        heads: int,
        layers: int,
        ff_mult: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.name, self.input_dim, self.max_len, self.tokens = name, input_dim, max_len, tokens
        self.proj = nn.Linear(input_dim, dim)
        self.pos = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        self.token_block = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)  # H_m^0
        self.layers = nn.ModuleList(
            TransformerLayer(dim=dim, heads=heads, ff_mult=ff_mult, dropout=dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """u (B, L, D_m), mask (B, L) bool -> H_m^1 (B, T, d)."""
        b, length, width = u.shape
        if width != self.input_dim:
            raise ValueError(
                f"{self.name} features have width {width}, the model expects {self.input_dim} "
                f"(ModelConfig.{self.name}_dim); extract features with the checkpoint's settings"
            )
        if length > self.max_len:
            raise ValueError(
                f"{self.name} sequence of length {length} exceeds ModelConfig.max_len={self.max_len}; "
                "shorten the input or train with a larger max_len"
            )
        x = self.dropout(self.proj(u) + self.pos[:, :length])
        x = torch.cat([self.token_block.expand(b, -1, -1), x], dim=1)  # (B, T + L, d)
        full_mask = torch.cat([mask.new_ones(b, self.tokens), mask], dim=1)
        for layer in self.layers:
            x = layer(x, mask=full_mask)
        return self.norm(x[:, : self.tokens])
