"""Guards against silent breakage of the text path (issue 25): cached text features are keyed
by a format version, and the fusion reads the mean of its guide rows."""

from __future__ import annotations

import numpy as np
import torch

import hcl.data.transcripts as transcripts
from hcl.config import ModelConfig
from hcl.features.config import TextFeatureConfig
from hcl.model import FusionHead


class CountingEncoder:
    """Stands in for TextEncoder: counts calls, returns features that name their call."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts, *, layers):
        self.calls += 1
        return {layer: [np.full((2, 4), self.calls, np.float32) for _ in texts] for layer in layers}


def test_a_new_cache_version_is_not_served_old_features(tmp_path, monkeypatch):
    config = TextFeatureConfig(dim=4)
    enc = CountingEncoder()
    first = transcripts.encode_cached(["a b"], config, cache_dir=tmp_path, encoder=enc)[-1][0]
    again = transcripts.encode_cached(["a b"], config, cache_dir=tmp_path, encoder=enc)[-1][0]
    assert enc.calls == 1 and np.array_equal(first, again)  # the cache works
    monkeypatch.setattr(transcripts, "TEXT_CACHE_VERSION", transcripts.TEXT_CACHE_VERSION + 1)
    changed = transcripts.encode_cached(["a b"], config, cache_dir=tmp_path, encoder=enc)[-1][0]
    assert enc.calls == 2 and float(changed[0, 0]) == 2.0  # re-encoded, not read from the old file


def test_fusion_text_readout_is_the_mean_of_all_guide_rows():
    torch.manual_seed(0)
    head = FusionHead(config=ModelConfig(fusion_readout="text", dropout=0.0)).eval()
    guide, hyper = torch.randn(2, 8, 128), torch.randn(2, 8, 128)
    with torch.no_grad():
        out = head(guide, hyper)
        x = guide
        for layer in head.layers:
            x = layer(x, hyper)[0]
        want = head.mlp(head.norm(x.mean(dim=1))).squeeze(-1)
        torch.testing.assert_close(out, want)
        # every row counts (a last-row or first-row readout would ignore the others)...
        for row in (0, 7):
            moved = guide.clone()
            moved[:, row] += torch.randn(128)  # not a constant shift, which the LayerNorms remove
            assert (head(moved, hyper) - out).abs().min() > 1e-4, row
        # ...and their order does not (a mean)
        torch.testing.assert_close(head(guide.flip(1), hyper), out)
