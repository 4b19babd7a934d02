"""HCL: modality embedding (Eq. 1) -> COWA (Eq. 2-5) -> CCL (Eq. 6-8) -> fusion -> score.

    text  (B, L_t, D_t) ─ embed ─┐
    audio (B, L_a, D_a) ─ embed ─┼─ (B, 3, T, d) ─ COWA ─ CCL ─ fusion(F_g^N over G_hyper^N) ─ pool ─ MLP ─ score (B,)
    video (B, L_v, D_v) ─ embed ─┘

Fusion (Sec. 2.4): "the high-level text features F_t^n serve as the query and
G_hyper as key and value"; the attended text features go to the classifier.
We read that literally: the T rows of F_g^N cross-attend to G_hyper^N (with
their residual, so the text rows themselves carry through), are mean-pooled
over T and fed to the MLP. Checkpoints of format 1 used a CLS row that read
only G_hyper^N (the text rows never reached the score); they load with
`ModelConfig.fusion_readout = "cls"` so that old files keep their scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from hcl.ccl import CCL
from hcl.config import SCORE_RANGE, ModelConfig
from hcl.features.config import MODALITIES
from hcl.cowa import COWA
from hcl.embedding import ModalityEmbedding
from hcl.layers import CrossTransformerLayer
from hcl.zero_shot import ZeroShotHead

__all__ = ["HCL", "HCLOutput", "FusionHead", "SCORE_RANGE", "count_parameters"]


@dataclass
class HCLOutput:
    score: torch.Tensor  # (B,)
    weights: dict[str, torch.Tensor] = field(default_factory=dict)  # COWA W_m, (B, K) each
    assignment: dict[str, torch.Tensor] = field(default_factory=dict)  # cluster per channel, (B, d)
    attention: torch.Tensor | None = None  # last guidance layer map shown to users, (B, h, T, T)
    attention_maps: dict[str, torch.Tensor] = field(default_factory=dict)  # all last-layer maps


class FusionHead(nn.Module):
    """Cross-modal fusion Transformer: F_g^N (queries) attends to G_hyper^N; mean over T -> MLP -> score.

    readout "text": the score reads the attended guide rows (the paper's reading).
    readout "cls": a CLS row in front of F_g^N is read instead (format-1 checkpoints);
    its output does not depend on F_g^N, which is why "text" replaced it.
    """

    def __init__(self, *, config: ModelConfig) -> None:
        super().__init__()
        d = config.d_model
        self.readout = config.fusion_readout
        if self.readout == "cls":
            self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.layers = nn.ModuleList(
            CrossTransformerLayer(dim=d, heads=config.heads, ff_mult=config.ff_mult, dropout=config.dropout)
            for _ in range(config.fusion_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(d, 1))

    def forward(self, guide: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        """guide F_g^N (B, T, d), hyper G_hyper^N (B, T, d) -> raw score (B,)."""
        x = guide
        if self.readout == "cls":
            x = torch.cat([self.cls.expand(guide.shape[0], -1, -1), guide], dim=1)  # (B, 1 + T, d)
        for layer in self.layers:
            x = layer(x, hyper)[0]  # queries x, keys/values G_hyper
        pooled = x[:, 0] if self.readout == "cls" else x.mean(dim=1)  # (B, d)
        return self.mlp(self.norm(pooled)).squeeze(-1)


class HCL(nn.Module):
    def __init__(self, *, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.ModuleDict(
            {
                m: ModalityEmbedding(
                    name=m,
                    input_dim=config.input_dim(m),
                    max_len=config.max_len,
                    tokens=config.tokens,
                    dim=config.d_model,
                    heads=config.heads,
                    layers=config.embed_layers,
                    ff_mult=config.ff_mult,
                    dropout=config.dropout,
                )
                for m in MODALITIES
            }
        )
        self.cowa = (
            COWA(dim=config.d_model, clusters=config.clusters, kmeans_iters=config.kmeans_iters)
            if config.use_cowa
            else None
        )
        self.ccl = CCL(config=config)
        self.fusion = FusionHead(config=config)
        if config.text_prior == "sentimentai":
            # the packaged head (frozen) and its map to the label range, a * s + b (learned;
            # a starts at about what a least-squares fit on MOSI/MOSEI gives)
            self.prior = ZeroShotHead(config.text_dim)
            self.prior_map = nn.Parameter(torch.tensor([1.5, 0.0]))
        # modality -> (key, H_m^1 of the absent row (1, T, d)): see `_embedded`
        self._absent: dict[str, tuple[tuple, torch.Tensor]] = {}

    def _embedded(self, m: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """H_m^1 (B, T, d) of modality m (Eq. 1).

        A modality the model does not consume is one absent zero row, so in inference (eval,
        no gradients) its embedding is the same for every window: it is made once per device,
        dtype and version of the embedding's weights (in-place updates and load_state_dict
        bump the version) and expanded to the batch. For a text-only model that skips two of
        the three embedding Transformers, about an eighth of a batch-1 forward."""
        module = self.embed[m]
        if m in self.config.inputs or self.training or torch.is_grad_enabled():
            return module(x, mask)
        key = (x.device, x.dtype, tuple(p._version for p in module.parameters()))
        hit = self._absent.get(m)
        if hit is None or hit[0] != key:
            hit = self._absent[m] = (key, module(x[:1], mask[:1]))
        return hit[1].expand(x.shape[0], -1, -1)

    def forward(
        self,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        audio: torch.Tensor,
        audio_mask: torch.Tensor,
        video: torch.Tensor,
        video_mask: torch.Tensor,
        *,
        details: bool = False,
    ) -> torch.Tensor | HCLOutput:
        inputs = {"text": (text, text_mask), "audio": (audio, audio_mask), "video": (video, video_mask)}
        for m in MODALITIES:
            x, mask = inputs[m]
            if m not in self.config.inputs:
                # not consumed by this model: one absent zero row, whatever was passed
                # (any width, NaN or Inf), so it cannot reach the score
                b = x.shape[0]
                inputs[m] = (x.new_zeros(b, 1, self.config.input_dim(m)), mask.new_zeros(b, 1))
            else:
                # absent rows are zeroed, not only masked: attention weights of 0 still
                # multiply the values, and 0 * NaN = NaN
                inputs[m] = (x.masked_fill(~mask[..., None], 0.0), mask)
        h = torch.stack([self._embedded(m, *inputs[m]) for m in MODALITIES], dim=1)  # (B, 3, T, d)
        weights = assignment = None
        if self.cowa is not None:
            out = self.cowa(h)
            h, weights, assignment = out.features, out.weights, out.assignment
        ccl = self.ccl(h, need_weights=details)
        raw = self.fusion(ccl.guide, ccl.hyper)
        if self.config.text_prior == "sentimentai":
            text, mask = inputs["text"]
            raw = raw + self.prior_map[0] * self.prior(text, mask) + self.prior_map[1]
        # L1 training sees the raw output; at inference the score is clipped to the label range
        score = raw if self.training else raw.clamp(-SCORE_RANGE, SCORE_RANGE)
        if not details:
            return score
        maps = ccl.attention
        shown = maps.get("guide->q", maps.get("p->q"))
        return HCLOutput(
            score=score,
            weights={m: weights[:, i] for i, m in enumerate(MODALITIES)} if weights is not None else {},
            # a copy: the K-means workspace buffer is overwritten by the next forward pass
            assignment={m: assignment[:, i].clone() for i, m in enumerate(MODALITIES)} if assignment is not None else {},
            attention=shown,
            attention_maps=maps,
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
