import dataclasses

import pytest
import torch

from hcl.config import ModelConfig
from hcl.model import HCL

torch.set_num_threads(1)

SMALL = ModelConfig(text_dim=24, audio_dim=6, video_dim=10, max_len=32, d_model=64, clusters=8, heads=4, dropout=0.0)


def inputs(b=4, seed=0, cfg=SMALL):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m, length in (("text", 12), ("audio", 8), ("video", 8)):
        out[m] = torch.randn(b, length, cfg.input_dim(m), generator=g)
        mask = torch.ones(b, length, dtype=torch.bool)
        mask[0, length // 2 :] = False  # padding
        out[f"{m}_mask"] = mask
    return out


def make(cfg=SMALL, seed=0):
    torch.manual_seed(seed)
    return HCL(config=cfg)


def test_alone_equals_in_batch():
    model = make().eval()
    x = inputs(b=5)
    with torch.no_grad():
        batch = model(**x)
        for i in range(5):
            alone = model(**{k: v[i : i + 1] for k, v in x.items()})
            torch.testing.assert_close(alone[0], batch[i], rtol=1e-5, atol=1e-5)


def test_gradients_reach_every_parameter():
    model = make().train()
    x = inputs()
    model(**x).pow(2).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


@pytest.mark.parametrize(
    "change",
    [
        {"use_cowa": False},
        {"kmeans_iters": 0},
        {"collaborative": False},
        {"text_guidance": False},
        {"guide": "audio"},
        {"guide": "video"},
    ],
)
def test_each_ablation_changes_the_computation(change):
    x = inputs()
    base = make().eval()
    ablated_cfg = dataclasses.replace(SMALL, **change)
    ablated = HCL(config=ablated_cfg).eval()
    # same weights wherever the parameter exists in both, so only the computation differs
    ablated.load_state_dict({k: v for k, v in base.state_dict().items() if k in ablated.state_dict()}, strict=False)
    with torch.no_grad():
        a, b = base(**x), ablated(**x)
    assert not torch.allclose(a, b, atol=1e-6), change


@pytest.mark.parametrize("layers", [2, 3, 4])
def test_guidance_depth(layers):
    model = make(dataclasses.replace(SMALL, guidance_layers=layers))
    assert len(model.ccl.layers) == layers
    assert len(model.ccl.guide_layers) == layers - 1
    assert torch.isfinite(model.eval()(**inputs())).all()


@pytest.mark.parametrize("absent", [("audio",), ("video",), ("audio", "video"), ("text",), ("text", "audio", "video")])
def test_missing_modalities_give_finite_scores(absent):
    model = make().eval()
    x = inputs()
    for m in absent:
        x[f"{m}_mask"][:] = False
        x[m] = torch.zeros_like(x[m])
    with torch.no_grad():
        out = model(**x, details=True)
    assert torch.isfinite(out.score).all()
    assert all(torch.isfinite(w).all() for w in out.weights.values())
    # training mode too (gradients finite)
    model.train()
    s = model(**x)
    s.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_missing_modality_still_uses_what_is_present():
    model = make().eval()
    x = inputs()
    x["audio_mask"][:] = False
    x["video_mask"][:] = False
    with torch.no_grad():
        s1 = model(**x)
        x2 = dict(x)
        x2["text"] = x["text"] + 1.0
        s2 = model(**x2)
    assert not torch.allclose(s1, s2)


def test_details_expose_weights_assignment_attention():
    model = make().eval()
    with torch.no_grad():
        plain = model(**inputs())
        out = model(**inputs(), details=True)
    torch.testing.assert_close(plain, out.score)
    for m in ("text", "audio", "video"):
        w = out.weights[m]
        assert w.shape == (4, SMALL.clusters)
        torch.testing.assert_close(w.sum(-1), torch.ones(4))
        assert out.assignment[m].shape == (4, SMALL.d_model)
    assert out.attention.shape == (4, SMALL.heads, SMALL.tokens, SMALL.tokens)
    torch.testing.assert_close(out.attention.sum(-1), torch.ones(4, SMALL.heads, SMALL.tokens))
    assert set(out.attention_maps) == {"guide->p", "guide->q", "p->q", "q->p"}


def test_scores_are_clipped_at_inference():
    model = make().eval()
    with torch.no_grad():
        model.fusion.mlp[-1].bias.fill_(100.0)
        assert torch.all(model(**inputs()) == 3.0)


def test_wrong_input_width_names_the_modality():
    model = make().eval()
    x = inputs()
    x["audio"] = torch.randn(4, 8, 7)
    with pytest.raises(ValueError, match="audio features have width 7.*expects 6"):
        model(**x)


def test_modalities_not_consumed_are_ignored():
    cfg = dataclasses.replace(SMALL, inputs=("text",))
    model = make(cfg).eval()
    x = inputs()
    with torch.no_grad():
        s1 = model(**x)
        x2 = dict(x, audio=x["audio"] + 5.0, video=torch.randn_like(x["video"]))
        s2 = model(**x2)
    torch.testing.assert_close(s1, s2)
    with pytest.raises(ValueError, match="inputs"):
        ModelConfig(inputs=("smell",))


def _uncached(model, x):
    """The forward with every modality embedded afresh (no constant embeddings)."""
    model._absent.clear()
    real = model._embedded
    model._embedded = lambda m, u, mask: model.embed[m](u, mask)
    try:
        return model(**x, details=True)
    finally:
        model._embedded = real


def test_constant_embeddings_of_unconsumed_modalities_equal_the_full_forward():
    """A text-only model embeds audio and video once (they are one absent row in every window):
    scores, COWA weights and attention equal the forward that embeds them every time, at
    batch 1 and in a batch, and a change of weights is seen (never a stale constant)."""
    cfg = dataclasses.replace(SMALL, inputs=("text",))
    model = make(cfg).eval()
    for b in (1, 3):
        x = inputs(b=b)
        with torch.no_grad():
            fast = model(**x, details=True)
            assert set(model._absent) == {"audio", "video"}
            slow = _uncached(model, x)
        torch.testing.assert_close(fast.score, slow.score, rtol=0, atol=1e-6)
        for m in ("text", "audio", "video"):
            torch.testing.assert_close(fast.weights[m], slow.weights[m], rtol=0, atol=1e-6)
        torch.testing.assert_close(fast.attention, slow.attention, rtol=0, atol=1e-6)
    x = inputs(b=1)
    with torch.no_grad():
        before = model(**x)
        model.embed["audio"].token_block.add_(0.5)  # in place, as an optimiser step would
        changed = model(**x)
        model.load_state_dict(make(cfg, seed=1).state_dict())
        loaded = model(**x)
        fresh = make(cfg, seed=1).eval()(**x)
    assert not torch.equal(before, changed)
    torch.testing.assert_close(loaded, fresh, rtol=0, atol=1e-6)
    # training (and any forward with gradients) embeds every modality: its parameters learn
    model.train()
    model(**inputs(b=2)).sum().backward()
    assert model.embed["audio"].token_block.grad is not None
