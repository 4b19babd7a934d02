"""One labelled trimodal sample, and batches of them (padding + masks).

A modality that is absent for a sample has zero rows (shape (0, dim)); in a
batch that becomes an all-False mask row, which the model handles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from hcl.features.segment import SegmentFeatures


@dataclass
class FeatureSample:
    id: str
    label: float
    mode: str  # "train" / "valid" / "test"
    text: np.ndarray  # (L_t, D_t) float
    audio: np.ndarray  # (L_a, D_a) float
    video: np.ndarray  # (L_v, D_v) float
    audio_mask: np.ndarray | None = None  # (L_a,) bool; None = all rows present
    video_mask: np.ndarray | None = None  # (L_v,) bool
    meta: dict = field(default_factory=dict)


def build_sample(
    features: "SegmentFeatures",
    text_features: np.ndarray,
    *,
    id: str,
    label: float = 0.0,
    mode: str = "unlabelled",
    meta: dict | None = None,
) -> FeatureSample:
    """A `FeatureSample` from the step features of a span (`SegmentFeaturizer.featurize`)
    and the text token features (L_t, D_t) of its transcript (`TextEncoder.encode`)."""
    return FeatureSample(
        id=id,
        label=float(label),
        mode=mode,
        text=np.asarray(text_features, np.float32),
        audio=features.audio,
        video=features.video,
        audio_mask=features.audio_mask,
        video_mask=features.video_mask,
        meta=dict(meta or {}),
    )


@dataclass
class Batch:
    text: torch.Tensor  # (B, L_t, D_t)
    text_mask: torch.Tensor  # (B, L_t) bool, True = present
    audio: torch.Tensor
    audio_mask: torch.Tensor
    video: torch.Tensor
    video_mask: torch.Tensor
    label: torch.Tensor  # (B,)
    ids: list[str]

    def to(self, device: torch.device | str) -> "Batch":
        moved = {
            k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in self.__dict__.items()
        }
        return Batch(**moved)

    def inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments for `HCL.forward`."""
        return {
            "text": self.text,
            "text_mask": self.text_mask,
            "audio": self.audio,
            "audio_mask": self.audio_mask,
            "video": self.video,
            "video_mask": self.video_mask,
        }


def _pad(
    arrays: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    dim: int,
    max_len: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [min(len(a), max_len) if max_len else len(a) for a in arrays]
    width = max(max(lengths, default=0), 1)
    out = torch.zeros(len(arrays), width, dim, dtype=torch.float32)
    mask = torch.zeros(len(arrays), width, dtype=torch.bool)
    for i, (a, m, n) in enumerate(zip(arrays, masks, lengths)):
        if n == 0:
            continue
        out[i, :n] = torch.as_tensor(np.asarray(a[:n], dtype=np.float32))
        mask[i, :n] = True if m is None else torch.as_tensor(np.asarray(m[:n], dtype=bool))
    out[~mask] = 0.0
    return out, mask


def collate(
    samples: Sequence[FeatureSample],
    dims: tuple[int, int, int],
    max_len: int | None = None,
) -> Batch:
    """Pad a list of samples into a `Batch`. `dims` = (text, audio, video) widths."""
    text, text_mask = _pad([s.text for s in samples], [None] * len(samples), dims[0], max_len)
    audio, audio_mask = _pad([s.audio for s in samples], [s.audio_mask for s in samples], dims[1], max_len)
    video, video_mask = _pad([s.video for s in samples], [s.video_mask for s in samples], dims[2], max_len)
    label = torch.tensor([float(s.label) for s in samples], dtype=torch.float32)
    return Batch(text, text_mask, audio, audio_mask, video, video_mask, label, [s.id for s in samples])
