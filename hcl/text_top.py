"""The top layers of the text encoder, fine-tuned jointly with HCL.

Fine-tuning all of a BERT-family encoder costs every layer on every step. Here
only the top k layers train: the hidden state under them (layer L - k) is
computed once per dataset and cached on disk (`hcl.data.transcripts`), and an
epoch runs just the k layers plus HCL.

    cached h_{L-k} (B, L_t, D_t) ─ TextTop (k encoder layers) ─ h_L (B, L_t, D_t) ─ HCL ─ score

A checkpoint stores only these k layers (`text_top`); at live time
`hcl.features.text.TextEncoder` loads them over the packaged encoder's top
layers, so it emits h_L of the fine-tuned encoder, the same features the model
was trained on (up to the float16 cache of h_{L-k}).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from hcl.features.config import TextFeatureConfig
from hcl.features.text import TextEncoder, install_tuned_layers


def encoder_depth(config: TextFeatureConfig) -> int:
    """Number of Transformer layers of the configured text encoder."""
    return len(_layer_list(TextEncoder(config=replace_tuned(config, 0)).model))


def _layer_list(encoder) -> nn.ModuleList:
    """The encoder's stack of Transformer layers (BERT, MiniLM, MPNet and kin: `encoder.layer`)."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"cannot find the layer stack of {type(encoder).__name__}; fine-tuning needs encoder.layer")
    return layers


class RelativePositionBias(nn.Module):
    """The attention bias of an encoder whose stack adds relative positions in every layer
    (MPNet: `encoder.relative_attention_bias`, computed once per forward and passed to each
    layer as `position_bias`). A frozen copy, so the top layers see what they saw in the
    whole encoder: hidden (B, L, D) -> bias (B, heads, L, L)."""

    def __init__(self, stack: nn.Module) -> None:
        super().__init__()
        self.relative_attention_bias = copy.deepcopy(stack.relative_attention_bias).requires_grad_(False)
        # the encoder's own bucketing and bias code, so both paths compute the same thing
        self.relative_position_bucket = type(stack).relative_position_bucket
        self._compute = type(stack).compute_position_bias

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._compute(self, hidden)


class TextTop(nn.Module):
    """k Transformer layers taken from the top of a text encoder: h_{L-k} (B, L, D) -> h_L (B, L, D)."""

    def __init__(self, layers: nn.ModuleList, encoder_config, position: RelativePositionBias | None = None) -> None:
        super().__init__()
        self.layers = layers
        self.encoder_config = encoder_config  # the transformers config, for its attention-mask rules
        self.position = position  # MPNet's relative position bias; None for BERT/MiniLM (absolute positions)

    @classmethod
    def from_encoder(cls, config: TextFeatureConfig, k: int) -> "TextTop":
        """Copies of the top k layers of the encoder named by `config`, with its pretrained weights."""
        return cls.from_model(TextEncoder(config=replace_tuned(config, 0)).model, k)

    @classmethod
    def from_model(cls, encoder, k: int) -> "TextTop":
        """Copies of the top k layers of a loaded `transformers` encoder."""
        stack = _layer_list(encoder)
        if not 1 <= k <= len(stack):
            raise ValueError(f"tune between 1 and {len(stack)} text-encoder layers, got {k}")
        stack_module = encoder.encoder
        position = RelativePositionBias(stack_module) if hasattr(stack_module, "relative_attention_bias") else None
        return cls(nn.ModuleList(copy.deepcopy(layer) for layer in stack[len(stack) - k :]), encoder.config, position)

    @property
    def k(self) -> int:
        return len(self.layers)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """hidden (B, L, D) at layer L - k, mask (B, L) bool (True = token) -> (B, L, D) at layer L."""
        # transformers.masking_utils takes ~1 s to import: imported on use, as hcl.features.text imports
        # transformers, so that HF_HUB_OFFLINE is set before huggingface_hub's first import reads it
        from transformers.masking_utils import create_bidirectional_mask

        # the same mask the encoder builds for itself, so that live (whole encoder) and
        # training (cached lower layers + these) compute the same thing
        # a sample without text attends to its first (zero) row instead of nothing (NaN)
        safe = mask.clone()
        safe[:, 0] |= ~mask.any(dim=1)
        attn = create_bidirectional_mask(config=self.encoder_config, inputs_embeds=hidden, attention_mask=safe.long())
        extra = {} if self.position is None else {"position_bias": self.position(hidden)}
        for layer in self.layers:
            out = layer(hidden, attention_mask=attn, **extra)
            hidden = out[0] if isinstance(out, tuple) else out
        # padded rows stay zero: HCL masks them, and a fixed value keeps batches comparable
        return hidden.masked_fill(~mask[..., None], 0.0)

    def install(self, encoder) -> None:
        """Overwrite the top k layers of a loaded `transformers` encoder with these weights."""
        install_tuned_layers(encoder, self.state_dict(), self.k)


def replace_tuned(config: TextFeatureConfig, tuned_layers: int, layer: int = -1) -> TextFeatureConfig:
    return replace(config, tuned_layers=tuned_layers, layer=layer)


def text_top_from_state(config: TextFeatureConfig, state: dict[str, torch.Tensor], encoder=None) -> TextTop:
    """A TextTop of `config.tuned_layers` layers holding the fine-tuned weights `state` (float32).

    `encoder`: an already loaded base encoder to copy the layer structure from.
    """
    k = config.tuned_layers
    top = TextTop.from_model(encoder, k) if encoder is not None else TextTop.from_encoder(config, k)
    own = top.state_dict()
    if set(state) != set(own):
        raise ValueError(
            f"fine-tuned text layers do not fit the encoder {config.encoder!r}: "
            f"{len(set(state) ^ set(own))} tensor names differ (e.g. {sorted(set(state) ^ set(own))[:3]})"
        )
    top.load_state_dict({k: v.float() for k, v in state.items()})
    return top.eval()


class TunedTextHCL(nn.Module):
    """HCL reading its text through fine-tuned top encoder layers; inputs are h_{L-k} states.

    Same call as `HCL` (training, `predict` and `evaluate` use it unchanged); the
    checkpoint keeps `hcl` and `top` apart (`save_checkpoint(..., text_top=top)`).
    """

    def __init__(self, hcl: nn.Module, top: TextTop) -> None:
        super().__init__()
        self.hcl, self.top = hcl, top

    @property
    def config(self):
        return self.hcl.config

    def forward(self, text, text_mask, audio, audio_mask, video, video_mask, *, details: bool = False):
        return self.hcl(self.top(text, text_mask), text_mask, audio, audio_mask, video, video_mask, details=details)
