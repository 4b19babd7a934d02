"""The onnxruntime text encoder's graph is exported once and read back from disk.

A second encoder of the same checkpoint reads the saved graph without loading the
torch model and gives the same features; other fine-tuned layers get their own graph;
a damaged file is exported anew; the folder keeps only the most recently used graphs.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hcl.checkpoint import load_checkpoint
from hcl.features import text_onnx
from hcl.features.text import TextEncoder
from hcl.features.text_onnx import graph_dir, graph_key

MINILM = Path(__file__).resolve().parents[1] / "models" / "hcl-text-minilm" / "model.pt"
TEXTS = ["i loved it", "", "this was the worst film i have ever seen and i want my money back"]


@pytest.fixture(scope="module")
def loaded():
    torch.set_num_threads(1)
    return load_checkpoint(MINILM)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HCL_CACHE", str(tmp_path))
    return graph_dir()


def encoder(loaded, tuned=None, runtime="onnxruntime"):
    return TextEncoder(config=loaded.features.text, tuned_state=tuned or loaded.text_top, runtime=runtime)


def test_the_second_encoder_reads_the_graph_without_the_torch_model(loaded, cache):
    first = encoder(loaded)
    a = first.encode(TEXTS)
    assert not first.graph_cached and len(list(cache.glob("*.onnx"))) == 1
    second = encoder(loaded)
    b = second.encode(TEXTS)
    assert second.graph_cached and second._model is None  # the torch model was never loaded
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(encoder(loaded, runtime="torch").encode(TEXTS), b):  # still what training computes
        np.testing.assert_allclose(y, x, atol=1e-4)


def test_other_fine_tuned_layers_get_their_own_graph(loaded, cache):
    config = loaded.features.text
    changed = {k: v.clone() for k, v in loaded.text_top.items()}
    name = next(k for k, v in changed.items() if v.is_floating_point())
    changed[name].view(-1)[0] += 1e-3  # one weight, slightly
    path = "encoder-folder"
    assert graph_key(config, path, changed, int8=False) != graph_key(config, path, loaded.text_top, int8=False)
    assert graph_key(config, path, loaded.text_top, int8=True) != graph_key(config, path, loaded.text_top, int8=False)
    a, b = encoder(loaded), encoder(loaded, tuned=changed)
    a.encode(TEXTS[:1]), b.encode(TEXTS[:1])
    assert not b.graph_cached and len(list(cache.glob("*.onnx"))) == 2


def test_a_damaged_graph_is_exported_again(loaded, cache):
    (want,) = encoder(loaded).encode(TEXTS[:1])
    (path,) = cache.glob("*.onnx")
    path.write_bytes(path.read_bytes()[: 1000])  # cut short, as by a full disk
    again = encoder(loaded)
    (got,) = again.encode(TEXTS[:1])
    assert not again.graph_cached and path.stat().st_size > 1000
    np.testing.assert_array_equal(got, want)


def test_the_folder_keeps_the_most_recently_used_graphs(cache):
    for i in range(6):
        text_onnx.save_graph(b"x", cache / f"{i}.onnx")
        os.utime(cache / f"{i}.onnx", (1000 + i, 1000 + i))  # used in this order
    text_onnx._prune(cache, keep=4)
    assert sorted(p.name for p in cache.glob("*.onnx")) == ["2.onnx", "3.onnx", "4.onnx", "5.onnx"]
    assert not list(cache.glob("*.part"))
