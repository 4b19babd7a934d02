"""CCL (Eq. 6-8) wired as the paper says, checked against the formulas written out with
the module's own attention blocks:

    F_g^1 = F_g,  F_g^{i+1} = Layer_i(F_g^i)
    G_p = MHA(F_g^i -> F_p),  G_q = MHA(F_g^i -> F_q)          (text-guided audio / video)
    M_pq = MHA(G_p -> F_q),   M_qp = MHA(G_q -> F_p)           (audio <-> video guidance)
    G_hyper^i = G_hyper^{i-1} + M_pq + M_qp,  G_hyper^0 = a learned block
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hcl.ccl import CCL
from hcl.config import MODALITIES, ModelConfig

CFG = ModelConfig(text_dim=8, audio_dim=8, video_dim=8, max_len=16, tokens=4, d_model=16, heads=2, clusters=4,
                  guidance_layers=3, ff_mult=2, dropout=0.0)


def reference(ccl: CCL, f: torch.Tensor, config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    g = MODALITIES.index(config.guide)
    p, q = [i for i in range(3) if i != g]
    guide, fp, fq = f[:, g], f[:, p], f[:, q]
    hyper = ccl.hyper0.expand(f.shape[0], -1, -1)
    for i, layer in enumerate(ccl.layers):
        if i > 0:
            guide = ccl.guide_layers[i - 1](guide)
        if config.text_guidance:
            gp = layer.guide_to_p(guide, fp)[0]
            gq = layer.guide_to_q(guide, fq)[0]
        else:
            gp, gq = fp, fq
        if config.collaborative:
            hyper = hyper + layer.p_to_q(gp, fq)[0] + layer.q_to_p(gq, fp)[0]
        else:
            hyper = hyper + gp + gq
    return guide, hyper


@pytest.mark.parametrize(
    "change",
    [{}, {"guide": "audio"}, {"guide": "video"}, {"text_guidance": False}, {"collaborative": False},
     {"guidance_layers": 1}],
    ids=["paper", "audio-guide", "video-guide", "no-text-guidance", "no-collaboration", "one-layer"],
)
def test_matches_the_equations(change):
    torch.manual_seed(0)
    config = dataclasses.replace(CFG, **change)
    ccl = CCL(config=config).eval()
    with torch.no_grad():
        ccl.hyper0.normal_()  # a visible G_hyper^0
    f = torch.randn(3, 3, config.tokens, config.d_model)
    with torch.no_grad():
        out = ccl(f, need_weights=True)
        guide, hyper = reference(ccl, f, config)
    torch.testing.assert_close(out.guide, guide)
    torch.testing.assert_close(out.hyper, hyper)
    assert out.guide.shape == out.hyper.shape == (3, config.tokens, config.d_model)


def test_the_pair_is_the_two_other_modalities():
    for guide, pair in (("text", (1, 2)), ("audio", (0, 2)), ("video", (0, 1))):
        ccl = CCL(config=dataclasses.replace(CFG, guide=guide))
        assert ccl.guide_index == MODALITIES.index(guide) and (ccl.p_index, ccl.q_index) == pair
    ccl = CCL(config=CFG)
    assert len(ccl.layers) == 3 and len(ccl.guide_layers) == 2  # N guidance layers, N - 1 deepening layers


def test_attention_maps_only_from_the_last_layer_and_only_when_asked():
    torch.manual_seed(1)
    ccl = CCL(config=CFG).eval()
    f = torch.randn(2, 3, CFG.tokens, CFG.d_model)
    with torch.no_grad():
        assert ccl(f).attention == {}
        maps = ccl(f, need_weights=True).attention
    assert set(maps) == {"guide->p", "guide->q", "p->q", "q->p"}
    for m in maps.values():
        assert m.shape == (2, CFG.heads, CFG.tokens, CFG.tokens)
        torch.testing.assert_close(m.sum(-1), torch.ones(2, CFG.heads, CFG.tokens))
    # the last layer's text-guided video map: recomputed from the last guide state
    with torch.no_grad():
        guide = f[:, 0]
        for layer in ccl.guide_layers:
            guide = layer(guide)
        expected = ccl.layers[-1].guide_to_q(guide, f[:, 2], need_weights=True)[1]
    torch.testing.assert_close(maps["guide->q"], expected)
    no_guidance = CCL(config=dataclasses.replace(CFG, text_guidance=False)).eval()
    with torch.no_grad():
        assert set(no_guidance(f, need_weights=True).attention) == {"p->q", "q->p"}
    no_collab = CCL(config=dataclasses.replace(CFG, collaborative=False)).eval()
    with torch.no_grad():
        assert set(no_collab(f, need_weights=True).attention) == {"guide->p", "guide->q"}


def test_the_guide_steers_the_hyper_features():
    """Changing only the guide's features changes G_hyper (text guidance is real);
    without text guidance it does not."""
    torch.manual_seed(2)
    f = torch.randn(2, 3, CFG.tokens, CFG.d_model)
    g = f.clone()
    g[:, 0] += torch.randn_like(g[:, 0])
    for guidance, changes in ((True, True), (False, False)):
        ccl = CCL(config=dataclasses.replace(CFG, text_guidance=guidance)).eval()
        with torch.no_grad():
            a, b = ccl(f).hyper, ccl(g).hyper
        assert (not torch.allclose(a, b)) == changes


def test_g_hyper_starts_from_a_small_learned_token_block():
    ccl = CCL(config=ModelConfig())
    assert isinstance(ccl.hyper0, torch.nn.Parameter) and ccl.hyper0.shape == (1, 8, 128)
    assert 0.015 < ccl.hyper0.std().item() < 0.025  # initialised like the other token parameters (std 0.02)


def test_dropout_acts_in_training_only():
    torch.manual_seed(3)
    config = dataclasses.replace(CFG, dropout=0.5)
    ccl = CCL(config=config)
    f = torch.randn(2, 3, CFG.tokens, CFG.d_model)
    with torch.no_grad():
        ccl.train()
        assert not torch.allclose(ccl(f).hyper, ccl(f).hyper)
        ccl.eval()
        torch.testing.assert_close(ccl(f).hyper, ccl(f).hyper)
    for name, module in ccl.named_modules():  # every attention block got the setting
        if hasattr(module, "dropout") and isinstance(module.dropout, float):
            assert module.dropout == 0.5, name


@pytest.mark.parametrize("ff_mult", [2, 3])
def test_guide_layers_have_the_configured_sizes(ff_mult):
    """Every F_g layer between guidance steps is a Transformer layer of d_model with a
    feed-forward of d_model x ff_mult, one fewer than the guidance layers (Eq. 6)."""
    config = dataclasses.replace(CFG, ff_mult=ff_mult)
    ccl = CCL(config=config)
    assert len(ccl.guide_layers) == config.guidance_layers - 1 and len(ccl.layers) == config.guidance_layers
    for layer in ccl.guide_layers:
        linears = [m for m in layer.ff.net if isinstance(m, torch.nn.Linear)]
        assert [tuple(m.weight.shape) for m in linears] == [
            (config.d_model * ff_mult, config.d_model),
            (config.d_model, config.d_model * ff_mult),
        ]
