"""CCL: cross-modal collaborative learning (Sec. 2.4, Eq. 6-8).

The guide g (text by default; Table 5 also tries audio and video) deepens
through Transformer layers, F_g^1 = F_g, F_g^{i+1} = Layer_i(F_g^i). At each of
the N guidance layers, with p, q the other two modalities (audio, video):

    G_q = MHA(Q = F_g^i, K = V = F_q)        Eq. 6-7, text-guided video
    G_p = MHA(Q = F_g^i, K = V = F_p)        Eq. 6-7, text-guided audio
    M_pq = MHA(Q = G_p, K = V = F_q)         audio-guided video
    M_qp = MHA(Q = G_q, K = V = F_p)         video-guided audio
    G_hyper^i = G_hyper^{i-1} + M_pq + M_qp  Eq. 8

F_p, F_q stay fixed across layers (as in ALMT). Ablations: text_guidance=False
uses G_p = F_p, G_q = F_q; collaborative=False uses G_hyper += G_p + G_q.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from hcl.config import ModelConfig
from hcl.features.config import MODALITIES
from hcl.layers import Attention, TransformerLayer


@dataclass
class CCLOutput:
    guide: torch.Tensor  # (B, T, d) F_g^N
    hyper: torch.Tensor  # (B, T, d) G_hyper^N
    attention: dict[str, torch.Tensor] = field(default_factory=dict)  # last layer, (B, h, T, T)


class GuidanceLayer(nn.Module):
    def __init__(self, *, config: ModelConfig) -> None:
        super().__init__()
        kw = dict(dim=config.d_model, heads=config.heads, dropout=config.dropout)
        self.guide_to_p = Attention(**kw)
        self.guide_to_q = Attention(**kw)
        self.p_to_q = Attention(**kw)
        self.q_to_p = Attention(**kw)
        self.text_guidance = config.text_guidance
        self.collaborative = config.collaborative

    def forward(
        self, guide: torch.Tensor, fp: torch.Tensor, fq: torch.Tensor, *, need_weights: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        maps: dict[str, torch.Tensor] = {}
        if self.text_guidance:
            gp, maps["guide->p"] = self.guide_to_p(guide, fp, need_weights=need_weights)
            gq, maps["guide->q"] = self.guide_to_q(guide, fq, need_weights=need_weights)
        else:
            gp, gq = fp, fq
        if not self.collaborative:
            return gp + gq, {k: v for k, v in maps.items() if v is not None}
        m_pq, maps["p->q"] = self.p_to_q(gp, fq, need_weights=need_weights)
        m_qp, maps["q->p"] = self.q_to_p(gq, fp, need_weights=need_weights)
        return m_pq + m_qp, {k: v for k, v in maps.items() if v is not None}


class CCL(nn.Module):
    def __init__(self, *, config: ModelConfig) -> None:
        super().__init__()
        self.guide_index = MODALITIES.index(config.guide)
        others = [i for i in range(len(MODALITIES)) if i != self.guide_index]
        self.p_index, self.q_index = others  # text guide: p = audio, q = video
        self.hyper0 = nn.Parameter(torch.randn(1, config.tokens, config.d_model) * 0.02)
        self.guide_layers = nn.ModuleList(
            TransformerLayer(dim=config.d_model, heads=config.heads, ff_mult=config.ff_mult, dropout=config.dropout)
            for _ in range(config.guidance_layers - 1)
        )
        self.layers = nn.ModuleList(GuidanceLayer(config=config) for _ in range(config.guidance_layers))

    def forward(self, f: torch.Tensor, *, need_weights: bool = False) -> CCLOutput:
        """f: (B, M, T, d) COWA features in MODALITIES order."""
        guide, fp, fq = f[:, self.guide_index], f[:, self.p_index], f[:, self.q_index]
        hyper = self.hyper0.expand(f.shape[0], -1, -1)
        maps: dict[str, torch.Tensor] = {}
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i > 0:
                guide = self.guide_layers[i - 1](guide)
            update, maps = layer(guide, fp, fq, need_weights=need_weights and i == last)
            hyper = hyper + update
        return CCLOutput(guide=guide, hyper=hyper, attention=maps)
