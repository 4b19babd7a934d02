"""Typed configuration, one dataclass per concern, defaults from the paper.

Feature-extractor settings live in `hcl.features.config`; a checkpoint records
both (see `hcl.checkpoint`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from hcl.features.config import MODALITIES, Modality, _from_dict

__all__ = ["MODALITIES", "Modality", "ModelConfig", "TrainConfig", "SCORE_RANGE"]

SCORE_RANGE = 3.0  # labels and scores lie in [-3, 3]


@dataclass(frozen=True)
class ModelConfig:
    """HCL architecture (Sec. 2, Sec. 3.3). Ablations of Tables 3-6 are switches here."""

    # input feature widths per modality (set from the feature settings)
    text_dim: int = 384
    audio_dim: int = 48
    video_dim: int = 58
    # longest input sequence per modality (positional embeddings)
    max_len: int = 64
    tokens: int = 8  # T: token block per modality
    d_model: int = 128  # d
    heads: int = 4  # h
    clusters: int = 8  # K
    kmeans_iters: int = 10  # 0 = the paper's "w/o K-Means" fixed channel groups
    guidance_layers: int = 3  # N
    embed_layers: int = 1  # Transformer layers in each modality embedding (Eq. 1)
    fusion_layers: int = 1
    ff_mult: int = 4
    dropout: float = 0.1
    use_cowa: bool = True  # False = "w/o COWA"
    collaborative: bool = True  # False = "w/o collaborative" (no audio<->video guidance)
    text_guidance: bool = True  # False = "w/o text guidance"
    guide: Modality = "text"  # Table 5: which modality plays the guide
    # what the classifier reads after fusion: "text" = the attended guide rows
    # (Sec. 2.4); "cls" = a CLS row that sees only G_hyper (format-1 checkpoints)
    fusion_readout: Literal["text", "cls"] = "text"
    # modalities the model consumes; the others are always treated as absent. The
    # trainer drops a modality that never occurs in the training data, so a model
    # trained on transcripts only is not swayed by untrained audio/video weights.
    inputs: tuple[Modality, ...] = MODALITIES
    # "sentimentai": the score adds a * s + b, s the packaged zero-shot sentiment head
    # (hcl.zero_shot) over the mean of the text features (e5-small's last layer), a and b
    # learned; "none": HCL alone
    text_prior: Literal["none", "sentimentai"] = "none"

    def __post_init__(self) -> None:
        if self.d_model % self.clusters:
            raise ValueError(f"d_model={self.d_model} must be divisible by clusters={self.clusters}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by heads={self.heads}")
        if self.guide not in MODALITIES:
            raise ValueError(f"guide must be one of {MODALITIES}, got {self.guide!r}")
        if not set(self.inputs) <= set(MODALITIES) or not self.inputs:
            raise ValueError(f"inputs must be a non-empty subset of {MODALITIES}, got {self.inputs}")
        if self.fusion_readout not in ("text", "cls"):
            raise ValueError(f"fusion_readout must be 'text' or 'cls', got {self.fusion_readout!r}")
        if self.text_prior not in ("none", "sentimentai"):
            raise ValueError(f"text_prior must be 'none' or 'sentimentai', got {self.text_prior!r}")
        if self.kmeans_iters < 0 or self.guidance_layers < 1:
            raise ValueError("kmeans_iters must be >= 0 and guidance_layers >= 1")

    def input_dim(self, modality: Modality) -> int:
        return {"text": self.text_dim, "audio": self.audio_dim, "video": self.video_dim}[modality]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (Sec. 3.3: AdamW, lr 1e-4, batch 64, 100 epochs, L1 loss)."""

    lr: float = 1e-4
    text_lr: float = 3e-5  # fine-tuned top text-encoder layers (FeatureSettings.text.tuned_layers > 0)
    weight_decay: float = 1e-2
    batch_size: int = 64
    epochs: int = 100
    patience: int = 10  # early stopping on the valid split
    seeds: tuple[int, ...] = (1, 2, 3)
    grad_clip: float = 1.0
    # probability of dropping a present audio / video modality per sample (robustness)
    modality_dropout: float = 0.0
    select_metric: Literal["mae", "acc2", "corr"] = "mae"
    num_threads: int = 0  # 0 = torch default
    device: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, data)
