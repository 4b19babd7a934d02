"""Parameter and FLOP counts of a model (torch's FlopCounterMode; a multiply-add = 2 FLOPs)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from hcl.features.config import MODALITIES
from hcl.model import HCL, count_parameters


def dummy_inputs(model: HCL, lengths: dict[str, int], batch: int = 1, device="cpu") -> dict[str, torch.Tensor]:
    cfg = model.config
    out = {}
    for m in MODALITIES:
        out[m] = torch.randn(batch, lengths[m], cfg.input_dim(m), device=device)
        out[f"{m}_mask"] = torch.ones(batch, lengths[m], dtype=torch.bool, device=device)
    return out


@torch.no_grad()
def flops_per_sample(model: HCL, lengths: dict[str, int]) -> int:
    was_training = model.training
    model.eval()
    inputs = dummy_inputs(model, lengths, device=next(model.parameters()).device)
    counter = FlopCounterMode(display=False)
    with counter:
        model(**inputs)
    model.train(was_training)
    return int(counter.get_total_flops())


def model_profile(model: HCL, lengths: dict[str, int]) -> dict:
    return {"parameters": count_parameters(model), "flops_per_sample": flops_per_sample(model, lengths), "lengths": lengths}
