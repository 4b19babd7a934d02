"""The live text encoder on onnxruntime computes what PyTorch computes.

The scorer's default (`text_runtime="auto"`) runs the shipped encoder (packaged
MiniLM with the checkpoint's fine-tuned top layer) as an ONNX graph: these tests
hold it to the PyTorch features and scores that training used, on padded
batches, single windows and empty text.
"""

import numpy as np
import pytest
import torch

from hcl.checkpoint import default_live_checkpoint, load_checkpoint
from hcl.features.text import TextEncoder, resolve_text_runtime
from hcl.features.text_onnx import export_graph

pytest.importorskip("onnxruntime")

TEXTS = [
    "i loved it",
    "this was the worst film i have ever seen and i want my money back right now",
    "",
    "ok fine whatever",
    " ".join(["it was a really long and honestly quite wonderful story"] * 8),  # truncated at max_tokens
]


@pytest.fixture(scope="module")
def encoders():
    torch.set_num_threads(1)
    loaded = load_checkpoint(default_live_checkpoint())
    make = lambda runtime: TextEncoder(config=loaded.features.text, tuned_state=loaded.text_top, runtime=runtime)  # noqa: E731
    return loaded, make("torch"), make("onnxruntime")


def test_onnxruntime_features_equal_torch(encoders):
    _, eager, ort = encoders
    assert ort.runtime == "onnxruntime" and eager.runtime == "torch"
    batch_e, batch_o = eager.encode(TEXTS), ort.encode(TEXTS)
    for e, o in zip(batch_e, batch_o):
        assert e.shape == o.shape
        np.testing.assert_allclose(o, e, atol=1e-4)
    assert batch_o[2].shape == (0, 384) and batch_o[4].shape[0] == 50
    for text in TEXTS:  # one window at a time, as the live prefetch encodes
        (e,), (o,) = eager.encode([text]), ort.encode([text])
        np.testing.assert_allclose(o, e, atol=1e-4)
    # several layers at once, as feature extraction asks
    many_e, many_o = eager.encode(TEXTS[:2], layers=(0, 3, 6)), ort.encode(TEXTS[:2], layers=(0, 3, 6))
    for layer in (0, 3, 6):
        for e, o in zip(many_e[layer], many_o[layer]):
            np.testing.assert_allclose(o, e, atol=1e-4)


def test_onnxruntime_scores_equal_torch(encoders):
    loaded, eager, ort = encoders
    model = loaded.model.eval()
    none, absent = torch.zeros(1, 1, 1), torch.zeros(1, 1, dtype=torch.bool)
    for text in TEXTS[:2] + TEXTS[3:]:
        scores = []
        for enc in (eager, ort):
            (f,) = enc.encode([text])
            t = torch.from_numpy(f)[None]
            with torch.inference_mode():
                scores.append(float(model(t, torch.ones(t.shape[:2], dtype=torch.bool), none, absent, none, absent)))
        assert scores[1] == pytest.approx(scores[0], abs=1e-4)


def test_the_fine_tuned_layer_is_in_the_graph(encoders):
    """The graph is exported after the fine-tuned layer is installed: the packaged
    encoder alone (no tuned layer) gives other features."""
    loaded, _, ort = encoders
    from dataclasses import replace

    base = TextEncoder(config=replace(loaded.features.text, tuned_layers=0), runtime="onnxruntime")
    (tuned,), (plain,) = ort.encode(["i loved it"]), base.encode(["i loved it"])
    assert np.abs(tuned - plain).max() > 0.1


def test_runtime_choice_and_errors():
    assert resolve_text_runtime("auto", "cpu") == "onnxruntime"
    assert resolve_text_runtime("auto", "cuda") == "torch"
    with pytest.raises(ValueError, match="runtime must be one of"):
        resolve_text_runtime("tensorrt", "cpu")
    with pytest.raises(ValueError, match="runs on cpu"):
        resolve_text_runtime("onnxruntime", "cuda")


def test_export_needs_a_padded_batch(encoders):
    _, eager, _ = encoders
    unpadded = eager._tokenizer(["hello there"], padding=True, return_tensors="pt")
    with pytest.raises(ValueError, match="padded batch"):
        export_graph(eager.model, unpadded)


def test_live_scorer_runs_onnxruntime_by_default():
    from realtime.pipeline.scorer import WindowScorer

    scorer = WindowScorer(device="cpu")
    scorer.encode_text("hello")
    assert scorer.stats()["text_runtime"] == "onnxruntime"
    assert WindowScorer(device="cpu", text_runtime="torch").stats()["text_runtime"] == "torch"
